"""Tests of :mod:`mmtutor.functional` against PyTorch, TensorFlow/Keras and scikit-learn.

Every comparison is in float64 with ``rtol=1e-6``. The absolute tolerance ``ATOL = 1e-9`` is
there for results near zero: float64 arithmetic on logits as large as 1e4 carries an absolute
rounding error of about 1e4 * 2.2e-16 ~ 2e-12 (PyTorch and TensorFlow evaluate
``max(x, 0) - x*y`` with a cancellation that we avoid), so 1e-9 is still ~500 times tighter
than any difference that would matter.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as torch_f
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import log_loss

from mmtutor import functional as mf

RTOL = 1e-6
ATOL = 1e-9
BIG = 1e4  # logits as large as +-1e4: exp() of them overflows float64, the stable forms must not
REDUCTIONS = ["mean", "sum", "none"]
KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}
FAST = settings(max_examples=40, deadline=None)
SLOW = settings(max_examples=15, deadline=None)  # Keras and TF calls run eagerly: ~ms each

logit_values = st.floats(-BIG, BIG, allow_nan=False, allow_infinity=False)
unit_values = st.floats(0.0, 1.0)


def close(actual, expected, atol=ATOL):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol)


def to_torch(array):
    return torch.tensor(np.asarray(array))


def keras_value(loss, y_true, y_pred):
    return np.asarray(loss(tf.constant(y_true), tf.constant(y_pred)))


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

@st.composite
def logits_with_axis(draw, min_dims=1, max_dims=3, min_classes=1, elements=logit_values):
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    shape = list(shape)
    shape[axis] = max(shape[axis], min_classes)
    logits = draw(hnp.arrays(np.float64, tuple(shape), elements=elements))
    return logits, axis


def index_targets(draw, logits, axis):
    n_classes = logits.shape[axis]
    index_shape = np.delete(np.array(logits.shape), axis).tolist()
    return draw(hnp.arrays(np.int64, tuple(index_shape), elements=st.integers(0, n_classes - 1)))


def probability_targets(draw, logits, axis):
    """Random probability vectors along ``axis``; now and then exact one-hot vectors."""
    if draw(st.booleans()):
        n_classes = logits.shape[axis]
        return np.moveaxis(np.eye(n_classes)[index_targets(draw, logits, axis)], -1, axis)
    weights = draw(hnp.arrays(np.float64, logits.shape, elements=unit_values))
    weights = weights + 1e-3  # no all-zero vector
    return weights / weights.sum(axis=axis, keepdims=True)


@st.composite
def ce_problem(draw, kind, max_dims=3, min_classes=1, elements=logit_values):
    logits, axis = draw(logits_with_axis(max_dims=max_dims, min_classes=min_classes,
                                         elements=elements))
    make = index_targets if kind == "index" else probability_targets
    return logits, make(draw, logits, axis), axis


def torch_layout(logits, targets, axis, kind):
    """PyTorch puts the class axis at position 1 (or 0 for one unbatched sample)."""
    if logits.ndim == 1:
        return to_torch(logits), to_torch(targets)
    logits = np.moveaxis(logits, axis, 1)
    if kind == "probability":
        targets = np.moveaxis(targets, axis, 1)
    return to_torch(logits), to_torch(targets)


def matrix(rows=(1, 8), cols=(2, 6), elements=logit_values):
    """A batch of logits, ``(samples, classes)``; Keras warns about a single class, so >= 2."""
    shape = st.tuples(st.integers(*rows), st.integers(*cols))
    return shape.flatmap(lambda s: hnp.arrays(np.float64, s, elements=elements))


# --------------------------------------------------------------------------------------------
# ReLU, sigmoid, softmax
# --------------------------------------------------------------------------------------------

@FAST
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3),
                  elements=st.one_of(logit_values, st.just(0.0))))
def test_relu_and_its_gradient_match_torch_autograd(x):
    xt = to_torch(x).requires_grad_(True)
    yt = torch.relu(xt)
    yt.sum().backward()
    close(mf.relu(x), yt.detach().numpy())
    close(mf.relu_grad(x), xt.grad.numpy())  # subgradient 0 at 0, as autograd


def test_relu_returns_float64_and_grad_is_zero_at_zero():
    assert mf.relu([1, -2, 0]).dtype == np.float64
    assert mf.relu_grad(0.0) == 0.0 and mf.relu_grad(1e-300) == 1.0
    assert isinstance(mf.relu(3), float)


@FAST
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3), elements=logit_values))
def test_sigmoid_matches_torch_and_never_overflows(x):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        ours = mf.sigmoid(x)
    close(ours, torch.sigmoid(to_torch(x)).numpy(), atol=1e-300)


@FAST
@given(logits_with_axis())
def test_softmax_and_log_softmax_match_torch_on_any_axis(problem):
    logits, axis = problem
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # even at +-1e4
        probs = mf.softmax(logits, axis=axis)
        log_probs = mf.log_softmax(logits, axis=axis)
    close(probs, torch.softmax(to_torch(logits), dim=axis).numpy(), atol=1e-300)
    close(log_probs, torch.log_softmax(to_torch(logits), dim=axis).numpy())
    close(probs.sum(axis=axis), 1.0)


@FAST
@given(logits_with_axis(elements=st.floats(-100, 100)), st.floats(-1e3, 1e3))
def test_softmax_is_invariant_to_a_shift_of_the_logits(problem, shift):
    logits, axis = problem
    close(mf.softmax(logits + shift, axis=axis), mf.softmax(logits, axis=axis), atol=1e-12)


def test_softmax_of_huge_logits_is_finite_where_the_naive_formula_is_nan():
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp([1000.0, 1001.0]) / np.exp([1000.0, 1001.0]).sum()
    assert np.isnan(naive).all()
    close(mf.softmax([1000.0, 1001.0]), [1 / (1 + np.e), np.e / (1 + np.e)])


# --------------------------------------------------------------------------------------------
# Categorical cross-entropy
# --------------------------------------------------------------------------------------------

@FAST
@given(st.sampled_from(["index", "probability"]).flatmap(
    lambda kind: st.tuples(st.just(kind), ce_problem(kind))), st.sampled_from(REDUCTIONS))
def test_cross_entropy_matches_torch(case, reduction):
    kind, (logits, targets, axis) = case
    ours = mf.cross_entropy(logits, targets, reduction=reduction, axis=axis)
    assert np.all(np.isfinite(ours))
    zt, yt = torch_layout(logits, targets, axis, kind)
    close(ours, torch_f.cross_entropy(zt, yt, reduction=reduction).numpy())


@FAST
@given(st.sampled_from(["index", "probability"]).flatmap(
    lambda kind: st.tuples(st.just(kind), ce_problem(kind))), st.sampled_from(REDUCTIONS))
def test_cross_entropy_gradient_matches_torch_autograd(case, reduction):
    kind, (logits, targets, axis) = case
    zt, yt = torch_layout(logits, targets, axis, kind)
    zt.requires_grad_(True)
    torch_f.cross_entropy(zt, yt, reduction=reduction).sum().backward()
    expected = zt.grad.numpy() if logits.ndim == 1 else np.moveaxis(zt.grad.numpy(), 1, axis)
    close(mf.cross_entropy_grad(logits, targets, reduction=reduction, axis=axis), expected)


@SLOW
@given(matrix(), st.sampled_from(REDUCTIONS), st.data())
def test_cross_entropy_matches_keras_categorical_and_sparse_from_logits(logits, reduction, data):
    indices = index_targets(data.draw, logits, axis=1)
    one_hot = np.eye(logits.shape[1])[indices]
    sparse = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=KERAS_REDUCTION[reduction], dtype="float64")
    dense = keras.losses.CategoricalCrossentropy(
        from_logits=True, reduction=KERAS_REDUCTION[reduction], dtype="float64")
    ours = mf.cross_entropy(logits, indices, reduction=reduction)
    close(ours, keras_value(sparse, indices, logits))
    close(ours, keras_value(dense, one_hot, logits))
    soft = probability_targets(data.draw, logits, axis=1)
    close(mf.cross_entropy(logits, soft, reduction=reduction), keras_value(dense, soft, logits))


@SLOW
@given(matrix(), st.sampled_from(["mean", "sum"]), st.data())
def test_cross_entropy_gradient_matches_tf_gradient_tape(logits, reduction, data):
    targets = probability_targets(data.draw, logits, axis=1)
    loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, reduction=KERAS_REDUCTION[reduction], dtype="float64")
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(targets), z)
    close(mf.cross_entropy_grad(logits, targets, reduction=reduction),
          tape.gradient(value, z).numpy())


@FAST
@given(matrix(rows=(1, 8), cols=(2, 6), elements=st.floats(-10, 10)), st.booleans(), st.data())
def test_cross_entropy_matches_sklearn_log_loss(logits, normalize, data):
    # sklearn takes probabilities and clips them to [2.2e-16, 1 - 2.2e-16]; with |logits| <= 10
    # every softmax probability is >= e^-20 / 6 ~ 3e-10, so the clipping never acts.
    indices = index_targets(data.draw, logits, axis=1)
    expected = log_loss(indices, mf.softmax(logits), labels=np.arange(logits.shape[1]),
                        normalize=normalize)
    close(mf.cross_entropy(logits, indices, reduction="mean" if normalize else "sum"), expected)


def test_cross_entropy_of_huge_logits_is_the_exact_margin():
    # -log softmax(z)_c = logsumexp(z) - z_c: a wrong answer by 2e4 costs exactly 2e4
    logits = np.array([[1e4, -1e4], [-1e4, 1e4]])
    close(mf.cross_entropy(logits, [1, 1], reduction="none"), [2e4, 0.0])


def test_cross_entropy_grad_is_softmax_minus_one_hot_over_n():
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    targets = np.array([2, 0])
    expected = (mf.softmax(logits) - np.eye(3)[targets]) / 2
    close(mf.cross_entropy_grad(logits, targets), expected)
    close(mf.cross_entropy_grad(logits, targets, reduction="none"), 2 * expected)


# --------------------------------------------------------------------------------------------
# Binary cross-entropy
# --------------------------------------------------------------------------------------------

binary_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)


@st.composite
def binary_problem(draw, values, targets=unit_values, shapes=binary_shapes):
    shape = draw(shapes)
    return (draw(hnp.arrays(np.float64, shape, elements=values)),
            draw(hnp.arrays(np.float64, shape, elements=targets)))


@FAST
@given(binary_problem(st.one_of(unit_values, st.sampled_from([0.0, 1.0]))),
       st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_matches_torch_including_exact_zeros_and_ones(problem, reduction):
    probs, targets = problem  # torch clamps each log to >= -100; so do we
    close(mf.binary_cross_entropy(probs, targets, reduction=reduction),
          torch_f.binary_cross_entropy(to_torch(probs), to_torch(targets),
                                       reduction=reduction).numpy())


@FAST
@given(binary_problem(logit_values), st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_with_logits_matches_torch(problem, reduction):
    logits, targets = problem
    ours = mf.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)
    assert np.all(np.isfinite(ours))
    close(ours, torch_f.binary_cross_entropy_with_logits(
        to_torch(logits), to_torch(targets), reduction=reduction).numpy())


@FAST
@given(binary_problem(logit_values), st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_with_logits_gradient_matches_torch_autograd(problem, reduction):
    logits, targets = problem
    xt = to_torch(logits).requires_grad_(True)
    torch_f.binary_cross_entropy_with_logits(xt, to_torch(targets), reduction=reduction).sum().backward()
    close(mf.binary_cross_entropy_with_logits_grad(logits, targets, reduction=reduction),
          xt.grad.numpy())


def keras_binary(from_logits, reduction):
    return keras.losses.BinaryCrossentropy(
        from_logits=from_logits, reduction=KERAS_REDUCTION[reduction], dtype="float64")


def keras_layout(elementwise, reduction, n_columns):
    """Keras averages over the last axis first: 'none' is per row and 'sum' is (sum / columns)."""
    if reduction == "none":
        return elementwise.mean(axis=-1)
    return elementwise / n_columns if reduction == "sum" else elementwise


binary_matrices = st.tuples(st.integers(1, 8), st.integers(1, 6))


@pytest.mark.parametrize("from_logits", [True, False])
@SLOW
@given(data=st.data(), reduction=st.sampled_from(REDUCTIONS))
def test_binary_cross_entropy_matches_keras(from_logits, data, reduction):
    # Keras clips probabilities to [1e-7, 1 - 1e-7] when from_logits=False; inside
    # [1e-3, 1 - 1e-3] that clipping changes nothing (the next test reproduces it with eps=1e-7)
    values = logit_values if from_logits else st.floats(1e-3, 1 - 1e-3)
    inputs, targets = data.draw(binary_problem(values, shapes=binary_matrices))
    ours = (mf.binary_cross_entropy_with_logits if from_logits
            else mf.binary_cross_entropy)(inputs, targets, reduction=reduction)
    close(keras_layout(ours, reduction, inputs.shape[1]),
          keras_value(keras_binary(from_logits, reduction), targets, inputs))


@SLOW
@given(binary_problem(st.one_of(unit_values, st.sampled_from([0.0, 1.0])),
                      shapes=binary_matrices))
def test_binary_cross_entropy_with_eps_reproduces_keras_clipping_everywhere(problem):
    probs, targets = problem
    close(mf.binary_cross_entropy(probs, targets, eps=1e-7),
          keras_value(keras_binary(False, "mean"), targets, probs))


@FAST
@given(binary_problem(st.floats(1e-6, 1 - 1e-6), targets=st.sampled_from([0.0, 1.0]),
                      shapes=st.tuples(st.integers(1, 20))), st.booleans())
def test_binary_cross_entropy_matches_sklearn_log_loss(problem, normalize):
    probs, targets = problem
    expected = log_loss(targets.astype(int), probs, labels=[0, 1], normalize=normalize)
    close(mf.binary_cross_entropy(probs, targets, reduction="mean" if normalize else "sum"),
          expected)


def test_binary_cross_entropy_caps_a_confident_mistake_at_100_like_torch():
    close(mf.binary_cross_entropy([0.0, 1.0], [1.0, 0.0], reduction="none"), [100.0, 100.0])
    close(mf.binary_cross_entropy([0.0], [1.0], eps=1e-7), -np.log(1e-7))


def test_binary_cross_entropy_equals_its_logits_form():
    logits = np.linspace(-30, 30, 61)
    targets = np.linspace(0, 1, 61)
    close(mf.binary_cross_entropy(mf.sigmoid(logits), targets),
          mf.binary_cross_entropy_with_logits(logits, targets))


# --------------------------------------------------------------------------------------------
# Bad input: each error names the argument, what was expected and what came
# --------------------------------------------------------------------------------------------

Z = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]  # two samples, three classes
P = [[0.2, 0.5], [0.9, 0.1]]

BAD_INPUTS = [
    # (function, args, kwargs, exception, regex the message must match)
    (mf.cross_entropy, (Z, [0, 1, 2]), {}, ValueError, r"targets.*shape \(2,\).*got shape \(3,\)"),
    (mf.cross_entropy, (Z, np.eye(3)[[0, 1]].astype(int)), {}, ValueError,
     r"targets.*integer dtype are class indices.*float array"),
    (mf.cross_entropy, (Z, [[0.5, 0.5], [0.5, 0.5]]), {}, ValueError, r"targets.*shape"),
    (mf.cross_entropy, (Z, [0, 3]), {}, ValueError, r"targets.*\[0, 2\].*out-of-range index 3"),
    (mf.cross_entropy, (Z, [-1, 0]), {}, ValueError, r"targets.*negative index -1"),
    (mf.cross_entropy, (Z, [1.5, 0.0]), {}, TypeError, r"targets.*integer dtype.*non-integer label 1.5"),
    (mf.cross_entropy, (Z, [1.0, 0.0]), {}, TypeError, r"targets.*integer dtype.*astype\(int\)"),
    (mf.cross_entropy, (Z, [[0.5, 0.6, 0.0], [1, 0, 0]]), {}, ValueError, r"targets.*sum to 1"),
    (mf.cross_entropy, (Z, [[1.5, -0.5, 0.0], [1, 0, 0]]), {}, ValueError, r"targets.*\[0, 1\]"),
    (mf.cross_entropy, (Z, [[np.nan, 1, 0], [1, 0, 0]]), {}, ValueError, r"targets.*finite.*nan"),
    (mf.cross_entropy, ([[np.inf, 0.0]], [0]), {}, ValueError, r"logits.*finite.*inf"),
    (mf.cross_entropy, (np.zeros((0, 3)), np.zeros(0, dtype=int)), {}, ValueError, r"logits.*empty"),
    (mf.cross_entropy, (Z, [0, 1]), {"reduction": "average"}, ValueError, r"reduction.*'average'"),
    (mf.cross_entropy, (Z, [0, 1]), {"reduction": None}, TypeError, r"reduction.*NoneType"),
    (mf.cross_entropy, (Z, [0, 1]), {"axis": 2}, ValueError, r"axis.*\[-2, 1\].*got 2"),
    (mf.cross_entropy, (Z, [0, 1]), {"axis": 1.0}, TypeError, r"axis.*int.*float"),
    (mf.cross_entropy, (Z, [True, False]), {}, TypeError, r"targets.*bool"),
    (mf.cross_entropy, ([[True, False]], [0]), {}, TypeError, r"logits.*bool"),
    (mf.cross_entropy, (["a", "b"], [0]), {}, TypeError, r"logits.*real numbers.*dtype <U1"),
    (mf.cross_entropy, ("logits", [0]), {}, TypeError, r"logits.*string"),
    (mf.cross_entropy, (Z, ["cat", "dog"]), {}, TypeError, r"targets.*real numbers"),
    (mf.cross_entropy, ([[1.0, 2.0], [3.0]], [0, 0]), {}, ValueError, r"logits.*rectangular"),
    (mf.cross_entropy, (1.0, 0), {}, ValueError, r"logits.*at least one dimension"),
    (mf.cross_entropy_grad, (Z, [0, 5]), {}, ValueError, r"targets.*out-of-range index 5"),
    (mf.cross_entropy_grad, (Z, [0, 1]), {"reduction": "max"}, ValueError, r"reduction"),
    (mf.softmax, ([1.0, np.nan],), {}, ValueError, r"logits.*finite"),
    (mf.softmax, ([],), {}, ValueError, r"logits.*empty"),
    (mf.softmax, (Z,), {"axis": -3}, ValueError, r"axis.*\[-2, 1\].*got -3"),
    (mf.softmax, (Z,), {"axis": True}, TypeError, r"axis.*int.*bool"),
    (mf.log_softmax, (Z,), {"axis": "1"}, TypeError, r"axis.*int.*str"),
    (mf.log_softmax, ([1 + 2j],), {}, TypeError, r"logits.*complex"),
    (mf.relu, ("3",), {}, TypeError, r"x.*string"),
    (mf.relu, ([True, False],), {}, TypeError, r"x.*bool"),
    (mf.relu_grad, ([np.inf],), {}, ValueError, r"x.*finite"),
    (mf.sigmoid, ([object()],), {}, TypeError, r"x.*real numbers.*object"),
    (mf.binary_cross_entropy, (P, [[1.0, 0.0]]), {}, ValueError,
     r"targets.*same shape as probs.*\(2, 2\).*got shape \(1, 2\)"),
    (mf.binary_cross_entropy, ([1.2, 0.5], [1.0, 0.0]), {}, ValueError, r"probs.*\[0, 1\].*1.2"),
    (mf.binary_cross_entropy, ([0.2, 0.5], [2.0, 0.0]), {}, ValueError, r"targets.*\[0, 1\].*2.0"),
    (mf.binary_cross_entropy, ([0.2, np.nan], [1.0, 0.0]), {}, ValueError, r"probs.*finite"),
    (mf.binary_cross_entropy, ([0.2, 0.5], [True, False]), {}, TypeError, r"targets.*bool"),
    (mf.binary_cross_entropy, ([], []), {}, ValueError, r"probs.*empty"),
    (mf.binary_cross_entropy, ([0.5], [1.0]), {"eps": 0.5}, ValueError, r"eps.*\[0, 0.5\)"),
    (mf.binary_cross_entropy, ([0.5], [1.0]), {"eps": "small"}, TypeError, r"eps.*real number"),
    (mf.binary_cross_entropy, ([0.5], [1.0]), {"reduction": "avg"}, ValueError, r"reduction"),
    (mf.binary_cross_entropy_with_logits, ([1.0, 2.0], [1.0]), {}, ValueError,
     r"targets.*same shape as logits"),
    (mf.binary_cross_entropy_with_logits, ([1.0], [-0.1]), {}, ValueError, r"targets.*\[0, 1\]"),
    (mf.binary_cross_entropy_with_logits, ([-np.inf], [0.0]), {}, ValueError, r"logits.*finite"),
    (mf.binary_cross_entropy_with_logits, (["1"], [0.0]), {}, TypeError, r"logits.*real numbers"),
    (mf.binary_cross_entropy_with_logits_grad, ([1.0], [1.0]), {"reduction": "all"}, ValueError,
     r"reduction.*'all'"),
]


@pytest.mark.parametrize("function, args, kwargs, exception, message", BAD_INPUTS,
                         ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_with_a_message_naming_the_argument(function, args, kwargs,
                                                                 exception, message):
    with pytest.raises(exception, match=message):
        function(*args, **kwargs)


def test_array_likes_of_any_real_dtype_are_accepted():
    as_list = mf.cross_entropy([[1, 2, 3]], [2])
    as_float32 = mf.cross_entropy(np.array([[1, 2, 3]], dtype=np.float32), np.array([2], np.uint8))
    as_tensor = mf.cross_entropy(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]))
    assert isinstance(as_list, float)
    close([as_float32, as_tensor], [as_list, as_list])
    single = mf.cross_entropy([1.0, 2.0, 3.0], 2, reduction="none")  # one unbatched sample
    assert single.shape == () and abs(float(single) - as_list) < 1e-12
