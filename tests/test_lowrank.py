"""Truncated-SVD factorisation, checked against NumPy's SVD and the Eckart–Young error."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmtutor.compress.lowrank import (factorize_linear, factorize_model, factorized_parameters, rank_for_energy,
                                      singular_values)
from mmtutor.models.avdigits import avdigits_classifier

FAST = settings(max_examples=30, deadline=None)


def random_linear(seed: int, out_features: int, in_features: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


@FAST
@given(seed=st.integers(0, 10_000), m=st.integers(1, 24), n=st.integers(1, 24), bias=st.booleans())
def test_full_rank_reproduces_the_layer(seed, m, n, bias):
    layer = random_linear(seed, m, n, bias)
    pair = factorize_linear(layer, min(m, n))
    x = torch.randn(5, n)
    torch.testing.assert_close(pair(x), layer(x), rtol=1e-5, atol=1e-5)
    assert isinstance(pair, nn.Sequential) and pair[0].bias is None
    assert (pair[1].bias is not None) == bias


@FAST
@given(seed=st.integers(0, 10_000), m=st.integers(2, 24), n=st.integers(2, 24), data=st.data())
def test_truncation_matches_numpy_svd_and_eckart_young(seed, m, n, data):
    layer = random_linear(seed, m, n)
    rank = data.draw(st.integers(1, min(m, n)))
    pair = factorize_linear(layer, rank)
    w = layer.weight.detach().double().numpy()
    u, s, vh = np.linalg.svd(w, full_matrices=False)
    w_r = (u[:, :rank] * s[:rank]) @ vh[:rank]
    product = (pair[1].weight @ pair[0].weight).detach().double().numpy()
    np.testing.assert_allclose(product, w_r, atol=1e-5)
    error = np.linalg.norm(w - product)
    assert error == pytest.approx(np.sqrt(np.sum(s[rank:] ** 2)), abs=1e-5)
    torch.testing.assert_close(pair[1].bias, layer.bias)
    assert sum(p.numel() for p in pair.parameters()) == factorized_parameters(m, n, rank) == rank * (m + n) + m


@FAST
@given(seed=st.integers(0, 10_000), m=st.integers(1, 20), n=st.integers(1, 20), energy=st.floats(0.01, 1.0))
def test_rank_for_energy_is_the_smallest_rank_keeping_that_energy(seed, m, n, energy):
    w = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    rank = rank_for_energy(w, energy)
    kept = np.cumsum(s ** 2) / np.sum(s ** 2)
    assert kept[rank - 1] >= energy - 1e-9
    assert rank == 1 or kept[rank - 2] < energy
    # the relative Frobenius error of the truncation is at most sqrt(1 - energy)
    assert np.sqrt(max(0.0, 1 - kept[rank - 1])) <= np.sqrt(1 - energy) + 1e-9


def test_rank_for_energy_finds_the_true_rank_and_accepts_several_inputs():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(30, 3, generator=g) @ torch.randn(3, 20, generator=g)        # rank 3
    assert rank_for_energy(low, 1.0) == 3
    assert rank_for_energy(low.numpy(), 1.0) == 3
    layer = nn.Linear(20, 30)
    with torch.no_grad():
        layer.weight.copy_(low)
    assert rank_for_energy(layer, 1.0) == 3
    assert rank_for_energy(torch.eye(6), 0.5) == 3                          # equal sigmas: energy r/6
    assert rank_for_energy(torch.zeros(4, 4), 0.9) == 1
    np.testing.assert_allclose(singular_values(layer), torch.linalg.svdvals(low.double()).numpy(), atol=1e-4)


def test_factorize_model_replaces_only_layers_that_save_parameters():
    torch.manual_seed(0)
    model = avdigits_classifier("intermediate", dim=32, hidden=32).eval()
    original = copy.deepcopy(model.state_dict())
    new, report = factorize_model(model, energy=0.8)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())      # input untouched
    assert list(report["layer"]) == [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    saves = report["rank"] * (report["out_features"] + report["in_features"]) < report["weights"]
    assert (report["replaced"] == saves).all() and report["replaced"].any()
    for row in report.itertuples():
        module = new.get_submodule(row.layer)
        assert isinstance(module, nn.Sequential if row.replaced else nn.Linear)
        if row.replaced:
            assert module[0].out_features == row.rank
    n_new = sum(p.numel() for p in new.parameters())
    n_old = sum(p.numel() for p in model.parameters())
    assert n_old - n_new == int((report["weights"] - report["factorized_weights"])[report["replaced"]].sum())


def test_factorize_model_energy_one_keeps_outputs_and_skip_and_min_saving_work():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(30, 2, generator=g) @ torch.randn(2, 20, generator=g))   # rank 2
    new, report = factorize_model(model, energy=1.0)
    assert list(report["replaced"]) == [True, False]                  # full-rank 4x30 head saves nothing
    x = torch.randn(7, 20)
    torch.testing.assert_close(new(x), model(x), rtol=1e-5, atol=1e-5)
    _, report = factorize_model(model, energy=1.0, skip=("0",))
    assert not report["replaced"].any()
    _, report = factorize_model(model, energy=1.0, min_saving=0.95)   # 2*50 = 100 of 600: saves 83% < 95%
    assert not report["replaced"].any()
    single, report = factorize_model(model[0], energy=1.0)
    assert isinstance(single, nn.Sequential) and report["replaced"].item()


def test_bad_input_is_named():
    layer = random_linear(0, 6, 4)
    with pytest.raises(ValueError, match="rank"):
        factorize_linear(layer, 5)                                    # larger than the layer
    with pytest.raises(ValueError, match="rank"):
        factorize_linear(layer, 0)
    with pytest.raises(TypeError, match="rank"):
        factorize_linear(layer, 2.0)
    with pytest.raises(TypeError, match="layer"):
        factorize_linear(nn.Conv1d(2, 2, 3), 1)
    for energy in (0.0, -0.5, 1.01, float("nan")):
        with pytest.raises(ValueError, match="energy"):
            rank_for_energy(layer, energy)
        with pytest.raises(ValueError, match="energy"):
            factorize_model(nn.Sequential(layer), energy=energy)
    with pytest.raises(TypeError, match="energy"):
        rank_for_energy(layer, True)
    with pytest.raises(ValueError, match="weights"):
        rank_for_energy(torch.randn(3), 0.9)
    with pytest.raises(ValueError, match="weights"):
        singular_values(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match="weights"):
        rank_for_energy([[1.0, 2.0]], 0.9)
    with pytest.raises(ValueError, match="min_saving"):
        factorize_model(nn.Sequential(layer), min_saving=1.0)
    with pytest.raises(ValueError, match="skip"):
        factorize_model(nn.Sequential(layer), skip=("head",))
    with pytest.raises(ValueError, match="model"):
        factorize_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="model"):
        factorize_model(layer.weight)
    with pytest.raises(ValueError, match="out_features"):
        factorized_parameters(0, 3, 1)
