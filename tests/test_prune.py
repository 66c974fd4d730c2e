"""Magnitude and structured pruning, checked against ``torch.nn.utils.prune`` and against masked originals."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

from mmtutor.compress.prune import (PRUNABLE_TYPES, apply_masks, attention_layers, avdigits_architecture,
                                    avdigits_layer_pairs, channel_norms, heads_switched_off, channels_to_keep, keep_pruned_at_zero,
                                    load_avdigits_classifier, prunable_parameters, prune_attention_heads,
                                    prune_avdigits_classifier, prune_channels, prune_linear_neurons,
                                    prune_magnitude, save_avdigits_classifier, sparsity_report)
from mmtutor.models.avdigits import avdigits_classifier
from mmtutor.train import fit

FAST = settings(max_examples=30, deadline=None)


def mixed_model(seed: int) -> nn.Module:
    """Every prunable layer type, plus layers that are not pruned (an embedding and a batch norm)."""
    torch.manual_seed(seed)
    return nn.ModuleDict({"embed": nn.Embedding(5, 3), "fc": nn.Linear(7, 5), "conv1": nn.Conv1d(3, 4, 3),
                          "norm": nn.BatchNorm1d(4), "conv2": nn.Conv2d(2, 3, 3), "head": nn.Linear(5, 2)})


def count_zeros(tensors) -> int:
    return sum(int((t == 0).sum()) for t in tensors)


# --------------------------------------------------------------------------------------------------
# unstructured pruning against torch.nn.utils.prune
# --------------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.99))
def test_per_layer_masks_equal_l1_unstructured(seed, amount):
    model = mixed_model(seed)
    reference = copy.deepcopy(model)
    masks = prune_magnitude(model, amount, scope="layer")
    for name, module in reference.items():
        if isinstance(module, PRUNABLE_TYPES):
            torch_prune.l1_unstructured(module, "weight", amount)
            assert torch.equal(masks[f"{name}.weight"], module.weight_mask.bool())
            assert torch.equal(model[name].weight, module.weight)
            assert count_zeros([model[name].weight]) == round(amount * module.weight.numel())
            assert torch.equal(model[name].bias, module.bias)                       # biases untouched
        else:
            assert all(torch.equal(a, b) for a, b in zip(module.parameters(), model[name].parameters()))


@FAST
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.99), include_bias=st.booleans())
def test_global_masks_equal_global_unstructured(seed, amount, include_bias):
    model = mixed_model(seed)
    reference = copy.deepcopy(model)
    masks = prune_magnitude(model, amount, scope="global", include_bias=include_bias)
    targets = [(module, attribute) for module in reference.values() if isinstance(module, PRUNABLE_TYPES)
               for attribute in (("weight", "bias") if include_bias else ("weight",))]
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
    for (module, attribute), (name, tensor) in zip(targets, prunable_parameters(model, include_bias)):
        assert torch.equal(masks[name], getattr(module, f"{attribute}_mask").bool())
        assert torch.equal(tensor, getattr(module, attribute))
    n = sum(t.numel() for _, t in prunable_parameters(model, include_bias))
    assert count_zeros(t for _, t in prunable_parameters(model, include_bias)) == round(amount * n)


@FAST
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.99), levels=st.integers(1, 4),
       scope=st.sampled_from(["global", "layer"]))
def test_exact_amount_and_deterministic_ties(seed, amount, levels, scope):
    """Weights with only a few distinct magnitudes: still exactly round(a n) zeros, the earliest ties first."""
    model = mixed_model(seed)
    with torch.no_grad():
        for _, w in prunable_parameters(model):
            w.copy_(torch.randint(1, levels + 1, w.shape, generator=torch.Generator().manual_seed(seed)) *
                    torch.sign(torch.randn(w.shape)))
    before = {name: w.detach().clone() for name, w in prunable_parameters(model)}
    twin = copy.deepcopy(model)
    masks = prune_magnitude(model, amount, scope=scope)
    groups = [list(before)] if scope == "global" else [[name] for name in before]
    for names in groups:
        magnitude = torch.cat([before[n].abs().reshape(-1) for n in names])
        keep = torch.cat([masks[n].reshape(-1) for n in names])
        k = round(amount * magnitude.numel())
        assert int((~keep).sum()) == k
        if k:   # every pruned weight is no larger than every kept one; among equals, the pruned come first
            threshold = magnitude[~keep].max()
            assert bool((magnitude[keep] >= threshold).all())
            tied = torch.nonzero(magnitude == threshold).reshape(-1)
            pruned_tied = torch.nonzero((magnitude == threshold) & ~keep).reshape(-1)
            assert torch.equal(pruned_tied, tied[:len(pruned_tied)])
    again = prune_magnitude(twin, amount, scope=scope)                    # deterministic
    assert all(torch.equal(again[name], masks[name]) for name in masks)


def test_amount_is_the_total_sparsity_and_a_schedule_only_adds_zeros():
    model = mixed_model(0)
    first = prune_magnitude(model, 0.3)
    second = prune_magnitude(model, 0.6)
    n = sum(t.numel() for _, t in prunable_parameters(model))
    assert count_zeros(t for _, t in prunable_parameters(model)) == round(0.6 * n)
    assert all(bool((second[name] <= first[name]).all()) for name in first)     # pruned weights stay pruned


def test_sparsity_report_counts_exact_zeros():
    model = mixed_model(1)
    prune_magnitude(model, 0.4, scope="layer")
    with torch.no_grad():
        model["head"].bias.zero_()
    report = sparsity_report(model, include_bias=True)
    assert isinstance(report, pd.DataFrame)
    assert list(report.columns) == ["name", "layer", "shape", "numel", "zeros", "sparsity"]
    rows = report.set_index("name")
    for name, tensor in model.state_dict().items():
        if name in rows.index:
            assert rows.loc[name, "zeros"] == int(np.sum(tensor.numpy() == 0))
            assert rows.loc[name, "numel"] == tensor.numel()
    assert rows.loc["head.bias", "sparsity"] == 1.0 and rows.loc["conv2.weight", "layer"] == "Conv2d"
    assert rows.loc["global", "zeros"] == rows["zeros"].iloc[:-1].sum()
    assert rows.loc["global", "sparsity"] == pytest.approx(rows.loc["global", "zeros"] / rows.loc["global", "numel"])
    assert "embed.weight" not in rows.index and "norm.weight" not in rows.index


def test_fine_tuning_keeps_pruned_weights_at_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = prune_magnitude(model, 0.7)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    handles = keep_pruned_at_zero(model, masks)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    loader = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    fit(model, loader, epochs=3, lr=1e-2, weight_decay=0.01, progress=False)
    for name, mask in masks.items():
        weight = dict(model.named_parameters())[name]
        assert bool((weight[~mask] == 0).all())                       # pruned: still exactly 0
        assert not torch.equal(weight[mask], before[name][mask])      # kept: trained
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    apply_masks(model, masks)
    assert bool((model[0].weight[~masks["0.weight"]] == 0).all())


# --------------------------------------------------------------------------------------------------
# structured pruning
# --------------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(6, 4), (5, 3, 2), (4, 2, 3, 3)]),
       amount=st.floats(0.0, 0.7), p=st.sampled_from([1, 2]))
def test_kept_channels_equal_ln_structured(seed, shape, amount, p):
    torch.manual_seed(seed)
    layer = {2: lambda: nn.Linear(shape[1], shape[0]), 3: lambda: nn.Conv1d(shape[1], shape[0], shape[2]),
             4: lambda: nn.Conv2d(shape[1], shape[0], shape[2:])}[len(shape)]()
    keep = channels_to_keep(layer.weight, amount, p)
    reference = torch_prune.ln_structured(copy.deepcopy(layer), "weight", amount, n=p, dim=0)
    kept_by_torch = torch.nonzero(reference.weight_mask.reshape(shape[0], -1).any(dim=1)).reshape(-1)
    assert torch.equal(keep, kept_by_torch)
    assert torch.allclose(channel_norms(layer.weight, p),
                          torch.tensor([np.linalg.norm(w.ravel(), p) for w in layer.weight.detach().numpy()]))


def masked_reference(model: nn.Module, pairs, amount: float, p: int) -> nn.Module:
    """The original model with the consumers' weights for the pruned channels set to 0 (torch's mask decides)."""
    reference = copy.deepcopy(model)
    for pair in pairs:
        producer, consumer = reference.get_submodule(pair[0]), reference.get_submodule(pair[-1])
        mask = torch_prune.ln_structured(copy.deepcopy(producer), "weight", amount, n=p, dim=0).weight_mask
        channel_kept = mask.reshape(len(mask), -1).any(dim=1)
        per_channel = consumer.weight.shape[1] // len(channel_kept)
        with torch.no_grad():
            consumer.weight.mul_(channel_kept.repeat_interleave(per_channel).reshape(
                [1, -1] + [1] * (consumer.weight.ndim - 2)))
    return reference


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.8), p=st.sampled_from([1, 2]),
       activation=st.sampled_from([nn.ReLU, nn.Sigmoid, nn.GELU]))
def test_pruned_mlp_is_smaller_and_computes_the_masked_function(seed, amount, p, activation):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 20), activation(), nn.Linear(20, 12), activation(), nn.Dropout(0.2),
                          nn.Linear(12, 3)).eval()
    pairs = [("0", "2"), ("2", "5")]
    pruned = prune_linear_neurons(model, pairs, amount, p)
    h1, h2 = 20 - round(amount * 20), 12 - round(amount * 12)
    assert (pruned[0].out_features, pruned[2].in_features, pruned[2].out_features, pruned[5].in_features) == \
        (h1, h1, h2, h2)
    assert parameters(pruned) == 10 * h1 + h1 + h1 * h2 + h2 + h2 * 3 + 3 <= parameters(model)
    x = torch.randn(8, 10)
    assert torch.allclose(pruned(x), masked_reference(model, pairs, amount, p)(x), atol=1e-5)
    assert model[0].out_features == 20                                          # the original is untouched


class ConvNet(nn.Module):
    """Conv2d -> BatchNorm -> ReLU -> Conv2d -> ReLU -> max-pool -> flatten -> Linear, and a Conv1d branch."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                   nn.Linear(6 * 4 * 4, 5))
        self.audio = nn.Sequential(nn.Conv1d(3, 10, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(4),
                                   nn.Flatten(), nn.Linear(40, 5))

    def forward(self, image, audio):
        return self.image(image) + self.audio(audio)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.8), p=st.sampled_from([1, 2]))
def test_pruned_convnet_is_smaller_and_computes_the_masked_function(seed, amount, p):
    torch.manual_seed(seed)
    model = ConvNet()
    with torch.no_grad():                       # non-trivial running statistics for the batch norm
        model.image[1].running_mean.normal_()
        model.image[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    pairs = [("image.0", "image.1", "image.3"), ("image.3", "image.7"), ("audio.0", "audio.4")]
    pruned = prune_channels(model, pairs, amount, p)
    c1, c2, c3 = (n - round(amount * n) for n in (8, 6, 10))
    assert pruned.image[0].out_channels == pruned.image[1].num_features == pruned.image[3].in_channels == c1
    assert pruned.image[7].in_features == c2 * 16 and pruned.audio[4].in_features == c3 * 4
    assert pruned.image[1].running_mean.shape == (c1,)
    image, audio = torch.randn(4, 2, 8, 8), torch.randn(4, 3, 12)
    assert torch.allclose(pruned(image, audio), masked_reference(model, pairs, amount, p)(image, audio), atol=1e-5)
    assert parameters(pruned) < parameters(model) or amount < 1 / 16


def test_pruning_the_avdigits_fusion_model_shrinks_it():
    torch.manual_seed(0)
    model = avdigits_classifier("late").eval()
    pairs = [("encoders.0.features.0", "encoders.0.features.2"), ("encoders.0.features.2", "encoders.0.out"),
             ("encoders.1.features.1", "encoders.1.features.3"), ("encoders.1.features.3", "encoders.1.out"),
             ("fusion.heads.0.0", "fusion.heads.0.1.1"), ("fusion.heads.1.0", "fusion.heads.1.1.1")]
    pruned = prune_channels(model, pairs, 0.5)
    assert parameters(pruned) < 0.6 * parameters(model)
    images, log_mel = torch.rand(3, 1, 8, 8), torch.rand(3, 32, 96)
    reference = masked_reference(model, pairs, 0.5, 2)
    assert torch.allclose(pruned(images, log_mel), reference(images, log_mel), atol=1e-5)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount,error", [(1.0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                          ("0.5", TypeError), (True, TypeError)])
def test_amount_outside_0_1(amount, error):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(error, match="amount"):
        prune_magnitude(model, amount)
    with pytest.raises(error, match="amount"):
        prune_channels(model, [("0", "2")], amount)


def test_bad_models_and_options():
    with pytest.raises(ValueError, match="prunable layer"):
        prune_magnitude(nn.Sequential(nn.Embedding(3, 2), nn.LayerNorm(2)), 0.5)
    with pytest.raises(TypeError, match="model"):
        prune_magnitude("model", 0.5)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="scope"):
        prune_magnitude(model, 0.5, scope="row")
    with pytest.raises(TypeError, match="include_bias"):
        prune_magnitude(model, 0.5, include_bias=1)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        prune_magnitude(model, 0.5)
    with pytest.raises(ValueError, match="masks"):
        apply_masks(model, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="masks"):
        keep_pruned_at_zero(model, {"nope": torch.ones(1, dtype=torch.bool)})


def test_bad_layer_pairs():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2), nn.Conv1d(2, 4, 1, groups=2),
                          nn.Conv1d(4, 3, 1))
    for pairs, message in [([("0", "9")], "unknown name"), ([("0", "2"), ("0", "2")], "each producer once"),
                           ([("0",)], "tuples"), ("0,2", "layer_pairs"), ([], "at least one"),
                           ([("1", "2")], "producer '1'"), ([("2", "4")], "must be a convolution"),
                           ([("3", "4")], "groups"), ([("0", "0")], "inputs")]:
        with pytest.raises((ValueError, TypeError), match=message):
            prune_channels(model, pairs, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        prune_channels(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)), [("0", "1")], 0.9)
    with pytest.raises(ValueError, match="nn.Linear"):
        prune_linear_neurons(ConvNet(), [("audio.0", "audio.4")], 0.5)
    with pytest.raises(ValueError, match="p must"):
        prune_channels(model, [("0", "2")], 0.5, p=3)
    with pytest.raises(ValueError, match="norm"):
        prune_channels(ConvNet(), [("image.0", "image.2", "image.3")], 0.5)


# --------------------------------------------------------------------------------------------------
# consumers that read a concatenation; the whole AV-digits fusion classifier
# --------------------------------------------------------------------------------------------------

class TwoBranches(nn.Module):
    """Two linear branches whose outputs are concatenated and read by one joint layer."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.joint, self.head = nn.Linear(5, 8), nn.Linear(4, 6), nn.Linear(14, 7), nn.Linear(7, 2)

    def forward(self, x, y):
        h = torch.cat([torch.relu(self.a(x)), torch.tanh(self.b(y))], dim=-1)
        return self.head(torch.relu(self.joint(h)))


def masked_with_blocks(model: nn.Module, pairs, amount: float, p: int = 2) -> nn.Module:
    """The original with the consumers' input columns of pruned channels zeroed (torch's masks decide)."""
    reference = copy.deepcopy(model)
    for pair in pairs:
        consumer = pair[-1] if isinstance(pair[-1], tuple) else (pair[-1], 0, None)
        producer, layer = reference.get_submodule(pair[0]), reference.get_submodule(consumer[0])
        mask = torch_prune.ln_structured(copy.deepcopy(producer), "weight", amount, n=p, dim=0).weight_mask
        channel_kept = mask.reshape(len(mask), -1).any(dim=1)
        start, stop = consumer[1], consumer[2] if consumer[2] is not None else layer.weight.shape[1]
        columns = channel_kept.repeat_interleave((stop - start) // len(channel_kept))
        with torch.no_grad():
            layer.weight[:, start:stop] *= columns.reshape([1, -1] + [1] * (layer.weight.ndim - 2))
    return reference


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), amount=st.floats(0.0, 0.8), p=st.sampled_from([1, 2]))
def test_a_consumer_of_a_concatenation_loses_the_right_block_columns(seed, amount, p):
    torch.manual_seed(seed)
    model = TwoBranches()
    pairs = [("a", ("joint", 0, 8)), ("b", ("joint", 8, 14)), ("joint", "head")]
    pruned = prune_channels(model, pairs, amount, p)
    ha, hb, hj = (n - round(amount * n) for n in (8, 6, 7))
    assert pruned.joint.weight.shape == (hj, ha + hb) and pruned.head.in_features == hj
    x, y = torch.randn(6, 5), torch.randn(6, 4)
    assert torch.allclose(pruned(x, y), masked_with_blocks(model, pairs, amount, p)(x, y), atol=1e-5)


def test_bad_blocks():
    model = TwoBranches()
    with pytest.raises(ValueError, match="block"):
        prune_channels(model, [("a", ("joint", 8, 20))], 0.5)
    with pytest.raises(ValueError, match="reads 6 inputs"):
        prune_channels(model, [("a", ("joint", 8, 14))], 0.5)
    with pytest.raises(ValueError, match="consumer must be"):
        prune_channels(model, [("a", ("joint", 0.0, 8))], 0.5)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), amount=st.sampled_from([0.25, 0.5, 0.625, 0.75]))
def test_pruned_fusion_classifier_is_the_smaller_architecture_and_computes_the_masked_function(seed, amount):
    torch.manual_seed(seed)
    model = avdigits_classifier("intermediate", dim=32, hidden=24).eval()
    pruned = prune_avdigits_classifier(model, amount)
    architecture = avdigits_architecture(pruned)
    k = lambda n: n - round(amount * n)  # noqa: E731
    assert architecture == {"style": "intermediate", "dim": k(32), "hidden": k(24), "num_classes": 10,
                            "image_channels": (k(16), k(32)), "audio_channels": (k(64), k(64))}
    empty = avdigits_classifier(**architecture)
    assert parameters(empty) == parameters(pruned) < parameters(model)
    empty.load_state_dict(pruned.state_dict())                                  # same names and shapes
    images, log_mel = torch.rand(3, 1, 8, 8), torch.rand(3, 32, 96)
    reference = masked_with_blocks(model, avdigits_layer_pairs(model), amount)
    assert torch.allclose(pruned(images, log_mel), reference(images, log_mel), atol=1e-5)


def test_pruned_fusion_classifier_round_trips_through_a_file(tmp_path):
    torch.manual_seed(0)
    pruned = prune_avdigits_classifier(avdigits_classifier("intermediate", dim=32, hidden=32).eval(), 0.5)
    path = save_avdigits_classifier(pruned, tmp_path / "pruned.safetensors")
    loaded = load_avdigits_classifier(path)
    images, log_mel = torch.rand(4, 1, 8, 8), torch.rand(4, 32, 96)
    with torch.no_grad():
        assert torch.equal(pruned(images, log_mel), loaded(images, log_mel))
    with pytest.raises(ValueError, match="path"):
        load_avdigits_classifier(tmp_path / "missing.safetensors")
    save_checkpoint_without_architecture = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(save_checkpoint_without_architecture))
    with pytest.raises(ValueError, match="architecture"):
        load_avdigits_classifier(save_checkpoint_without_architecture)


def test_fusion_helpers_reject_other_models():
    with pytest.raises(ValueError, match="intermediate-fusion"):
        prune_avdigits_classifier(avdigits_classifier("late"), 0.5)
    with pytest.raises(TypeError, match="model"):
        avdigits_layer_pairs("model")
    uneven = avdigits_classifier("intermediate", dim=16, hidden=16)
    uneven = prune_channels(uneven, [("encoders.0.out", "fusion.projections.0.0")], 0.5)
    with pytest.raises(ValueError, match="one embedding width"):
        avdigits_architecture(uneven)


# --------------------------------------------------------------------------------------------------
# attention heads
# --------------------------------------------------------------------------------------------------

def tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16)
    return BertModel(config).eval()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), removed=st.lists(st.sets(st.integers(0, 3), max_size=3), min_size=2, max_size=2))
def test_removing_heads_equals_zeroing_their_output_columns(seed, removed):
    model = tiny_bert(seed)
    heads = {layer: sorted(r) for layer, r in enumerate(removed)}
    pruned = prune_attention_heads(model, heads)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for layer, r in heads.items():
            for h in r:
                reference.encoder.layer[layer].attention.output.dense.weight[:, 8 * h:8 * (h + 1)] = 0
    ids = torch.randint(0, 50, (3, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        out, expected = pruned(ids, attention_mask=mask).last_hidden_state, \
            reference(ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(out, expected, atol=1e-5)
    removed_count = sum(len(r) for r in removed)
    assert parameters(model) - parameters(pruned) == removed_count * (3 * (32 * 8 + 8) + 32 * 8)
    assert [a.num_attention_heads for a in (pruned.encoder.layer[i].attention.self for i in (0, 1))] == \
        [4 - len(r) for r in removed]
    assert len(attention_layers(model)) == 2
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad(), heads_switched_off(model, heads):
        switched_off = model(ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(switched_off, expected, atol=1e-5)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())    # restored


def test_bad_heads():
    model = tiny_bert()
    for heads, error, message in [({0: [0, 1, 2, 3]}, ValueError, "keep at least one"),
                                  ({2: [0]}, ValueError, "layer indices"), ({0: [4]}, ValueError, "heads\\[0\\]"),
                                  ({0: [1, 1]}, ValueError, "distinct"), ([0], TypeError, "heads must be a dict"),
                                  ({0: 1}, TypeError, "heads\\[0\\]")]:
        with pytest.raises(error, match=message):
            prune_attention_heads(model, heads)
    with pytest.raises(ValueError, match="self-attention"):
        prune_attention_heads(nn.Sequential(nn.Linear(2, 2)), {0: [0]})
    for heads, error in [({0: [4]}, ValueError), ({5: [0]}, ValueError), ([1], TypeError)]:
        with pytest.raises(error, match="heads"), heads_switched_off(model, heads):
            pass
