"""Tests of mmtutor.models.fusion against references written out by hand.

Every fusion module is recomputed here from its own parameters with plain tensor algebra
(`torch.einsum`, explicit softmax attention, `scaled_dot_product_attention`), in float64, on
random sizes drawn by hypothesis; parameter counts are checked against closed-form formulas.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from mmtutor.models import (
    CrossAttentionFusion,
    EarlyFusion,
    EncodeThenFuse,
    IntermediateFusion,
    LateFusion,
    LowRankTensorFusion,
    TensorFusion,
    append_one,
)
from mmtutor.sizes import count_parameters

ALL_STYLES = [EarlyFusion, LateFusion, IntermediateFusion, TensorFusion, LowRankTensorFusion,
              CrossAttentionFusion]
SETTINGS = settings(max_examples=25, deadline=None)

small = st.integers(min_value=1, max_value=6)
dims2 = st.tuples(small, small)
dims23 = st.lists(small, min_size=2, max_size=3).map(tuple)


def random_inputs(dims, batch, seed, tokens=None):
    gen = torch.Generator().manual_seed(seed)
    shape = (lambda d: (batch, d)) if tokens is None else (lambda d: (batch, tokens, d))
    return [torch.randn(*shape(d), generator=gen, dtype=torch.float64) for d in dims]


def build(cls, dims, hidden, num_classes, seed, **kwargs):
    torch.manual_seed(seed)
    return cls(dims, hidden, num_classes, **kwargs).double()


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def head_by_hand(fused, head):
    """The classifier every fused module ends with: ReLU then a linear map."""
    return linear(torch.relu(fused), head[1])


# ------------------------------------------------------------------------------------------
# tensor fusion and its low-rank version
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(dims=dims2, hidden=small, num_classes=small, batch=st.integers(1, 4), seed=st.integers(0, 99))
def test_tensor_fusion_equals_einsum_outer_product_then_linear(dims, hidden, num_classes, batch, seed):
    model = build(TensorFusion, dims, hidden, num_classes, seed)
    za, zb = random_inputs(dims, batch, seed)
    ones = torch.ones(batch, 1, dtype=torch.float64)
    outer = torch.einsum("bi,bj->bij", torch.cat([za, ones], 1), torch.cat([zb, ones], 1))
    weight = model.fusion.weight.view(hidden, dims[0] + 1, dims[1] + 1)
    fused = torch.einsum("bij,kij->bk", outer, weight) + model.fusion.bias
    torch.testing.assert_close(model.fuse(za, zb), fused)
    torch.testing.assert_close(model(za, zb), head_by_hand(fused, model.head))


@SETTINGS
@given(dims=st.tuples(small, small, small), hidden=small, seed=st.integers(0, 99))
def test_tensor_fusion_three_modalities(dims, hidden, seed):
    model = build(TensorFusion, dims, hidden, 3, seed)
    za, zb, zc = random_inputs(dims, 2, seed)
    outer = torch.einsum("bi,bj,bk->bijk", append_one(za), append_one(zb), append_one(zc))
    weight = model.fusion.weight.view(hidden, *(d + 1 for d in dims))
    fused = torch.einsum("bijk,hijk->bh", outer, weight) + model.fusion.bias
    torch.testing.assert_close(model.fuse(za, zb, zc), fused)


def test_outer_product_keeps_unimodal_terms_and_constant():
    a = torch.tensor([[2.0, 3.0]])
    b = torch.tensor([[5.0]])
    # [2, 3, 1] (x) [5, 1] = [[10, 2], [15, 3], [5, 1]], flattened row by row
    expected = torch.tensor([[10.0, 2.0, 15.0, 3.0, 5.0, 1.0]])
    torch.testing.assert_close(TensorFusion.outer_product(a, b), expected)


@SETTINGS
@given(dims=dims23, hidden=small, num_classes=small, rank=st.integers(1, 4),
       batch=st.integers(1, 4), seed=st.integers(0, 99))
def test_low_rank_equals_tensor_fusion_with_sum_of_outer_products(dims, hidden, num_classes, rank,
                                                                  batch, seed):
    """Liu et al. (2018): the low-rank module is tensor fusion with W = sum_i (x)_m w_m^(i)."""
    low_rank = build(LowRankTensorFusion, dims, hidden, num_classes, seed, rank=rank)
    letters = "ijk"[:len(dims)]
    subscripts = ",".join(f"r{c}h" for c in letters) + f"->h{letters}"
    weight = torch.einsum(subscripts, *low_rank.factors)           # (h, d1+1, ..., dM+1)
    torch.testing.assert_close(low_rank.full_weight(), weight.reshape(hidden, -1))

    full = build(TensorFusion, dims, hidden, num_classes, seed)
    with torch.no_grad():
        full.fusion.weight.copy_(weight.reshape(hidden, -1))
        full.fusion.bias.copy_(low_rank.bias)
        full.head.load_state_dict(low_rank.head.state_dict())
    inputs = random_inputs(dims, batch, seed + 1)
    torch.testing.assert_close(low_rank.fuse(*inputs), full.fuse(*inputs))
    torch.testing.assert_close(low_rank(*inputs), full(*inputs))


def test_low_rank_initialisation_gives_unit_scale_fused_features():
    torch.manual_seed(0)
    model = LowRankTensorFusion((64, 32), 256, 2, rank=8)
    fused = model.fuse(torch.randn(512, 64), torch.randn(512, 32))
    assert 0.7 < fused.std().item() < 1.4


# ------------------------------------------------------------------------------------------
# parameter counts: closed-form formulas
# ------------------------------------------------------------------------------------------

def expected_count(cls, dims, h, c, rank=None):
    """Closed-form parameter counts, written out independently of the modules."""
    m = len(dims)
    head = (h + 1) * c
    if cls is EarlyFusion:
        return (sum(dims) + 1) * h + head
    if cls is LateFusion:
        return sum((d + 1) * h + head for d in dims)
    if cls is IntermediateFusion:
        return sum((d + 1) * h for d in dims) + (m * h + 1) * h + head
    if cls is TensorFusion:
        return h * math.prod(d + 1 for d in dims) + h + head
    if cls is LowRankTensorFusion:
        return rank * h * sum(d + 1 for d in dims) + h + head
    if cls is CrossAttentionFusion:  # two projections, Q/K/V/O of attention (4h^2 + 4h), head
        return (dims[0] + 1) * h + (dims[1] + 1) * h + 4 * h * h + 4 * h + head
    raise AssertionError(cls)


@SETTINGS
@given(dims=dims23, hidden=st.integers(1, 40), num_classes=st.integers(1, 12),
       rank=st.integers(1, 8))
def test_parameter_counts_match_closed_form(dims, hidden, num_classes, rank):
    for cls in ALL_STYLES:
        if cls is CrossAttentionFusion:
            dims_used = dims[:2]
            model = cls(dims_used, hidden, num_classes)
        elif cls is LowRankTensorFusion:
            dims_used = dims
            model = cls(dims, hidden, num_classes, rank=rank)
        else:
            dims_used = dims
            model = cls(dims, hidden, num_classes)
        assert count_parameters(model) == expected_count(cls, dims_used, hidden, num_classes, rank), cls


def test_parameter_counts_on_meta_device_and_learned_late_weights():
    with torch.device("meta"):
        big = TensorFusion((512, 512), 64, 10)
    assert count_parameters(big) == expected_count(TensorFusion, (512, 512), 64, 10)
    late = LateFusion((3, 4), 5, 2, learned_weights=True)
    assert count_parameters(late) == expected_count(LateFusion, (3, 4), 5, 2) + 2
    late.weight_logits.requires_grad_(False)
    assert count_parameters(late, trainable_only=True) == expected_count(LateFusion, (3, 4), 5, 2)


# ------------------------------------------------------------------------------------------
# early, intermediate and late fusion
# ------------------------------------------------------------------------------------------

@SETTINGS
@given(dims=dims23, hidden=small, num_classes=small, seed=st.integers(0, 99))
def test_early_and_intermediate_fusion_by_hand(dims, hidden, num_classes, seed):
    inputs = random_inputs(dims, 3, seed)
    early = build(EarlyFusion, dims, hidden, num_classes, seed)
    expected = head_by_hand(linear(torch.cat(inputs, 1), early.joint), early.head)
    torch.testing.assert_close(early(*inputs), expected)

    inter = build(IntermediateFusion, dims, hidden, num_classes, seed)
    projected = [torch.relu(linear(z, proj[0])) for z, proj in zip(inputs, inter.projections)]
    expected = head_by_hand(linear(torch.cat(projected, 1), inter.joint), inter.head)
    torch.testing.assert_close(inter(*inputs), expected)


def unimodal_by_hand(model, inputs):
    return [linear(torch.relu(linear(z, head[0])), head[1][1]) for z, head in zip(inputs, model.heads)]


@SETTINGS
@given(dims=dims23, hidden=small, num_classes=small, seed=st.integers(0, 99))
def test_late_fusion_is_the_mean_of_unimodal_outputs(dims, hidden, num_classes, seed):
    inputs = random_inputs(dims, 3, seed)
    logits_model = build(LateFusion, dims, hidden, num_classes, seed)
    unimodal = unimodal_by_hand(logits_model, inputs)
    torch.testing.assert_close(logits_model(*inputs), torch.stack(unimodal).mean(0))
    for ours, ref in zip(logits_model.unimodal_logits(*inputs), unimodal):
        torch.testing.assert_close(ours, ref)

    probs_model = build(LateFusion, dims, hidden, num_classes + 1, seed, combine="probs")
    mean_probs = torch.stack([torch.softmax(u, -1) for u in unimodal_by_hand(probs_model, inputs)]).mean(0)
    torch.testing.assert_close(torch.softmax(probs_model(*inputs), -1), mean_probs)
    torch.testing.assert_close(probs_model(*inputs), mean_probs.log())


def test_late_fusion_learned_weights():
    dims = (3, 5, 2)
    inputs = random_inputs(dims, 4, 0)
    model = build(LateFusion, dims, 4, 3, 0, learned_weights=True)
    torch.testing.assert_close(model.modality_weights(), torch.full((3,), 1 / 3, dtype=torch.float64))
    with torch.no_grad():
        model.weight_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    w = torch.exp(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    w = w / w.sum()
    expected = sum(wm * u for wm, u in zip(w, unimodal_by_hand(model, inputs)))
    torch.testing.assert_close(model(*inputs), expected)


def test_late_fusion_drops_a_missing_modality():
    dims = (3, 5, 2)
    inputs = random_inputs(dims, 4, 1)
    model = build(LateFusion, dims, 4, 3, 1, learned_weights=True)
    with torch.no_grad():
        model.weight_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    unimodal = unimodal_by_hand(model, inputs)
    w = torch.softmax(torch.tensor([0.5, 2.0], dtype=torch.float64), 0)   # modality 1 missing
    torch.testing.assert_close(model(inputs[0], None, inputs[2]), w[0] * unimodal[0] + w[1] * unimodal[2])
    torch.testing.assert_close(model(None, inputs[1], None), unimodal[1])
    with pytest.raises(ValueError, match=r"embeddings: every modality is None"):
        model(None, None, None)
    with pytest.raises(ValueError, match=r"embeddings: expected 3 tensors .* got 2"):
        model(inputs[0], None)
    with pytest.raises(ValueError, match=r"embeddings: every modality must have the same batch size"):
        model(inputs[0], None, inputs[2][:2])


# ------------------------------------------------------------------------------------------
# cross-attention
# ------------------------------------------------------------------------------------------

def cross_attention_by_hand(model, query, context, mask=None):
    """Multi-head attention written out: project, split heads, softmax(QK^T/sqrt(d))V, merge."""
    h, heads = model.hidden, model.num_heads
    q_tokens = linear(query, model.query_proj)
    c_tokens = linear(context, model.context_proj)
    w_q, w_k, w_v = model.attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = model.attention.in_proj_bias.chunk(3)

    def split(x):  # (batch, tokens, h) -> (batch, heads, tokens, h / heads)
        return x.view(x.shape[0], x.shape[1], heads, h // heads).transpose(1, 2)

    q, k, v = split(q_tokens @ w_q.T + b_q), split(c_tokens @ w_k.T + b_k), split(c_tokens @ w_v.T + b_v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(h // heads)
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    attended = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(q_tokens.shape)
    fused = q_tokens + linear(attended, model.attention.out_proj)
    return head_by_hand(fused.mean(1), model.head)


@SETTINGS
@given(dims=dims2, heads=st.integers(1, 3), head_dim=st.integers(1, 4), n=st.integers(1, 5),
       m=st.integers(1, 5), seed=st.integers(0, 99))
def test_cross_attention_matches_hand_written_attention(dims, heads, head_dim, n, m, seed):
    model = build(CrossAttentionFusion, dims, heads * head_dim, 3, seed, num_heads=heads).eval()
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(2, n, dims[0], generator=gen, dtype=torch.float64)
    context = torch.randn(2, m, dims[1], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(model(query, context), cross_attention_by_hand(model, query, context))


def test_cross_attention_one_head_matches_scaled_dot_product_attention():
    model = build(CrossAttentionFusion, (6, 5), 8, 4, 0).eval()
    query, context = random_inputs((6, 5), 3, 1, tokens=7)
    q_tokens, c_tokens = model.query_proj(query), model.context_proj(context)
    w_q, w_k, w_v = model.attention.in_proj_weight.chunk(3)
    b_q, b_k, b_v = model.attention.in_proj_bias.chunk(3)
    attended = F.scaled_dot_product_attention(q_tokens @ w_q.T + b_q, c_tokens @ w_k.T + b_k,
                                              c_tokens @ w_v.T + b_v)
    fused = q_tokens + model.attention.out_proj(attended)
    torch.testing.assert_close(model(query, context), model.head(fused.mean(1)))


def test_cross_attention_padding_mask_and_single_tokens():
    model = build(CrossAttentionFusion, (4, 3), 6, 2, 0, num_heads=2).eval()
    query, context = random_inputs((4, 3), 2, 5, tokens=5)
    mask = torch.tensor([[False, False, True, True, True], [False, True, False, True, False]])
    torch.testing.assert_close(model(query, context, key_padding_mask=mask),
                               cross_attention_by_hand(model, query, context, mask))
    # masked context tokens do not matter
    changed = context.clone()
    changed[mask] = 100.0
    torch.testing.assert_close(model(query, changed, key_padding_mask=mask),
                               model(query, context, key_padding_mask=mask))
    # a 2-D input is one token; with one context token every attention weight is exactly 1
    q2, c2 = random_inputs((4, 3), 3, 6)
    _, weights = model.attend(q2, c2)
    torch.testing.assert_close(weights, torch.ones(3, 1, 1, dtype=torch.float64))
    torch.testing.assert_close(model(q2, c2), model(q2[:, None], c2[:, None]))


# ------------------------------------------------------------------------------------------
# training: gradients reach every parameter; the wrapper with encoders
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs", [
    (EarlyFusion, {}), (LateFusion, {"learned_weights": True}),
    (LateFusion, {"combine": "probs", "learned_weights": True}), (IntermediateFusion, {}),
    (TensorFusion, {}), (LowRankTensorFusion, {"rank": 3}), (CrossAttentionFusion, {"num_heads": 2}),
])
def test_gradients_reach_every_parameter(cls, kwargs):
    torch.manual_seed(0)
    model = cls((5, 3), 4, 3, **kwargs)
    tokens = 4 if cls is CrossAttentionFusion else None  # one key would make softmax constant
    inputs = [x.float() for x in random_inputs((5, 3), 8, 0, tokens=tokens)]
    loss = F.cross_entropy(model(*inputs), torch.arange(8) % 3)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_encode_then_fuse_applies_encoders_first():
    torch.manual_seed(0)
    encoders = [torch.nn.Linear(10, 4), torch.nn.Sequential(torch.nn.Linear(7, 3), torch.nn.Tanh())]
    fusion = TensorFusion((4, 3), 5, 2)
    model = EncodeThenFuse(encoders, fusion)
    xa, xb = torch.randn(6, 10), torch.randn(6, 7)
    torch.testing.assert_close(model(xa, xb), fusion(encoders[0](xa), encoders[1](xb)))
    assert count_parameters(model) == sum(count_parameters(e) for e in encoders) + count_parameters(fusion)


# ------------------------------------------------------------------------------------------
# bad inputs: every error names the argument
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ALL_STYLES)
def test_bad_forward_inputs(cls):
    model = cls((4, 3), 6, 2)
    name = "features" if cls is EarlyFusion else "embeddings"
    a, b = torch.randn(5, 4), torch.randn(5, 3)
    with pytest.raises(ValueError, match=rf"{name}: expected 2 tensors .* got 1"):
        model(a)
    with pytest.raises(ValueError, match=rf"{name}: expected 2 tensors .* got 3"):
        model(a, b, b)
    with pytest.raises(ValueError, match=rf"{name}\[1\]: expected last dimension 3 \(dims\[1\]\), got 4"):
        model(a, a)
    with pytest.raises(ValueError, match=rf"{name}: every modality must have the same batch size"):
        model(a, b[:4])
    with pytest.raises(TypeError, match=rf"{name}\[0\]: expected a torch.Tensor, got list"):
        model(a.tolist(), b)
    with pytest.raises(TypeError, match=rf"{name}\[1\]: expected a floating-point tensor"):
        model(a, b.long())
    bad_rank = torch.randn(5, 2, 2, 4)
    with pytest.raises(ValueError, match=rf"{name}\[0\]: expected shape"):
        model(bad_rank, b)


def test_only_cross_attention_accepts_token_sequences():
    with pytest.raises(ValueError, match=r"embeddings\[0\]: expected shape \(batch, 4\), got \(5, 2, 4\)"):
        TensorFusion((4, 3), 6, 2)(torch.randn(5, 2, 4), torch.randn(5, 3))
    out = CrossAttentionFusion((4, 3), 6, 2)(torch.randn(5, 2, 4), torch.randn(5, 9, 3))
    assert out.shape == (5, 2)


@pytest.mark.parametrize("cls", ALL_STYLES)
def test_bad_constructor_arguments(cls):
    with pytest.raises(ValueError, match=r"dims must list .*2 modalities, got 1"):
        cls((4,), 6, 2)
    with pytest.raises(TypeError, match=r"dims must be a sequence"):
        cls(4, 6, 2)
    with pytest.raises(TypeError, match=r"dims\[1\] must be an int, got float"):
        cls((4, 3.0), 6, 2)
    with pytest.raises(ValueError, match=r"dims\[0\] must be a positive int, got 0"):
        cls((0, 3), 6, 2)
    with pytest.raises(ValueError, match=r"hidden must be a positive int, got 0"):
        cls((4, 3), 0, 2)
    with pytest.raises(TypeError, match=r"num_classes must be an int, got bool"):
        cls((4, 3), 6, True)


def test_bad_style_specific_arguments():
    with pytest.raises(ValueError, match=r"rank must be a positive int, got 0"):
        LowRankTensorFusion((4, 3), 6, 2, rank=0)
    with pytest.raises(ValueError, match=r"combine must be 'logits' or 'probs', got 'votes'"):
        LateFusion((4, 3), 6, 2, combine="votes")
    with pytest.raises(TypeError, match=r"learned_weights must be a bool"):
        LateFusion((4, 3), 6, 2, learned_weights=1)
    with pytest.raises(ValueError, match=r"num_classes must be >= 2 to average probabilities, got 1"):
        LateFusion((4, 3), 6, 1, combine="probs")
    with pytest.raises(ValueError, match=r"hidden must be divisible by num_heads, got hidden=6 and num_heads=4"):
        CrossAttentionFusion((4, 3), 6, 2, num_heads=4)
    with pytest.raises(ValueError, match=r"dims must list exactly 2 modalities, got 3"):
        CrossAttentionFusion((4, 3, 2), 6, 2)
    model = CrossAttentionFusion((4, 3), 6, 2)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected shape \(5, 7\)"):
        model(torch.randn(5, 2, 4), torch.randn(5, 7, 3), key_padding_mask=torch.zeros(5, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"key_padding_mask must be a bool"):
        model(torch.randn(5, 2, 4), torch.randn(5, 7, 3), key_padding_mask=torch.zeros(5, 7))


def test_bad_encode_then_fuse_arguments():
    fusion = EarlyFusion((4, 3), 6, 2)
    with pytest.raises(ValueError, match=r"encoders: expected 2 encoders .* got 1"):
        EncodeThenFuse([torch.nn.Identity()], fusion)
    with pytest.raises(TypeError, match=r"encoders\[1\] must be an nn.Module, got function"):
        EncodeThenFuse([torch.nn.Identity(), lambda x: x], fusion)
    with pytest.raises(TypeError, match=r"fusion must be one of the fusion modules"):
        EncodeThenFuse([torch.nn.Identity(), torch.nn.Identity()], torch.nn.Linear(2, 2))
    model = EncodeThenFuse([torch.nn.Identity(), torch.nn.Identity()], fusion)
    with pytest.raises(ValueError, match=r"inputs: expected 2 tensors \(one per encoder\), got 3"):
        model(torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 3))
