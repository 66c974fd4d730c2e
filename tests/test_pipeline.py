"""The Deep Compression chain: the encoded bytes decode to the same model; every stage shrinks the model."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmtutor.compress.cluster import share_weights
from mmtutor.compress.pipeline import MAGIC, deep_compress, decode_model, encode_model, encoding_breakdown
from mmtutor.compress.prune import prune_magnitude
from mmtutor.evaluate import model_size_bytes


def small_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Flatten(), nn.Linear(32, 256),
                         nn.ReLU(), nn.Linear(256, 3))


def inputs() -> torch.Tensor:
    return torch.randn(10, 2, 6, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("coding", ["huffman", "fixed"])
@pytest.mark.parametrize("position_bits", [1, 4, 8])
def test_shared_model_round_trip_is_exact_in_float32(coding, position_bits):
    model = small_model(0).eval()
    masks = prune_magnitude(model, 0.7)
    shared = share_weights(model, 3, masks=masks)
    data = encode_model(model, shared, coding=coding, position_bits=position_bits, float_dtype="float32")
    assert data.startswith(MAGIC)
    decoded = decode_model(data, small_model(1))
    for (name, a), (_, b) in zip(model.state_dict().items(), decoded.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(model(inputs()), decoded(inputs()))
    assert encode_model(decoded, shared, coding=coding, position_bits=position_bits, float_dtype="float32") == data


def test_sparse_and_float16_round_trip():
    model = small_model(2).eval()
    masks = prune_magnitude(model, 0.5)
    data = encode_model(model, masks=masks)
    decoded = decode_model(data, small_model(3))
    for name in masks:
        assert torch.equal(model.state_dict()[name], decoded.state_dict()[name])      # float32 values, exact
    bias = model.state_dict()["4.bias"]
    assert torch.equal(decoded.state_dict()["4.bias"], bias.half().float())           # float16 dense tensors
    assert torch.allclose(model(inputs()), decoded(inputs()), atol=1e-2)


def test_breakdown_counts_every_byte_and_huffman_is_smaller():
    model = small_model(4).eval()
    masks = prune_magnitude(model, 0.8)
    shared = share_weights(model, 2, masks=masks)
    huffman, fixed = encode_model(model, shared), encode_model(model, shared, coding="fixed")
    table = encoding_breakdown(huffman)
    assert table["total"].sum() == len(huffman)
    assert table.loc[table.name == "4.weight", "kept"].item() == int(masks["4.weight"].sum())
    assert len(huffman) <= len(fixed) < model_size_bytes(small_model(4))


def test_deep_compress_stages_shrink_and_decode():
    torch.manual_seed(0)
    x, y = torch.randn(64, 2, 6), torch.randint(0, 3, (64,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    model = small_model(5)
    result = deep_compress(model, loader, loader, amounts=(0.5, 0.8), bits=2, prune_epochs=1, cluster_epochs=1)
    sizes = [len(result.encoded[s]) for s in ("pruned", "shared", "huffman")]
    assert sizes[0] > sizes[1] >= sizes[2]
    assert len(result.histories) == 3
    final = decode_model(result.encoded["huffman"], small_model(6))
    kept = sum(int(m.sum()) for m in result.masks.values())
    assert sum(int(torch.count_nonzero(final.state_dict()[n])) for n in result.masks) <= kept
    for name, item in result.shared.items():
        assert len(np.unique(final.state_dict()[name][torch.from_numpy(item.mask)].numpy())) <= 4
    assert torch.allclose(result.model.eval()(x), final(x), atol=1e-2)


def test_bad_input():
    model = small_model(0)
    with pytest.raises(TypeError, match="model"):
        encode_model("model")
    with pytest.raises(ValueError, match="coding"):
        encode_model(model, coding="lzma")
    with pytest.raises(ValueError, match="position_bits"):
        encode_model(model, position_bits=0)
    with pytest.raises(ValueError, match="float_dtype"):
        encode_model(model, float_dtype="bfloat8")
    with pytest.raises(ValueError, match="unknown"):
        encode_model(model, masks={"nope": torch.ones(1, dtype=torch.bool)})
    masks = {"4.weight": torch.zeros(256, 32, dtype=torch.bool)}
    with pytest.raises(ValueError, match="must be 0 where masks"):
        encode_model(model, masks=masks)
    shared = share_weights(copy.deepcopy(model), 2)
    with pytest.raises(ValueError, match="must equal shared"):
        encode_model(model, shared)
    with pytest.raises(ValueError, match="MMDC1"):
        decode_model(b"not a model", model)
    data = encode_model(model)
    with pytest.raises(ValueError, match="truncated"):
        decode_model(data[:-3], small_model(1))
    with pytest.raises(ValueError, match="shape"):
        decode_model(data, nn.Sequential(nn.Conv1d(2, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(32, 257), nn.ReLU(), nn.Linear(257, 3)))
    with pytest.raises(ValueError, match="amounts"):
        deep_compress(model, [], amounts=(0.9, 0.5))
    with pytest.raises(ValueError, match="amounts"):
        deep_compress(model, [], amounts=(1.0,))
    with pytest.raises(ValueError, match="prune_epochs"):
        deep_compress(model, [], prune_epochs=-1)
