"""Weight statistics, pruning and sparse storage, checked against NumPy, SciPy and safetensors."""

import json
import struct
import zlib

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmtutor.regularise import CSR, csr_decode, csr_encode, flat_weights, prune_small_weights, storage_bytes, \
    weight_stats


def random_model(seed: int, zero_fraction: float) -> nn.Module:
    """A small MLP (with a dropout layer, which has no parameters) and some weights set exactly to 0."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 13), nn.ReLU(), nn.Dropout(0.5), nn.Linear(13, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand(p.shape) >= zero_fraction)
    return model


def sparse_matrices():
    shapes = st.tuples(st.integers(1, 40), st.integers(1, 300))
    return st.builds(
        lambda shape, density, seed: np.where(np.random.default_rng(seed).random(shape) < density,
                                              np.random.default_rng(seed + 1).standard_normal(shape), 0.0)
        .astype(np.float32),
        shapes, st.floats(0.0, 1.0), st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), zero_fraction=st.floats(0.0, 0.9),
       thresholds=st.lists(st.floats(1e-6, 2.0), min_size=1, max_size=3))
def test_weight_stats_match_numpy(seed, zero_fraction, thresholds):
    model = random_model(seed, zero_fraction)
    stats = weight_stats(model, thresholds)
    matrices = [model[0].weight.detach().numpy(), model[3].weight.detach().numpy()]
    w = np.concatenate([m.ravel() for m in matrices]).astype(np.float64)
    assert stats["parameters"] == 7 * 13 + 13 + 13 * 3 + 3 == sum(p.numel() for p in model.parameters())
    assert stats["weights"] == w.size == flat_weights(model).size
    assert stats["exact_zeros"] == np.sum(w == 0)
    for t in thresholds:
        assert stats["fraction_below"][t] == pytest.approx(np.mean(np.abs(w) < t))
    assert stats["l2_norm"] == pytest.approx(np.linalg.norm(w), rel=1e-9)
    assert stats["layer_norms"]["0.weight"] == pytest.approx(np.linalg.norm(matrices[0]), rel=1e-6)
    assert stats["l2_norm"] == pytest.approx(np.hypot(*stats["layer_norms"].values()), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), threshold=st.floats(1e-4, 1.0))
def test_prune_zeroes_exactly_the_small_weights(seed, threshold):
    model = random_model(seed, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count = prune_small_weights(model, threshold)
    after = model.state_dict()
    expected = 0
    for name, old in before.items():
        if old.ndim > 1:
            small = old.abs() < threshold
            expected += int(small.sum())
            assert torch.equal(after[name], torch.where(small, torch.zeros_like(old), old))
        else:  # biases are never pruned
            assert torch.equal(after[name], old)
    assert count == expected
    stats = weight_stats(model, [threshold])
    assert stats["fraction_below"][threshold] == stats["exact_zeros"] / stats["weights"]
    assert stats["parameters"] == sum(v.numel() for v in before.values())  # pruning removes no parameter


@settings(max_examples=60, deadline=None)
@given(matrix=sparse_matrices())
def test_csr_matches_scipy_and_round_trips(matrix):
    csr = csr_encode(matrix)
    reference = scipy.sparse.csr_matrix(matrix)
    np.testing.assert_array_equal(csr.values, reference.data)
    np.testing.assert_array_equal(csr.col_indices, reference.indices)
    np.testing.assert_array_equal(csr.row_pointers, reference.indptr)
    np.testing.assert_array_equal(csr_decode(csr), matrix)
    assert csr.shape == matrix.shape and csr.values.dtype == matrix.dtype
    assert csr.nbytes == csr.values.nbytes + csr.col_indices.nbytes + csr.row_pointers.nbytes
    # the smallest index types that fit
    assert csr.col_indices.dtype == (np.uint8 if matrix.shape[1] <= 256 else np.uint16)
    nnz = np.count_nonzero(matrix)
    assert csr.row_pointers.dtype == (np.uint8 if nnz <= 255 else np.uint16 if nnz <= 65535 else np.uint32)


def test_csr_accepts_torch_tensors():
    matrix = torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 3.0]])
    csr = csr_encode(matrix)
    assert csr.values.tolist() == [1.5, -2.0, 3.0]
    assert csr.col_indices.tolist() == [1, 0, 2]
    assert csr.row_pointers.tolist() == [0, 1, 1, 3]
    assert csr.nbytes == 3 * 4 + 3 * 1 + 4 * 1


def test_storage_bytes_against_safetensors_and_zlib(tmp_path):
    from safetensors.torch import save_file

    model = random_model(0, 0.0)
    prune_small_weights(model, 0.2)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    blob = (tmp_path / "m.safetensors").read_bytes()
    header_length = struct.unpack("<Q", blob[:8])[0]
    json.loads(blob[8:8 + header_length])
    sizes = storage_bytes(model)
    assert sizes["dense"] == len(blob) - 8 - header_length == 4 * sum(v.numel() for v in state.values())
    expected_csr = sum(csr_encode(v).nbytes if v.ndim == 2 else v.numel() * 4 for v in state.values())
    assert sizes["csr"] == expected_csr
    raw = b"".join(v.numpy().tobytes() for v in state.values())
    assert sizes["zlib"] == len(zlib.compress(raw, 9))
    assert storage_bytes(model, level=1)["zlib"] == len(zlib.compress(raw, 1))


def test_all_zero_model_is_tiny_when_sparse():
    model = nn.Linear(256, 256, bias=False)
    nn.init.zeros_(model.weight)
    sizes = storage_bytes(model)
    assert sizes["dense"] == 256 * 256 * 4
    assert sizes["csr"] == 257  # only the row pointers, one byte each
    assert sizes["zlib"] < 1000


def test_model_without_weight_matrices():
    model = nn.Sequential(nn.ReLU())
    stats = weight_stats(model)
    assert stats["parameters"] == stats["weights"] == stats["exact_zeros"] == 0
    assert stats["fraction_below"] == {1e-3: 0.0, 1e-2: 0.0} and stats["l2_norm"] == 0.0
    assert flat_weights(model).size == 0 and prune_small_weights(model, 0.1) == 0


def test_bad_inputs():
    model = random_model(0, 0.0)
    with pytest.raises(TypeError, match="model"):
        weight_stats(np.zeros((3, 3)))
    with pytest.raises(TypeError, match="model"):
        prune_small_weights("model", 0.1)
    with pytest.raises(TypeError, match="model"):
        storage_bytes(None)
    with pytest.raises(TypeError, match="model"):
        flat_weights([1.0])
    with pytest.raises(ValueError, match="threshold"):
        prune_small_weights(model, 0.0)
    with pytest.raises(ValueError, match="threshold"):
        prune_small_weights(model, float("nan"))
    with pytest.raises(TypeError, match="threshold"):
        prune_small_weights(model, True)
    with pytest.raises(TypeError, match="thresholds"):
        weight_stats(model, 0.01)
    with pytest.raises(ValueError, match="thresholds"):
        weight_stats(model, [0.01, -1.0])
    with pytest.raises(ValueError, match="matrix"):
        csr_encode(np.zeros(5))
    with pytest.raises(TypeError, match="matrix"):
        csr_encode([[0.0, 1.0]])
    with pytest.raises(TypeError, match="csr"):
        csr_decode((np.zeros(1), np.zeros(1), np.zeros(2), (1, 1)))
    with pytest.raises(ValueError, match="level"):
        storage_bytes(model, level=10)
    assert isinstance(csr_encode(np.eye(2)), CSR)
