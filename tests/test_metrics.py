"""mmtutor.metrics against scikit-learn on random labels, and its bad-input errors."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from mmtutor import metrics

TOL = 1e-12
AVERAGES = [None, "micro", "macro", "weighted"]
ZERO_DIVISIONS = [0, 1, 0.0, 1.0, np.nan]
FAST = settings(max_examples=60, deadline=None)
OURS_AND_SKLEARN = [
    (metrics.precision, sk.precision_score),
    (metrics.recall, sk.recall_score),
    (metrics.f1_score, sk.f1_score),
]


def quietly(function, *args, **kwargs):
    """Call a scikit-learn function without its warnings (e.g. the single-label one), for a clean log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def assert_same(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL, equal_nan=True)


@st.composite
def label_pairs(draw, max_classes=5):
    """y_true, y_pred over 1..max_classes arbitrary integer classes; y_pred may use one class y_true lacks."""
    n_classes = draw(st.integers(1, max_classes))
    classes = np.array(draw(st.lists(st.integers(-3, 40), min_size=n_classes + 1, max_size=n_classes + 1,
                                     unique=True)))
    n = draw(st.integers(1, 25))
    top = draw(st.sampled_from([n_classes - 1, n_classes]))  # n_classes: a class only ever predicted
    y_true = classes[draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))]
    y_pred = classes[draw(st.lists(st.integers(0, top), min_size=n, max_size=n))]
    return y_true, y_pred


@st.composite
def label_subsets(draw, y_true, y_pred):
    """A `labels=` argument: some classes of the data, maybe one absent from it, in random order."""
    candidates = sorted(set(np.union1d(y_true, y_pred).tolist()) | {99})
    return draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=len(candidates), unique=True))


@FAST
@given(label_pairs(), st.booleans())
def test_accuracy_matches_sklearn(pair, normalize):
    y_true, y_pred = pair
    ours = metrics.accuracy(y_true, y_pred, normalize=normalize)
    assert isinstance(ours, float)
    assert_same(ours, sk.accuracy_score(y_true, y_pred, normalize=normalize))


@FAST
@given(st.data())
def test_confusion_matrix_matches_sklearn(data):
    y_true, y_pred = data.draw(label_pairs())
    assert_same(metrics.confusion_matrix(y_true, y_pred), quietly(sk.confusion_matrix, y_true, y_pred))
    labels = data.draw(label_subsets(y_true, y_pred))
    if np.isin(labels, y_true).any():
        ours = metrics.confusion_matrix(y_true, y_pred, labels=labels)
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, quietly(sk.confusion_matrix, y_true, y_pred, labels=labels))
    else:  # both refuse a matrix that could hold no true sample
        with pytest.raises(ValueError, match="labels"):
            metrics.confusion_matrix(y_true, y_pred, labels=labels)
        with pytest.raises(ValueError):
            sk.confusion_matrix(y_true, y_pred, labels=labels)


@FAST
@given(st.data(), st.sampled_from(AVERAGES), st.sampled_from(ZERO_DIVISIONS), st.booleans())
def test_precision_recall_f1_matches_sklearn(data, average, zero_division, subset):
    y_true, y_pred = data.draw(label_pairs())
    labels = data.draw(label_subsets(y_true, y_pred)) if subset else None
    ours = metrics.precision_recall_f1(y_true, y_pred, labels=labels, average=average,
                                       zero_division=zero_division)
    theirs = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average,
                                                zero_division=zero_division)
    for our_value, their_value in zip(ours[:3], theirs[:3]):
        assert_same(our_value, their_value)
    if average is None:
        np.testing.assert_array_equal(ours.support, theirs[3])
    else:
        assert ours.support is None and all(isinstance(value, float) for value in ours[:3])


@FAST
@given(st.data(), st.sampled_from(AVERAGES + ["binary"]), st.sampled_from(ZERO_DIVISIONS))
def test_precision_recall_f1_score_functions_match_sklearn(data, average, zero_division):
    y_true, y_pred = data.draw(label_pairs(max_classes=2 if average == "binary" else 5))
    present = np.union1d(y_true, y_pred)
    if average == "binary" and present.size > 2:
        with pytest.raises(ValueError, match="average='binary'"):
            metrics.precision(y_true, y_pred, zero_division=zero_division)
        return
    # a present class, or (with one class only) sometimes a class absent from the data, as sklearn allows
    pos_label = data.draw(st.sampled_from(present.tolist() + ([77] if present.size == 1 else [])))
    for ours, theirs in OURS_AND_SKLEARN:
        kwargs = dict(pos_label=pos_label, average=average, zero_division=zero_division)
        assert_same(ours(y_true, y_pred, **kwargs), quietly(theirs, y_true, y_pred, **kwargs))


binary_pairs = st.integers(1, 12).flatmap(
    lambda n: st.tuples(*[st.lists(st.integers(0, 1), min_size=n, max_size=n).map(np.array)] * 2)
)


@FAST
@given(st.data(), st.sampled_from(AVERAGES + ["binary"]))
def test_warn_gives_zero_and_the_same_warnings_as_sklearn(data, average):
    y_true, y_pred = data.draw(binary_pairs if average == "binary" else label_pairs())
    for ours, theirs in OURS_AND_SKLEARN:
        with warnings.catch_warnings(record=True) as our_warnings:
            warnings.simplefilter("always")
            our_value = ours(y_true, y_pred, average=average)
        with warnings.catch_warnings(record=True) as their_warnings:
            warnings.simplefilter("always")
            their_value = theirs(y_true, y_pred, average=average)
        assert_same(our_value, their_value)
        assert [str(w.message) for w in our_warnings] == [str(w.message) for w in their_warnings]
        assert all(issubclass(w.category, metrics.UndefinedMetricWarning) for w in our_warnings)
        assert all(w.filename == __file__ for w in our_warnings)  # points at the caller's line


@FAST
@given(label_pairs(), st.sampled_from(AVERAGES))
def test_string_labels_match_sklearn(pair, average):
    y_true, y_pred = (np.array([f"class {v}" for v in y]) for y in pair)
    assert_same(metrics.accuracy(y_true, y_pred), sk.accuracy_score(y_true, y_pred))
    assert_same(metrics.confusion_matrix(y_true, y_pred), quietly(sk.confusion_matrix, y_true, y_pred))
    for ours, theirs in OURS_AND_SKLEARN:
        assert_same(ours(y_true, y_pred, average=average, zero_division=0),
                    theirs(y_true, y_pred, average=average, zero_division=0))


@FAST
@given(label_pairs())
def test_identities_of_the_averages(pair):
    y_true, y_pred = pair
    p, r, f, support = metrics.precision_recall_f1(y_true, y_pred, zero_division=0)
    # F1 is the harmonic mean of P and R wherever both are defined and not both 0
    defined = (p + r) > 0
    assert_same(f[defined], 2 * p[defined] * r[defined] / (p[defined] + r[defined]))
    assert support.sum() == y_true.size
    # micro averaging over every class is plain accuracy
    micro = metrics.precision_recall_f1(y_true, y_pred, average="micro")
    accuracy = metrics.accuracy(y_true, y_pred)
    for value in micro[:3]:
        assert abs(value - accuracy) < TOL
    # the diagonal of the confusion matrix is the number of correct predictions
    matrix = metrics.confusion_matrix(y_true, y_pred)
    assert np.trace(matrix) == round(accuracy * y_true.size) and matrix.sum() == y_true.size


def test_a_small_example_by_hand():
    y_true = ["cat", "cat", "dog", "dog", "dog", "bird"]
    y_pred = ["cat", "dog", "dog", "dog", "cat", "dog"]
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, labels=["cat", "dog", "bird"]),
        [[1, 1, 0], [1, 2, 0], [0, 1, 0]],
    )
    # dog: TP = 2, FP = 2 (a cat and a bird called dog), FN = 1 (a dog called cat)
    assert metrics.precision(y_true, y_pred, labels=["dog"], average="macro") == 2 / 4
    assert metrics.recall(y_true, y_pred, labels=["dog"], average="macro") == 2 / 3
    assert abs(metrics.f1_score(y_true, y_pred, labels=["dog"], average="macro") - 4 / 7) < TOL
    with pytest.warns(metrics.UndefinedMetricWarning, match="Precision is ill-defined"):
        per_class = metrics.precision(y_true, y_pred, average=None)  # "bird" is never predicted
    np.testing.assert_array_equal(per_class, [0.0, 0.5, 0.5])  # sorted: bird, cat, dog


def test_whole_floats_and_booleans_are_labels():
    assert metrics.accuracy([1.0, 0.0, 2.0], [1, 0, 1]) == sk.accuracy_score([1.0, 0.0, 2.0], [1, 0, 1])
    assert metrics.precision([True, False, True], [True, True, True]) == 2 / 3
    np.testing.assert_array_equal(metrics.confusion_matrix(np.array([0, 1], dtype=object), [1, 1]),
                                  [[0, 1], [0, 1]])


def test_nan_zero_division_is_skipped_by_the_averages():
    # class 2 is only in y_pred, so its recall is 0/0 = NaN and the macro recall averages classes 0 and 1
    recalls = metrics.recall([0, 1, 1], [0, 1, 2], average=None, zero_division=np.nan)
    np.testing.assert_array_equal(recalls, [1.0, 0.5, np.nan])
    assert metrics.recall([0, 1, 1], [0, 1, 2], average="macro", zero_division=np.nan) == 0.75
    assert np.isnan(metrics.precision([0, 0], [0, 0], zero_division=np.nan))  # pos_label 1 never occurs


def sklearn_refuses(function, *args, **kwargs):
    """True if scikit-learn raises on the same input."""
    try:
        quietly(function, *args, **kwargs)
    except (ValueError, TypeError):
        return True
    return False


# (our function, scikit-learn's or None, args, kwargs, exception, message pattern)
BAD_INPUTS = [
    (metrics.accuracy, sk.accuracy_score, ([0, 1, 1], [0, 1]), {}, ValueError, "y_true and y_pred.*3 and 2"),
    (metrics.precision, sk.precision_score, ([], []), {}, ValueError, "y_true.*empty"),
    (metrics.recall, sk.recall_score, ([0, np.nan], [0, 1]), {}, ValueError, "y_true.*NaN.*position 1"),
    (metrics.f1_score, sk.f1_score, ([0, 1], [0.5, 1.0]), {}, ValueError, "y_pred.*integer.*0.5"),
    (metrics.accuracy, sk.accuracy_score, ([0, 1], [np.inf, 1.0]), {}, ValueError, "y_pred.*inf"),
    (metrics.confusion_matrix, sk.confusion_matrix, ([[0, 1], [1, 0]], [[0, 1], [1, 1]]), {}, ValueError,
     r"y_true.*1-D.*\(2, 2\)"),
    (metrics.accuracy, None, (0, 0), {}, ValueError, r"y_true.*1-D.*shape \(\)"),
    (metrics.accuracy, None, (["a", 1], ["a", "a"]), {}, TypeError, "y_true.*mix.*int.*str"),
    (metrics.accuracy, None, ([None, 1], [1, 1]), {}, TypeError, "y_true.*NoneType"),
    (metrics.accuracy, sk.accuracy_score, (["a", "b"], [0, 1]), {}, TypeError, "y_pred holds numbers.*y_true"),
    (metrics.accuracy, None, ([1 + 2j], [1]), {}, TypeError, "y_true.*complex"),
    (metrics.accuracy, None, ([0, 1], [0, 1]), {"normalize": "yes"}, TypeError, "normalize"),
    (metrics.precision, sk.precision_score, ([0, 1], [0, 1]), {"average": "samples"}, ValueError,
     "average must be one of"),
    (metrics.precision, None, ([0, 1], [0, 1]), {"average": ["macro"]}, ValueError, "average"),
    (metrics.recall, sk.recall_score, ([0, 1, 2], [0, 1, 1]), {}, ValueError, "average='binary'.*3"),
    (metrics.f1_score, sk.f1_score, ([0, 2], [2, 0]), {}, ValueError, r"pos_label=1.*\[0, 2\]"),
    (metrics.f1_score, sk.f1_score, (["a", "b"], ["a", "a"]), {}, ValueError, "pos_label=1"),
    (metrics.f1_score, None, (["a", "a"], ["a", "a"]), {}, TypeError, "pos_label holds numbers"),
    (metrics.f1_score, None, ([0, 0], [0, 0]), {"pos_label": 0.5}, ValueError, "pos_label.*0.5"),
    (metrics.precision, sk.precision_score, ([0, 1], [0, 1]), {"zero_division": 0.5}, ValueError,
     "zero_division.*0.5"),
    (metrics.precision, sk.precision_score, ([0, 1], [0, 1]), {"zero_division": "nan"}, ValueError,
     "zero_division.*'nan'"),
    (metrics.precision, None, ([0, 1], [0, 1]), {"zero_division": True}, ValueError, "zero_division.*True"),
    (metrics.precision_recall_f1, None, ([0, 1], [0, 1]), {"labels": [1, 0, 1]}, ValueError,
     r"labels.*\[1\] repeat"),
    (metrics.confusion_matrix, None, ([0, 1], [0, 1]), {"labels": [0, 0]}, ValueError, "labels.*repeat"),
    (metrics.confusion_matrix, sk.confusion_matrix, ([0, 1], [2, 2]), {"labels": [2, 3]}, ValueError,
     r"labels.*class of y_true.*\[2, 3\]"),
    (metrics.confusion_matrix, sk.confusion_matrix, ([0, 1], [0, 1]), {"labels": []}, ValueError,
     "labels.*empty"),
    (metrics.confusion_matrix, None, ([0, 1], [0, 1]), {"labels": ["a"]}, TypeError,
     "labels holds strings.*y_true holds numbers"),
]


@pytest.mark.parametrize("ours, theirs, args, kwargs, error, pattern", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(ours, theirs, args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ours(*args, **kwargs)
    if theirs is not None:  # where we say "as scikit-learn", check that it refuses too
        assert sklearn_refuses(theirs, *args, **kwargs)


def test_zero_division_is_checked_even_without_a_zero_division():
    with pytest.raises(ValueError, match="zero_division"):
        metrics.f1_score([0, 1], [0, 1], zero_division=2)


# ----------------------------------------------------------------------------- classification report
@FAST
@given(st.data(), st.sampled_from([0, 1, np.nan]), st.booleans())
def test_classification_report_matches_sklearn(data, zero_division, subset):
    y_true, y_pred = data.draw(label_pairs())
    labels = data.draw(label_subsets(y_true, y_pred)) if subset else None
    if labels is not None and not np.isin(labels, y_true).any():
        labels = None
    ours = metrics.classification_report(y_true, y_pred, labels=labels, zero_division=zero_division)
    theirs = sk.classification_report(y_true, y_pred, labels=labels, zero_division=zero_division,
                                      output_dict=True)
    assert list(ours.index) == list(theirs)
    assert list(ours.columns) == ["precision", "recall", "f1-score", "support"]
    assert ours["support"].dtype == np.int64
    for name, row in theirs.items():
        if name == "accuracy":  # scikit-learn stores the bare number; we put it in the f1-score column
            assert_same(ours.loc[name, "f1-score"], row)
            assert np.isnan(ours.loc[name, "precision"]) and np.isnan(ours.loc[name, "recall"])
            assert ours.loc[name, "support"] == len(y_true)
        else:
            assert_same(ours.loc[name].to_numpy(dtype=float), [row[k] for k in ours.columns])


def test_classification_report_names_and_bad_input():
    report = metrics.classification_report([0, 1, 1, 2], [0, 1, 2, 2], target_names=["zero", "one", "two"])
    theirs = sk.classification_report([0, 1, 1, 2], [0, 1, 2, 2], target_names=["zero", "one", "two"],
                                      output_dict=True)
    assert list(report.index) == list(theirs) and report.loc["one", "recall"] == 0.5
    with pytest.raises(ValueError, match=r"target_names must give 3 different names.*got 2"):
        metrics.classification_report([0, 1, 2], [0, 1, 2], target_names=["a", "b"])
    with pytest.raises(ValueError, match="target_names must give 2 different names"):
        metrics.classification_report([0, 1], [0, 1], target_names=["a", "a"])
    with pytest.raises(TypeError, match="target_names must be a sequence of strings"):
        metrics.classification_report([0, 1], [0, 1], target_names="ab")
    with pytest.raises(ValueError, match="target_names must not use the names of the summary rows"):
        metrics.classification_report([0, 1], [0, 1], target_names=["accuracy", "b"])
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length"):
        metrics.classification_report([0, 1], [0])


# ----------------------------------------------------------------------------- bootstrap intervals
def simulated_predictions(n, p, seed):
    """Labels in 10 classes and predictions that are right with probability p, independently."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 10, n)
    wrong = (y_true + rng.integers(1, 10, n)) % 10
    return y_true, np.where(rng.random(n) < p, y_true, wrong)


def test_bootstrap_of_accuracy_takes_the_fast_path_to_the_same_interval():
    y_true, y_pred = simulated_predictions(300, 0.8, seed=0)
    fast = metrics.bootstrap_ci(y_true, y_pred, n_boot=500, seed=3)
    general = metrics.bootstrap_ci(y_true, y_pred, lambda t, p: metrics.accuracy(t, p), n_boot=500, seed=3)
    assert fast == general and isinstance(fast, metrics.BootstrapInterval)
    assert fast.estimate == metrics.accuracy(y_true, y_pred) and fast.low < fast.estimate < fast.high
    assert metrics.bootstrap_ci(y_true, y_pred, n_boot=500, seed=3) == fast          # reproducible
    assert metrics.bootstrap_ci(y_true, y_pred, n_boot=500, seed=4) != fast          # and seeded


def test_bootstrap_ci_covers_the_true_accuracy_95_percent_of_the_time():
    true_accuracy, n, repeats = 0.8, 400, 400
    covered = 0
    for seed in range(repeats):
        y_true, y_pred = simulated_predictions(n, true_accuracy, seed)
        _, low, high = metrics.bootstrap_ci(y_true, y_pred, n_boot=1000, seed=seed)
        covered += low <= true_accuracy <= high
    # binomial standard error of the coverage over 400 repeats: 0.011; the percentile bootstrap
    # under-covers slightly at this n, so allow three standard errors
    assert abs(covered / repeats - 0.95) < 0.035, covered / repeats


def test_bootstrap_ci_agrees_with_the_normal_approximation():
    y_true, y_pred = simulated_predictions(20_000, 0.5, seed=1)
    p, low, high = metrics.bootstrap_ci(y_true, y_pred, n_boot=2000, seed=0)
    half_width = 1.96 * np.sqrt(p * (1 - p) / len(y_true))
    assert abs(p - 0.5) < 0.02
    assert abs(low - (p - half_width)) < 0.002 and abs(high - (p + half_width)) < 0.002


def test_bootstrap_ci_of_another_metric_and_of_string_labels():
    from functools import partial

    y_true, y_pred = simulated_predictions(200, 0.7, seed=2)
    macro_f1 = partial(metrics.f1_score, average="macro", zero_division=0)
    estimate, low, high = metrics.bootstrap_ci(y_true, y_pred, macro_f1, n_boot=200, seed=0)
    assert_same(estimate, sk.f1_score(y_true, y_pred, average="macro"))
    assert low < estimate < high
    names = np.array(["cat", "dog", "bird"])
    strings = metrics.bootstrap_ci(names[y_true % 3], names[y_pred % 3], n_boot=200, seed=0)
    numbers = metrics.bootstrap_ci(y_true % 3, y_pred % 3, n_boot=200, seed=0)
    assert strings == numbers
    perfect = metrics.bootstrap_ci(y_true, y_true, n_boot=100)
    assert perfect == (1.0, 1.0, 1.0)  # no errors, no spread: the percentile bootstrap cannot see beyond


def test_paired_bootstrap_of_a_difference():
    y_true, y_pred_a = simulated_predictions(500, 0.85, seed=5)
    # model b: the same as a except on 25 examples where a is right and b is wrong
    y_pred_b = y_pred_a.copy()
    flip = np.flatnonzero(y_pred_a == y_true)[:25]
    y_pred_b[flip] = (y_true[flip] + 1) % 10
    difference = metrics.bootstrap_difference_ci(y_true, y_pred_a, y_pred_b, n_boot=1000, seed=0)
    assert difference.estimate == pytest.approx(25 / 500)
    assert 0 < difference.low < difference.estimate < difference.high
    general = metrics.bootstrap_difference_ci(y_true, y_pred_a, y_pred_b,
                                              lambda t, p: metrics.accuracy(t, p), n_boot=1000, seed=0)
    assert_same(np.array(general), np.array(difference))
    # pairing removes the shared errors: the interval of the difference is far narrower than the sum
    # of the two separate half-widths
    widths = [ci.high - ci.low for ci in (metrics.bootstrap_ci(y_true, y, seed=0) for y in (y_pred_a, y_pred_b))]
    assert difference.high - difference.low < 0.5 * sum(widths)
    assert metrics.bootstrap_difference_ci(y_true, y_pred_a, y_pred_a) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(metric="accuracy"), TypeError, "metric must be a function"),
    (dict(n_boot=0), ValueError, "n_boot must be a positive int.*0"),
    (dict(n_boot=10.0), ValueError, "n_boot must be a positive int.*10.0"),
    (dict(n_boot=True), ValueError, "n_boot"),
    (dict(confidence=1.0), ValueError, "confidence must be a number strictly between 0 and 1.*1.0"),
    (dict(confidence=0), ValueError, "confidence"),
    (dict(confidence="95%"), ValueError, "confidence.*'95%'"),
    (dict(seed=-2), ValueError, "seed must be an int >= 0.*-2"),
    (dict(seed=None), ValueError, "seed"),
])
def test_bootstrap_bad_options_raise_a_clear_error(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        metrics.bootstrap_ci([0, 1, 1], [0, 1, 0], **kwargs)
    with pytest.raises(error, match=pattern):
        metrics.bootstrap_difference_ci([0, 1, 1], [0, 1, 0], [1, 1, 1], **kwargs)


def test_bootstrap_bad_labels_name_the_argument():
    with pytest.raises(ValueError, match="y_true and y_pred must have the same length"):
        metrics.bootstrap_ci([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="y_pred_a must have the same length as y_true; got 2 and 3"):
        metrics.bootstrap_difference_ci([0, 1, 1], [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="y_pred_b must have the same length as y_true; got 4 and 3"):
        metrics.bootstrap_difference_ci([0, 1, 1], [0, 1, 1], [0, 1, 1, 0])
    with pytest.raises(TypeError, match="y_pred_b holds strings but y_true holds numbers"):
        metrics.bootstrap_difference_ci([0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="metric returned NaN"):
        metrics.bootstrap_ci([0, 1, 1], [0, 1, 0], lambda t, p: float("nan"), n_boot=5)
