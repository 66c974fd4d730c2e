"""Affine quantization, fake quantization and int4/int8 weight-only layers, checked against PyTorch's own kernels.

References: ``torch.ao.quantization.observer.MinMaxObserver`` / ``PerChannelMinMaxObserver`` (choice of scale and
zero point), ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` (codes) and
``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine`` (values and straight-through gradients).
"""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from mmtutor.compress.quantize import (QuantizedLayer, QuantizedLinear, QuantizedTensor, choose_qparams, dequantize,
                                       fake_quantize, input_ranges, integer_linear, load_quantized_model, pack_int4,
                                       qrange, quantize_linear_weights, quantize_model, quantize_tensor, unpack_int4)
from mmtutor.evaluate import model_size_bytes

# PyTorch's quantized-tensor creation functions and torch.ao.quantization announce their deprecation (in favour
# of torchao); as references they still compute what they always did.
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"),
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
]

FAST = settings(max_examples=40, deadline=None)


@st.composite
def tensors(draw, min_dims=1, max_dims=3):
    """Random float32 tensors: a few dimensions, any sign, a random spread and offset, sometimes all >= 0."""
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=min_dims, max_size=max_dims)))
    seed = draw(st.integers(0, 2**16))
    spread = draw(st.sampled_from([1e-3, 0.1, 1.0, 30.0]))
    offset = draw(st.sampled_from([0.0, 0.5, -2.0]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * spread + offset * spread
    if draw(st.booleans()):
        x = x.abs()                                   # like ReLU outputs: the range does not straddle 0
    return x


def observer(num_bits, symmetric, axis):
    """PyTorch's min-max observer for the same scheme and code range as ours."""
    qmin, qmax = qrange(num_bits, symmetric)
    dtype = torch.qint8 if symmetric else torch.quint8
    if axis is None:
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
        return MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
    scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    return PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)


def ties(x, q):
    """Where x / s lies within 1e-4 of a half-integer: the only places where two correct roundings may differ."""
    product = x * (1 / q.scale if q.axis is None else (1 / q.scale).reshape([-1 if d == q.axis else 1
                                                                               for d in range(x.ndim)]))
    return (product - torch.floor(product) - 0.5).abs() < 1e-4


# --------------------------------------------------------------------------------------------------
# scale and zero point
# --------------------------------------------------------------------------------------------------

@FAST
@given(x=tensors(), num_bits=st.integers(2, 8), symmetric=st.booleans(), data=st.data())
def test_qparams_equal_pytorch_minmax_observers(x, num_bits, symmetric, data):
    axis = data.draw(st.none() | st.integers(0, x.ndim - 1))
    scale, zero_point = choose_qparams(x, num_bits, symmetric, axis)
    obs = observer(num_bits, symmetric, axis)
    obs(x if axis is None or x.ndim > 1 else x[:, None])     # PyTorch's per-channel observer needs 2-D
    ref_scale, ref_zero_point = obs.calculate_qparams()
    assert torch.equal(scale.reshape(-1), ref_scale)
    assert torch.equal(zero_point.reshape(-1), ref_zero_point.to(torch.int64))
    assert scale.shape == (() if axis is None else (x.shape[axis],)) and scale.dtype == torch.float32


def test_qparams_of_known_tensors():
    # symmetric int8: s = max|x| / 127.5, z = 0
    scale, zero_point = choose_qparams(torch.tensor([-2.55, 1.0, 0.3]), 8, True)
    assert float(scale) == pytest.approx(2.55 / 127.5) and int(zero_point) == 0
    # affine uint8 of [0, 2.55]: s = 2.55 / 255 = 0.01, z = 0; of [-1, 3]: s = 4/255, z = -round(-63.75) = 64
    scale, zero_point = choose_qparams(torch.tensor([0.0, 2.55]), 8, False)
    assert float(scale) == pytest.approx(0.01) and int(zero_point) == 0
    scale, zero_point = choose_qparams(torch.tensor([-1.0, 3.0]), 8, False)
    assert float(scale) == pytest.approx(4 / 255) and int(zero_point) == 64
    # an all-zero tensor still gets a valid (tiny) scale, and comes back exactly
    q = quantize_tensor(torch.zeros(4), 4, False)
    assert float(q.scale) == torch.finfo(torch.float32).eps and torch.equal(dequantize(q), torch.zeros(4))


@pytest.mark.parametrize("num_bits,symmetric,expected", [(8, True, (-128, 127)), (8, False, (0, 255)),
                                                         (4, True, (-8, 7)), (4, False, (0, 15)),
                                                         (2, True, (-2, 1)), (3, False, (0, 7))])
def test_qrange(num_bits, symmetric, expected):
    assert qrange(num_bits, symmetric) == expected


# --------------------------------------------------------------------------------------------------
# codes against torch.quantize_per_tensor / per_channel
# --------------------------------------------------------------------------------------------------

@FAST
@given(x=tensors(min_dims=2), symmetric=st.booleans(), data=st.data())
def test_int8_codes_equal_pytorch_quantize(x, symmetric, data):
    axis = data.draw(st.none() | st.integers(0, x.ndim - 1))
    q = quantize_tensor(x, 8, symmetric, axis)
    dtype = torch.qint8 if symmetric else torch.quint8
    if axis is None:
        ref = torch.quantize_per_tensor(x, float(q.scale), int(q.zero_point), dtype)
    else:
        ref = torch.quantize_per_channel(x, q.scale.double(), q.zero_point, axis, dtype)
    assert q.codes.dtype == ref.int_repr().dtype
    different = q.codes.int() != ref.int_repr().int()
    # Symmetric: identical. Affine: PyTorch rounds x/s + z in one fused multiply-add, which may differ by
    # one code, only on a rounding tie.
    assert not different.any() if symmetric else bool((~different | ties(x, q)).all())
    assert ((q.codes.int() - ref.int_repr().int()).abs() <= 1).all()
    assert torch.allclose(dequantize(q), ref.dequantize(), rtol=0, atol=float(q.scale.max()) * 1.0001)
    if not different.any():
        assert torch.equal(dequantize(q), ref.dequantize())


def test_affine_codes_differ_from_pytorch_only_on_rare_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1000, generator=g) * 3 + 1
    for axis in (None, 0):
        q = quantize_tensor(x, 8, False, axis)
        ref = (torch.quantize_per_tensor(x, float(q.scale), int(q.zero_point), torch.quint8) if axis is None
               else torch.quantize_per_channel(x, q.scale.double(), q.zero_point, axis, torch.quint8))
        different = q.codes.int() != ref.int_repr().int()
        assert different.float().mean() < 1e-4 and bool(ties(x, q)[different].all())


def test_symmetric_int8_codes_of_a_known_tensor():
    x = torch.tensor([-2.55, -1.0, 0.0, 0.004, 0.006, 2.0])
    q = quantize_tensor(x, 8, True)        # s = 0.02: codes round(x / 0.02), the -127.5 tie to even -128
    assert q.codes.tolist() == [-128, -50, 0, 0, 0, 100]
    assert q.codes.dtype == torch.int8 and q.zero_point.dtype == torch.int64
    assert torch.allclose(dequantize(q), torch.tensor([-2.56, -1.0, 0.0, 0.0, 0.0, 2.0]))


# --------------------------------------------------------------------------------------------------
# the error bound
# --------------------------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(x=tensors(), num_bits=st.integers(2, 8), symmetric=st.booleans(), data=st.data())
def test_error_is_at_most_half_a_step_inside_the_range(x, num_bits, symmetric, data):
    axis = data.draw(st.none() | st.integers(0, x.ndim - 1))
    q = quantize_tensor(x, num_bits, symmetric, axis)
    error = (dequantize(q) - x).abs()
    half_step = q.scale / 2 if axis is None else (q.scale / 2).reshape([-1 if d == axis else 1 for d in range(x.ndim)])
    # float32 arithmetic adds a few units in the last place of the largest value
    slack = 4 * torch.finfo(torch.float32).eps * x.abs().max()
    assert bool((error <= half_step + slack).all())
    assert q.codes.min() >= q.qmin and q.codes.max() <= q.qmax
    assert torch.equal(dequantize(quantize_tensor(torch.zeros(3), num_bits, symmetric)), torch.zeros(3))


@FAST
@given(x=tensors(min_dims=1, max_dims=1), num_bits=st.integers(2, 8), symmetric=st.booleans(),
       shrink=st.floats(0.1, 0.9))
def test_values_beyond_the_range_are_clipped(x, num_bits, symmetric, shrink):
    """With a scale too small for the data, the values inside the grid keep the bound; the others are clipped."""
    scale, zero_point = choose_qparams(x, num_bits, symmetric)
    scale = scale * shrink
    q = quantize_tensor(x, num_bits, symmetric, scale=scale, zero_point=zero_point)
    low, high = float(scale * (q.qmin - zero_point)), float(scale * (q.qmax - zero_point))
    x_hat = dequantize(q)
    inside = (x >= low) & (x <= high)
    slack = 4 * torch.finfo(torch.float32).eps * float(x.abs().max())
    assert bool(((x_hat - x).abs()[inside] <= scale / 2 + slack).all())
    assert torch.allclose(x_hat[x > high], torch.tensor(high)) and torch.allclose(x_hat[x < low], torch.tensor(low))


def test_one_outlier_costs_every_other_value_precision():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g)
    with_outlier = torch.cat([x, torch.tensor([100.0])])
    error = (dequantize(quantize_tensor(x)) - x).abs().mean()
    error_with_outlier = (dequantize(quantize_tensor(with_outlier))[:-1] - x).abs().mean()
    assert error_with_outlier > 10 * error       # the step grew from ~max|x|/127.5 to 100/127.5


# --------------------------------------------------------------------------------------------------
# fake quantization
# --------------------------------------------------------------------------------------------------

@FAST
@given(x=tensors(min_dims=2), num_bits=st.integers(2, 8), symmetric=st.booleans(), shrink=st.floats(0.3, 1.0),
       data=st.data())
def test_fake_quantize_equals_pytorch_values_and_gradients(x, num_bits, symmetric, shrink, data):
    axis = data.draw(st.none() | st.integers(0, x.ndim - 1))
    qmin, qmax = qrange(num_bits, symmetric)
    scale, zero_point = choose_qparams(x, num_bits, symmetric, axis)
    scale = scale * shrink                                    # some values get clipped: their gradient is 0
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ours_x = x.clone().requires_grad_(True)
    ours = fake_quantize(ours_x, num_bits, symmetric, axis, scale=scale, zero_point=zero_point)
    (ours * upstream).sum().backward()
    ref_x = x.clone().requires_grad_(True)
    if axis is None:
        ref = torch.fake_quantize_per_tensor_affine(ref_x, float(scale), int(zero_point), qmin, qmax)
    else:
        ref = torch.fake_quantize_per_channel_affine(ref_x, scale, zero_point.int(), axis, qmin, qmax)
    (ref * upstream).sum().backward()
    assert torch.equal(ours.detach(), ref.detach())
    assert torch.equal(ours_x.grad, ref_x.grad)
    assert torch.equal(ours.detach(), dequantize(quantize_tensor(x, num_bits, symmetric, axis, scale, zero_point)))


def test_fake_quantize_passes_the_gradient_straight_through():
    x = torch.tensor([-1.0, -0.3, 0.2, 0.7, 5.0], requires_grad=True)
    y = fake_quantize(x, 4, True, scale=0.1)                 # the grid reaches -0.8 ... 0.7
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.allclose(y.detach(), torch.tensor([-0.8, -0.3, 0.2, 0.7, 0.7]))


def test_quantization_aware_training_step_moves_weights_through_fake_quant():
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    x, target = torch.randn(32, 6), torch.randn(32, 3)
    before = layer.weight.detach().clone()
    loss = nn.functional.mse_loss(nn.functional.linear(x, fake_quantize(layer.weight, 4, axis=0), layer.bias), target)
    loss.backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():                                    # one step of gradient descent on the float weights
        layer.weight -= 0.1 * layer.weight.grad
    assert not torch.equal(layer.weight.detach(), before)
    # the float weights moved; their quantized image is what the deployed int4 model will hold
    assert torch.equal(fake_quantize(layer.weight.detach(), 4, axis=0),
                      dequantize(quantize_tensor(layer.weight.detach(), 4, axis=0)))


# --------------------------------------------------------------------------------------------------
# packing two 4-bit codes per byte
# --------------------------------------------------------------------------------------------------

@FAST
@given(n=st.integers(0, 101), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_pack_unpack_int4_round_trip(n, signed, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-8 if signed else 0, 8 if signed else 16, (n,), generator=g,
                          dtype=torch.int8 if signed else torch.uint8)
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n / 2)
    assert torch.equal(unpack_int4(packed, n, signed=signed), codes)


def test_pack_int4_layout():
    # element 0 in the low nibble, element 1 in the high one; -1 is 0b1111 in two's complement
    assert pack_int4(torch.tensor([1, -1], dtype=torch.int8)).tolist() == [0xF1]
    assert pack_int4(torch.tensor([[3, 10], [15, 0]], dtype=torch.uint8)).tolist() == [0xA3, 0x0F]
    assert pack_int4(torch.tensor([7, -8, 5], dtype=torch.int8)).tolist() == [0x87, 0x05]


# --------------------------------------------------------------------------------------------------
# weight-only quantized linear layers
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis,group_size", [(None, None), (0, None), (1, None), (0, 4)])
def test_quantized_linear_rebuilds_the_quantized_weight(num_bits, symmetric, axis, group_size):
    torch.manual_seed(0)
    linear = nn.Linear(12, 5)
    layer = QuantizedLinear.from_linear(linear, num_bits, symmetric, axis, group_size)
    weight = linear.weight.detach()
    if group_size is None:
        expected = dequantize(quantize_tensor(weight, num_bits, symmetric, axis))
    else:   # each run of 4 inputs of each row quantized on its own
        expected = torch.cat([dequantize(quantize_tensor(weight[:, j:j + 4], num_bits, symmetric, axis=0))
                              for j in range(0, 12, 4)], dim=1)
    assert torch.equal(layer.dequantized_weight(), expected)
    x = torch.randn(7, 12)
    assert torch.allclose(layer(x), nn.functional.linear(x, expected, linear.bias), atol=1e-6)
    stored = layer.codes.numel() * layer.codes.element_size()
    assert stored == (math.ceil(12 * 5 / 2) if num_bits <= 4 else 12 * 5)


def test_int8_layer_codes_equal_pytorch_per_channel_quantization():
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    layer = QuantizedLinear.from_linear(linear, 8, symmetric=True, axis=0)
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    obs(linear.weight.detach())
    scale, zero_point = obs.calculate_qparams()
    ref = torch.quantize_per_channel(linear.weight.detach(), scale, zero_point, 0, torch.qint8)
    assert torch.equal(layer.weight_codes(), ref.int_repr())
    assert torch.equal(layer.dequantized_weight(), ref.dequantize())


def test_quantized_model_round_trips_through_a_safetensors_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    quantized = quantize_linear_weights(model, num_bits=4, group_size=8)
    save_file(quantized.state_dict(), tmp_path / "int4.safetensors")
    fresh = nn.Sequential(QuantizedLinear(16, 32, num_bits=4, group_size=8), nn.ReLU(),
                          QuantizedLinear(32, 4, num_bits=4, group_size=8))
    fresh.load_state_dict(load_file(tmp_path / "int4.safetensors"))
    x = torch.randn(5, 16)
    assert torch.equal(fresh(x), quantized(x))
    assert model_size_bytes(tmp_path / "int4.safetensors") == model_size_bytes(quantized)


def test_quantize_linear_weights_replaces_plain_linears_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    attention = nn.MultiheadAttention(8, 2, batch_first=True)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_linear_weights(model, num_bits=8, skip=["2"])
    assert isinstance(quantized[0], QuantizedLinear) and type(quantized[2]) is nn.Linear
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())     # input untouched
    x = torch.randn(4, 8)
    assert torch.allclose(quantized(x), model(x), atol=0.05)
    # nn.MultiheadAttention's out_proj is a subclass of nn.Linear that it reads directly: left alone
    with pytest.raises(ValueError, match="nn.Linear"):
        quantize_linear_weights(attention)
    assert isinstance(quantize_linear_weights(nn.Linear(4, 3), num_bits=4), QuantizedLinear)


def test_quantized_models_are_about_four_and_eight_times_smaller():
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    fp32 = model_size_bytes(model)
    int8 = model_size_bytes(quantize_linear_weights(model, num_bits=8))
    int4 = model_size_bytes(quantize_linear_weights(model, num_bits=4))
    assert 3.8 < fp32 / int8 < 4.0 and 7.2 < fp32 / int4 < 8.0


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_bits,error", [(1, ValueError), (9, ValueError), (8.0, TypeError), (True, TypeError)])
def test_num_bits_outside_2_to_8(num_bits, error):
    with pytest.raises(error, match="num_bits"):
        quantize_tensor(torch.ones(3), num_bits)
    with pytest.raises(error, match="num_bits"):
        fake_quantize(torch.ones(3), num_bits)
    with pytest.raises(error, match="num_bits"):
        quantize_linear_weights(nn.Linear(2, 2), num_bits)


@pytest.mark.parametrize("x,error", [([1.0, 2.0], TypeError), (np.ones(3), TypeError),
                                     (torch.tensor([1, 2]), TypeError), (torch.tensor([]), ValueError),
                                     (torch.tensor([1.0, float("nan")]), ValueError),
                                     (torch.tensor([float("inf")]), ValueError)])
def test_bad_tensors(x, error):
    with pytest.raises(error, match="x must"):
        quantize_tensor(x)
    with pytest.raises(error, match="x must"):
        choose_qparams(x)


def test_bad_axis_scale_and_zero_point():
    x = torch.randn(3, 4)
    for axis in (2, -3):
        with pytest.raises(ValueError, match="axis"):
            quantize_tensor(x, axis=axis)
    with pytest.raises(TypeError, match="axis"):
        quantize_tensor(x, axis=1.0)
    with pytest.raises(ValueError, match="scale"):
        quantize_tensor(x, scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        quantize_tensor(x, axis=0, scale=torch.ones(4))
    with pytest.raises(ValueError, match="zero_point"):
        quantize_tensor(x, symmetric=False, scale=0.1)               # affine needs its zero point
    with pytest.raises(ValueError, match="zero_point"):
        quantize_tensor(x, symmetric=False, scale=0.1, zero_point=256)
    with pytest.raises(ValueError, match="zero_point"):
        quantize_tensor(x, symmetric=True, scale=0.1, zero_point=3)
    with pytest.raises(ValueError, match="zero_point"):
        quantize_tensor(x, zero_point=0)                             # without a scale there is nothing to pair
    with pytest.raises(TypeError, match="symmetric"):
        quantize_tensor(x, symmetric="yes")
    with pytest.raises(TypeError, match="q must"):
        dequantize(x)


def test_bad_packing_and_layers():
    with pytest.raises(ValueError, match="codes"):
        pack_int4(torch.tensor([-1, 9]))
    with pytest.raises(ValueError, match="codes"):
        pack_int4(torch.tensor([16]))
    with pytest.raises(TypeError, match="codes"):
        pack_int4(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="numel"):
        unpack_int4(torch.zeros(2, dtype=torch.uint8), 7)
    with pytest.raises(TypeError, match="packed"):
        unpack_int4(torch.zeros(2, dtype=torch.int8), 4)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedLinear(10, 2, group_size=4)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedLinear(8, 2, axis=None, group_size=4)
    with pytest.raises(ValueError, match="axis"):
        QuantizedLinear(8, 2, axis=2)
    with pytest.raises(TypeError, match="linear"):
        QuantizedLinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(TypeError, match="model"):
        quantize_linear_weights("model")
    with pytest.raises(ValueError, match="skip"):
        quantize_linear_weights(nn.Sequential(nn.Linear(2, 2)), skip=["nope"])
    with pytest.raises(ValueError, match="nn.Linear"):
        quantize_linear_weights(nn.Sequential(nn.Conv1d(2, 2, 1)))


def test_quantized_tensor_is_a_frozen_record():
    q = quantize_tensor(torch.randn(4, 3), 6, False, axis=1)
    assert isinstance(q, QuantizedTensor) and q.shape == (4, 3) and (q.qmin, q.qmax) == (0, 63)
    with pytest.raises(AttributeError):
        q.num_bits = 8


# --------------------------------------------------------------------------------------------------
# integer arithmetic
# --------------------------------------------------------------------------------------------------

@FAST
@given(n=st.integers(1, 6), k=st.integers(1, 40), m=st.integers(1, 9), axis=st.sampled_from([None, 0]),
       seed=st.integers(0, 2**16))
def test_integer_linear_equals_the_float_computation(n, k, m, axis, seed):
    g = torch.Generator().manual_seed(seed)
    x, weight, bias = torch.randn(n, k, generator=g) + 0.3, torch.randn(m, k, generator=g), torch.randn(m, generator=g)
    qx, qw = quantize_tensor(x, 8, symmetric=False), quantize_tensor(weight, 8, symmetric=True, axis=axis)
    expected = nn.functional.linear(dequantize(qx), dequantize(qw), bias)
    assert torch.allclose(integer_linear(qx, qw, bias), expected, rtol=1e-5, atol=1e-5)


def test_integer_linear_rejects_what_an_int8_kernel_cannot_do():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="x must be quantized per tensor"):
        integer_linear(quantize_tensor(x, axis=0), quantize_tensor(w))
    with pytest.raises(ValueError, match="weight must be quantized symmetrically"):
        integer_linear(quantize_tensor(x), quantize_tensor(w, symmetric=False))
    with pytest.raises(ValueError, match="x must have 4 features"):
        integer_linear(quantize_tensor(torch.randn(3, 2)), quantize_tensor(w))
    with pytest.raises(TypeError, match="weight must be a 2-D QuantizedTensor"):
        integer_linear(quantize_tensor(x), w)


# --------------------------------------------------------------------------------------------------
# layers and models: weight-only, dynamic and static post-training quantization
# --------------------------------------------------------------------------------------------------

LAYERS = {"Linear": (lambda: nn.Linear(20, 7), (16, 20)),
          "Conv1d": (lambda: nn.Conv1d(6, 5, 3, padding=1, stride=2), (4, 6, 11)),
          "Conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6))}


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("activation_bits", [7, 8])
def test_static_layer_agrees_with_pytorch_int8_kernels(kind, activation_bits):
    """``torch.ao.nn.quantized`` runs the integer kernel and rounds its output to an output grid: within half a step."""
    import torch.ao.nn.quantized as nnq

    torch.manual_seed(0)
    make, shape = LAYERS[kind]
    layer = make()
    x = torch.randn(shape).abs() * 2 - 0.5
    x_range = torch.stack(torch.aminmax(x))
    ours = QuantizedLayer.from_float(layer, 8, 0, "static", activation_bits, x_range)
    y = ours(x)
    reference = {"Linear": lambda: nnq.Linear(20, 7), "Conv1d": lambda: nnq.Conv1d(6, 5, 3, padding=1, stride=2),
                 "Conv2d": lambda: nnq.Conv2d(3, 4, 3, padding=1)}[kind]()
    weight = torch._make_per_channel_quantized_tensor(ours.weight_codes(), ours.scale.double(),
                                                      torch.zeros(len(ours.scale), dtype=torch.int64), 0)
    reference.set_weight_bias(weight, layer.bias.detach())
    out_scale, out_zero_point = choose_qparams(y, 8, symmetric=False)
    reference.scale, reference.zero_point = float(out_scale), int(out_zero_point)
    in_scale, in_zero_point = choose_qparams(x_range, activation_bits, symmetric=False)
    y_ref = reference(torch.quantize_per_tensor(x, float(in_scale), int(in_zero_point), torch.quint8)).dequantize()
    assert float((y - y_ref).abs().max()) <= float(out_scale) / 2 * 1.001 + 1e-6


def test_dynamic_layer_equals_pytorch_dynamic_linear_with_reduced_range():
    """On x86, ``quantize_dynamic`` gives activations 7 bits (``reduce_range``): with 7 bits we match it exactly."""
    torch.manual_seed(0)
    torch.backends.quantized.engine = "x86"
    linear, x = nn.Linear(20, 7), torch.randn(16, 20)
    reference = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)[0]
    ours = QuantizedLayer.from_float(linear, 8, axis=None, activations="dynamic", activation_bits=7)
    assert torch.allclose(ours(x), reference(x), atol=1e-5)
    assert torch.equal(ours.weight_codes(), reference.weight().int_repr())


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("num_bits", [3, 4, 8])
@pytest.mark.parametrize("axis", [0, None])
def test_weight_only_layer_uses_the_quantized_weight(kind, num_bits, axis):
    torch.manual_seed(0)
    make, shape = LAYERS[kind]
    layer = make()
    ours = QuantizedLayer.from_float(layer, num_bits, axis)
    expected_weight = dequantize(quantize_tensor(layer.weight.detach(), num_bits, True, axis))
    assert torch.equal(ours.dequantized_weight(), expected_weight)
    x = torch.randn(shape)
    with torch.no_grad():
        reference = copy.deepcopy(layer)
        reference.weight.copy_(expected_weight)
        assert torch.allclose(ours(x), reference(x), atol=1e-6)
    codes_bytes = ours.codes.numel() * ours.codes.element_size()
    assert codes_bytes == (math.ceil(layer.weight.numel() / 2) if num_bits <= 4 else layer.weight.numel())


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 64), nn.ReLU(),
                         nn.Linear(64, 3)).eval()


def batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(10, 1, 6, 6, generator=g), torch.zeros(10, dtype=torch.int64)) for _ in range(n)]


def test_input_ranges_are_the_min_and_max_over_the_calibration_batches():
    model = small_model()
    data = batches()
    ranges = input_ranges(model, data)
    assert list(ranges) == ["0", "3", "5"]
    inputs = torch.cat([x for x, _ in data])
    assert torch.equal(ranges["0"], torch.stack([inputs.min(), inputs.max()]))
    hidden = model[:3](inputs)
    assert torch.allclose(ranges["3"], torch.stack([hidden.min(), hidden.max()]))


@pytest.mark.parametrize("activations", [None, "dynamic", "static"])
def test_quantized_model_round_trips_and_is_four_times_smaller(activations, tmp_path):
    model = small_model()
    data = batches()
    quantized = quantize_model(model, activations=activations,
                               calibration=data if activations == "static" else None)
    assert [type(m).__name__ for m in quantized] == ["QuantizedLayer", "ReLU", "Flatten", "QuantizedLayer", "ReLU",
                                                     "QuantizedLayer"]
    assert type(model[0]) is nn.Conv2d                                   # the input model is untouched
    save_file(quantized.state_dict(), tmp_path / "int8.safetensors")
    fresh = load_quantized_model(small_model(), load_file(tmp_path / "int8.safetensors"), activations=activations)
    x = data[0][0]
    assert torch.equal(fresh(x), quantized(x))
    assert model_size_bytes(tmp_path / "int8.safetensors") == model_size_bytes(quantized)
    assert 3.5 < model_size_bytes(model) / model_size_bytes(quantized) < 4.0
    agreement = (quantized(x).argmax(1) == model(x).argmax(1)).float().mean()
    assert torch.allclose(quantized(x), model(x), atol=0.05) and agreement == 1


def test_static_quantization_clips_inputs_beyond_the_calibrated_range():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0]]))
    quantized = QuantizedLayer.from_float(layer, 8, 0, "static", 8, torch.tensor([0.0, 1.0]))
    y = quantized(torch.tensor([[0.5, 0.0], [3.0, 0.0], [-2.0, 0.0]]))
    assert torch.allclose(y.squeeze(1), torch.tensor([0.5, 1.0, 0.0]), atol=1 / 255)


def test_loading_with_other_settings_fails_loudly():
    quantized = quantize_model(small_model(), activations="static", calibration=batches())
    with pytest.raises(RuntimeError, match="input_range"):
        load_quantized_model(small_model(), quantized.state_dict(), activations=None)
    with pytest.raises(RuntimeError, match="codes"):
        load_quantized_model(small_model(), quantized.state_dict(), num_bits=4, activations="static")


def test_bad_model_quantization_arguments():
    model = small_model()
    with pytest.raises(ValueError, match="activations"):
        quantize_model(model, activations="int8")
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, activations="static")
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, calibration=batches())
    with pytest.raises(ValueError, match="axis"):
        quantize_model(model, axis=1)
    with pytest.raises(ValueError, match="num_bits"):
        quantize_model(model, num_bits=9)
    with pytest.raises(ValueError, match="num_bits"):
        quantize_model(model, activation_bits=1)
    with pytest.raises(TypeError, match="model"):
        quantize_model("model")
    with pytest.raises(ValueError, match="skip"):
        quantize_model(model, skip=["classifier"])
    with pytest.raises(ValueError, match="at least one"):
        quantize_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="batches"):
        input_ranges(model, [])
    with pytest.raises(ValueError, match="batches"):
        input_ranges(model, [torch.ones(2, 1, 6, 6)])
    with pytest.raises(TypeError, match="layer"):
        QuantizedLayer(nn.ReLU())
    with pytest.raises(ValueError, match="input_range"):
        QuantizedLayer.from_float(nn.Linear(2, 2), activations="static")
    with pytest.raises(ValueError, match="input_range"):
        QuantizedLayer.from_float(nn.Linear(2, 2), activations="static", input_range=torch.tensor([1.0, 0.0]))
