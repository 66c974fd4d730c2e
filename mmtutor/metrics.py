r"""Classification metrics: accuracy, precision, recall, F1 and the confusion matrix.

Everything here is read off one table, the **confusion matrix** :math:`C`: entry :math:`C_{ij}`
counts the samples whose true class is :math:`i` and whose predicted class is :math:`j` (rows = true,
columns = predicted, as in scikit-learn). For one class :math:`c`:

* true positives :math:`TP_c = C_{cc}`, the diagonal entry;
* false positives :math:`FP_c = \sum_{i \ne c} C_{ic}`, the rest of column :math:`c` (predicted
  :math:`c`, but it was not);
* false negatives :math:`FN_c = \sum_{j \ne c} C_{cj}`, the rest of row :math:`c` (it was :math:`c`,
  but predicted otherwise);

.. math::

    P_c = \frac{TP_c}{TP_c + FP_c}, \qquad R_c = \frac{TP_c}{TP_c + FN_c}, \qquad
    F1_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}.

The functions mirror scikit-learn's ``accuracy_score``, ``precision_score``, ``recall_score``,
``f1_score`` and ``confusion_matrix`` (same arguments, same numbers; the tests check this on random
labels), minus sample weights and multilabel targets. They are stricter about bad input: every
problem raises a ``ValueError`` or ``TypeError`` that names the argument.

Class labels are integers, booleans or strings. A float array is accepted only if every value is a
whole number (``1.0`` is class 1); ``0.5``, ``inf`` or ``NaN`` raise a ``ValueError`` that names the
value and its position. (scikit-learn also refuses such "continuous" targets, with a vaguer message.)
A list that mixes strings and numbers raises a ``TypeError`` (NumPy would silently turn the numbers
into strings).
"""

import numbers
import warnings
from typing import NamedTuple

import numpy as np

__all__ = [
    "UndefinedMetricWarning",
    "PrecisionRecallF1",
    "accuracy",
    "confusion_matrix",
    "precision_recall_f1",
    "precision",
    "recall",
    "f1_score",
    "classification_report",
    "BootstrapInterval",
    "bootstrap_ci",
    "bootstrap_difference_ci",
]

AVERAGES = (None, "binary", "micro", "macro", "weighted")


class UndefinedMetricWarning(UserWarning):
    """A metric was 0/0 (e.g. precision of a class never predicted) and was set to 0.0."""


class PrecisionRecallF1(NamedTuple):
    """What :func:`precision_recall_f1` returns; unpacks like scikit-learn's 4-tuple."""

    precision: float | np.ndarray
    recall: float | np.ndarray
    f1: float | np.ndarray
    support: np.ndarray | None  # TP + FN per class (samples truly in it); None once averaged


# ----------------------------------------------------------------------------- input checks
def _as_labels(y, name):
    """``y`` as a 1-D NumPy array of integer, boolean or string labels, or an error naming ``name``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class labels; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one label; got an empty sequence.")
    if arr.dtype.kind in "OU":  # strings, or Python objects (NumPy silently turns ['a', 1] into strings)
        if all(isinstance(v, str) for v in y):
            return arr.astype(str)
        if arr.dtype.kind == "U" or not all(isinstance(v, numbers.Number) for v in y):
            kinds = sorted({type(v).__name__ for v in y})
            raise TypeError(f"{name} must hold only strings or only numbers as labels; got a mix of {kinds}.")
        arr = np.asarray(list(y))
    if arr.dtype.kind in "biu":
        return arr
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            first = np.flatnonzero(np.isnan(arr))[0]
            raise ValueError(f"{name} must not contain NaN; found one at position {first}.")
        not_whole = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if not_whole.size:
            i = not_whole[0]
            raise ValueError(
                f"{name} must hold integer class labels (floats only if whole numbers, like 1.0); "
                f"got {arr[i]} at position {i}. Round or threshold scores into classes first."
            )
        return arr.astype(np.int64)
    raise TypeError(f"{name} must hold integer or string class labels; got an array of dtype {arr.dtype}.")


def _check_same_kind(a, name_a, b, name_b):
    """Refuse to compare string labels with numeric ones (they can never be equal)."""
    kind_a, kind_b = ("strings" if x.dtype.kind == "U" else "numbers" for x in (a, b))
    if kind_a != kind_b:
        raise TypeError(f"{name_a} holds {kind_a} but {name_b} holds {kind_b}; labels must be of one kind.")


def _check_targets(y_true, y_pred):
    """Both label arrays, validated: 1-D, non-empty, same length, same kind of label."""
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length; got {y_true.size} and {y_pred.size} labels."
        )
    _check_same_kind(y_pred, "y_pred", y_true, "y_true")
    return y_true, y_pred


def _check_labels(labels, y_true):
    """The ``labels=`` argument, validated: non-empty, no class twice, same kind as ``y_true``."""
    labels = _as_labels(labels, "labels")
    _check_same_kind(labels, "labels", y_true, "y_true")
    values, counts = np.unique(labels, return_counts=True)
    if (counts > 1).any():
        repeated = values[counts > 1].tolist()
        raise ValueError(f"labels must list each class once; {repeated} repeat in {labels.tolist()}.")
    return labels


def _binary_labels(present, pos_label):
    """``[pos_label]`` for ``average='binary'``, after checking the problem really is binary."""
    if present.size > 2:
        raise ValueError(
            f"average='binary' needs at most two classes, but y_true and y_pred hold {present.size}: "
            f"{present.tolist()}. Use average=None, 'micro', 'macro' or 'weighted'."
        )
    positive = _as_labels([pos_label], "pos_label")
    if pos_label not in present.tolist():
        if present.size == 2:
            raise ValueError(
                f"pos_label={pos_label!r} is not a class of y_true or y_pred; "
                f"expected one of {present.tolist()}."
            )
        # One class only (say all 0) and pos_label=1: scikit-learn scores the absent positive class, so do we.
        _check_same_kind(positive, "pos_label", present, "y_true")
    return positive


def _zero_division_value(zero_division):
    """The number that replaces 0/0: 0.0 for ``"warn"``, else 0.0, 1.0 or NaN as given."""
    if isinstance(zero_division, str) and zero_division == "warn":
        return 0.0
    if isinstance(zero_division, numbers.Real) and not isinstance(zero_division, (bool, np.bool_)):
        if zero_division in (0, 1) or np.isnan(zero_division):
            return float(zero_division)
    raise ValueError(f"zero_division must be 'warn', 0, 1 or np.nan; got {zero_division!r}.")


# ----------------------------------------------------------------------------- the metrics
def accuracy(y_true, y_pred, *, normalize=True):
    r"""Fraction (or, with ``normalize=False``, number) of samples whose prediction is right.

    .. math:: \mathrm{accuracy} = \frac{1}{N}\sum_{i=1}^{N} [\hat y_i = y_i].

    Parameters
    ----------
    y_true, y_pred : 1-D array-like of int or str labels, same length
    normalize : bool, default True
        ``True`` returns the fraction, ``False`` the count (as a float, like scikit-learn).
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True or False; got {normalize!r}.")
    correct = y_true == y_pred
    return float(correct.mean() if normalize else correct.sum())


def _one_hot(y, labels):
    """Boolean matrix of shape (n_samples, n_labels): entry [i, k] says y[i] == labels[k]."""
    return y[:, None] == labels[None, :]


def _confusion(y_true, y_pred, labels):
    """Confusion matrix of already validated labels: one-hot(y_true)^T @ one-hot(y_pred)."""
    return _one_hot(y_true, labels).T.astype(np.int64) @ _one_hot(y_pred, labels).astype(np.int64)


def confusion_matrix(y_true, y_pred, labels=None):
    r"""Counts :math:`C_{ij}` of samples with true class ``labels[i]`` and predicted class ``labels[j]``.

    Rows are true classes, columns predicted ones (scikit-learn's convention). The diagonal holds
    the correct predictions, so ``accuracy = trace(C) / C.sum()`` when every class is listed.

    Parameters
    ----------
    y_true, y_pred : 1-D array-like of int or str labels, same length
    labels : 1-D array-like, optional
        Classes to index the matrix by, in this order. Default: every class in ``y_true`` or
        ``y_pred``, sorted. Samples whose true or predicted class is not listed are left out; a listed
        class absent from the data gets a row and a column of zeros. At least one listed class must
        occur in ``y_true`` (scikit-learn raises there too), and none may be listed twice.

    Returns
    -------
    numpy.ndarray of int64, shape (len(labels), len(labels))
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    if labels is None:
        labels = np.union1d(y_true, y_pred)
    else:
        labels = _check_labels(labels, y_true)
        if not np.isin(labels, y_true).any():
            raise ValueError(f"labels must include at least one class of y_true; got {labels.tolist()}.")
    return _confusion(y_true, y_pred, labels)


def _divide(numerator, denominator, zero_division, metric, missing, warn):
    """``numerator / denominator`` per class; 0/0 becomes ``zero_division`` (0.0 and a warning for "warn")."""
    undefined = denominator == 0
    result = numerator / np.where(undefined, 1, denominator)
    result[undefined] = _zero_division_value(zero_division)
    if warn and undefined.any() and isinstance(zero_division, str):
        where = "due to" if result.size == 1 else "in labels with"
        warnings.warn(
            f"{metric} is ill-defined and being set to 0.0 {where} no {missing} samples. "
            "Use `zero_division` parameter to control this behavior.",
            UndefinedMetricWarning,
            stacklevel=4,  # the caller of precision(), recall(), f1_score() or precision_recall_f1()
        )
    return result


def _average(scores, average, support):
    """Average per-class scores as scikit-learn does: skip NaN; if all weights are 0, take the plain mean."""
    if average is None:
        return scores
    kept = ~np.isnan(scores)
    if not kept.any():
        return float("nan")
    weights = support[kept] if average == "weighted" and support[kept].sum() > 0 else None
    return float(np.average(scores[kept], weights=weights))


def _precision_recall_f1(y_true, y_pred, labels, pos_label, average, zero_division, warn_for):
    """The one place that counts TP, FP and FN; the public functions below all call it."""
    y_true, y_pred = _check_targets(y_true, y_pred)
    if not (average is None or isinstance(average, str)) or average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}; got {average!r}.")
    _zero_division_value(zero_division)  # fail early on a bad value, even if no 0/0 occurs
    present = np.union1d(y_true, y_pred)
    if average == "binary":
        labels = _binary_labels(present, pos_label)  # labels= is ignored, as in scikit-learn
    elif labels is None:
        labels = present
    else:
        labels = _check_labels(labels, y_true)
    # Confusion matrix over the requested classes first, then every other class present, so that its
    # column and row sums count all predictions of and all samples in each requested class.
    matrix = _confusion(y_true, y_pred, np.concatenate([labels, np.setdiff1d(present, labels)]))
    k = labels.size
    tp, predicted, actual = np.diag(matrix)[:k], matrix.sum(axis=0)[:k], matrix.sum(axis=1)[:k]
    if average == "micro":  # pool the counts of all classes, then divide once
        tp, predicted, actual = (np.array([counts.sum()]) for counts in (tp, predicted, actual))
    scores = (
        _divide(tp, predicted, zero_division, "Precision", "predicted", "precision" in warn_for),
        _divide(tp, actual, zero_division, "Recall", "true", "recall" in warn_for),
        _divide(2 * tp, predicted + actual, zero_division, "F-score", "true nor predicted",
                "f1" in warn_for),
    )
    averaged = (_average(s, average, actual) for s in scores)
    return PrecisionRecallF1(*averaged, support=actual if average is None else None)


_PARAMETERS = r"""

    Parameters
    ----------
    y_true, y_pred : 1-D array-like of int or str labels, same length
    labels : 1-D array-like, optional
        Classes to score and to average over, in this order (default: all classes present, sorted).
        May list classes absent from the data, or a subset. Ignored when ``average="binary"``.
    pos_label : int or str, default 1
        The positive class when ``average="binary"`` (ignored otherwise). If two classes are present
        it must be one of them; if all labels are one other class, the positive class is scored as
        absent (precision and recall are 0/0), as in scikit-learn.
    average : {"binary", "micro", "macro", "weighted", None}
        Default ``"binary"`` (``None`` for :func:`precision_recall_f1`).

        * ``"binary"``: the score of ``pos_label`` alone; at most two classes may occur.
        * ``None``: one score per class, as an array.
        * ``"micro"``: pool the counts of all classes, then divide once, e.g.
          :math:`P_\mathrm{micro} = \sum_c TP_c / \sum_c (TP_c + FP_c)`. With every class included,
          micro precision = micro recall = micro F1 = accuracy.
        * ``"macro"``: the plain mean over the :math:`K` classes, :math:`\frac{1}{K} \sum_c P_c`;
          a rare class weighs as much as a common one.
        * ``"weighted"``: the mean weighted by the support :math:`n_c = TP_c + FN_c`,
          :math:`\sum_c n_c P_c / \sum_c n_c`.

        A NaN score (from ``zero_division=np.nan``) is left out of every average.
    zero_division : {"warn", 0, 1, np.nan}, default "warn"
        The value of a 0/0 score (e.g. the precision of a class that is never predicted).
        ``"warn"`` gives 0.0 and an :class:`UndefinedMetricWarning`.
"""


def precision_recall_f1(y_true, y_pred, *, labels=None, pos_label=1, average=None, zero_division="warn"):
    """Precision, recall, F1 and support in one pass (scikit-learn's ``precision_recall_fscore_support``).

    Returns a :class:`PrecisionRecallF1` ``(precision, recall, f1, support)``: floats when averaged,
    arrays with ``average=None`` (the default here, as in scikit-learn); ``support`` is the number of
    true samples per class, or ``None`` when averaged.
    """
    return _precision_recall_f1(
        y_true, y_pred, labels, pos_label, average, zero_division, warn_for=("precision", "recall", "f1")
    )


def precision(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    r"""Precision :math:`P = TP / (TP + FP)`: of the samples predicted as a class, the fraction that are."""
    scores = _precision_recall_f1(y_true, y_pred, labels, pos_label, average, zero_division, ("precision",))
    return scores.precision


def recall(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    r"""Recall :math:`R = TP / (TP + FN)`: of the samples truly in a class, the fraction found."""
    scores = _precision_recall_f1(y_true, y_pred, labels, pos_label, average, zero_division, ("recall",))
    return scores.recall


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary", zero_division="warn"):
    r"""F1 :math:`= 2PR/(P+R) = 2\,TP / (2\,TP + FP + FN)`, the harmonic mean of precision and recall.

    It is 0/0 only when a class is neither present nor predicted. Averaged F1 is the average of
    per-class F1 scores, not the F1 of averaged precision and recall.
    """
    scores = _precision_recall_f1(y_true, y_pred, labels, pos_label, average, zero_division, ("f1",))
    return scores.f1


_RETURNS = """
    Returns
    -------
    float, or numpy.ndarray of shape (len(labels),) with ``average=None``
"""

for _function in (precision_recall_f1, precision, recall, f1_score):
    if _function.__doc__:  # None under python -OO
        _function.__doc__ = _function.__doc__.rstrip() + _PARAMETERS
        if _function is not precision_recall_f1:
            _function.__doc__ += _RETURNS
del _function


# ----------------------------------------------------------------------------- reports and uncertainty
def classification_report(y_true, y_pred, *, labels=None, target_names=None, zero_division="warn"):
    """Per-class precision, recall, F1 and support, then their averages, as a pandas ``DataFrame``.

    The numbers are those of scikit-learn's ``classification_report(output_dict=True)``, laid out as a
    table: one row per class (named ``target_names``, or ``str(label)``), then

    * ``"accuracy"`` (its ``f1-score`` column holds the accuracy; precision and recall are NaN) when
      the listed classes include every class in the data, otherwise ``"micro avg"``;
    * ``"macro avg"`` and ``"weighted avg"``.

    The ``support`` column counts the true samples of each class; the average rows hold the total.

    Parameters
    ----------
    y_true, y_pred : 1-D array-like of int or str labels, same length
    labels : 1-D array-like, optional
        Classes to report, in this order (default: every class present, sorted).
    target_names : sequence of str, optional
        A display name for each of ``labels``, in the same order; one per class, all different.
    zero_division : {"warn", 0, 1, np.nan}
        As in :func:`precision_recall_f1`.
    """
    import pandas as pd

    y_true, y_pred = _check_targets(y_true, y_pred)
    present = np.union1d(y_true, y_pred)
    labels = present if labels is None else _check_labels(labels, y_true)
    if target_names is None:
        target_names = [str(label) for label in labels.tolist()]
    else:
        if isinstance(target_names, str) or not all(isinstance(name, str) for name in target_names):
            raise TypeError(f"target_names must be a sequence of strings; got {target_names!r}.")
        target_names = list(target_names)
        if len(target_names) != labels.size or len(set(target_names)) != len(target_names):
            raise ValueError(
                f"target_names must give {labels.size} different names, one per class in "
                f"{labels.tolist()}; got {len(target_names)}: {target_names}."
            )
    summaries = {"accuracy", "micro avg", "macro avg", "weighted avg"}
    if summaries & set(target_names):
        raise ValueError(f"target_names must not use the names of the summary rows {sorted(summaries)}; "
                         f"got {target_names}.")
    per_class = precision_recall_f1(y_true, y_pred, labels=labels, zero_division=zero_division)
    columns = ["precision", "recall", "f1-score", "support"]
    rows = {name: [p, r, f, s] for name, p, r, f, s in zip(target_names, *per_class)}
    total = int(per_class.support.sum())
    micro_is_accuracy = set(labels.tolist()) >= set(present.tolist())
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_f1(y_true, y_pred, labels=labels, average=average,
                                         zero_division=zero_division)
        if average == "micro" and micro_is_accuracy:
            rows["accuracy"] = [np.nan, np.nan, f, total]
        else:
            rows[f"{average} avg"] = [p, r, f, total]
    report = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    return report.astype({"precision": float, "recall": float, "f1-score": float, "support": np.int64})


class BootstrapInterval(NamedTuple):
    """What :func:`bootstrap_ci` returns; unpacks as ``estimate, low, high``."""

    estimate: float  # the metric on the sample itself
    low: float       # lower end of the percentile interval
    high: float      # upper end


_CHUNK = 2_000_000  # resampled indices drawn at a time (16 MB of int64), whatever n_boot and n are


def _check_bootstrap_options(metric, n_boot, confidence, seed):
    if not callable(metric):
        raise TypeError(f"metric must be a function metric(y_true, y_pred) -> float; got {metric!r}.")
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int (the number of resamples); got {n_boot!r}.")
    if (isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, numbers.Real)
            or not 0 < confidence < 1):
        raise ValueError(f"confidence must be a number strictly between 0 and 1, e.g. 0.95; got {confidence!r}.")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}.")


def _prediction_like(y_true, y_pred, name):
    """``y_pred`` validated against already checked ``y_true``; errors name it ``name``."""
    y_pred = _as_labels(y_pred, name)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{name} must have the same length as y_true; got {y_pred.size} and {y_true.size} labels.")
    _check_same_kind(y_pred, name, y_true, "y_true")
    return y_pred


def _resample_statistics(n, n_boot, seed, statistic, vectorised=None):
    """``statistic(index)`` for ``n_boot`` resamples ``index`` of ``range(n)`` drawn with replacement.

    ``vectorised(index_matrix)``, if given, computes the statistics of a whole chunk of resamples
    (one per row) at once; it must agree with ``statistic`` row by row. Both see the same indices.
    """
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK // n)
    values = []
    for start in range(0, n_boot, rows_per_chunk):
        index = rng.integers(0, n, size=(min(rows_per_chunk, n_boot - start), n))
        if vectorised is not None:
            values.append(np.asarray(vectorised(index), dtype=np.float64))
        else:
            values.append(np.array([statistic(row) for row in index], dtype=np.float64))
    return np.concatenate(values)


def _percentile_interval(estimate, values, confidence):
    if np.isnan(values).any():
        raise ValueError("metric returned NaN on a resample; pass it a zero_division that is a number.")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return BootstrapInterval(float(estimate), float(low), float(high))


def bootstrap_ci(y_true, y_pred, metric=accuracy, *, n_boot=1000, confidence=0.95, seed=0):
    r"""Percentile-bootstrap confidence interval of a metric computed on a test set.

    The test set is one sample of :math:`n` examples from the population the model will meet; its
    metric :math:`\hat\theta` would change with another sample. The bootstrap (Efron, 1979) imitates
    drawing new samples by drawing :math:`n` examples *with replacement* from the one we have,
    ``n_boot`` times, and computing the metric :math:`\hat\theta^*_b` on each resample. The interval
    is the range of the middle ``confidence`` of those values,

    .. math:: \big[\,q_{(1-c)/2}(\hat\theta^*),\; q_{(1+c)/2}(\hat\theta^*)\,\big].

    For accuracy :math:`p` on a large sample it agrees with the normal approximation
    :math:`p \pm 1.96\sqrt{p(1-p)/n}` (for :math:`c = 0.95`); unlike that formula it works for any
    metric (pass e.g. ``functools.partial(f1_score, average="macro")``) and never leaves [0, 1].

    Parameters
    ----------
    y_true, y_pred : 1-D array-like of int or str labels, same length
    metric : callable ``metric(y_true, y_pred) -> float``, default :func:`accuracy`
    n_boot : int, default 1000
        Number of resamples. (Accuracy is computed for all of them at once, quickly.)
    confidence : float in (0, 1), default 0.95
    seed : int, default 0
        Seeds the resampling, so the interval is reproducible.

    Returns
    -------
    BootstrapInterval
        ``(estimate, low, high)``: the metric on the whole sample and the interval's ends.
    """
    y_true, y_pred = _check_targets(y_true, y_pred)
    _check_bootstrap_options(metric, n_boot, confidence, seed)
    vectorised = None
    if metric is accuracy:  # the mean of a 0/1 vector: resample the vector itself
        correct = y_true == y_pred
        vectorised = lambda index: correct[index].mean(axis=1)  # noqa: E731
    values = _resample_statistics(y_true.size, n_boot, seed,
                                  lambda index: metric(y_true[index], y_pred[index]), vectorised)
    return _percentile_interval(metric(y_true, y_pred), values, confidence)


def bootstrap_difference_ci(y_true, y_pred_a, y_pred_b, metric=accuracy, *, n_boot=1000, confidence=0.95,
                            seed=0):
    r"""Paired percentile-bootstrap interval of ``metric(y_true, y_pred_a) - metric(y_true, y_pred_b)``.

    Two models scored on the *same* test set make correlated errors (an ambiguous example tends to
    fool both), so their difference varies much less from sample to sample than either score. A
    paired bootstrap draws one set of indices per resample and scores both models on it,
    :math:`\Delta^*_b = m(\text{resample}_b, a) - m(\text{resample}_b, b)`; the interval is the middle
    ``confidence`` of the :math:`\Delta^*_b`. If it contains 0, the test set cannot tell the models apart
    at that confidence.

    Parameters and return value as in :func:`bootstrap_ci`; ``y_pred_a`` and ``y_pred_b`` are the two
    models' predictions for the same ``y_true``. The estimate is the difference on the whole sample.
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred_a, y_pred_b = (_prediction_like(y_true, y, name) for y, name in ((y_pred_a, "y_pred_a"),
                                                                           (y_pred_b, "y_pred_b")))
    _check_bootstrap_options(metric, n_boot, confidence, seed)
    vectorised = None
    if metric is accuracy:
        difference = (y_true == y_pred_a).astype(np.float64) - (y_true == y_pred_b)
        vectorised = lambda index: difference[index].mean(axis=1)  # noqa: E731
    values = _resample_statistics(
        y_true.size, n_boot, seed,
        lambda index: metric(y_true[index], y_pred_a[index]) - metric(y_true[index], y_pred_b[index]),
        vectorised)
    return _percentile_interval(metric(y_true, y_pred_a) - metric(y_true, y_pred_b), values, confidence)
