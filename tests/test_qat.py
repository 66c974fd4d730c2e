"""Quantization-aware training: fake-quantized layers, straight-through gradients, learned ranges, conversion.

References: ``torch.ao.quantization.FakeQuantize`` with a ``MovingAverageMinMaxObserver`` (the range it tracks while
training) and ``torch.fake_quantize_per_channel_affine`` (the weights' values and gradients).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.ao.quantization.observer import MovingAverageMinMaxObserver

from mmtutor.compress.qat import FakeQuantLayer, convert_qat, prepare_qat
from mmtutor.compress.quantize import QuantizedLayer, choose_qparams, quantize_model

pytestmark = pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8, 16), nn.ReLU(),
                         nn.Linear(16, 3))


def batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(12, 2, 8, generator=g), torch.randint(0, 3, (12,), generator=g)) for _ in range(n)]


def test_moving_average_range_equals_pytorch_observer():
    layer = FakeQuantLayer(nn.Linear(5, 2), activations="static", momentum=0.01)
    observer = MovingAverageMinMaxObserver(averaging_constant=0.01, dtype=torch.quint8)
    g = torch.Generator().manual_seed(0)
    for step in range(20):
        x = torch.randn(7, 5, generator=g) * (1 + step / 10)
        layer(x)
        observer(x)
    assert torch.allclose(layer.input_range, torch.stack([observer.min_val, observer.max_val]), atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(num_bits=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_weight_gradient_is_straight_through_as_in_pytorch(num_bits, seed):
    torch.manual_seed(seed)
    layer = nn.Linear(6, 4)
    fq = FakeQuantLayer(layer, num_bits, axis=0, activations=None)
    x = torch.randn(9, 6)
    fq(x).pow(2).sum().backward()
    ours = layer.weight.grad.clone()
    layer.weight.grad = None
    qmin, qmax = -(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1
    scale, zero_point = choose_qparams(layer.weight.detach(), num_bits, True, axis=0)
    weight = torch.fake_quantize_per_channel_affine(layer.weight, scale, zero_point.int(), 0, qmin, qmax)
    nn.functional.linear(x, weight, layer.bias).pow(2).sum().backward()
    assert torch.allclose(ours, layer.weight.grad, atol=1e-5)


def test_conversion_computes_exactly_what_the_qat_model_computes():
    model = prepare_qat(small_model(), num_bits=4, activation_bits=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for x, y in batches():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    converted = convert_qat(model)
    assert [type(m) for m in converted] == [QuantizedLayer, nn.ReLU, nn.Flatten, QuantizedLayer, nn.ReLU,
                                            QuantizedLayer]
    x = batches(1, seed=5)[0][0]
    assert torch.allclose(converted(x), model(x), atol=1e-6)
    assert converted[0].num_bits == 4 and converted[0].activation_bits == 4


def test_calibrated_qat_model_before_training_is_the_static_ptq_model():
    model, data = small_model().eval(), batches()
    prepared = prepare_qat(model, num_bits=4, activation_bits=6, calibration=data).eval()
    ptq = quantize_model(model, num_bits=4, activations="static", activation_bits=6, calibration=data)
    x = batches(1, seed=3)[0][0]
    assert torch.allclose(prepared(x), ptq(x), atol=1e-6)


def test_qat_recovers_accuracy_that_coarse_post_training_quantization_loses():
    """A toy task where 2-bit PTQ hurts: a few steps of QAT bring the loss back down."""
    torch.manual_seed(0)
    x = torch.randn(256, 2, 8)
    y = (x[:, 0].sum(1) > x[:, 1].sum(1)).long() + (x[:, 0, 0] > 1).long()
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    data = [(x, y)]
    loss = lambda m: float(nn.functional.cross_entropy(m(x), y).detach())
    ptq = quantize_model(model, num_bits=2, activations="static", activation_bits=3, calibration=data)
    qat = prepare_qat(model, num_bits=2, activation_bits=3, calibration=data)
    optimizer = torch.optim.Adam(qat.parameters(), lr=2e-3)
    qat.train()
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(qat(x), y).backward()
        optimizer.step()
    converted = convert_qat(qat.eval())
    assert loss(converted) < 0.8 * loss(ptq)
    assert loss(model) < loss(ptq)


def test_bad_qat_arguments():
    with pytest.raises(TypeError, match="layer"):
        FakeQuantLayer(nn.ReLU())
    with pytest.raises(ValueError, match="activations"):
        FakeQuantLayer(nn.Linear(2, 2), activations="dynamic")
    with pytest.raises(ValueError, match="momentum"):
        FakeQuantLayer(nn.Linear(2, 2), momentum=0.0)
    with pytest.raises(ValueError, match="num_bits"):
        prepare_qat(small_model(), num_bits=1)
    with pytest.raises(ValueError, match="axis"):
        prepare_qat(small_model(), axis=2)
    with pytest.raises(ValueError, match="FakeQuantLayer"):
        convert_qat(small_model())
    with pytest.raises(TypeError, match="model"):
        prepare_qat([nn.Linear(2, 2)])
    untrained = prepare_qat(small_model())
    with pytest.raises(ValueError, match="observed"):
        convert_qat(untrained)
    with pytest.raises(RuntimeError, match="input_range"):
        untrained.eval()(batches(1)[0][0])
