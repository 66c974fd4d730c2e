"""Tests of mmtutor.compress.outliers against PyTorch's own int8 layers and direct computations."""

import copy
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmtutor.compress.outliers import (Int8DynamicLinear, QuantizedEmbedding, has_vnni, load_int8,
                                       outlier_channels, quantize_int8_dynamic, record_input_absmax, save_int8,
                                       smoothing_factors)


class Tiny(nn.Module):
    """An embedding, a LayerNorm and two linear layers: the parts of a transformer the module touches."""

    def __init__(self, vocab=50, dim=16, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, ids):
        h = self.norm(self.embed(ids))
        return self.down(torch.relu(self.up(h)))


def _tiny(seed=0):
    torch.manual_seed(seed)
    return Tiny().eval()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.0, 1.0))
def test_smoothing_is_an_exact_identity(seed, alpha):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 12, generator=g, dtype=torch.float64)
    x[:, 3] *= 40                                            # an outlier channel
    w = torch.randn(7, 12, generator=g, dtype=torch.float64)
    s = smoothing_factors(x.abs().amax(0).float(), w.float(), alpha).double()
    torch.testing.assert_close((x / s) @ (w * s).T, x @ w.T)
    expected = x.abs().amax(0) ** alpha / w.abs().amax(0) ** (1 - alpha)
    torch.testing.assert_close(s, expected.float().clamp(min=1e-5).double(), rtol=1e-5, atol=0)


def test_smoothing_balances_the_ranges_at_alpha_one_half():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(30, 8, generator=g) * torch.linspace(1, 50, 8), torch.randn(5, 8, generator=g)
    s = smoothing_factors(x.abs().amax(0), w, 0.5)
    torch.testing.assert_close((x / s).abs().amax(0), (w * s).abs().amax(0), rtol=1e-5, atol=1e-6)


def test_dead_channel_gets_unit_factor():
    s = smoothing_factors(torch.tensor([0.0, 2.0]), torch.ones(3, 2))
    assert s[0] == 1.0 and s[1] == pytest.approx(2 ** 0.5)


def test_record_input_absmax_matches_direct_computation():
    model = _tiny()
    ids = [torch.randint(0, 50, (3, 5), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    absmax = record_input_absmax(model, lambda: [model(i) for i in ids])
    with torch.no_grad():
        hidden = torch.cat([model.norm(model.embed(i)).reshape(-1, 16) for i in ids])
        inner = torch.relu(model.up(hidden))
    torch.testing.assert_close(absmax["up"], hidden.abs().amax(0))
    torch.testing.assert_close(absmax["down"], inner.abs().amax(0))
    assert not model.up._forward_pre_hooks                  # hooks removed
    assert set(record_input_absmax(model, lambda: model(ids[0]), names=["up"])) == {"up"}


def test_outlier_channels():
    x = torch.ones(100)
    x[[7, 42]] = 10.0
    assert outlier_channels(x).tolist() == [7, 42]
    assert outlier_channels(x, factor=20).numel() == 0


def _torch_per_channel_dynamic(linear, reduce_range):
    """PyTorch's reference: quantize_dynamic with per-channel weights (reduce_range is fixed True there)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(nn.Sequential(copy.deepcopy(linear)), {nn.Linear: per_channel_dynamic_qconfig})


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 40))
def test_int8_linear_equals_pytorch_per_channel_dynamic_linear(seed, rows):
    torch.manual_seed(seed)
    linear = nn.Linear(24, 10)
    x = torch.randn(rows, 24) * 3
    ours = Int8DynamicLinear.from_linear(linear, reduce_range=True)
    theirs = _torch_per_channel_dynamic(linear, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = theirs[0].weight()
    torch.testing.assert_close(ours.weight_scale.double(), w.q_per_channel_scales(), rtol=1e-6, atol=0)
    assert torch.equal(ours.weight_codes, w.int_repr())
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), smooth=st.booleans(), reduce_range=st.booleans())
def test_int8_linear_stays_close_to_float(seed, smooth, reduce_range):
    torch.manual_seed(seed)
    linear = nn.Linear(32, 16)
    x = torch.randn(64, 32)
    x[:, 5] *= 30
    scale = smoothing_factors(x.abs().amax(0), linear.weight) if smooth else None
    layer = Int8DynamicLinear.from_linear(linear, scale, reduce_range=reduce_range)
    torch.testing.assert_close(layer.dequantized_weight(), linear.weight.detach(),
                               atol=float(layer.weight_scale.max() / (scale.min() if smooth else 1)), rtol=0)
    with torch.no_grad():
        exact = linear(x)
    error = (layer(x) - exact).norm() / exact.norm()
    assert error < 0.1                                      # one outlier channel costs a few per cent


def test_smoothing_reduces_the_error_of_an_outlier_channel():
    torch.manual_seed(0)
    linear = nn.Linear(64, 64)
    x = torch.randn(256, 64)
    x[:, :2] *= 100
    with torch.no_grad():
        exact = linear(x)
    errors = {}
    for smooth in (False, True):
        scale = smoothing_factors(x.abs().amax(0), linear.weight) if smooth else None
        errors[smooth] = float((Int8DynamicLinear.from_linear(linear, scale)(x) - exact).norm())
    assert errors[True] < 0.5 * errors[False]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_quantized_embedding(seed):
    torch.manual_seed(seed)
    table = nn.Embedding(30, 8)
    q = QuantizedEmbedding.from_embedding(table)
    ids = torch.randint(0, 30, (4, 6))
    reference = nn.Embedding.from_pretrained(q.dequantized_weight())(ids)
    torch.testing.assert_close(q(ids), reference, rtol=0, atol=1e-6)
    error = (q.dequantized_weight() - table.weight.detach()).abs()
    assert bool((error <= q.scale[:, None] / 2 * (1 + 1e-4)).all())   # half a step, up to float rounding


def test_quantize_int8_dynamic_replaces_layers_and_keeps_original():
    model = _tiny()
    q = quantize_int8_dynamic(model, skip=["down"])
    assert isinstance(q.up, Int8DynamicLinear) and type(q.down) is nn.Linear
    assert isinstance(q.embed, QuantizedEmbedding) and type(model.embed) is nn.Embedding
    assert type(quantize_int8_dynamic(model, embeddings=False).embed) is nn.Embedding


def test_save_and_load_round_trip(tmp_path):
    model = _tiny()
    ids = torch.randint(0, 50, (4, 7))
    absmax = record_input_absmax(model, lambda: model(ids))
    q = quantize_int8_dynamic(model, absmax, reduce_range=False)
    path = save_int8(q, tmp_path / "tiny.safetensors")
    loaded = load_int8(path, _tiny(seed=5))
    assert isinstance(loaded.up, Int8DynamicLinear) and loaded.up.smooth and not loaded.up.reduce_range
    with torch.no_grad():
        assert torch.equal(loaded(ids), q(ids))
    copied = copy.deepcopy(q)                               # the packed-kernel cache is not copied
    assert torch.equal(copied(ids), q(ids))


def test_has_vnni_is_a_bool():
    assert isinstance(has_vnni(), bool)


def test_bad_inputs(tmp_path):
    model = _tiny()
    with pytest.raises(ValueError, match="alpha"):
        smoothing_factors(torch.ones(4), torch.ones(2, 4), alpha=1.5)
    with pytest.raises(ValueError, match="weight"):
        smoothing_factors(torch.ones(4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="act_absmax"):
        smoothing_factors(torch.ones(2, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="factor"):
        outlier_channels(torch.ones(3), factor=0.5)
    with pytest.raises(ValueError, match="absmax"):
        outlier_channels(torch.ones(2, 2))
    with pytest.raises(TypeError, match="run"):
        record_input_absmax(model, "not callable")
    with pytest.raises(ValueError, match="names"):
        record_input_absmax(model, lambda: None, names=["nope"])
    with pytest.raises(ValueError, match="names"):
        record_input_absmax(model, lambda: None, names=["norm"])
    with pytest.raises(ValueError, match="run"):
        record_input_absmax(model, lambda: None)
    with pytest.raises(TypeError, match="linear"):
        Int8DynamicLinear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="input_scale"):
        Int8DynamicLinear.from_linear(nn.Linear(4, 2), torch.ones(3))
    with pytest.raises(ValueError, match="in_features"):
        Int8DynamicLinear(0, 2)
    with pytest.raises(TypeError, match="reduce_range"):
        Int8DynamicLinear(2, 2, reduce_range=1)
    with pytest.raises(TypeError, match="embedding"):
        QuantizedEmbedding.from_embedding(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="skip"):
        quantize_int8_dynamic(model, skip=["missing"])
    with pytest.raises(ValueError, match="nn.Linear"):
        quantize_int8_dynamic(model, skip=["up", "down"])
    with pytest.raises(ValueError, match="input_absmax"):
        quantize_int8_dynamic(model, {"norm": torch.ones(16)})
    with pytest.raises(TypeError, match="model"):
        quantize_int8_dynamic("model")
    with pytest.raises(ValueError, match="path"):
        torch.save({}, tmp_path / "x.bin")
        from safetensors.torch import save_file
        save_file({"a": torch.ones(1)}, str(tmp_path / "plain.safetensors"))
        load_int8(tmp_path / "plain.safetensors", model)


def test_layer_output_errors():
    from mmtutor.compress.outliers import layer_output_errors

    model = _tiny()
    ids = torch.randint(0, 50, (4, 7))
    q = quantize_int8_dynamic(model, skip=["down"])
    errors = layer_output_errors(model, q, lambda: model(ids))
    assert set(errors) == {"up"}
    with torch.no_grad():
        x = model.norm(model.embed(ids))
        expected = (q.up(x) - model.up(x)).norm() / model.up(x).norm()
    assert errors["up"] == pytest.approx(float(expected), rel=1e-5)
    assert 0 < errors["up"] < 0.05
    with pytest.raises(ValueError, match="quantized"):
        layer_output_errors(model, model, lambda: None)
