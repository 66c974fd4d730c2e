"""mmtutor.preprocess.image against PyTorch, TensorFlow, scikit-learn and SciPy on random inputs.

Tolerances reached (and asserted below):

* ``conv2d`` in float64 agrees with ``torch.nn.functional.conv2d`` and ``tf.nn.conv2d`` to 1e-10
  relative to the largest output (observed ~1e-15); in float32 with PyTorch's float32 to 1e-5
  relative to the largest sum of absolute terms, sum |x| |k| + |b| (the honest float32 scale).
* ``"same"`` padding equals TensorFlow's ``"SAME"`` for every stride 1–3 and kernel size, odd or
  even (asymmetric: the extra zero goes bottom/right), and PyTorch's ``padding="same"`` (stride 1
  only in PyTorch). For stride 2 TensorFlow's ``SAME`` and PyTorch's symmetric ``padding=k // 2``
  can give the same output shape but different numbers — see
  ``test_same_padding_is_asymmetric_for_stride_two``.
* The float32 comparison feeds PyTorch NCHW tensors with default strides. Channels-last strides
  (what ``torch.from_numpy(x).permute(0, 3, 1, 2)`` gives) send float32 to a oneDNN kernel that,
  on AVX-512 CPUs with torch 2.13, returns zeros for some output columns (e.g. N=2, C=1, H=2,
  W=1, 3×3 kernel, stride (1, 2), padding 1: 96 of the 20,736 configurations with H, W <= 5,
  k in {1, 3}, stride and N, C_in, C_out in {1, 2}, padding in {0, 1}, with and without bias,
  all with a 3×3 kernel, C_in=1, N=2 and stride (1, 2)); TensorFlow 2.21's NHWC float32
  convolution returns garbage on the same shape. Float64, ``ONEDNN_MAX_CPU_ISA=AVX2`` or
  ``TF_ENABLE_ONEDNN_OPTS=0`` give the right answer.
  ``test_conv2d_on_a_shape_where_onednn_float32_fails`` pins our result on that shape.
* ``max_pool2d`` equals ``torch.nn.functional.max_pool2d`` and ``tf.nn.max_pool2d`` exactly.
* ``normalize``/``channel_stats``/``min_max_scale`` agree with scikit-learn's ``StandardScaler``
  and ``MinMaxScaler`` (on ``x.reshape(-1, C)``) and with plain torch ops to 1e-12 (float64).
"""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from mmtutor.preprocess import image

FAST = settings(max_examples=25, deadline=None)


def _rng(seed):
    return np.random.default_rng(seed)


def _nchw(x):
    """NHWC array -> NCHW tensor with PyTorch's default (contiguous) strides; see the module docstring."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)


def _torch_conv(x, k, b=None, stride=1, padding=0):
    """PyTorch's conv2d on NHWC / HWIO arrays (the layout mapping of the module docstring)."""
    out = torch.nn.functional.conv2d(_nchw(x), torch.from_numpy(k).permute(3, 2, 0, 1).contiguous(),
                                     None if b is None else torch.from_numpy(b),
                                     stride=stride, padding=padding)
    return out.permute(0, 2, 3, 1).numpy()


def _assert_close_to_scale(actual, expected, rtol, scale=None):
    """max |actual - expected| <= rtol * scale, the scale defaulting to max |expected|.

    For float32 sums the honest scale is the sum of the absolute terms, sum |x| |k| (+ |b|):
    a small output that comes from cancelling large terms is only known to that precision.
    """
    assert actual.shape == expected.shape
    scale = np.abs(expected).max() if scale is None else scale
    assert np.abs(actual - expected).max() <= rtol * max(scale, 1e-30)


conv_cases = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(1, 3), "h": st.integers(1, 12), "w": st.integers(1, 12),
    "c_in": st.integers(1, 4), "c_out": st.integers(1, 4),
    "kh": st.integers(1, 5), "kw": st.integers(1, 5),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3),
    "ph": st.integers(0, 2), "pw": st.integers(0, 2),
})


def _conv_inputs(case, dtype=np.float64):
    rng = _rng(case["seed"])
    # keep the kernel no larger than the padded image so that there is an output pixel
    kh = min(case["kh"], case["h"] + 2 * case["ph"])
    kw = min(case["kw"], case["w"] + 2 * case["pw"])
    x = rng.standard_normal((case["n"], case["h"], case["w"], case["c_in"])).astype(dtype)
    k = rng.standard_normal((kh, kw, case["c_in"], case["c_out"])).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype)
    return x, k, b


# --------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------

@FAST
@given(conv_cases)
def test_conv2d_matches_torch_float64(case):
    x, k, b = _conv_inputs(case)
    stride, padding = (case["sh"], case["sw"]), (case["ph"], case["pw"])
    expected = _torch_conv(x, k, b, stride=stride, padding=padding)
    _assert_close_to_scale(image.conv2d(x, k, b, stride=stride, padding=padding), expected, 1e-10)


@FAST
@given(conv_cases)
def test_conv2d_matches_torch_float32(case):
    x, k, b = _conv_inputs(case, np.float32)
    stride, padding = (case["sh"], case["sw"]), (case["ph"], case["pw"])
    out = image.conv2d(x, k, b, stride=stride, padding=padding)
    assert out.dtype == np.float32
    terms = image.conv2d(np.abs(x).astype(np.float64), np.abs(k).astype(np.float64), np.abs(b).astype(np.float64),
                         stride=stride, padding=padding)
    _assert_close_to_scale(out, _torch_conv(x, k, b, stride=stride, padding=padding), 1e-5, terms.max())


@FAST
@given(conv_cases, st.sampled_from(["same", "valid"]))
def test_conv2d_matches_tensorflow_same_and_valid(case, mode):
    x, k, _ = _conv_inputs(case)
    if mode == "valid" and (k.shape[0] > x.shape[1] or k.shape[1] > x.shape[2]):
        k = k[: x.shape[1], : x.shape[2]]
    stride = (case["sh"], case["sw"])
    expected = tf.nn.conv2d(x, k, strides=[1, *stride, 1], padding=mode.upper()).numpy()
    out = image.conv2d(x, k, stride=stride, padding=mode)
    assert out.shape[1:3] == (
        (-(-x.shape[1] // stride[0]), -(-x.shape[2] // stride[1])) if mode == "same"
        else ((x.shape[1] - k.shape[0]) // stride[0] + 1, (x.shape[2] - k.shape[1]) // stride[1] + 1))
    _assert_close_to_scale(out, expected, 1e-10)


@FAST
@given(conv_cases)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
def test_same_padding_matches_torch_for_stride_one(case):
    x, k, b = _conv_inputs(case)
    expected = _torch_conv(x, k, b, padding="same")     # PyTorch allows "same" only for stride 1
    _assert_close_to_scale(image.conv2d(x, k, b, padding="same"), expected, 1e-10)


def test_same_padding_is_asymmetric_for_stride_two():
    """H = W = 6, k = 3, s = 2: TF pads (0, 1), PyTorch's padding=1 pads (1, 1). Same shape, other numbers."""
    rng = _rng(0)
    x = rng.standard_normal((1, 6, 6, 1))
    k = rng.standard_normal((3, 3, 1, 1))
    same = image.conv2d(x, k, stride=2, padding="same")
    symmetric = image.conv2d(x, k, stride=2, padding=1)
    assert same.shape == symmetric.shape == (1, 3, 3, 1)
    assert not np.allclose(same, symmetric)
    np.testing.assert_allclose(same, tf.nn.conv2d(x, k, strides=2, padding="SAME").numpy(), atol=1e-12)
    np.testing.assert_allclose(symmetric, _torch_conv(x, k, stride=2, padding=1), atol=1e-12)
    # TF's SAME is PyTorch with the extra zero row/column at the bottom/right only
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    np.testing.assert_allclose(same, _torch_conv(padded, k, stride=2), atol=1e-12)


def test_conv2d_on_a_shape_where_onednn_float32_fails():
    """The shape of the module docstring's oneDNN note: our float32 result equals the float64 reference."""
    rng = _rng(0)
    x = rng.standard_normal((2, 2, 1, 1)).astype(np.float32)
    k = rng.standard_normal((3, 3, 1, 1)).astype(np.float32)
    out = image.conv2d(x, k, stride=(1, 2), padding=1)
    reference = _torch_conv(x.astype(np.float64), k.astype(np.float64), stride=(1, 2), padding=1)
    np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-6)
    assert np.all(out != 0.0)


def test_conv2d_is_cross_correlation_not_flipped():
    """conv2d equals scipy.ndimage.correlate; a true convolution needs the kernel flipped."""
    rng = _rng(1)
    x = rng.standard_normal((1, 9, 8, 1))
    k = rng.standard_normal((3, 3, 1, 1))
    corr = scipy.ndimage.correlate(x[0, :, :, 0], k[:, :, 0, 0], mode="constant")
    conv = scipy.ndimage.convolve(x[0, :, :, 0], k[:, :, 0, 0], mode="constant")
    np.testing.assert_allclose(image.conv2d(x, k, padding=1)[0, :, :, 0], corr, atol=1e-12)
    np.testing.assert_allclose(image.conv2d(x, k[::-1, ::-1], padding=1)[0, :, :, 0], conv, atol=1e-12)
    assert not np.allclose(corr, conv)


def test_conv_output_size_formula():
    for h, k, s, p in [(28, 3, 1, 1), (28, 5, 2, 0), (7, 7, 1, 0), (224, 7, 2, 3)]:
        x = np.zeros((1, h, h, 1))
        out = image.conv2d(x, np.zeros((k, k, 1, 1)), stride=s, padding=p)
        assert out.shape[1] == image.conv_output_size(h, k, s, p) == (h + 2 * p - k) // s + 1
    assert image.conv_output_size(224, 7, 2, 3) == 112


# --------------------------------------------------------------------------------------------
# pooling and the filter bank
# --------------------------------------------------------------------------------------------

@FAST
@given(conv_cases)
def test_max_pool2d_matches_torch_and_tensorflow(case):
    x, k, _ = _conv_inputs(case, np.float32)
    pool, stride = k.shape[:2], (case["sh"], case["sw"])
    # PyTorch requires padding <= pool_size / 2
    padding = (min(case["ph"], pool[0] // 2), min(case["pw"], pool[1] // 2))
    if x.shape[1] + 2 * padding[0] >= pool[0] and x.shape[2] + 2 * padding[1] >= pool[1]:
        expected = torch.nn.functional.max_pool2d(_nchw(x), pool, stride,
                                                  padding).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(image.max_pool2d(x, pool, stride, padding), expected)
    expected = tf.nn.max_pool2d(x, ksize=list(pool), strides=list(stride), padding="SAME").numpy()
    np.testing.assert_array_equal(image.max_pool2d(x, pool, stride, "same"), expected)


@pytest.mark.parametrize("per_channel", [False, True])
def test_filter_bank_kernels_apply_each_filter(per_channel):
    rng = _rng(2)
    x = rng.random((2, 10, 11, 3))
    names = ["sobel_x", "gaussian_blur", "laplacian"]
    out = image.conv2d(x, image.filter_bank_kernels(names, in_channels=3, per_channel=per_channel),
                       padding="same")
    assert out.shape == (2, 10, 11, 3 * (3 if per_channel else 1))
    for n in range(2):
        for f, name in enumerate(names):
            if per_channel:
                for c in range(3):
                    expected = scipy.ndimage.correlate(x[n, :, :, c], image.FILTER_BANK[name], mode="constant")
                    np.testing.assert_allclose(out[n, :, :, f * 3 + c], expected, atol=1e-12)
            else:
                expected = scipy.ndimage.correlate(x[n].mean(axis=-1), image.FILTER_BANK[name], mode="constant")
                np.testing.assert_allclose(out[n, :, :, f], expected, atol=1e-12)


def test_filter_bank_properties():
    bank = image.FILTER_BANK
    assert set(bank) == {"identity", "box_blur", "gaussian_blur", "sharpen", "sobel_x", "sobel_y", "laplacian"}
    for name in ("identity", "box_blur", "gaussian_blur", "sharpen"):
        assert bank[name].sum() == pytest.approx(1.0)
    for name in ("sobel_x", "sobel_y", "laplacian"):
        assert bank[name].sum() == pytest.approx(0.0)
    with pytest.raises(ValueError):
        bank["sobel_x"][0, 0] = 5.0          # read-only
    ramp = np.tile(np.arange(8.0), (8, 1))[None, :, :, None]      # brighter to the right
    edges = image.conv2d(ramp, image.filter_bank_kernels(["sobel_x", "sobel_y"]))
    assert np.all(edges[..., 0] == 8.0) and np.all(edges[..., 1] == 0.0)
    x = _rng(3).random((1, 5, 5, 2))
    identity = image.conv2d(x, image.filter_bank_kernels(["identity"], 2, per_channel=True), padding=1)
    np.testing.assert_allclose(identity, x)


# --------------------------------------------------------------------------------------------
# pixel scaling and normalisation
# --------------------------------------------------------------------------------------------

image_shapes = st.sampled_from([(7, 5), (6, 4, 3), (3, 5, 4, 2), (2, 3, 3, 1)])


@FAST
@given(st.integers(0, 2**32 - 1), image_shapes)
def test_channel_stats_and_normalize_match_standard_scaler(seed, shape):
    x = _rng(seed).random(shape) * 3.0 + 1.0
    mean, std = image.channel_stats(x)
    out = image.normalize(x, mean, std)
    channels = 1 if x.ndim == 2 else shape[-1]
    expected = StandardScaler().fit_transform(x.reshape(-1, channels)).reshape(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_normalize_matches_torch_with_imagenet_statistics():
    x = _rng(4).random((2, 8, 8, 3))
    out = image.normalize(x, image.IMAGENET_MEAN, image.IMAGENET_STD)
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    expected = (t - torch.tensor(image.IMAGENET_MEAN, dtype=t.dtype)[:, None, None]) \
        / torch.tensor(image.IMAGENET_STD, dtype=t.dtype)[:, None, None]
    np.testing.assert_allclose(out, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-12)
    assert image.normalize(x.astype(np.float32), 0.5, 0.25).dtype == np.float32


@FAST
@given(st.integers(0, 2**32 - 1), image_shapes, st.booleans())
def test_min_max_scale_matches_min_max_scaler(seed, shape, per_channel):
    x = _rng(seed).standard_normal(shape) * 5.0
    out = image.min_max_scale(x, (-1.0, 2.0), per_channel=per_channel)
    columns = shape[-1] if per_channel and len(shape) > 2 else 1
    expected = MinMaxScaler((-1.0, 2.0)).fit_transform(x.reshape(-1, columns)).reshape(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    flat = image.min_max_scale(np.full((3, 3), 7.0))
    np.testing.assert_array_equal(flat, np.zeros((3, 3)))       # constant image -> lo, as sklearn


def test_to_float_uint8_and_uint16():
    x = _rng(5).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    out = image.to_float(x)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out, (torch.from_numpy(x).float() / 255).numpy(), rtol=1e-7)
    assert image.to_float(np.array([[0, 65535]], dtype=np.uint16)).tolist() == [[0.0, 1.0]]


# --------------------------------------------------------------------------------------------
# bad input: each error names the argument, what was expected and what came
# --------------------------------------------------------------------------------------------

X4 = np.zeros((1, 5, 5, 3))
K4 = np.zeros((3, 3, 3, 2))


@pytest.mark.parametrize("call, exc, match", [
    (lambda: image.conv2d(np.zeros((5, 5, 3)), K4), ValueError, r"images must be a 4-D.*got 3-D"),
    (lambda: image.conv2d(X4.astype(complex), K4), TypeError, r"images must have a real floating.*complex"),
    (lambda: image.conv2d(X4.astype(bool), K4), TypeError, r"images .*bool"),
    (lambda: image.conv2d("an image", K4), TypeError, r"images must be a numeric array.*str"),
    (lambda: image.conv2d(np.full((1, 5, 5, 3), np.nan), K4), ValueError, r"images must be finite.*75 NaN"),
    (lambda: image.conv2d(X4, np.zeros((3, 3, 2, 2))), ValueError, r"kernels must have C_in = 3.*\(3, 3, 2, 2\)"),
    (lambda: image.conv2d(X4, np.zeros((3, 3, 3))), ValueError, r"kernels must be a 4-D"),
    (lambda: image.conv2d(X4, K4, stride=0), ValueError, r"stride must be >= 1, got 0"),
    (lambda: image.conv2d(X4, K4, stride=1.5), TypeError, r"stride must be an int"),
    (lambda: image.conv2d(X4, K4, stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair"),
    (lambda: image.conv2d(X4, K4, padding=-1), ValueError, r"padding must be >= 0, got -1"),
    (lambda: image.conv2d(X4, K4, padding="full"), ValueError, r"padding must be .*'same' or 'valid', got 'full'"),
    (lambda: image.conv2d(X4, np.zeros((7, 7, 3, 2))), ValueError, r"kernel \(7, 7\) is larger"),
    (lambda: image.conv2d(X4, K4, bias=np.zeros(3)), ValueError, r"bias must have C_out = 2"),
    (lambda: image.max_pool2d(X4, pool_size=0), ValueError, r"pool_size must be >= 1"),
    (lambda: image.normalize(np.zeros((4, 4, 3), np.uint8), 0.5, 0.5), TypeError, r"images must have a real floating.*uint8"),
    (lambda: image.normalize(np.zeros((4, 4, 3)), [0.5, 0.5], 0.5), ValueError, r"mean must be a scalar or hold one value per channel \(3\), got 2"),
    (lambda: image.normalize(np.zeros((4, 4, 3)), 0.5, [1.0, 0.0, 1.0]), ValueError, r"std must be positive"),
    (lambda: image.normalize(np.zeros((4, 4)), [0.1, 0.2], [1.0, 1.0]), ValueError, r"mean must be a scalar or hold one value per channel \(1\), got 2"),
    (lambda: image.normalize(np.zeros((2, 2, 2, 2, 2)), 0.0, 1.0), ValueError, r"images must be a 2-D or 3-D or 4-D.*got 5-D"),
    (lambda: image.normalize(np.zeros((0, 4, 3)), 0.0, 1.0), ValueError, r"images must not be empty"),
    (lambda: image.to_float(np.zeros((4, 4))), TypeError, r"images must have a real unsigned integer dtype.*float64"),
    (lambda: image.to_float(np.zeros((4, 4), np.int16)), TypeError, r"images must have a real unsigned integer"),
    (lambda: image.min_max_scale(np.zeros((4, 4)), (1.0, 0.0)), ValueError, r"feature_range must satisfy lo < hi"),
    (lambda: image.filter_bank_kernels(["sobel", "sharpen"]), ValueError, r"names must be filters of FILTER_BANK.*\['sobel'\]"),
    (lambda: image.filter_bank_kernels("sobel_x"), TypeError, r"names must be a non-empty sequence"),
    (lambda: image.filter_bank_kernels(None, in_channels=0), ValueError, r"in_channels must be >= 1, got 0"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_channel_stats_are_accurate_on_large_float32_batches():
    """A float32 sum over millions of values drifts; the statistics must not."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(3000, 32, 32, 3)).astype(np.float32) ** 3
    mean, std = image.channel_stats(images)
    ref = images.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(mean, ref.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=0), rtol=1e-6)
    assert mean.dtype == np.float32
