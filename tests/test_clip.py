"""Tests of mmtutor.models.clip: the loss against PyTorch and NumPy references, the towers, training, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics.pairwise import cosine_similarity
from torch.nn import functional as F

from mmtutor.data.shapes import generate_shapes
from mmtutor.functional import cross_entropy, log_softmax
from mmtutor.models.clip import (CaptionTokenizer, CLIPModel, ImageEncoder, PrecomputedText, TextTransformer,
                                 caption_groups, clip_loss, images_to_tensor, similarity_matrix,
                                 swapped_caption, train_clip, zero_shot_classify)
from mmtutor.train import load_checkpoint, save_checkpoint

CAPTIONS = ["a large red circle", "a small blue square on the left and a large yellow triangle on the right",
            "a large yellow triangle on the left and a small blue square on the right", "a small green square"]


def unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


@pytest.fixture(scope="module")
def scenes():
    return generate_shapes(64, seed=5)


@pytest.fixture(scope="module")
def tokenizer(scenes):
    return CaptionTokenizer.from_captions(scenes.captions + CAPTIONS)


# ------------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 16), st.floats(0.5, 100.0), st.integers(0, 10_000))
def test_clip_loss_equals_two_cross_entropies(n, d, scale, seed):
    u, v = unit(n, d, seed), unit(n, d, seed + 1)
    logits = scale * u @ v.T
    targets = torch.arange(n)
    torch_reference = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    s = logits.numpy()
    numpy_reference = 0.5 * (cross_entropy(s, np.arange(n)) + cross_entropy(s.T, np.arange(n)))
    by_hand = -0.5 * (np.trace(log_softmax(s, axis=1)) + np.trace(log_softmax(s, axis=0))) / n
    loss = clip_loss(u, v, scale)
    assert float(loss) == pytest.approx(float(torch_reference), rel=1e-10, abs=1e-12)
    assert float(loss) == pytest.approx(numpy_reference, rel=1e-10, abs=1e-12)
    assert float(loss) == pytest.approx(by_hand, rel=1e-10, abs=1e-12)
    swapped = clip_loss(v, u, torch.tensor(scale, dtype=torch.float64))      # symmetric in the two modalities
    assert float(swapped) == pytest.approx(float(loss), rel=1e-12)


def test_perfect_alignment_with_a_large_scale_gives_zero_loss():
    u = torch.eye(16, 32, dtype=torch.float64)
    assert float(clip_loss(u, u, 100.0)) < 1e-30
    # with orthonormal pairs the loss is log(1 + (N - 1) e^{-scale}): temperature bounds how low it can go
    assert float(clip_loss(u, u, 1.0)) == pytest.approx(math.log(1 + 15 / math.e))


def test_random_embeddings_give_about_log_batch():
    u, v = unit(64, 2048, 0), unit(64, 2048, 1)
    assert float(clip_loss(u, v, 1.0)) == pytest.approx(math.log(64), abs=0.01)
    assert float(clip_loss(u, v, 10.0)) == pytest.approx(math.log(64), abs=0.1)


def test_groups_spread_the_target_over_duplicates():
    u, v = unit(6, 8, 3), unit(6, 8, 4)
    assert float(clip_loss(u, v, 7.0, groups=torch.arange(6))) == pytest.approx(float(clip_loss(u, v, 7.0)))
    groups = np.array([0, 1, 0, 2, 1, 0])
    s = 7.0 * (u @ v.T).numpy()
    same = (groups[:, None] == groups[None, :]).astype(float)
    y = same / same.sum(axis=1, keepdims=True)
    reference = 0.5 * (cross_entropy(s, y) + cross_entropy(s.T, y))
    assert float(clip_loss(u, v, 7.0, groups=groups)) == pytest.approx(reference, rel=1e-10)


def test_hard_negatives_are_extra_columns_of_the_image_to_text_half():
    u, v, neg = unit(5, 8, 5), unit(5, 8, 6), unit(3, 8, 7)
    s = 4.0 * u @ v.T
    i2t = F.cross_entropy(torch.cat([s, 4.0 * u @ neg.T], dim=1), torch.arange(5))
    reference = 0.5 * (i2t + F.cross_entropy(s.T, torch.arange(5)))
    assert float(clip_loss(u, v, 4.0, negative_text_emb=neg)) == pytest.approx(float(reference), rel=1e-12)
    groups = torch.tensor([0, 0, 1, 2, 3])
    with_groups = clip_loss(u, v, 4.0, groups=groups, negative_text_emb=neg)
    assert float(with_groups) > 0 and math.isfinite(float(with_groups))


def test_similarity_matrix_is_cosine_similarity():
    a, b = torch.randn(5, 7), torch.randn(4, 7)
    np.testing.assert_allclose(similarity_matrix(a, b).numpy(), cosine_similarity(a.numpy(), b.numpy()),
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# the towers and the model
# ------------------------------------------------------------------------------------------------

def test_images_to_tensor_and_image_encoder(scenes):
    x = images_to_tensor(scenes.images[:3])
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.max()) <= 1.0
    assert torch.equal(x[1, :, 5, 7] * 255, torch.tensor(scenes.images[1, 5, 7], dtype=torch.float32))
    encoder = ImageEncoder(width=8, out_dim=16)
    assert encoder(x).shape == (3, 16)
    w, d = 8, 16
    assert sum(p.numel() for p in encoder.parameters()) == 27 * w * w + 24 * w + (32 * w + 1) * d
    assert ImageEncoder(**encoder.config).config == {"width": 8, "out_dim": 16}


def test_image_encoder_knows_left_from_right(scenes):
    encoder = ImageEncoder(width=8, out_dim=16).eval()
    x = images_to_tensor(scenes.images[:8])
    with torch.no_grad():
        assert not torch.allclose(encoder(x), encoder(x.flip(-1)), atol=1e-4)


def test_tokenizer(tokenizer):
    ids = tokenizer(["a large red circle", "A Large Red Banana"])
    assert ids.shape == (2, tokenizer.max_length) and ids.dtype == torch.int64
    assert ids[0, :4].tolist() == [tokenizer.vocab[w] for w in "a large red circle".split()]
    assert ids[1, 3] == tokenizer.unk_id and (ids[:, 4:] == tokenizer.pad_id).all()
    again = CaptionTokenizer.from_json(tokenizer.to_json())
    assert again.tokens == tokenizer.tokens and again.max_length == tokenizer.max_length


def test_text_transformer_sees_word_order_where_a_bag_of_words_does_not(tokenizer):
    torch.manual_seed(0)
    text = TextTransformer(tokenizer, dim=32, heads=4).eval()
    ids = text.prepare(CAPTIONS[1:3])  # the same words, left and right swapped
    assert sorted(ids[0].tolist()) == sorted(ids[1].tolist())
    with torch.no_grad():
        out = text(ids)
        bag_of_words = text.token_embedding(ids).sum(dim=1)  # what a pure bag of words sees
    # a bag of words cannot tell the two apart; the transformer, untrained, already does (by a few percent)
    assert float((bag_of_words[0] - bag_of_words[1]).norm() / bag_of_words[0].norm()) < 1e-6
    assert float((out[0] - out[1]).norm() / out[0].norm()) > 0.01


def test_text_transformer_ignores_padding(tokenizer):
    torch.manual_seed(0)
    text = TextTransformer(tokenizer, dim=16, heads=2, layers=2).eval()
    ids = text.prepare(["a small green square", "a large red circle"])
    with torch.no_grad():
        torch.testing.assert_close(text(ids), text(ids[:, :4]))


def test_model_temperature_is_log_parametrised_and_clamped(tokenizer):
    model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8)
    assert float(model.logit_scale.detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    assert model.temperature == pytest.approx(0.07, rel=1e-6)
    with torch.no_grad():
        model.log_logit_scale.fill_(10.0)
    assert float(model.logit_scale.detach()) == pytest.approx(100.0, rel=1e-6)
    with torch.no_grad():
        model.log_logit_scale.fill_(-3.0)
    assert float(model.logit_scale.detach()) == pytest.approx(1.0)


def test_forward_returns_unit_vectors(scenes, tokenizer):
    model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8)
    u, v, scale = model(images_to_tensor(scenes.images[:4]), model.prepare_text(scenes.captions[:4]))
    assert u.shape == v.shape == (4, 8)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))
    loss = clip_loss(u, v, scale)
    loss.backward()
    assert model.log_logit_scale.grad is not None


def test_frozen_text_tower_passes_embeddings_through():
    table = {c: np.eye(4, dtype=np.float32)[i] for i, c in enumerate(CAPTIONS)}
    tower = PrecomputedText(4, encoder=lambda texts: np.stack([table[t] for t in texts]))
    model = CLIPModel(ImageEncoder(8, 16), tower, embed_dim=3)
    prepared = model.prepare_text(CAPTIONS[:2])
    torch.testing.assert_close(prepared, torch.eye(4)[:2])
    expected = F.normalize(model.text_projection.weight.T[:2], dim=-1)
    torch.testing.assert_close(model.embed_captions(CAPTIONS[:2]), expected)


def test_zero_shot_classify_picks_the_most_similar_class(scenes, tokenizer):
    torch.manual_seed(1)
    model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8).eval()
    prompts = ["a large red circle", ["a small green square", "a small blue square"], "a large yellow triangle"]
    predicted = zero_shot_classify(model, scenes.images[:10], prompts)
    u = model.embed_images(scenes.images[:10])
    classes = torch.stack([F.normalize(model.embed_captions([p] if isinstance(p, str) else p).mean(0), dim=0)
                           for p in prompts])
    np.testing.assert_array_equal(predicted, (u @ classes.T).argmax(1).numpy())
    assert set(predicted.tolist()) <= {0, 1, 2}


def test_training_lowers_the_loss_reproducibly(scenes, tokenizer):
    def run():
        torch.manual_seed(0)
        model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8)
        negatives = [swapped_caption(o) or "a" for o in scenes.objects]
        history = train_clip(model, images_to_tensor(scenes.images), model.prepare_text(scenes.captions),
                             groups=caption_groups(scenes.captions), negative_text=model.prepare_text(negatives),
                             negative_mask=[swapped_caption(o) is not None for o in scenes.objects],
                             epochs=6, batch_size=16, lr=3e-3, progress=False)
        return model, history

    model, history = run()
    _, again = run()
    assert len(history.loss) == len(history.temperature) == 6 * 4 and history.steps_per_epoch == 4
    assert np.mean(history.loss[-4:]) < np.mean(history.loss[:4])
    assert history.loss == again.loss
    assert not model.training


def test_checkpoint_round_trip(tmp_path, scenes, tokenizer):
    model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8).eval()
    path = save_checkpoint(model, tmp_path / "clip.safetensors",
                           {"tokenizer": tokenizer.to_json(), "image_encoder": model.image_encoder.config})
    tok = CaptionTokenizer.from_json(load_checkpoint(model, path)["tokenizer"])
    again = CLIPModel(ImageEncoder(8, 16), TextTransformer(tok, dim=16, heads=2), embed_dim=8)
    load_checkpoint(again, path)
    torch.testing.assert_close(again.embed_images(scenes.images[:5]), model.embed_images(scenes.images[:5]))
    torch.testing.assert_close(again.embed_captions(CAPTIONS), model.embed_captions(CAPTIONS))


def test_caption_groups_and_swapped_caption(scenes):
    groups = caption_groups(["b", "a", "b"])
    assert groups.tolist() == [1, 0, 1]
    mirrored = 0
    for objects, caption in zip(scenes.objects, scenes.captions):
        swapped = swapped_caption(objects)
        if swapped is not None:
            assert swapped != caption and sorted(swapped.split()) == sorted(caption.split())
            assert swapped_caption(objects[::-1]) == caption  # the generator's own caption of the mirror
            mirrored += 1
    assert mirrored > 10
    one = {"size": "small", "color": "red", "shape": "circle"}
    assert swapped_caption([one]) is None and swapped_caption([one, dict(one)]) is None


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input(scenes, tokenizer):
    model = CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), embed_dim=8)
    u = unit(4, 8, 0).float()
    with pytest.raises(TypeError, match="images must have dtype uint8"):
        images_to_tensor(scenes.images.astype(np.float32))
    with pytest.raises(ValueError, match="images must have shape"):
        images_to_tensor(scenes.images[0])
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        model.image_encoder(torch.from_numpy(scenes.images[:2]).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"images must have shape \(N, 3, 32, 32\)"):
        model.image_encoder(torch.zeros(2, 32, 32, 3))
    with pytest.raises(TypeError, match="images must be a torch.Tensor.*images_to_tensor"):
        model.image_encoder(scenes.images[:2])
    with pytest.raises(ValueError, match="captions must not be empty"):
        model.prepare_text([])
    with pytest.raises(ValueError, match=r"captions\[1\] must contain at least one word"):
        model.prepare_text(["a red circle", "  "])
    with pytest.raises(TypeError, match="captions must be a list of strings"):
        CaptionTokenizer.from_captions("a red circle")
    with pytest.raises(ValueError, match="text_emb must have the shape of image_emb"):
        clip_loss(u, u[:3], 10.0)
    with pytest.raises(ValueError, match="logit_scale must be finite and > 0"):
        clip_loss(u, u, 0.0)
    with pytest.raises(ValueError, match="logit_scale must be finite and > 0"):
        clip_loss(u, u, torch.tensor(-1.0))
    with pytest.raises(TypeError, match="image_emb must be a torch.Tensor"):
        clip_loss(u.numpy(), u, 1.0)
    with pytest.raises(ValueError, match="groups must be 4 integer labels"):
        clip_loss(u, u, 1.0, groups=[0, 1])
    with pytest.raises(ValueError, match="init_temperature must be a finite number > 0"):
        CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), init_temperature=0.0)
    with pytest.raises(ValueError, match="init_temperature must lie in"):
        CLIPModel(ImageEncoder(8, 16), TextTransformer(tokenizer, dim=16, heads=2), init_temperature=0.001)
    with pytest.raises(ValueError, match="text must hold one entry per image"):
        model(images_to_tensor(scenes.images[:3]), model.prepare_text(scenes.captions[:2]))
    with pytest.raises(ValueError, match="position_init_std must be a finite number > 0"):
        TextTransformer(tokenizer, dim=16, heads=2, position_init_std=0.0)
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        TextTransformer(tokenizer, dim=10, heads=4)
    with pytest.raises(ValueError, match="embeddings must have 4 columns"):
        PrecomputedText(4)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="encoder must be set"):
        PrecomputedText(4).prepare(["a red circle"])
    with pytest.raises(ValueError, match="prompts must be a list"):
        zero_shot_classify(model, scenes.images[:2], ["a large red circle"])
    with pytest.raises(ValueError, match="batch_size must lie in"):
        train_clip(model, images_to_tensor(scenes.images[:8]), model.prepare_text(scenes.captions[:8]),
                   batch_size=9, progress=False)
    with pytest.raises(ValueError, match="text must be a tensor with one entry per image"):
        train_clip(model, images_to_tensor(scenes.images[:8]), model.prepare_text(scenes.captions[:7]),
                   progress=False)
    with pytest.raises(ValueError, match="objects must be a list of 1 or 2"):
        swapped_caption([])
