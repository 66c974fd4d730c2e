"""ReLU, softmax and cross-entropy, with their gradients, in plain NumPy (chapter 4).

Every classifier head and every contrastive loss in the book ends in the same three pieces: a
non-linearity (ReLU), a map from scores to probabilities (softmax or sigmoid), and a loss that
compares those probabilities with the truth (cross-entropy). This module implements them in a
numerically stable way, in float64, so that the notebooks can show each formula next to the
code that computes it and check both against PyTorch, TensorFlow and scikit-learn.

Conventions shared by every function:

* Inputs are array-likes (lists, tuples, scalars, NumPy arrays) of real numbers; they are
  converted to ``float64``. Strings, objects, complex numbers and **booleans** are refused with
  a :class:`TypeError` (a boolean mask is almost always a bug when a probability was meant; cast
  it explicitly with ``.astype(float)``).
* Empty arrays, NaN and infinity are refused with a :class:`ValueError`: a loss of NaN is never
  the answer a reader wants, so the error points at the argument that carried it.
* ``reduction`` is ``"mean"`` (average over samples, the PyTorch and Keras default), ``"sum"``
  or ``"none"`` (one value per sample). Reduced results are Python floats, unreduced ones NumPy
  arrays.
* ``axis`` (default ``-1``) is the class axis of ``logits``; every other axis indexes samples.

How cross-entropy reads its ``targets`` is decided by the **dtype**, never by guessing:

* an **integer** array holds class indices; its shape is the shape of ``logits`` without the
  class axis, and every index lies in ``0 .. C-1``;
* a **float** array holds one-hot or probability vectors; its shape is the shape of ``logits``,
  every entry lies in ``[0, 1]`` and every vector sums to 1 (within ``1e-5``).

Float class labels such as ``[0., 2., 1.]`` (or ``1.5``) are therefore refused: cast whole
numbers with ``.astype(int)``.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "relu",
    "relu_grad",
    "sigmoid",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "cross_entropy_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
]

REDUCTIONS = ("mean", "sum", "none")
"""The accepted values of every ``reduction`` argument."""

PROBABILITY_SUM_TOLERANCE = 1e-5
"""How far from 1 a probability target vector may sum (float32 softmax outputs are off by ~1e-7)."""

LOG_FLOOR = -100.0
"""The lower bound :func:`binary_cross_entropy` puts on each logarithm, as PyTorch does."""


# --------------------------------------------------------------------------------------------
# Input validation (private): every message names the argument, what was expected and what came.
# --------------------------------------------------------------------------------------------

def _as_real_array(name: str, value) -> np.ndarray:
    """Convert ``value`` to an array of real numbers (any dtype kept), refusing everything else."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got a string: {value!r}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array of real numbers, "
                         f"got {type(value).__name__} that NumPy cannot convert: {error}") from None
    if array.dtype == np.bool_:
        raise TypeError(f"{name} must be an array of real numbers, got booleans (dtype bool); "
                        f"if that is intended, convert with .astype(float)")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers (integer or float dtype), "
                        f"got dtype {array.dtype} from {type(value).__name__}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got an array of shape {array.shape}")
    return array


def _as_float_array(name: str, value) -> np.ndarray:
    """Convert ``value`` to a finite, non-empty float64 array."""
    array = _as_real_array(name, value).astype(np.float64)
    _check_finite(name, array)
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = array[~finite]
        raise ValueError(f"{name} must contain only finite numbers, got {bad.size} NaN/inf "
                         f"value(s) (first: {bad[0]}) in an array of shape {array.shape}")


def _check_axis(axis, ndim: int, name: str = "logits") -> int:
    """Return ``axis`` as a non-negative index into an array of ``ndim`` dimensions."""
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}: {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis), got a scalar")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis must lie in [{-ndim}, {ndim - 1}] for {name} with {ndim} "
                         f"dimension(s), got {axis}")
    return int(axis) % ndim


def _logits_and_axis(logits, axis) -> tuple[np.ndarray, int]:
    z = _as_float_array("logits", logits)
    return z, _check_axis(axis, z.ndim)


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str):
        raise TypeError(f"reduction must be one of {REDUCTIONS}, got {type(reduction).__name__}: "
                        f"{reduction!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _check_unit_interval(name: str, array: np.ndarray) -> None:
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        raise ValueError(f"{name} must lie in [0, 1], got {int(outside.sum())} value(s) outside "
                         f"it (first: {array[outside][0]})")


def _check_same_shape(name: str, array: np.ndarray, other_name: str, other: np.ndarray) -> None:
    if array.shape != other.shape:
        raise ValueError(f"{name} must have the same shape as {other_name}, {other.shape}, "
                         f"got shape {array.shape}")


def _reduce(per_sample: np.ndarray, reduction: str):
    if reduction == "mean":
        return float(per_sample.mean())
    if reduction == "sum":
        return float(per_sample.sum())
    return per_sample


def _cross_entropy_targets(targets, logits: np.ndarray, axis: int) -> tuple[str, np.ndarray]:
    """Validate ``targets`` against ``logits`` and say how to read them: ``"index"`` or ``"probability"``."""
    array = _as_real_array("targets", targets)
    n_classes = logits.shape[axis]
    index_shape = logits.shape[:axis] + logits.shape[axis + 1:]
    if array.dtype.kind in "iu":
        if array.shape != index_shape:
            raise ValueError(
                f"targets with an integer dtype are class indices and must have shape "
                f"{index_shape} (the shape of logits, {logits.shape}, without the class axis "
                f"{axis}), got shape {array.shape}; for one-hot or probability targets pass a "
                f"float array of shape {logits.shape}")
        if (array < 0).any():
            raise ValueError(f"targets must be class indices in [0, {n_classes - 1}], got the "
                             f"negative index {array[array < 0][0]}")
        if (array >= n_classes).any():
            raise ValueError(f"targets must be class indices in [0, {n_classes - 1}] for logits "
                             f"with {n_classes} classes, got the out-of-range index "
                             f"{array[array >= n_classes][0]}")
        return "index", array.astype(np.intp)
    array = array.astype(np.float64)
    _check_finite("targets", array)
    if array.shape != logits.shape:
        if array.shape == index_shape:
            fractional = array[array != np.round(array)]
            detail = (f"the non-integer label {fractional[0]}" if fractional.size
                      else "whole numbers: cast them with targets.astype(int)")
            raise TypeError(
                f"targets of shape {array.shape} look like class indices, which must have an "
                f"integer dtype, got dtype {np.asarray(targets).dtype} ({detail}); float "
                f"targets are one-hot or probability vectors of shape {logits.shape}")
        raise ValueError(f"targets must have shape {index_shape} (integer class indices) or "
                         f"{logits.shape} (float probability vectors, like logits), got shape "
                         f"{array.shape}")
    _check_unit_interval("targets", array)
    sums = array.sum(axis=axis)
    off = np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE
    if off.any():
        raise ValueError(f"targets given as probability vectors must sum to 1 along axis {axis} "
                         f"(within {PROBABILITY_SUM_TOLERANCE}), got {int(off.sum())} vector(s) "
                         f"that do not (first sum: {sums[off][0]})")
    return "probability", array


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

def relu(x):
    r"""Rectified linear unit, elementwise: :math:`\operatorname{ReLU}(x) = \max(x, 0)`.

    Parameters
    ----------
    x : array_like of real numbers

    Returns
    -------
    numpy.ndarray (float64, same shape as ``x``; a NumPy float for a scalar)
    """
    x = _as_float_array("x", x)
    return np.maximum(x, 0.0)[()]


def relu_grad(x):
    r"""Derivative of ReLU, elementwise: :math:`1` where :math:`x > 0`, else :math:`0`.

    ReLU has no derivative at :math:`x = 0`; any value in :math:`[0, 1]` is a valid
    subgradient there. We return **0 at 0**, the choice PyTorch's and TensorFlow's autograd make,
    so a unit whose pre-activation is exactly zero passes no gradient back.

    Parameters
    ----------
    x : array_like of real numbers
        The pre-activations (the input of ReLU, not its output).

    Returns
    -------
    numpy.ndarray of 0.0 and 1.0 (float64, same shape as ``x``; a NumPy float for a scalar)
    """
    x = _as_float_array("x", x)
    return (x > 0.0).astype(np.float64)[()]


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid(x):
    r"""Logistic sigmoid, elementwise: :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    Computed as :math:`1/(1+e^{-|x|})` for :math:`x \ge 0` and :math:`e^{-|x|}/(1+e^{-|x|})`
    otherwise, so that ``exp`` never overflows, even for :math:`|x| = 10^4`.

    Parameters
    ----------
    x : array_like of real numbers

    Returns
    -------
    numpy.ndarray (float64, same shape as ``x``; a NumPy float for a scalar)
    """
    x = _as_float_array("x", x)
    return _stable_sigmoid(x)[()]


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    shifted = z - z.max(axis=axis, keepdims=True)  # the largest entry becomes 0: exp() <= 1
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax(logits, axis: int = -1) -> np.ndarray:
    r"""Logarithm of the softmax, with the log-sum-exp trick.

    .. math::
        \log \operatorname{softmax}(z)_k = z_k - m - \log \sum_j e^{z_j - m},
        \qquad m = \max_j z_j .

    Subtracting the maximum :math:`m` changes nothing mathematically (softmax is invariant to a
    shift of all its inputs) but keeps every exponent :math:`\le 0`, so nothing overflows and the
    largest term of the sum is exactly 1, so the logarithm never sees 0.

    Parameters
    ----------
    logits : array_like of real numbers, at least one dimension
    axis : int, default -1
        The class axis, along which the probabilities sum to 1.

    Returns
    -------
    numpy.ndarray (float64, same shape as ``logits``)
    """
    return _log_softmax(*_logits_and_axis(logits, axis))


def softmax(logits, axis: int = -1) -> np.ndarray:
    r"""Softmax along ``axis``: :math:`\operatorname{softmax}(z)_k = e^{z_k} / \sum_j e^{z_j}`.

    Computed as :math:`e^{z_k - m} / \sum_j e^{z_j - m}` with :math:`m = \max_j z_j` (see
    :func:`log_softmax`), which is exact and cannot overflow.

    Parameters
    ----------
    logits : array_like of real numbers, at least one dimension
    axis : int, default -1
        The class axis, along which the result sums to 1.

    Returns
    -------
    numpy.ndarray (float64, same shape as ``logits``)
    """
    z, axis = _logits_and_axis(logits, axis)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------------------------
# Categorical cross-entropy (softmax + negative log-likelihood)
# --------------------------------------------------------------------------------------------

def cross_entropy(logits, targets, reduction: str = "mean", axis: int = -1):
    r"""Categorical cross-entropy of softmax(``logits``) against ``targets``.

    For one sample with logits :math:`z \in \mathbb{R}^C` and a target distribution :math:`y`
    (one-hot, or any probability vector),

    .. math::
        \ell(z, y) = -\sum_{k=1}^{C} y_k \log \operatorname{softmax}(z)_k ,

    which for a class index :math:`c` (one-hot :math:`y`) is :math:`-\log \operatorname{softmax}(z)_c
    = \log\sum_j e^{z_j} - z_c`. With ``reduction="mean"`` the batch loss is
    :math:`L = \frac1N \sum_{n=1}^{N} \ell(z^{(n)}, y^{(n)})`. The logarithm is taken with
    :func:`log_softmax`, never as ``log(softmax(z))``, so logits of any size give a finite loss.

    This is ``torch.nn.functional.cross_entropy`` and Keras' ``(Sparse)CategoricalCrossentropy
    (from_logits=True)``.

    Parameters
    ----------
    logits : array_like of real numbers, shape ``(..., C, ...)``
        Unnormalised scores; ``axis`` is the class axis, every other axis indexes samples.
    targets : array_like
        Integer dtype: class indices, shape of ``logits`` without the class axis, values in
        ``0 .. C-1``. Float dtype: one-hot or probability vectors, same shape as ``logits``,
        entries in ``[0, 1]`` summing to 1 along ``axis``.
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns one loss per sample (an array of the sample shape).
    axis : int, default -1
        The class axis of ``logits`` (and of float ``targets``).

    Returns
    -------
    float, or numpy.ndarray for ``reduction="none"``
    """
    z, axis = _logits_and_axis(logits, axis)
    reduction = _check_reduction(reduction)
    kind, y = _cross_entropy_targets(targets, z, axis)
    log_p = _log_softmax(z, axis)
    if kind == "index":
        per_sample = -np.take_along_axis(log_p, np.expand_dims(y, axis), axis=axis).squeeze(axis)
    else:
        per_sample = -(y * log_p).sum(axis=axis)
    return _reduce(per_sample, reduction)


def cross_entropy_grad(logits, targets, reduction: str = "mean", axis: int = -1) -> np.ndarray:
    r"""Gradient of :func:`cross_entropy` with respect to ``logits``.

    For one sample,

    .. math::
        \frac{\partial \ell}{\partial z_k} = \operatorname{softmax}(z)_k \sum_j y_j - y_k
        = \operatorname{softmax}(z)_k - y_k ,

    since the target vector sums to 1 (for a class index :math:`c`, :math:`y` is one-hot at
    :math:`c`). ``reduction="mean"`` divides by the number of samples :math:`N`, giving
    :math:`(\operatorname{softmax}(z) - y)/N`; ``"sum"`` does not divide. ``"none"`` returns each
    sample's gradient of its own loss, which is the same array as for ``"sum"`` because a
    sample's loss depends only on its own logits.

    Parameters
    ----------
    logits, targets, reduction, axis
        As for :func:`cross_entropy`.

    Returns
    -------
    numpy.ndarray (float64, same shape as ``logits``)
    """
    z, axis = _logits_and_axis(logits, axis)
    reduction = _check_reduction(reduction)
    kind, y = _cross_entropy_targets(targets, z, axis)
    p = np.exp(_log_softmax(z, axis))
    if kind == "index":
        one_hot = np.zeros_like(z)
        np.put_along_axis(one_hot, np.expand_dims(y, axis), 1.0, axis=axis)
        grad = p - one_hot
    else:
        grad = p * y.sum(axis=axis, keepdims=True) - y
    if reduction == "mean":
        grad = grad / (z.size // z.shape[axis])
    return grad


# --------------------------------------------------------------------------------------------
# Binary cross-entropy (one independent yes/no question per entry)
# --------------------------------------------------------------------------------------------

def binary_cross_entropy(probs, targets, reduction: str = "mean", eps: float = 0.0):
    r"""Binary cross-entropy of predicted probabilities against targets, elementwise.

    .. math::
        \ell(p, y) = -\bigl[\, y \log p + (1 - y) \log(1 - p) \,\bigr], \qquad
        L = \frac{1}{M} \sum_{i=1}^{M} \ell(p_i, y_i)

    for ``reduction="mean"``, where :math:`M` is the number of entries (every entry is its own
    yes/no question, as in PyTorch).

    **Clipping.** :math:`\log 0 = -\infty`, so a confident wrong prediction (:math:`p = 0`,
    :math:`y = 1`) has an infinite loss, and :math:`0 \cdot \log 0` is NaN. The references
    differ in how they avoid that, and this function can reproduce each:

    * PyTorch's ``binary_cross_entropy`` clamps each logarithm to :math:`\ge -100`, so one entry
      costs at most 100. **This function always does the same** (``LOG_FLOOR``); with the
      default ``eps=0`` it matches PyTorch everywhere, including at exactly 0 and 1.
    * Keras' ``BinaryCrossentropy(from_logits=False)`` first clips :math:`p` to
      :math:`[\epsilon, 1-\epsilon]` with :math:`\epsilon = 10^{-7}` (pass ``eps=1e-7``), which caps
      an entry's loss at :math:`-\log 10^{-7} \approx 16.1`.
    * scikit-learn's ``log_loss`` clips to the machine epsilon of the dtype (pass
      ``eps=np.finfo(float).eps``).

    Better still, keep the logits and use :func:`binary_cross_entropy_with_logits`, which needs no
    clipping at all. :math:`\log(1-p)` is computed as ``log1p(-p)``, which is more accurate than
    PyTorch's ``log(1 - p)`` for tiny :math:`p` (they differ by less than :math:`10^{-16}`).

    Parameters
    ----------
    probs : array_like of real numbers in [0, 1]
        Predicted probabilities of the positive class (e.g. the output of a sigmoid).
    targets : array_like of real numbers in [0, 1], same shape as ``probs``
        0/1 labels, or soft labels. Booleans are refused; use ``.astype(float)``.
    reduction : {"mean", "sum", "none"}
        ``"none"`` returns the elementwise losses, an array of the shape of ``probs``.
    eps : float in [0, 0.5), default 0.0
        Clip ``probs`` to ``[eps, 1 - eps]`` before taking logarithms.

    Returns
    -------
    float, or numpy.ndarray for ``reduction="none"``
    """
    p = _as_float_array("probs", probs)
    y = _as_float_array("targets", targets)
    _check_same_shape("targets", y, "probs", p)
    _check_unit_interval("probs", p)
    _check_unit_interval("targets", y)
    reduction = _check_reduction(reduction)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}: {eps!r}")
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must lie in [0, 0.5), got {eps}")
    if eps > 0.0:
        p = np.clip(p, eps, 1.0 - eps)
    with np.errstate(divide="ignore"):  # log(0) = -inf is clamped to LOG_FLOOR just below
        log_p = np.maximum(np.log(p), LOG_FLOOR)
        log_not_p = np.maximum(np.log1p(-p), LOG_FLOOR)
    return _reduce(-(y * log_p + (1.0 - y) * log_not_p), reduction)


def _check_logits_and_binary_targets(logits, targets) -> tuple[np.ndarray, np.ndarray]:
    x = _as_float_array("logits", logits)
    y = _as_float_array("targets", targets)
    _check_same_shape("targets", y, "logits", x)
    _check_unit_interval("targets", y)
    return x, y


def binary_cross_entropy_with_logits(logits, targets, reduction: str = "mean"):
    r"""Binary cross-entropy of :math:`\sigma(x)` against targets, computed from the logits.

    Substituting :math:`p = \sigma(x)` in :func:`binary_cross_entropy` and simplifying gives

    .. math::
        \ell(x, y) = -\bigl[y \log \sigma(x) + (1-y)\log(1-\sigma(x))\bigr]
        = \max(x, 0) - x\,y + \log\bigl(1 + e^{-|x|}\bigr),

    which is exact, never overflows (the exponent is :math:`\le 0`) and never takes
    :math:`\log 0`, so it needs no clipping, even for :math:`|x| = 10^4`. The first two terms
    are evaluated as :math:`x(1-y)` for :math:`x \ge 0` and :math:`-x\,y` for :math:`x < 0`
    (the same numbers), which avoids subtracting two large, nearly equal products. This is
    ``torch.nn.functional.binary_cross_entropy_with_logits`` and Keras'
    ``BinaryCrossentropy(from_logits=True)``.

    Parameters
    ----------
    logits : array_like of real numbers
    targets : array_like of real numbers in [0, 1], same shape as ``logits``
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over all entries.

    Returns
    -------
    float, or numpy.ndarray for ``reduction="none"``
    """
    x, y = _check_logits_and_binary_targets(logits, targets)
    reduction = _check_reduction(reduction)
    linear_part = np.where(x >= 0.0, x * (1.0 - y), -x * y)  # = max(x, 0) - x*y
    per_entry = linear_part + np.log1p(np.exp(-np.abs(x)))
    return _reduce(per_entry, reduction)


def binary_cross_entropy_with_logits_grad(logits, targets, reduction: str = "mean") -> np.ndarray:
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``logits``.

    .. math::
        \frac{\partial \ell}{\partial x} = \sigma(x) - y ,

    divided by the number of entries for ``reduction="mean"`` (``"sum"`` and ``"none"`` give the
    undivided elementwise gradient). It has the same shape as the categorical case,
    prediction minus target.

    Returns
    -------
    numpy.ndarray (float64, same shape as ``logits``)
    """
    x, y = _check_logits_and_binary_targets(logits, targets)
    reduction = _check_reduction(reduction)
    grad = _stable_sigmoid(x) - y
    if reduction == "mean":
        grad = grad / x.size
    return grad
