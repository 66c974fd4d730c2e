"""k-means weight sharing against scikit-learn's KMeans; centroid gradients against the summed weight gradients."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from torch import nn

from mmtutor.compress.cluster import (SharedTensor, cluster_tensor, initial_centroids, lloyd_1d, share_weights,
                                      shared_weight_bits, tie_to_codebooks, untie_codebooks)
from mmtutor.compress.prune import prune_magnitude

FAST = settings(max_examples=25, deadline=None)


def small_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def weights(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(4, size=n).astype(np.float32)


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(50, 2000), k=st.sampled_from([2, 4, 8, 16]),
       init=st.sampled_from(["linear", "density", "random"]), tol=st.sampled_from([0.0, 1e-4]))
def test_centroids_equal_sklearn_kmeans_from_the_same_start(seed, n, k, init, tol):
    w = weights(seed, n)
    start = initial_centroids(w, k, init, seed)
    expected = KMeans(n_clusters=k, init=start.reshape(-1, 1), n_init=1, tol=tol, max_iter=300).fit(
        w.astype(np.float64).reshape(-1, 1))
    item = cluster_tensor(torch.from_numpy(w), k, init, seed=seed, tol=tol)
    assert np.allclose(item.codebook, np.sort(expected.cluster_centers_.ravel()), rtol=1e-6, atol=1e-6)
    own, labels = lloyd_1d(w, start, tol=tol)                                      # the from-scratch Lloyd agrees too,
    nearest_at_start = np.abs(w.astype(np.float64)[:, None] - start[None, :]).argmin(axis=1)
    assume(np.bincount(nearest_at_start, minlength=k).min() > 0)      # unless a cluster is empty at the start
    assume(np.bincount(labels, minlength=k).min() > 0)     # or at the end (KMeans moves it elsewhere, Lloyd does not)
    assert np.allclose(np.sort(own), np.sort(expected.cluster_centers_.ravel()), atol=1e-9)
    # every weight points at its nearest centroid
    distance = np.abs(w[:, None] - item.codebook[None, :])
    assert np.allclose(distance[np.arange(n), item.indices], distance.min(axis=1))


def test_initialisations():
    w = weights(0, 1000)
    linear = initial_centroids(w, 8, "linear")
    assert linear[0] == w.min() and linear[-1] == pytest.approx(w.max()) and np.allclose(np.diff(linear), np.diff(linear)[0])
    density = initial_centroids(w, 4, "density")
    assert np.allclose(density, np.quantile(w.astype(np.float64), [0.125, 0.375, 0.625, 0.875]))
    random = initial_centroids(w, 8, "random", seed=3)
    assert set(random.tolist()) <= set(w.astype(np.float64).tolist()) and len(set(random.tolist())) == 8
    assert np.array_equal(random, initial_centroids(w, 8, "random", seed=3))


def test_masked_weights_stay_zero_and_dense_round_trips():
    w = torch.from_numpy(weights(1, 300)).reshape(20, 15)
    mask = torch.rand(20, 15, generator=torch.Generator().manual_seed(0)) < 0.3
    item = cluster_tensor(w * mask, 4, mask=mask)
    dense = item.dense()
    assert torch.all(dense[~mask] == 0) and item.k == 4 and item.shape == (20, 15)
    assert set(dense[mask].tolist()) <= set(item.codebook.tolist())
    expected = KMeans(n_clusters=4, init=initial_centroids(w[mask], 4).reshape(-1, 1), n_init=1).fit(
        w[mask].double().numpy().reshape(-1, 1))
    assert np.allclose(item.codebook, np.sort(expected.cluster_centers_.ravel()), atol=1e-6)


def test_share_weights_in_place_and_storage_formula():
    model = small_model(0)
    masks = prune_magnitude(model, 0.5)
    shared = share_weights(model, 2, masks=masks)
    for name, parameter in model.named_parameters():
        if name in shared:
            assert torch.equal(parameter, shared[name].dense())
            assert len(torch.unique(parameter[masks[name]])) <= 4
            assert torch.all(parameter[~masks[name]] == 0)
    bits = shared_weight_bits(shared)
    kept = sum(int(m.sum()) for m in masks.values())
    assert bits["weights"] == kept and bits["index_bits"] == 2 * kept and bits["codebook_bits"] == 3 * 4 * 32


def test_centroid_gradient_is_the_sum_of_weight_gradients():
    model = small_model(1)
    shared = share_weights(model, 2)
    dense = copy.deepcopy(model)
    x = torch.randn(5, 2, 6, generator=torch.Generator().manual_seed(0))
    dense(x).square().sum().backward()
    tie_to_codebooks(model, shared)
    model(x).square().sum().backward()
    for name, item in shared.items():
        module = model.get_submodule(name.rpartition(".")[0])
        grad = module.parametrizations.weight[0].codebook.grad
        weight_grad = dict(dense.named_parameters())[name].grad.reshape(-1)
        expected = torch.zeros(item.k).index_add_(0, torch.from_numpy(item.indices.reshape(-1)), weight_grad)
        assert torch.allclose(grad, expected, atol=1e-5)


def test_fine_tuning_moves_centroids_not_assignments():
    model = small_model(2)
    masks = prune_magnitude(model, 0.4)
    shared = share_weights(model, 2, masks=masks)
    tie_to_codebooks(model, shared)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 2, 6), torch.randint(0, 3, (16,))
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    trained = untie_codebooks(model)
    for name, item in trained.items():
        assert np.array_equal(item.indices, shared[name].indices)
        assert np.array_equal(item.mask, shared[name].mask)
        assert torch.equal(dict(model.named_parameters())[name], item.dense())
    assert any(not np.allclose(trained[n].codebook, shared[n].codebook) for n in shared)
    assert not any("parametrizations" in name for name in model.state_dict())


def test_bad_input():
    w = torch.from_numpy(weights(0, 100))
    with pytest.raises(ValueError, match="k must be between"):
        cluster_tensor(w, 1)
    with pytest.raises(TypeError, match="k must be an int"):
        cluster_tensor(w, 4.0)
    with pytest.raises(ValueError, match="init"):
        cluster_tensor(w, 4, init="kmeans++")
    with pytest.raises(ValueError, match="k must be at most the number of distinct values"):
        cluster_tensor(torch.ones(10), 4)
    with pytest.raises(ValueError, match="weights must be finite"):
        cluster_tensor(torch.tensor([1.0, float("nan"), 2.0]), 2)
    with pytest.raises(TypeError, match="weights"):
        cluster_tensor([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="mask"):
        cluster_tensor(w, 4, mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bits"):
        share_weights(small_model(0), 0)
    with pytest.raises(ValueError, match="masks must name"):
        share_weights(small_model(0), 2, masks={"nope.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="prunable layer"):
        share_weights(nn.Sequential(nn.ReLU()), 2)
    with pytest.raises(ValueError, match="no weight tied"):
        untie_codebooks(small_model(0))
    with pytest.raises(TypeError, match="shared"):
        tie_to_codebooks(small_model(0), {"0.weight": np.zeros(3)})
    model = small_model(0)
    shared = share_weights(model, 2)
    tie_to_codebooks(model, shared)
    with pytest.raises(ValueError, match="already tied"):
        tie_to_codebooks(model, shared)
    with pytest.raises(ValueError, match="unknown name"):
        tie_to_codebooks(small_model(0), {"9.weight": next(iter(shared.values()))})
