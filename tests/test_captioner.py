"""The prefix captioner: masking, the loss, left-padded generation, caption parsing, scoring, bad input."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from mmtutor.compress.captioner import quantize_captioner
from mmtutor.data.shapes import COLORS, SHAPES, SIZES, load_shapes
from mmtutor.evaluate import model_size_bytes
from mmtutor.models.captioner import (QUESTION_KINDS, CaptionerTokenizer, PrefixCaptioner, attribute_matches,
                                      caption_scores, captioner_examples, collate_captioner, evaluate_captioner,
                                      fit_captioner, parse_caption, qa_accuracy_by_kind, question_kind,
                                      scene_slots)
from mmtutor.models.clip import images_to_tensor

SCENES = load_shapes("val", n=40)
TOKENIZER = CaptionerTokenizer.from_scenes(load_shapes("train", n=300))


def small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = PrefixCaptioner(TOKENIZER, **kwargs)
    with torch.no_grad():                 # a random decoder whose greedy choices are not all the same token
        for p in model.decoder.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def test_tokenizer_round_trip_and_specials():
    assert TOKENIZER.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    for caption in SCENES.captions:
        assert TOKENIZER.decode(TOKENIZER.encode(caption)) == caption
    ids = TOKENIZER.encode("what color is the circle?")
    assert TOKENIZER.tokens[ids[-1]] == "?"
    assert TOKENIZER.decode([TOKENIZER.bos_id] + ids + [TOKENIZER.eos_id] + ids) == "what color is the circle ?"
    assert TOKENIZER.encode("a zebra")[1] == TOKENIZER.unk_id
    assert len(TOKENIZER) == 37          # 4 special tokens, 32 words and '?' (300 scenes have them all)


def test_collate_masks_everything_but_the_target():
    batch = collate_captioner(TOKENIZER, ["", "is there a circle?"], ["a small red circle", "yes"])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    caption = TOKENIZER.encode("a small red circle")
    assert ids[0, :6].tolist() == [TOKENIZER.bos_id] + caption + [TOKENIZER.eos_id]
    assert labels[0, 0] == -100 and labels[0, 1:6].tolist() == caption + [TOKENIZER.eos_id]
    question = TOKENIZER.encode("is there a circle?")
    scored = labels[1] != -100
    assert labels[1][scored].tolist() == TOKENIZER.encode("yes") + [TOKENIZER.eos_id]
    assert int(scored.nonzero()[0]) == 1 + len(question)
    assert mask.sum(1).tolist() == [6, 1 + len(question) + 2]
    assert (ids[mask == 0] == TOKENIZER.pad_id).all() and (labels[mask == 0] == -100).all()


def test_loss_is_the_cross_entropy_of_the_target_tokens_only():
    model = small_model()
    batch = collate_captioner(TOKENIZER, ["", "how many shapes are there?"], ["a large blue square", "one"])
    out = model(SCENES.images[:2], **batch)
    p = model.num_prefix_tokens
    logits = out.logits[:, p:-1]                       # position t predicts token t + 1 of the text
    targets = batch["labels"][:, 1:]
    reference = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert out.logits.shape[1] == p + batch["input_ids"].shape[1]


def test_prefix_changes_with_the_image_and_reaches_the_logits():
    model = small_model()
    prefix = model.prefix(SCENES.images[:3])
    assert prefix.shape == (3, model.prefix_length + 16, model.decoder.config.n_embd) == (3, 18, 64)
    assert small_model(patch_tokens=False, prefix_length=4).prefix(SCENES.images[:3]).shape == (3, 4, 64)
    batch = collate_captioner(TOKENIZER, [""] * 2, ["a"] * 2)
    out = model(SCENES.images[[0, 1]], **batch)
    assert not torch.allclose(out.logits[0], out.logits[1])
    assert torch.equal(model.prefix(images_to_tensor(SCENES.images[:3])), prefix)   # uint8 or float input


def manual_greedy(model, image, question, steps):
    """Greedy decoding by hand: the full sequence through the decoder at every step, no cache, no padding."""
    prompt = [TOKENIZER.bos_id] + (TOKENIZER.encode(question) if question else [])
    ids = torch.tensor([prompt])
    new = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(image[None], ids, torch.ones_like(ids)).logits[0, -1]
            token = int(logits.argmax())
            new.append(token)
            if token == TOKENIZER.eos_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return TOKENIZER.decode(new)


def test_left_padded_batch_generation_matches_one_at_a_time_and_a_manual_loop():
    model = small_model(seed=1)
    questions = ["how many shapes are there?", "is there a circle?", "what color is the square?",
                 "where is the red circle?", "how many shapes are there?", "what size is the blue triangle?"]
    images = SCENES.images[:6]
    batched = model.generate(images, questions, max_new_tokens=4)
    alone = [model.generate(images[i:i + 1], [q], max_new_tokens=4)[0] for i, q in enumerate(questions)]
    by_hand = [manual_greedy(model, images_to_tensor(images)[i], q, 4) for i, q in enumerate(questions)]
    assert batched == alone == by_hand
    captions = model.generate(images, max_new_tokens=6)
    assert captions == [manual_greedy(model, images_to_tensor(images)[i], None, 6) for i in range(6)]


def test_sampling_is_seeded_and_leaves_the_global_rng_alone():
    model = small_model(seed=2)
    state = torch.random.get_rng_state()
    a = model.generate(SCENES.images[:8], do_sample=True, temperature=1.5, seed=3, max_new_tokens=8)
    b = model.generate(SCENES.images[:8], do_sample=True, temperature=1.5, seed=3, max_new_tokens=8)
    assert a == b and torch.equal(state, torch.random.get_rng_state())


def test_parse_caption_reads_every_template():
    for caption, objects in zip(SCENES.captions, SCENES.objects):
        assert parse_caption(caption) == scene_slots(objects)
    assert parse_caption("a large red circle on the left") is None
    expected = {"alone": {"size": "small", "color": "blue", "shape": "square"}}
    assert parse_caption("  a   small blue  square ") == expected


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 39), st.sampled_from(["size", "color", "shape"]), st.integers(0, 1))
def test_attribute_matches_counts_one_changed_attribute(index, attribute, which):
    objects = SCENES.objects[index]
    which = min(which, len(objects) - 1)
    values = {"size": list(SIZES), "color": list(COLORS), "shape": list(SHAPES)}[attribute]
    changed = [dict(o) for o in objects]
    changed[which][attribute] = values[(values.index(changed[which][attribute]) + 1) % len(values)]
    words = [f"a {o['size']} {o['color']} {o['shape']}" for o in changed]
    caption = words[0] if len(words) == 1 else f"{words[0]} on the left and {words[1]} on the right"
    scores = attribute_matches(caption, objects)
    n = len(objects)
    for a in ("size", "color", "shape"):
        assert scores[a] == ((n - 1 if a == attribute else n), n)
    assert scores["position"] == (n, n)


def test_caption_scores_of_perfect_swapped_and_broken_captions():
    perfect = caption_scores(list(SCENES.captions), SCENES)
    assert perfect["attribute_match"] == perfect["exact_match"] == perfect["bleu4"] == perfect["parsed"] == 1.0
    two = [i for i, o in enumerate(SCENES.objects) if len(o) == 2 and o[0] != o[1]]
    swapped = attribute_matches(f"{SCENES.captions[two[0]].split(' on the left and ')[1][:-len(' on the right')]}"
                                f" on the left and {SCENES.captions[two[0]].split(' on the left and ')[0]}"
                                f" on the right", SCENES.objects[two[0]])
    assert swapped["position"] == (2, 2)       # both slots filled, but with the other object's attributes
    broken = caption_scores(["a red"] * len(SCENES), SCENES)
    assert broken["attribute_match"] == broken["parsed"] == broken["position"] == 0.0
    one = [i for i, o in enumerate(SCENES.objects) if len(o) == 1][0]
    assert attribute_matches("a small red circle on the left and a small red circle on the right",
                             SCENES.objects[one])["position"] == (0, 1)


FLAT_QUESTIONS = [q for qs in SCENES.questions for q in qs]
FLAT_TRUTHS = [a for answers in SCENES.answers for a in answers]


def nest(flat):
    """A flat list of answers, one per question of SCENES, regrouped by scene."""
    out, k = [], 0
    for qs in SCENES.questions:
        out.append(flat[k:k + len(qs)])
        k += len(qs)
    return out


@settings(max_examples=25, deadline=None)
@given(wrong=st.sets(st.integers(0, len(FLAT_QUESTIONS) - 1)))
def test_qa_accuracy_by_kind_matches_a_count_by_first_words(wrong):
    answers = [("no" if t == "yes" else "yes") if i in wrong else t for i, t in enumerate(FLAT_TRUTHS)]
    result = qa_accuracy_by_kind(nest(answers), SCENES)
    # reference: the first two words name the kind, except "where is ..."
    kinds = [" ".join(q.split()[:2]).replace("where is", "where") for q in FLAT_QUESTIONS]
    expected = {k: (sum(kk == k and i not in wrong for i, kk in enumerate(kinds)), kinds.count(k)) for k in set(kinds)}
    assert result == expected and set(result) <= set(QUESTION_KINDS)
    assert sum(c for c, _ in result.values()) == len(FLAT_QUESTIONS) - len(wrong)


def test_qa_accuracy_by_kind_adds_up_to_the_reported_qa_accuracy():
    report = evaluate_captioner(small_model(seed=3), SCENES)
    counts = qa_accuracy_by_kind(report.answers, SCENES)
    correct, total = (sum(v[j] for v in counts.values()) for j in (0, 1))
    assert total == len(FLAT_QUESTIONS) and correct / total == pytest.approx(report.scores["qa_accuracy"])
    assert question_kind("Where  is the red circle?") == "where" and question_kind("how many shapes?") == "how many"


def test_fit_reduces_the_loss_on_a_small_set():
    scenes = load_shapes("train", n=64)
    torch.manual_seed(0)
    model = PrefixCaptioner(TOKENIZER, n_embd=32, n_layer=1, projector_hidden=64)
    history = fit_captioner(model, scenes, epochs=3, batch_size=32, lr=3e-3, warmup_steps=2, seed=0)
    assert history.steps_per_epoch == 4 and len(history.step_loss) == 12
    assert np.mean(history.step_loss[-4:]) < 0.9 * np.mean(history.step_loss[:4])
    assert not model.training
    examples = captioner_examples(scenes, 2, np.random.default_rng(0))
    assert len(examples) == 64 * 3 and examples[0] == (0, "", scenes.captions[0])


def test_frozen_encoder_gets_no_gradient_and_keeps_batch_norm_statistics():
    model = small_model(freeze_image_encoder=True)
    model.train()
    assert not model.image_encoder.training
    before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    batch = collate_captioner(TOKENIZER, ["", ""], ["a small red circle", "a large blue square"])
    model(SCENES.images[:2], **batch).loss.backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.image_encoder.state_dict().items())


def test_quantized_captioner_is_smaller_and_close():
    model = small_model()
    int8, int4 = quantize_captioner(model, 8), quantize_captioner(model, 4, group_size=32)
    fp32_bytes = model_size_bytes(model)
    assert model_size_bytes(int8) < fp32_bytes / 3.2
    assert model_size_bytes(int4) < model_size_bytes(int8)
    batch = collate_captioner(TOKENIZER, [""] * 4, SCENES.captions[:4])
    with torch.no_grad():
        ref, q8 = model(SCENES.images[:4], **batch).logits, int8(SCENES.images[:4], **batch).logits
    assert F.cosine_similarity(ref.flatten(), q8.flatten(), dim=0) > 0.999
    assert len(int8.generate(SCENES.images[:2], max_new_tokens=3)) == 2


def test_quantize_captioner_rejects_other_models():
    with pytest.raises(TypeError, match="model must be a PrefixCaptioner"):
        quantize_captioner(torch.nn.Linear(2, 2))


def test_bad_inputs():
    model = small_model()
    with pytest.raises(ValueError, match="images"):
        model.generate(np.zeros((2, 28, 28, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="images"):
        model.generate(torch.zeros(2, 3, 16, 16))
    with pytest.raises(TypeError, match="images"):
        model.generate([[0.0]])
    with pytest.raises(ValueError, match=r"questions\[1\]"):
        model.generate(SCENES.images[:2], ["is there a circle?", "   "])
    with pytest.raises(ValueError, match="questions"):
        model.generate(SCENES.images[:2], ["is there a circle?"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(SCENES.images[:2], max_new_tokens=0)
    with pytest.raises(TypeError, match="max_new_tokens"):
        model.generate(SCENES.images[:2], max_new_tokens=2.0)
    with pytest.raises(ValueError, match="n_positions"):
        model.generate(SCENES.images[:2], max_new_tokens=40)
    with pytest.raises(ValueError, match="input_ids"):
        model(SCENES.images[:2], torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="tokenizer"):
        PrefixCaptioner("vocabulary")
    with pytest.raises(ValueError, match="prefix_length"):
        PrefixCaptioner(TOKENIZER, prefix_length=0)
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        collate_captioner(TOKENIZER, [""], [""])
    with pytest.raises(ValueError, match="captions"):
        caption_scores(["a large red circle"], SCENES)
    with pytest.raises(TypeError, match="caption"):
        parse_caption(None)
    with pytest.raises(ValueError, match="question"):
        question_kind("why is the sky blue?")
    with pytest.raises(TypeError, match="question"):
        question_kind(3)
    with pytest.raises(ValueError, match="answers"):
        qa_accuracy_by_kind([["two"]], SCENES)
    with pytest.raises(ValueError, match=r"answers\[0\]"):
        qa_accuracy_by_kind([["two"]] * len(SCENES), SCENES)
