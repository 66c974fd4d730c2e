r"""Image preprocessing from scratch in NumPy: pixel scaling, normalisation and convolution features.

**Layout.** Images are arrays with the **channel axis last** (TensorFlow's and Pillow's layout):

=====================  ===================================================
``(H, W)``             one grayscale image
``(H, W, C)``          one image with ``C`` channels (RGB: ``C = 3``)
``(N, H, W, C)``       a batch of ``N`` images (what :func:`conv2d` takes)
=====================  ===================================================

PyTorch stores a batch as ``(N, C, H, W)`` ("NCHW") and a convolution weight as
``(C_out, C_in, kh, kw)`` ("OIHW"). The mapping between the two is one transpose each::

    x_torch = x.transpose(0, 3, 1, 2)          # NHWC -> NCHW
    w_torch = kernels.transpose(3, 2, 0, 1)    # (kh, kw, C_in, C_out) -> (C_out, C_in, kh, kw)
    y       = y_torch.transpose(0, 2, 3, 1)    # NCHW -> NHWC

``torch.from_numpy(x).permute(0, 3, 1, 2)`` is a view with *channels-last* strides; PyTorch then
picks its channels-last kernels. On an AVX-512 CPU, torch 2.13's float32 oneDNN kernel returned
zeros for some output columns of such input (e.g. ``N=2, C=1, H=2, W=1``, 3×3 kernel, stride
``(1, 2)``, padding 1), and TensorFlow 2.21's NHWC float32 convolution returned garbage there.
The right answer came back with ``.clone(memory_format=torch.contiguous_format)`` (PyTorch),
``TF_ENABLE_ONEDNN_OPTS=0`` (TensorFlow), float64, or ``ONEDNN_MAX_CPU_ISA=AVX2`` (both). See
``tests/test_preprocess_image.py``.

**Convolution.** :func:`conv2d` computes what deep-learning libraries call a convolution, which
is mathematically a **cross-correlation**: the kernel is *not* flipped,

.. math::

    y[n, i, j, o] = b_o + \sum_{u=0}^{k_h-1}\sum_{v=0}^{k_w-1}\sum_{c=0}^{C_\text{in}-1}
        x[n,\; s_h i + u - p_t,\; s_w j + v - p_l,\; c]\; k[u, v, c, o],

with ``x`` read as zero outside the image. With symmetric padding ``p`` on each side the output
height is :math:`\lfloor (H + 2p - k_h)/s_h \rfloor + 1` (and likewise for the width). A true
(flipped) convolution is obtained by passing ``kernels[::-1, ::-1]``.

Padding ``"same"`` follows TensorFlow's rule, which keeps :math:`\lceil H/s \rceil` output rows:
the total padding :math:`\max((\lceil H/s\rceil - 1)s + k - H, 0)` is split with the smaller half on
the top/left and the larger half on the bottom/right. For stride 1 and an odd kernel this is the
symmetric padding ``(k - 1)/2`` (PyTorch's ``padding="same"``, which only allows stride 1); for
stride > 1 or an even kernel it is asymmetric, which PyTorch's integer ``padding`` cannot express.

Checked against ``torch.nn.functional.conv2d``, ``tf.nn.conv2d`` and ``scipy.ndimage.correlate``
in ``tests/test_preprocess_image.py``: float64 inputs agree to 1e-10 relative to the largest
output, float32 inputs to 1e-5 relative to the largest sum of absolute terms
:math:`\sum |x|\,|k| + |b|` (a small output that results from cancelling large terms is only
known to that precision in float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "to_float",
    "channel_stats",
    "normalize",
    "min_max_scale",
    "conv2d",
    "conv_output_size",
    "max_pool2d",
    "FILTER_BANK",
    "filter_bank_kernels",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet in [0, 1] units, the usual ``mean`` for pretrained vision models."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet in [0, 1] units."""


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _describe(x) -> str:
    arr = np.asarray(x) if not isinstance(x, (str, bytes)) else None
    if arr is None or arr.dtype == object:
        return f"{type(x).__name__}: {x!r}"[:120]
    return f"array of shape {arr.shape} and dtype {arr.dtype}"


def _as_image_array(name: str, x, ndims: tuple[int, ...], kinds: str = "f") -> np.ndarray:
    """Return ``x`` as an ndarray of rank in ``ndims`` and dtype kind in ``kinds``, finite and non-empty.

    ``kinds`` uses NumPy's dtype kinds: ``f`` floating, ``u`` unsigned int, ``i`` signed int.
    Booleans, complex numbers, strings and objects are always rejected.
    """
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {x!r}"[:200])
    arr = np.asarray(x)
    if arr.dtype.kind not in kinds:
        wanted = {"f": "floating", "u": "unsigned integer", "i": "signed integer"}
        expected = " or ".join(wanted[k] for k in kinds)
        raise TypeError(f"{name} must have a real {expected} dtype, got {_describe(x)}")
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must be a {' or '.join(f'{d}-D' for d in ndims)} array, "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {int(np.size(arr) - np.isfinite(arr).sum())} "
                         f"NaN or infinite values")
    return arr


def _int_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as a pair (height, width)."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r} "
                            f"(an item of type {type(item).__name__})")
        if item < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _per_channel(name: str, value, channels: int, dtype) -> np.ndarray:
    """A scalar or one value per channel, as an array that broadcasts against channel-last images."""
    arr = _as_image_array(name, value, (0, 1), kinds="fiu").astype(dtype)
    if arr.ndim == 1 and arr.shape[0] not in (1, channels):
        raise ValueError(f"{name} must be a scalar or hold one value per channel ({channels}), "
                         f"got {arr.shape[0]} values")
    return arr


# --------------------------------------------------------------------------------------------
# pixel values
# --------------------------------------------------------------------------------------------

def to_float(images, dtype=np.float32) -> np.ndarray:
    r"""Unsigned-integer pixels to floats in :math:`[0, 1]`: :math:`x / (2^{b} - 1)`.

    ``uint8`` is divided by 255, ``uint16`` by 65535. Floating input is rejected rather than passed
    through: an image that is already float may be in [0, 1] or in [0, 255], and guessing wrong
    silently is the classic preprocessing bug. Any image layout (2-D to 4-D) is accepted.
    """
    arr = _as_image_array("images", images, (2, 3, 4), kinds="u")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    return (arr / np.iinfo(arr.dtype).max).astype(dtype)


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel mean and (population) standard deviation over every axis but the last.

    For ``(H, W)`` grayscale input the statistics are over all pixels (0-d arrays). The standard
    deviation uses :math:`1/M`, not :math:`1/(M-1)`, as ``sklearn.preprocessing.StandardScaler`` does,
    so ``normalize(x, *channel_stats(x))`` equals ``StandardScaler`` on ``x.reshape(-1, C)``.
    The sums are accumulated in float64 (a float32 sum over millions of pixels loses about 2% of
    the standard deviation) and the results cast back to the input's dtype.
    """
    arr = _as_image_array("images", images, (2, 3, 4))
    axes = tuple(range(arr.ndim)) if arr.ndim == 2 else tuple(range(arr.ndim - 1))
    mean = arr.mean(axis=axes, dtype=np.float64)
    std = arr.std(axis=axes, dtype=np.float64)
    return mean.astype(arr.dtype), std.astype(arr.dtype)


def normalize(images, mean, std) -> np.ndarray:
    r"""Per-channel standardisation :math:`(x_{\dots c} - \mu_c) / \sigma_c`, channel axis last.

    Parameters
    ----------
    images : float array, ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``
        Floating pixels, usually in [0, 1] (see :func:`to_float`). Integer images are rejected:
        ImageNet statistics such as :data:`IMAGENET_MEAN` are in [0, 1] units, so subtracting them
        from raw 0–255 values would silently produce nonsense.
    mean, std : scalar or sequence of length ``C``
        The per-channel statistics; ``std`` must be positive. For ``(H, W)`` input use scalars.

    Returns an array of the same shape and floating dtype as ``images``.
    """
    arr = _as_image_array("images", images, (2, 3, 4))
    channels = 1 if arr.ndim == 2 else arr.shape[-1]
    mean = _per_channel("mean", mean, channels, arr.dtype)
    std = _per_channel("std", std, channels, arr.dtype)
    if np.any(std <= 0):
        raise ValueError(f"std must be positive in every channel, got {std.tolist()}")
    return (arr - mean) / std


def min_max_scale(images, feature_range=(0.0, 1.0), per_channel: bool = False) -> np.ndarray:
    r"""Rescale linearly so that the minimum maps to ``lo`` and the maximum to ``hi``.

    .. math:: x' = lo + (x - \min x)\,\frac{hi - lo}{\max x - \min x}

    With ``per_channel=True`` the minimum and maximum are taken per channel (last axis) over all
    other axes, as ``sklearn.preprocessing.MinMaxScaler`` does on ``x.reshape(-1, C)``. A constant
    image (or channel) maps to ``lo``, again as scikit-learn does.
    """
    arr = _as_image_array("images", images, (2, 3, 4), kinds="fiu")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be a bool, got {type(per_channel).__name__}: {per_channel!r}")
    if not isinstance(feature_range, (tuple, list)) or len(feature_range) != 2:
        raise ValueError(f"feature_range must be a pair (lo, hi), got {feature_range!r}")
    lo, hi = (float(v) for v in feature_range)
    if not lo < hi:
        raise ValueError(f"feature_range must satisfy lo < hi, got {feature_range!r}")
    arr = arr.astype(np.result_type(arr.dtype, np.float32))
    axes = tuple(range(arr.ndim - 1)) if per_channel and arr.ndim > 2 else None
    low, high = arr.min(axis=axes), arr.max(axis=axes)
    span = np.where(high > low, high - low, 1.0).astype(arr.dtype)
    return lo + (arr - low) / span * (hi - lo)


# --------------------------------------------------------------------------------------------
# convolution and pooling
# --------------------------------------------------------------------------------------------

def conv_output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0,
                     pad_after: int | None = None) -> int:
    r"""Output length of a convolution or pooling along one axis: :math:`\lfloor (H + p_1 + p_2 - k)/s \rfloor + 1`."""
    pad_after = pad_before if pad_after is None else pad_after
    return (size + pad_before + pad_after - kernel) // stride + 1


def _resolve_padding(padding, kernel: tuple[int, int], stride: tuple[int, int],
                     size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) padding from an int, a pair, ``"valid"`` or ``"same"``."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            pads = []
            for n, k, s in zip(size, kernel, stride):
                total = max((math.ceil(n / s) - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            return pads[0], pads[1]
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    ph, pw = _int_pair("padding", padding, minimum=0)
    return (ph, ph), (pw, pw)


def _windows(images: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding,
             fill: float) -> np.ndarray:
    """Strided sliding windows ``(N, H_out, W_out, C, kh, kw)`` over the padded images (a view)."""
    (pt, pb), (pl, pr) = _resolve_padding(padding, kernel, stride, images.shape[1:3])
    out_h = conv_output_size(images.shape[1], kernel[0], stride[0], pt, pb)
    out_w = conv_output_size(images.shape[2], kernel[1], stride[1], pl, pr)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the kernel {kernel} is larger than the padded image "
                         f"({images.shape[1] + pt + pb}, {images.shape[2] + pl + pr}): no output pixel")
    if pt or pb or pl or pr:
        images = np.pad(images, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    windows = sliding_window_view(images, kernel, axis=(1, 2))
    return windows[:, ::stride[0], ::stride[1]][:, :out_h, :out_w]


def conv2d(images, kernels, bias=None, stride=1, padding=0) -> np.ndarray:
    r"""2-D convolution (cross-correlation, as in deep-learning libraries) of a batch of images.

    .. math::

        y[n,i,j,o] = b_o + \sum_{u,v,c} x[n,\, s i + u - p,\, s j + v - p,\, c]\; k[u,v,c,o]

    Parameters
    ----------
    images : float array ``(N, H, W, C_in)``
        A batch in TensorFlow's NHWC layout (PyTorch: ``x.transpose(0, 2, 3, 1)``). A single image
        is ``image[None]``.
    kernels : float array ``(kh, kw, C_in, C_out)``
        TensorFlow's HWIO layout (PyTorch's ``weight.permute(2, 3, 1, 0)``). Not flipped.
    bias : float array ``(C_out,)`` or None
    stride : int or (sh, sw), each >= 1
    padding : int, (ph, pw), ``"valid"`` or ``"same"``
        Integers pad ``p`` zeros on both sides (PyTorch's convention). ``"valid"`` is no padding;
        ``"same"`` is TensorFlow's rule (output :math:`\lceil H/s \rceil`, extra zero at the
        bottom/right when the total is odd); see the module docstring.

    Returns
    -------
    float array ``(N, H_out, W_out, C_out)`` with :math:`H_\text{out} = \lfloor (H + 2p - k_h)/s_h \rfloor + 1`.

    The work is one matrix product: the strided sliding windows (an "im2col" matrix of shape
    ``(N·H_out·W_out, kh·kw·C_in)``) times the kernel reshaped to ``(kh·kw·C_in, C_out)``.
    """
    x = _as_image_array("images", images, (4,))
    k = _as_image_array("kernels", kernels, (4,))
    if k.shape[2] != x.shape[3]:
        raise ValueError(f"kernels must have C_in = {x.shape[3]} input channels (axis 2 of "
                         f"(kh, kw, C_in, C_out)) to match images (N, H, W, C_in) = {x.shape}, "
                         f"got kernels of shape {k.shape}")
    dtype = np.result_type(x.dtype, k.dtype)
    stride = _int_pair("stride", stride, minimum=1)
    windows = _windows(x.astype(dtype, copy=False), k.shape[:2], stride, padding, fill=0.0)
    out = np.tensordot(windows, k.astype(dtype, copy=False), axes=([4, 5, 3], [0, 1, 2]))
    if bias is not None:
        b = _as_image_array("bias", bias, (1,))
        if b.shape[0] != k.shape[3]:
            raise ValueError(f"bias must have C_out = {k.shape[3]} values, got shape {b.shape}")
        out = out + b.astype(dtype, copy=False)
    return out


def max_pool2d(images, pool_size=2, stride=None, padding=0) -> np.ndarray:
    r"""Max pooling over ``pool_size`` windows: :math:`y[n,i,j,c] = \max_{u,v} x[n, s i + u - p, s j + v - p, c]`.

    Same layout, stride and padding conventions as :func:`conv2d` (``stride`` defaults to
    ``pool_size``); padded positions never win the maximum (they hold :math:`-\infty`), as in
    ``torch.nn.functional.max_pool2d`` and ``tf.nn.max_pool2d``.
    """
    x = _as_image_array("images", images, (4,))
    pool = _int_pair("pool_size", pool_size, minimum=1)
    stride = pool if stride is None else _int_pair("stride", stride, minimum=1)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    return _windows(x, pool, stride, padding, fill=-np.inf).max(axis=(4, 5))


# --------------------------------------------------------------------------------------------
# a bank of classic filters
# --------------------------------------------------------------------------------------------

def _frozen(rows) -> np.ndarray:
    arr = np.array(rows, dtype=np.float64)
    arr.flags.writeable = False
    return arr


FILTER_BANK: dict[str, np.ndarray] = {
    "identity": _frozen([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "box_blur": _frozen(np.full((3, 3), 1 / 9)),
    "gaussian_blur": _frozen(np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16),
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "sobel_x": _frozen([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
    "sobel_y": _frozen([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
    "laplacian": _frozen([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
}
"""Named 3×3 filters, written for cross-correlation (as :func:`conv2d` applies them, unflipped).

``sobel_x`` responds positively where intensity increases to the right, ``sobel_y`` where it
increases downwards; the blurs sum to 1 (they keep a flat image flat); ``sharpen`` sums to 1 and
``laplacian`` to 0 (a flat image gives 0). The arrays are read-only.
"""


def filter_bank_kernels(names: Sequence[str] | None = None, in_channels: int = 1,
                        per_channel: bool = False, dtype=np.float64) -> np.ndarray:
    r"""Stack named filters of :data:`FILTER_BANK` into a ``(3, 3, C_in, C_out)`` kernel for :func:`conv2d`.

    Parameters
    ----------
    names : sequence of str, default every filter in :data:`FILTER_BANK` (in its order)
    in_channels : int >= 1
    per_channel : bool
        ``False`` (default): each filter is applied to the **mean of the input channels**,
        :math:`k[u,v,c,o] = f_o[u,v] / C_\text{in}`, so ``C_out = len(names)``; this is what one wants
        for edge and blur features of an RGB image, which do not care about colour.
        ``True``: each filter is applied to **each channel separately** (a depthwise filter), so
        ``C_out = len(names) * C_in`` and output channel ``o = f * C_in + c`` holds filter ``f`` on
        channel ``c``.
    """
    if names is None:
        names = list(FILTER_BANK)
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise TypeError(f"names must be a non-empty sequence of filter names, got {names!r}")
    unknown = [n for n in names if n not in FILTER_BANK]
    if unknown:
        raise ValueError(f"names must be filters of FILTER_BANK {sorted(FILTER_BANK)}, got unknown {unknown}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, (int, np.integer)):
        raise TypeError(f"in_channels must be an int, got {type(in_channels).__name__}: {in_channels!r}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be a bool, got {type(per_channel).__name__}: {per_channel!r}")
    filters = np.stack([FILTER_BANK[n] for n in names], axis=-1)            # (3, 3, F)
    if not per_channel:
        kernels = np.repeat(filters[:, :, None, :], in_channels, axis=2) / in_channels
    else:
        eye = np.eye(in_channels)                                          # (C_in, C_in)
        kernels = np.einsum("uvf,cd->uvcfd", filters, eye).reshape(3, 3, in_channels, -1)
    return kernels.astype(dtype)
