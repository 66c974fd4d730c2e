r"""Uniform (affine) quantization: a float tensor stored as small integers plus a scale and a zero point.

A real number :math:`x` is stored as a :math:`b`-bit integer code :math:`q`, with two parameters shared by
many numbers: the scale :math:`s > 0` (the step between neighbouring codes) and the zero point :math:`z` (the
code that stands for 0.0, so that zero, the padding and every ReLU-clipped or pruned value, is exact):

.. math::

    q = \mathrm{clip}\big(\mathrm{round}(x / s) + z,\ q_{\min},\ q_{\max}\big), \qquad \hat x = s\,(q - z).

Two schemes fix :math:`q_{\min}, q_{\max}, s, z` from the smallest and largest values :math:`x_{\min}, x_{\max}`
(widened to include 0: :math:`m_- = \min(x_{\min}, 0)`, :math:`m_+ = \max(x_{\max}, 0)`):

* **symmetric** (signed codes): :math:`q_{\min} = -2^{b-1}`, :math:`q_{\max} = 2^{b-1} - 1`, :math:`z = 0` and
  :math:`s = \max(-m_-, m_+) \,/\, \tfrac{1}{2}(q_{\max} - q_{\min})` (for int8, :math:`\max|x| / 127.5`);
* **affine** (unsigned codes): :math:`q_{\min} = 0`, :math:`q_{\max} = 2^b - 1`,
  :math:`s = (m_+ - m_-) / (q_{\max} - q_{\min})` and :math:`z = q_{\min} - \mathrm{round}(m_- / s)`.

These are the choices of PyTorch's ``MinMaxObserver`` (``qint8`` with ``per_tensor_symmetric``, ``quint8``
with ``per_tensor_affine``) and ``PerChannelMinMaxObserver``; the tests check that they agree exactly. The
scale is at least the float32 machine epsilon, so an all-zero tensor still gets a valid one.

**Error bound.** Rounding moves a value by at most half a step, so every :math:`x` in
:math:`[m_-, m_+]` comes back with :math:`|x - \hat x| \le s/2`; values beyond the range are clipped to its
end and their error grows without bound, which is why one outlier that stretches :math:`s` costs every
other value precision. With ``axis`` set, each slice along that axis (each output channel of a weight
matrix) gets its own :math:`s` and :math:`z`; a group size splits rows further (see :class:`QuantizedLinear`).

**Rounding detail.** :math:`x / s` is computed as :math:`x \cdot (1/s)` in float32, rounded half to even,
and :math:`z` is added after rounding, as PyTorch's ``fake_quantize_*`` kernels do, so the two agree bit for
bit. (Dividing instead changes the last bit of about one product in :math:`10^5`, which flips a code when
the product sits on a :math:`k + 1/2` tie. PyTorch's ``quantize_per_tensor``/``quantize_per_channel``
round :math:`x \cdot (1/s) + z` in one fused multiply-add, which differs from the above by one code on
such ties, a few values in a million, when :math:`z \neq 0`.)

**Whole models.** :func:`quantize_model` replaces every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` by a
:class:`QuantizedLayer` that stores int8 (or fewer-bit) weight codes with one scale per output channel, and
optionally quantizes the layer's input too, so that the product could run in integers
(:func:`integer_linear` shows the arithmetic):

* ``activations=None``: *weight-only*; the input and the arithmetic stay in float;
* ``activations="dynamic"``: *dynamic* post-training quantization; the input's range is measured on every
  batch, at run time, so no data is needed beforehand (PyTorch's ``quantize_dynamic``);
* ``activations="static"``: *static* post-training quantization; the input's range :math:`[m_-, m_+]` of
  every layer is measured once on calibration batches (:func:`input_ranges`) and stored with the
  weights, so that the integer pipeline needs no float statistics at run time.

Inputs use unsigned affine codes (``quint8`` for 8 bits), weights signed symmetric ones. The layer computes
with the dequantized values :math:`\hat x, \hat W` in float32, which equals the integer computation up to
float rounding; it is a faithful *simulation*, smaller on disk but not faster (a real speed-up needs integer
kernels, as PyTorch's ``torch.ao.nn.quantized`` modules have). Quantization-aware training, which trains
through this simulation, is in ``mmtutor.compress.qat``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mmtutor.runtime import _describe

__all__ = ["QuantizedTensor", "qrange", "choose_qparams", "quantize_tensor", "dequantize", "fake_quantize",
           "integer_linear", "pack_int4", "unpack_int4", "QuantizedLinear", "quantize_linear_weights",
           "QUANTIZABLE_TYPES", "ACTIVATION_MODES", "quantize_activation", "input_ranges", "QuantizedLayer",
           "quantize_model", "load_quantized_model"]

_EPS = torch.finfo(torch.float32).eps


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------

def _check_num_bits(num_bits) -> int:
    if isinstance(num_bits, bool) or not isinstance(num_bits, int):
        raise TypeError(f"num_bits must be an int from 2 to 8, got {_describe(num_bits)}")
    if not 2 <= num_bits <= 8:
        raise ValueError(f"num_bits must be from 2 to 8, got {num_bits}")
    return num_bits


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}")
    return value


def _check_float_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {_describe(x)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got {int(torch.isnan(x).sum())} NaN and "
                         f"{int(torch.isinf(x).sum())} infinite values")
    return x


def _check_axis(axis, ndim: int) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be an int or None, got {_describe(axis)}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis must be in [{-ndim}, {ndim - 1}] for a tensor with {ndim} dimensions, got {axis}")
    return axis % ndim


def _check_module_names(name: str, value, model: nn.Module) -> set[str]:
    """``value`` as a set of module names of ``model`` (as in ``model.named_modules()``), or a clear error."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a collection of module names, got {_describe(value)}")
    value = set(value)
    unknown = sorted(value - {module_name for module_name, _ in model.named_modules()})
    if unknown:
        raise ValueError(f"{name} must name modules of model, got unknown names {unknown}")
    return value


def qrange(num_bits: int = 8, symmetric: bool = True) -> tuple[int, int]:
    """Codes :math:`(q_{\\min}, q_{\\max})`: :math:`(-2^{b-1}, 2^{b-1}-1)` if ``symmetric``, else :math:`(0, 2^b-1)`."""
    num_bits = _check_num_bits(num_bits)
    if _check_bool("symmetric", symmetric):
        return -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
    return 0, 2 ** num_bits - 1


def _broadcast(values: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    """Reshape per-channel ``values`` (C,) so they broadcast along ``axis`` of an ``ndim`` tensor."""
    if axis is None:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


# --------------------------------------------------------------------------------------------------
# quantize, dequantize
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes and the parameters that map them back to real numbers: :math:`\\hat x = s\\,(q - z)`.

    Attributes
    ----------
    codes : torch.Tensor
        The codes :math:`q`, same shape as the input; ``torch.int8`` (symmetric) or ``torch.uint8`` (affine).
    scale : torch.Tensor
        :math:`s`, float32: a 0-d tensor per tensor, shape ``(C,)`` per channel along ``axis``.
    zero_point : torch.Tensor
        :math:`z`, int64, the shape of ``scale`` (all 0 when ``symmetric``).
    num_bits : int
        Bits per code, 2 to 8 (the codes are held in 8-bit integers; :func:`pack_int4` stores two per byte).
    symmetric : bool
        Signed codes with :math:`z = 0`, or unsigned codes with a zero point.
    axis : int or None
        The channel axis of a per-channel quantization, ``None`` per tensor.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    num_bits: int
    symmetric: bool
    axis: int | None

    @property
    def qmin(self) -> int:
        """Smallest code, :math:`q_{\\min}`."""
        return qrange(self.num_bits, self.symmetric)[0]

    @property
    def qmax(self) -> int:
        """Largest code, :math:`q_{\\max}`."""
        return qrange(self.num_bits, self.symmetric)[1]

    @property
    def shape(self) -> torch.Size:
        """Shape of the quantized tensor."""
        return self.codes.shape


def _minmax(x: torch.Tensor, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if axis is None:
        return torch.aminmax(x)
    return torch.aminmax(x.movedim(axis, 0).reshape(x.shape[axis], -1), dim=1)


def choose_qparams(x: torch.Tensor, num_bits: int = 8, symmetric: bool = True,
                   axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale :math:`s` (float32) and zero point :math:`z` (int64) from the min and max of ``x``.

    Symmetric: :math:`s = \\max(|m_-|, m_+) / \\tfrac12 (q_{\\max} - q_{\\min})`, :math:`z = 0`. Affine:
    :math:`s = (m_+ - m_-)/(q_{\\max} - q_{\\min})`, :math:`z = q_{\\min} - \\mathrm{round}(m_-/s)`, with
    :math:`m_- = \\min(x_{\\min}, 0)` and :math:`m_+ = \\max(x_{\\max}, 0)` taken over the whole tensor
    (``axis=None``, 0-d results) or over each slice along ``axis`` (results of shape ``(x.shape[axis],)``).
    Both equal what PyTorch's min-max observers compute for the same scheme and code range.
    """
    x = _check_float_tensor("x", x)
    num_bits = _check_num_bits(num_bits)
    symmetric = _check_bool("symmetric", symmetric)
    axis = _check_axis(axis, x.ndim)
    qmin, qmax = qrange(num_bits, symmetric)
    low, high = _minmax(x.detach().float(), axis)
    low, high = torch.clamp(low, max=0.0), torch.clamp(high, min=0.0)
    eps = torch.tensor(_EPS)
    if symmetric:
        scale = torch.maximum(torch.maximum(-low, high) / (float(qmax - qmin) / 2), eps)
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = torch.maximum((high - low) / float(qmax - qmin), eps)
        zero_point = torch.clamp(qmin - torch.round(low / scale).to(torch.int64), qmin, qmax)
    return scale, zero_point


def _check_qparams(scale, zero_point, x: torch.Tensor, axis: int | None, qmin: int, qmax: int,
                   symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate user-given ``scale`` and ``zero_point`` and return them as float32 / int64 tensors."""
    expected = () if axis is None else (x.shape[axis],)
    if isinstance(scale, bool) or not isinstance(scale, (int, float, torch.Tensor)):
        raise TypeError(f"scale must be a positive number or a float tensor of shape {expected}, "
                        f"got {_describe(scale)}")
    scale = torch.as_tensor(scale, dtype=torch.float32).detach()
    if axis is None and scale.numel() == 1:
        scale = scale.reshape(())
    if tuple(scale.shape) != expected or not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
        raise ValueError(f"scale must be finite and > 0 with shape {expected}, got {_describe(scale)}")
    if zero_point is None:
        if not symmetric:
            raise ValueError("zero_point must be given with scale when symmetric=False, got None")
        zero_point = 0
    if isinstance(zero_point, bool) or not isinstance(zero_point, (int, torch.Tensor)):
        raise TypeError(f"zero_point must be an int or an integer tensor, got {_describe(zero_point)}")
    if isinstance(zero_point, torch.Tensor) and zero_point.is_floating_point():
        raise TypeError(f"zero_point must be an integer tensor, got {_describe(zero_point)}")
    zero_point = torch.as_tensor(zero_point, dtype=torch.int64).detach()
    zero_point = zero_point.reshape(()) if zero_point.numel() == 1 and axis is None else zero_point
    zero_point = zero_point.expand(expected) if zero_point.ndim == 0 else zero_point
    if tuple(zero_point.shape) != expected:
        raise ValueError(f"zero_point must have shape {expected}, got {_describe(zero_point)}")
    if bool((zero_point < qmin).any()) or bool((zero_point > qmax).any()):
        raise ValueError(f"zero_point must lie in [{qmin}, {qmax}], got {zero_point.tolist()}")
    if symmetric and bool((zero_point != 0).any()):
        raise ValueError(f"zero_point must be 0 when symmetric=True, got {zero_point.tolist()}")
    return scale, zero_point.clone()


def _codes(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int | None) -> torch.Tensor:
    """:math:`\\mathrm{round}(x \\cdot (1/s)) + z` in float32, before clipping (the ``fake_quantize`` mask needs it)."""
    inverse = _broadcast(1.0 / scale, axis, x.ndim)
    return torch.round(x.float() * inverse) + _broadcast(zero_point, axis, x.ndim).float()


def _prepare(x, num_bits, symmetric, axis, scale, zero_point) -> tuple:
    """Validate the arguments of :func:`quantize_tensor`/:func:`fake_quantize`; fill in the chosen parameters.

    Returns ``(x, axis, qmin, qmax, scale, zero_point)`` with ``axis`` made non-negative.
    """
    x = _check_float_tensor("x", x)
    num_bits = _check_num_bits(num_bits)
    symmetric = _check_bool("symmetric", symmetric)
    axis = _check_axis(axis, x.ndim)
    qmin, qmax = qrange(num_bits, symmetric)
    if scale is None:
        if zero_point is not None:
            raise ValueError("zero_point must be None when scale is None (both are chosen from x), "
                             f"got {_describe(zero_point)}")
        scale, zero_point = choose_qparams(x, num_bits, symmetric, axis)
    else:
        scale, zero_point = _check_qparams(scale, zero_point, x, axis, qmin, qmax, symmetric)
    return x, axis, qmin, qmax, scale, zero_point


def quantize_tensor(x: torch.Tensor, num_bits: int = 8, symmetric: bool = True, axis: int | None = None,
                    scale=None, zero_point=None) -> QuantizedTensor:
    """Quantize ``x`` to integer codes :math:`q = \\mathrm{clip}(\\mathrm{round}(x/s) + z, q_{\\min}, q_{\\max})`.

    Parameters
    ----------
    x : torch.Tensor
        A finite, non-empty floating-point tensor (computed in float32).
    num_bits : int
        2 to 8.
    symmetric : bool
        Signed codes and :math:`z = 0` (the usual choice for weights), or unsigned codes with a zero
        point (for activations that are mostly positive, such as ReLU outputs).
    axis : int or None
        ``None`` for one scale for the whole tensor, or the axis along which each slice gets its own
        scale and zero point (``axis=0``: one per output channel of an ``nn.Linear`` or convolution weight).
    scale, zero_point : optional
        Use these instead of :func:`choose_qparams` (a number, or a tensor of shape ``(x.shape[axis],)``).

    Returns
    -------
    QuantizedTensor
        The codes with their scale and zero point; :func:`dequantize` maps them back.
    """
    x, axis, qmin, qmax, scale, zero_point = _prepare(x, num_bits, symmetric, axis, scale, zero_point)
    codes = torch.clamp(_codes(x.detach(), scale, zero_point, axis), qmin, qmax)
    return QuantizedTensor(codes=codes.to(torch.int8 if symmetric else torch.uint8), scale=scale,
                           zero_point=zero_point, num_bits=num_bits, symmetric=symmetric, axis=axis)


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    """The float32 tensor :math:`\\hat x = s\\,(q - z)` that the codes of ``q`` stand for."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor from quantize_tensor, got {_describe(q)}")
    ndim = q.codes.ndim
    return _broadcast(q.scale, q.axis, ndim) * (q.codes.float() - _broadcast(q.zero_point, q.axis, ndim).float())


def fake_quantize(x: torch.Tensor, num_bits: int = 8, symmetric: bool = True, axis: int | None = None,
                  scale=None, zero_point=None) -> torch.Tensor:
    """Quantize and dequantize ``x`` in the forward pass; pass the gradient straight through in the backward.

    The forward value is :math:`\\hat x = s\\,(\\mathrm{clip}(\\mathrm{round}(x/s) + z) - z)`, what the integer
    model will compute; rounding has zero derivative almost everywhere, so quantization-aware training uses
    the straight-through estimator: :math:`\\partial \\hat x / \\partial x = 1` where the code was not
    clipped and 0 where it was (PyTorch's ``fake_quantize_per_tensor_affine`` and
    ``fake_quantize_per_channel_affine`` do the same). It is written with ``detach``, so ordinary autograd
    does the rest::

        x_hat.detach() + (x - x.detach()) * inside     # value x_hat, gradient `inside`

    ``scale`` and ``zero_point`` default to :func:`choose_qparams` of the current ``x`` (treated as
    constants: no gradient flows into them). Arguments as in :func:`quantize_tensor`; the result has the
    dtype of ``x``.
    """
    x, axis, qmin, qmax, scale, zero_point = _prepare(x, num_bits, symmetric, axis, scale, zero_point)
    codes = _codes(x.detach(), scale, zero_point, axis)
    inside = (codes >= qmin) & (codes <= qmax)
    z = _broadcast(zero_point, axis, x.ndim).float()
    x_hat = (_broadcast(scale, axis, x.ndim) * (torch.clamp(codes, qmin, qmax) - z)).to(x.dtype)
    return x_hat + (x - x.detach()) * inside


def integer_linear(x: QuantizedTensor, weight: QuantizedTensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    r"""A linear layer computed the way an integer kernel does: int32 accumulation, one float rescale per output.

    With an input quantized per tensor, :math:`x = s_x (q_x - z_x)`, and weights quantized symmetrically per
    output channel, :math:`W_{j\cdot} = s_j Q_{j\cdot}`,

    .. math:: y_{ij} = s_x\, s_j \sum_k (q_{x,ik} - z_x)\, Q_{jk} + b_j ,

    where the sum runs over int32 (exact: no rounding until the final rescale). ``x`` is ``(N, in)``, per tensor;
    ``weight`` is ``(out, in)``, symmetric, per tensor or per output channel (``axis=0``). The result equals
    ``F.linear(dequantize(x), dequantize(weight), bias)`` up to float32 rounding.
    """
    for name, q in (("x", x), ("weight", weight)):
        if not isinstance(q, QuantizedTensor) or q.codes.ndim != 2:
            raise TypeError(f"{name} must be a 2-D QuantizedTensor from quantize_tensor, got {_describe(q)}")
    if x.axis is not None:
        raise ValueError(f"x must be quantized per tensor (axis=None), got axis={x.axis}")
    if not weight.symmetric or weight.axis not in (None, 0):
        raise ValueError("weight must be quantized symmetrically, per tensor or per output channel (axis=0), got "
                         f"symmetric={weight.symmetric}, axis={weight.axis}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must have {weight.shape[1]} features to match weight, got {x.shape[1]}")
    accumulator = (x.codes.to(torch.int32) - x.zero_point.to(torch.int32)) @ weight.codes.to(torch.int32).T
    y = accumulator.float() * (x.scale * weight.scale)
    return y if bias is None else y + bias


# --------------------------------------------------------------------------------------------------
# two 4-bit codes per byte
# --------------------------------------------------------------------------------------------------

def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes of at most 4 bits two per byte: element :math:`2i` in the low nibble, :math:`2i+1` in the high.

    ``codes`` (any shape, flattened in row-major order) must all lie in :math:`[-8, 7]` (signed, stored in
    two's complement) or all in :math:`[0, 15]` (unsigned). Returns a ``uint8`` tensor of
    :math:`\\lceil n/2 \\rceil` bytes, the last high nibble 0 when :math:`n` is odd; :func:`unpack_int4`
    inverts it.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be an integer torch.Tensor, got {_describe(codes)}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise TypeError(f"codes must be an integer tensor, got {_describe(codes)}")
    flat = codes.reshape(-1).to(torch.int16)
    if flat.numel():
        low, high = int(flat.min()), int(flat.max())
        if low < -8 or high > 15 or (low < 0 and high > 7):
            raise ValueError(f"codes must all lie in [-8, 7] or all in [0, 15], got values from {low} to {high}")
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    nibbles = (flat & 0xF).reshape(-1, 2)
    return (nibbles[:, 0] | (nibbles[:, 1] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor, numel: int, signed: bool = True) -> torch.Tensor:
    """The first ``numel`` 4-bit codes of ``packed`` (from :func:`pack_int4`), ``int8`` if ``signed`` else ``uint8``."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 torch.Tensor from pack_int4, got {_describe(packed)}")
    if isinstance(numel, bool) or not isinstance(numel, int):
        raise TypeError(f"numel must be an int, got {_describe(numel)}")
    if not 0 <= numel <= 2 * packed.numel() or numel < 2 * packed.numel() - 1:
        raise ValueError(f"numel must be {2 * packed.numel() - 1} or {2 * packed.numel()} for "
                         f"{packed.numel()} packed bytes, got {numel}")
    signed = _check_bool("signed", signed)
    flat = packed.reshape(-1).to(torch.int16)
    nibbles = torch.stack([flat & 0xF, flat >> 4], dim=1).reshape(-1)[:numel]
    if signed:
        return torch.where(nibbles >= 8, nibbles - 16, nibbles).to(torch.int8)
    return nibbles.to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# weight-only quantized linear layers
# --------------------------------------------------------------------------------------------------

class QuantizedLinear(nn.Module):
    """A linear layer that stores integer weight codes and rebuilds its float weights on every call.

    .. math:: y = x \\hat W^\\top + b, \\qquad \\hat W_{ij} = s_{g(i,j)} \\big(Q_{ij} - z_{g(i,j)}\\big),

    where :math:`g(i, j)` names the scale that covers weight :math:`(i, j)`: one for the whole matrix
    (``axis=None``), one per output row (``axis=0``), one per input column (``axis=1``), or, with
    ``group_size`` :math:`G` (which needs ``axis=0``), one per run of :math:`G` consecutive inputs of a row,
    :math:`g(i, j) = (i, \\lfloor j/G \\rfloor)`, the layout of GPTQ/AWQ-style int4 checkpoints. Only the
    weights are quantized; the inputs, the bias and the arithmetic stay in float ("weight-only"
    quantization), so the model shrinks but is not faster on a CPU.

    Everything it needs is in its ``state_dict``: ``codes`` (``int8``/``uint8``, or two 4-bit codes per
    ``uint8`` byte when ``num_bits`` :math:`\\le 4`), ``scale`` (float32), ``zero_point`` (``uint8``, only
    when ``symmetric=False``) and ``bias``; so the size of the saved file is the honest size of the layer.
    Build one with :meth:`from_linear`.
    """

    def __init__(self, in_features: int, out_features: int, *, num_bits: int = 8, symmetric: bool = True,
                 axis: int | None = 0, group_size: int | None = None, bias: bool = True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {_describe(value)}")
        self.in_features, self.out_features = in_features, out_features
        self.num_bits = _check_num_bits(num_bits)
        self.symmetric = _check_bool("symmetric", symmetric)
        if axis is not None and (isinstance(axis, bool) or axis not in (0, 1)):
            raise ValueError(f"axis must be None, 0 (per output row) or 1 (per input column), got {axis!r}")
        if group_size is not None:
            if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
                raise ValueError(f"group_size must be a positive int or None, got {_describe(group_size)}")
            if axis != 0:
                raise ValueError(f"group_size needs axis=0 (groups split each output row), got axis={axis!r}")
            if in_features % group_size:
                raise ValueError(f"group_size must divide in_features={in_features}, got {group_size}")
        self.axis, self.group_size = axis, group_size
        self.packed = self.num_bits <= 4
        numel = in_features * out_features
        code_dtype = torch.int8 if self.symmetric else torch.uint8
        codes = (torch.zeros((numel + 1) // 2, dtype=torch.uint8) if self.packed
                 else torch.zeros(out_features, in_features, dtype=code_dtype))
        self.register_buffer("codes", codes)
        self.register_buffer("scale", torch.ones(self._scale_shape()))
        if not self.symmetric:
            self.register_buffer("zero_point", torch.zeros(self._scale_shape(), dtype=torch.uint8))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def _scale_shape(self) -> tuple[int, ...]:
        if self.group_size is not None:
            return self.out_features, self.in_features // self.group_size
        return {None: (), 0: (self.out_features,), 1: (self.in_features,)}[self.axis]

    def _grouped(self, weight: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        """The matrix in the layout whose ``axis`` slices are the groups: ``(out * in/G, G)`` with groups."""
        if self.group_size is None:
            return weight, self.axis
        return weight.reshape(-1, self.group_size), 0

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_bits: int = 8, symmetric: bool = True, axis: int | None = 0,
                    group_size: int | None = None) -> "QuantizedLinear":
        """Quantize the weights of ``linear`` (an ``nn.Linear``) with :func:`quantize_tensor`; copy its bias."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {_describe(linear)}")
        layer = cls(linear.in_features, linear.out_features, num_bits=num_bits, symmetric=symmetric, axis=axis,
                    group_size=group_size, bias=linear.bias is not None)
        layer.to(linear.weight.device)
        weight = linear.weight.detach().float()
        grouped, axis = layer._grouped(weight)
        q = quantize_tensor(grouped, num_bits, symmetric, axis)
        codes = q.codes.reshape(weight.shape)
        with torch.no_grad():
            layer.codes.copy_(pack_int4(codes) if layer.packed else codes)
            layer.scale.copy_(q.scale.reshape(layer._scale_shape()))
            if not symmetric:
                layer.zero_point.copy_(q.zero_point.reshape(layer._scale_shape()).to(torch.uint8))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def weight_codes(self) -> torch.Tensor:
        """The integer codes :math:`Q` as an ``(out_features, in_features)`` matrix (unpacked)."""
        if self.packed:
            codes = unpack_int4(self.codes, self.in_features * self.out_features, signed=self.symmetric)
            return codes.reshape(self.out_features, self.in_features)
        return self.codes

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight matrix :math:`\\hat W` that the codes stand for."""
        grouped, axis = self._grouped(self.weight_codes())
        zero_point = (self.zero_point.to(torch.int64) if not self.symmetric
                      else torch.zeros(self._scale_shape(), dtype=torch.int64))
        q = QuantizedTensor(codes=grouped, scale=self.scale.reshape(-1) if axis is not None else self.scale,
                            zero_point=zero_point.reshape(-1) if axis is not None else zero_point,
                            num_bits=self.num_bits, symmetric=self.symmetric, axis=axis)
        return dequantize(q).reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, num_bits={self.num_bits}, "
                f"symmetric={self.symmetric}, axis={self.axis}, group_size={self.group_size}, "
                f"bias={self.bias is not None}")


def quantize_linear_weights(model: nn.Module, num_bits: int = 8, axis: int | None = 0,
                            group_size: int | None = None, symmetric: bool = True, skip=()) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are :class:`QuantizedLinear` (weight-only quantization).

    Every submodule whose type is exactly ``nn.Linear`` is replaced, except those named in ``skip``
    (module names as in ``model.named_modules()``, e.g. a final classifier kept in float). Subclasses of
    ``nn.Linear`` are left alone: ``nn.MultiheadAttention`` reads its ``out_proj.weight`` directly and
    would break. Convolutions and embeddings stay in float. ``model`` itself is not modified.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    skip = _check_module_names("skip", skip, model)
    model = copy.deepcopy(model)
    targets = [name for name, module in model.named_modules() if type(module) is nn.Linear and name not in skip]
    if not targets:
        raise ValueError("model must contain at least one nn.Linear layer to quantize (outside skip), found none")
    settings = dict(num_bits=num_bits, symmetric=symmetric, axis=axis, group_size=group_size)
    if targets == [""]:                                  # the model is a single nn.Linear
        return QuantizedLinear.from_linear(model, **settings)
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, QuantizedLinear.from_linear(getattr(parent, child), **settings))
    return model


# --------------------------------------------------------------------------------------------------
# whole models: weight-only, dynamic and static post-training quantization
# --------------------------------------------------------------------------------------------------

#: The layer types :func:`quantize_model` quantizes.
QUANTIZABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)

#: How a :class:`QuantizedLayer` treats its input: kept in float, quantized per batch, or with a stored range.
ACTIVATION_MODES = (None, "dynamic", "static")


def _check_activations(activations):
    if activations not in ACTIVATION_MODES:
        raise ValueError(f"activations must be one of {list(ACTIVATION_MODES)}, got {activations!r}")
    return activations


def _check_weight_axis(axis):
    if axis is not None and (isinstance(axis, bool) or axis != 0):
        raise ValueError(f"axis must be 0 (one scale per output channel) or None (one per tensor), got {axis!r}")
    return axis


def quantize_activation(x: torch.Tensor, num_bits: int = 8, input_range: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantize an activation with unsigned affine codes, per tensor (gradient passed straight through).

    With ``input_range`` (a tensor ``[m_-, m_+]``) the scale and zero point are those of that range, and
    values beyond it are clipped (static quantization); without it they come from ``x`` itself, batch by
    batch (dynamic quantization).
    """
    if input_range is None:
        return fake_quantize(x, num_bits, symmetric=False)
    scale, zero_point = choose_qparams(input_range, num_bits, symmetric=False)
    return fake_quantize(x, num_bits, symmetric=False, scale=scale, zero_point=zero_point)


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    return model


def _targets(model: nn.Module, skip) -> list[str]:
    """Names of the layers of ``model`` to quantize: exact ``QUANTIZABLE_TYPES``, not in ``skip``."""
    skip = _check_module_names("skip", skip, model)
    targets = [name for name, module in model.named_modules()
               if type(module) in QUANTIZABLE_TYPES and name not in skip]
    if not targets:
        raise ValueError("model must contain at least one nn.Linear, nn.Conv1d or nn.Conv2d layer to quantize "
                         "(outside skip), found none")
    if targets == [""]:
        raise ValueError("model must contain the layers to quantize, got a bare layer; wrap it in nn.Sequential")
    return targets


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


@torch.no_grad()
def input_ranges(model: nn.Module, batches: Iterable, layers: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Calibration: the smallest and largest input value each layer sees over ``batches``.

    ``batches`` yields tuples ``(*inputs, target)`` as the data loaders do (the target is ignored); the
    model runs on them in eval mode. Returns ``{layer name: tensor([m_-, m_+])}`` for ``layers`` (by default
    every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d``): the min-max observer of static quantization.
    """
    model = _check_model(model)
    layers = _targets(model, ()) if layers is None else list(layers)
    ranges: dict[str, torch.Tensor] = {}

    def observe(name):
        def hook(_module, args):
            low, high = torch.aminmax(args[0].detach().float())
            old = ranges.get(name)
            ranges[name] = (torch.stack([low, high]) if old is None
                            else torch.stack([torch.minimum(old[0], low), torch.maximum(old[1], high)]))
        return hook

    handles = [model.get_submodule(name).register_forward_pre_hook(observe(name)) for name in layers]
    was_training = model.training
    model.eval()
    try:
        count = 0
        for batch in batches:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("batches must yield tuples (*inputs, target) as the data loaders do, "
                                 f"got {_describe(batch)}")
            model(*batch[:-1])
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if count == 0:
        raise ValueError("batches must yield at least one batch, got none")
    return ranges


class QuantizedLayer(nn.Module):
    r"""An ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` with integer weight codes, optionally quantized inputs.

    .. math:: y = \mathrm{op}(\hat x, \hat W) + b, \qquad \hat W_{c\cdots} = s_c\, Q_{c\cdots},
              \qquad \hat x = s_x\big(\mathrm{clip}(\mathrm{round}(x/s_x) + z_x) - z_x\big),

    with ``op`` the layer's linear map or convolution, symmetric weight codes :math:`Q` with one scale per
    output channel :math:`c` (``axis=0``) or one per tensor (``axis=None``), and :math:`\hat x = x` when
    ``activations`` is ``None``. Its ``state_dict`` is the honest artefact: ``codes`` (``int8``, or two
    4-bit codes per byte when ``num_bits`` :math:`\le 4`), ``scale`` (float32), ``bias`` (float32) and, for
    static quantization, ``input_range`` (float32 :math:`[m_-, m_+]`, from which :math:`s_x, z_x` follow
    as in :func:`choose_qparams`).

    Build one from a float layer with :meth:`from_float`; ``QuantizedLayer(layer, ...)`` alone makes an
    empty one of the same shape, ready for ``load_state_dict``.
    """

    def __init__(self, layer: nn.Module, num_bits: int = 8, axis: int | None = 0, activations: str | None = None,
                 activation_bits: int = 8):
        super().__init__()
        if type(layer) not in QUANTIZABLE_TYPES:
            raise TypeError(f"layer must be an nn.Linear, nn.Conv1d or nn.Conv2d, got {_describe(layer)}")
        if isinstance(layer, nn.modules.conv._ConvNd) and layer.padding_mode != "zeros":
            raise ValueError(f"layer must pad with zeros, got padding_mode={layer.padding_mode!r}")
        self.kind = type(layer).__name__
        self.weight_shape = tuple(layer.weight.shape)
        self.conv_args = ({} if self.kind == "Linear" else
                          {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation,
                           "groups": layer.groups})
        self.num_bits = _check_num_bits(num_bits)
        self.axis = _check_weight_axis(axis)
        self.activations = _check_activations(activations)
        self.activation_bits = _check_num_bits(activation_bits)
        self.packed = self.num_bits <= 4
        numel = layer.weight.numel()
        self.register_buffer("codes", torch.zeros((numel + 1) // 2, dtype=torch.uint8) if self.packed
                             else torch.zeros(self.weight_shape, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(self.weight_shape[0] if axis == 0 else ()))
        self.register_buffer("bias", None if layer.bias is None else torch.zeros(self.weight_shape[0]))
        if activations == "static":
            self.register_buffer("input_range", torch.zeros(2))

    @classmethod
    def from_float(cls, layer: nn.Module, num_bits: int = 8, axis: int | None = 0, activations: str | None = None,
                   activation_bits: int = 8, input_range: torch.Tensor | None = None) -> "QuantizedLayer":
        """Quantize the weights of ``layer`` with :func:`quantize_tensor`; copy its bias (and ``input_range``)."""
        quantized = cls(layer, num_bits, axis, activations, activation_bits)
        if (activations == "static") != (input_range is not None):
            raise ValueError("input_range must be given exactly when activations='static', got "
                             f"activations={activations!r} and input_range={_describe(input_range)}")
        q = quantize_tensor(layer.weight.detach().float(), num_bits, symmetric=True, axis=axis)
        with torch.no_grad():
            quantized.codes.copy_(pack_int4(q.codes) if quantized.packed else q.codes)
            quantized.scale.copy_(q.scale)
            if layer.bias is not None:
                quantized.bias.copy_(layer.bias.detach())
            if input_range is not None:
                input_range = torch.as_tensor(input_range, dtype=torch.float32)
                if input_range.shape != (2,) or not bool(input_range[0] <= input_range[1]):
                    raise ValueError(f"input_range must be a tensor [low, high] with low <= high, got {input_range}")
                quantized.input_range.copy_(input_range)
        return quantized.to(layer.weight.device)

    def weight_codes(self) -> torch.Tensor:
        """The integer codes :math:`Q`, shaped like the float weight (unpacked)."""
        if self.packed:
            numel = int(torch.Size(self.weight_shape).numel())
            return unpack_int4(self.codes, numel, signed=True).reshape(self.weight_shape)
        return self.codes

    def dequantized_weight(self) -> torch.Tensor:
        r"""The float32 weight :math:`\hat W` that the codes stand for."""
        return _broadcast(self.scale, self.axis, len(self.weight_shape)) * self.weight_codes().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activations is not None:
            x = quantize_activation(x, self.activation_bits,
                                    self.input_range if self.activations == "static" else None)
        weight = self.dequantized_weight().to(x.dtype)
        if self.kind == "Linear":
            return F.linear(x, weight, self.bias)
        conv = F.conv1d if self.kind == "Conv1d" else F.conv2d
        return conv(x, weight, self.bias, **self.conv_args)

    def extra_repr(self) -> str:
        return (f"{self.kind}{self.weight_shape}, num_bits={self.num_bits}, axis={self.axis}, "
                f"activations={self.activations!r}, activation_bits={self.activation_bits}")


def quantize_model(model: nn.Module, num_bits: int = 8, axis: int | None = 0, activations: str | None = None,
                   activation_bits: int = 8, calibration: Iterable | None = None, skip=()) -> nn.Module:
    """Post-training quantization: a copy of ``model`` whose linear and convolution layers are :class:`QuantizedLayer`.

    The result's ``state_dict`` round-trips through a safetensors file: rebuild it with
    :func:`load_quantized_model` and the same settings.

    Parameters
    ----------
    model : nn.Module
        A trained float model (not modified). Every submodule whose type is exactly ``nn.Linear``,
        ``nn.Conv1d`` or ``nn.Conv2d`` is replaced, except those named in ``skip``; other modules (batch
        normalisation, activations, pooling) stay in float.
    num_bits : int
        Bits of the weight codes, 2 to 8 (symmetric; two codes per byte at 4 bits or fewer).
    axis : 0 or None
        One weight scale per output channel, or one per layer.
    activations : {None, "dynamic", "static"}
        Leave inputs in float (weight-only), quantize them with each batch's range, or with the ranges
        measured on ``calibration`` (:func:`input_ranges`).
    activation_bits : int
        Bits of the input codes (unsigned, affine), 2 to 8.
    calibration : iterable of batches, optional
        Batches ``(*inputs, target)``, as the data loaders yield; required exactly when
        ``activations="static"``.
    skip : collection of str
        Names of layers to keep in float (as in ``model.named_modules()``).

    Returns
    -------
    nn.Module
        The quantized copy, in eval mode.
    """
    model = _check_model(model)
    _check_num_bits(num_bits), _check_num_bits(activation_bits)
    _check_weight_axis(axis), _check_activations(activations)
    targets = _targets(model, skip)
    if (activations == "static") != (calibration is not None):
        raise ValueError("calibration must be given exactly when activations='static', got "
                         f"activations={activations!r} and calibration={_describe(calibration)}")
    ranges = input_ranges(model, calibration, targets) if activations == "static" else {}
    quantized = copy.deepcopy(model)
    for name in targets:
        _replace(quantized, name, QuantizedLayer.from_float(quantized.get_submodule(name), num_bits, axis,
                                                            activations, activation_bits, ranges.get(name)))
    return quantized.eval()


def load_quantized_model(model: nn.Module, state_dict, num_bits: int = 8, axis: int | None = 0,
                         activations: str | None = None, activation_bits: int = 8, skip=()) -> nn.Module:
    """Rebuild a model made by :func:`quantize_model` from its ``state_dict`` (e.g. read from a safetensors file).

    ``model`` is a float model of the same architecture (its weights are not used); the settings must be
    those the quantized model was made with, or ``load_state_dict`` reports the mismatch.
    """
    model = _check_model(model)
    targets = _targets(model, skip)
    skeleton = copy.deepcopy(model)
    for name in targets:
        _replace(skeleton, name, QuantizedLayer(skeleton.get_submodule(name), num_bits, axis, activations,
                                                activation_bits))
    skeleton.load_state_dict(state_dict)
    return skeleton.eval()
