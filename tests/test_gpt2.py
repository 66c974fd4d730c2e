"""Tests of mmtutor.models.gpt2, mmtutor.chat and mmtutor.compress.gpt2 on tiny random GPT-2s (fast)."""

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.chat import ChatSession
from mmtutor.compress.gpt2 import TiedQuantizedEmbedding, conv1d_to_linear, quantize_gpt2
from mmtutor.compress.quantize import QuantizedLinear
from mmtutor.data.dialogue import load_dialogues
from mmtutor.evaluate import model_size_bytes
from mmtutor.models import gpt2 as g

torch.set_num_threads(1)  # tiny matrices run fastest on one thread


@pytest.fixture(scope="module")
def tokenizer():
    return g.build_dialogue_tokenizer(load_dialogues("val"), vocab_size=300)


def tiny_model(tokenizer, n_positions=64, seed=0):
    config = g.small_gpt2_config(len(tokenizer), n_layer=2, n_embd=32, n_head=4, n_positions=n_positions,
                                 pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
    return g.build_gpt2(config, seed=seed).eval()


def test_tokenizer_has_speaker_tokens(tokenizer):
    ids = tokenizer.encode("<user>What is BPE?<assistant>A tokenizer.<eos>", add_special_tokens=False)
    assert ids[0] == tokenizer.convert_tokens_to_ids(g.USER_TOKEN)
    assert g.ASSISTANT_TOKEN in tokenizer.convert_ids_to_tokens(ids)
    assert ids[-1] == tokenizer.eos_token_id


def test_encode_dialogue_masks_user_turns(tokenizer):
    turns = [("user", "Hi?"), ("assistant", "Hello."), ("user", "模型？"), ("assistant", "是的。")]
    masked = g.encode_dialogue(tokenizer, turns, mask_user=True)
    full = g.encode_dialogue(tokenizer, turns, mask_user=False)
    assert masked.input_ids == full.input_ids == tokenizer.encode(g.format_turns(turns), add_special_tokens=False)
    assert full.labels == full.input_ids
    scored = [i for i, y in zip(masked.input_ids, masked.labels) if y != -100]
    answer_ids = [tokenizer.encode(t, add_special_tokens=False) + [tokenizer.eos_token_id]
                  for t in ("Hello.", "是的。")]
    assert scored == answer_ids[0] + answer_ids[1]
    assert all(y in (-100, i) for i, y in zip(masked.input_ids, masked.labels))


def test_format_turns_and_bad_turns():
    assert g.format_turns([("user", "a")], add_generation_prompt=True) == "<user>a<assistant>"
    with pytest.raises(ValueError, match="speaker"):
        g.format_turns([("bot", "a")])
    with pytest.raises(ValueError, match="text"):
        g.format_turns([("user", " ")])
    with pytest.raises(TypeError, match="turns"):
        g.format_turns("hello")


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.integers(4, 99), min_size=1, max_size=12), min_size=1, max_size=6),
       st.integers(2, 10))
def test_pack_examples_keeps_order(sequences, block):
    examples = [g.DialogueExample(s, [-100 if i % 2 else i for i in s]) for s in sequences]
    packed = g.pack_examples(examples, block)
    stream = [i for s in sequences for i in s]
    flat = [i for e in packed for i in e.input_ids]
    assert flat == stream[:len(flat)]
    if len(stream) >= block:
        assert all(len(e.input_ids) == block for e in packed) and len(flat) == len(stream) // block * block
    assert [y for e in packed for y in e.labels] == [-100 if i % 2 else i for i in flat]


def test_collate_pads_and_masks():
    batch = g.collate_lm([g.DialogueExample([5, 6, 7], [5, -100, 7]), g.DialogueExample([8], [8])], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[5, -100, 7], [8, -100, -100]]


def test_perplexity_matches_model_loss(tokenizer):
    model = tiny_model(tokenizer)
    examples = g.build_lm_dataset(tokenizer, load_dialogues("val")[:3], 64)
    for example in examples:   # one example per batch: the model's own mean loss is the reference
        batch = g.collate_lm([example], tokenizer.pad_token_id)
        with torch.no_grad():
            loss = model(**batch).loss
        assert g.perplexity(model, [example]) == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert g.perplexity(model, examples) == pytest.approx(len(tokenizer), rel=0.5)   # untrained: about |V|


def test_train_lm_lowers_perplexity(tokenizer):
    model = tiny_model(tokenizer)
    examples = g.pack_examples(g.build_lm_dataset(tokenizer, load_dialogues("val"), 64, mask_user=False), 32)
    history = g.train_lm(model, examples, examples[:8], epochs=3, batch_size=8, lr=3e-3, warmup_steps=2)
    assert history.val_perplexity[-1] < 0.7 * history.val_perplexity[0]
    assert len(history.step_loss) == 3 * math.ceil(len(examples) / 8) and history.cpu_seconds > 0
    with pytest.raises(ValueError, match="lr"):
        g.train_lm(model, examples, lr=0.0)
    with pytest.raises(ValueError, match="epochs"):
        g.train_lm(model, examples, epochs=0)


def test_generate_ids_matches_manual_greedy(tokenizer):
    model = tiny_model(tokenizer)
    prompt = tokenizer.encode("<user>What is BPE?<assistant>", add_special_tokens=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # the careful call warns about nothing
        new = g.generate_ids(model, prompt, max_new_tokens=6, eos_token_id=None)
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            sequence.append(int(model(torch.tensor([sequence])).logits[0, -1].argmax()))
    assert new == sequence[len(prompt):]


def test_sampling_is_seeded(tokenizer):
    model = tiny_model(tokenizer)
    kwargs = dict(max_new_tokens=8, do_sample=True, top_k=50, seed=3)
    first = g.generate_reply(model, tokenizer, "What is BPE?", **kwargs)
    assert g.generate_reply(model, tokenizer, "What is BPE?", **kwargs) == first


def test_generation_bad_input(tokenizer):
    model = tiny_model(tokenizer, n_positions=16)
    with pytest.raises(ValueError, match="prompt must not be empty"):
        g.generate_ids(model, [], max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        g.generate_ids(model, [5, 6], max_new_tokens=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        g.generate_ids(model, [5, 6], max_new_tokens=-3)
    with pytest.raises(TypeError, match="max_new_tokens"):
        g.generate_ids(model, [5, 6], max_new_tokens=2.5)
    with pytest.raises(ValueError, match="context of 16"):
        g.generate_ids(model, list(range(4, 20)), max_new_tokens=1)
    with pytest.raises(ValueError, match="question must not be empty"):
        g.generate_reply(model, tokenizer, "   ")
    with pytest.raises(ValueError, match="context"):
        g.generate_reply(model, tokenizer, "a much too long question " * 10, max_new_tokens=4)


def test_answer_on_topic():
    assert g.answer_on_topic("Quantization stores INT8 codes.", ["int8", "bits"])
    assert not g.answer_on_topic("Pruning removes weights.", ["int8"])
    with pytest.raises(ValueError, match="keywords"):
        g.answer_on_topic("x", [])


def _dialogue(topic, question, answer, keyword, language="en"):
    return {"id": f"{language}-{topic}", "language": language, "topic": topic,
            "turns": [{"speaker": "user", "text": question},
                      {"speaker": "assistant", "text": answer, "keywords": [keyword]}]}


def test_keyword_retriever_picks_rare_shared_words():
    corpus = [_dialogue("quantization", "What is int8 quantization?", "It stores int8 codes.", "int8"),
              _dialogue("pruning", "What is magnitude pruning?", "It zeroes small weights.", "weights"),
              _dialogue("audio", "什么是梅尔频谱？", "梅尔频谱按人耳的音高刻度汇总能量。", "梅尔", "zh")]
    retriever = g.KeywordRetriever(corpus)
    # "what" and "is" are in two of three documents (low weight); "pruning" only in one
    assert retriever.answer("What is pruning for?") == "It zeroes small weights."
    assert retriever.answer("Why int8?") == "It stores int8 codes."
    assert retriever.answer("梅尔频谱有什么用？") == "梅尔频谱按人耳的音高刻度汇总能量。"
    # the earlier turns count too
    assert retriever.answer("And why?", context=[("user", "Tell me about quantization")]) == "It stores int8 codes."
    assert math.isclose(retriever.idf["pruning"], math.log(3)) and math.isclose(retriever.idf["what"], math.log(1.5))
    rows = retriever.on_topic_report(corpus[:2], g.topic_keywords(corpus))
    assert [r["topic_match"] for r in rows] == [True, True] and [r["reference"] for r in rows] == [True, True]


def test_keyword_retriever_bad_input():
    with pytest.raises(TypeError, match="dialogues"):
        g.KeywordRetriever("not dialogues")
    with pytest.raises(ValueError, match="dialogues"):
        g.KeywordRetriever([])
    retriever = g.KeywordRetriever(load_dialogues("val"))
    with pytest.raises(ValueError, match="question"):
        retriever.answer("  ")
    with pytest.raises(TypeError, match="topic_terms"):
        retriever.on_topic_report(load_dialogues("val")[:1], ["int8"])


def test_config_bad_input():
    with pytest.raises(ValueError, match="n_embd"):
        g.small_gpt2_config(100, n_embd=30, n_head=4)
    with pytest.raises(TypeError, match="n_layer"):
        g.small_gpt2_config(100, n_layer=2.0)
    with pytest.raises(TypeError, match="config"):
        g.build_gpt2({"n_layer": 2})


def test_chat_session_keeps_and_truncates_history(tokenizer):
    model = tiny_model(tokenizer, n_positions=64)
    session = ChatSession(model, tokenizer, max_new_tokens=8)
    for question in ["What is BPE?", "And pruning?", "What is quantization?", "为什么要压缩模型？"]:
        ids = session.prompt_ids(question)
        assert len(ids) + 8 <= 64
        session.ask(question)
    assert len(session.history) == 8 and session.history[0] == ("user", "What is BPE?")
    assert session.dropped_turns > 0 and session.dropped_turns % 2 == 0
    kept = g.format_turns(session.history[session.dropped_turns:-2] + [("user", "为什么要压缩模型？")],
                          add_generation_prompt=True)
    assert ids == tokenizer.encode(kept, add_special_tokens=False)
    with pytest.raises(ValueError, match="question"):
        session.ask("")
    with pytest.raises(ValueError, match="question is"):
        session.ask("far too long " * 40)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ChatSession(model, tokenizer, max_new_tokens=0)
    session.reset()
    assert session.history == []


def test_conv1d_to_linear_same_outputs(tokenizer):
    model = tiny_model(tokenizer)
    converted = conv1d_to_linear(model)
    x = torch.randint(4, len(tokenizer), (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(converted(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    assert not any(type(m).__name__ == "Conv1D" for m in converted.modules())
    assert any(type(m).__name__ == "Conv1D" for m in model.modules())    # the original is untouched


@pytest.mark.parametrize("num_bits, group_size, min_ratio", [(8, None, 2.5), (4, 16, 3.5)])
def test_quantize_gpt2(tokenizer, num_bits, group_size, min_ratio):
    model = tiny_model(tokenizer)
    quantized = quantize_gpt2(model, num_bits=num_bits, group_size=group_size)
    assert isinstance(quantized.lm_head, QuantizedLinear)
    assert isinstance(quantized.transformer.wte, TiedQuantizedEmbedding)
    assert sum(isinstance(m, QuantizedLinear) for m in quantized.modules()) == 1 + 4 * 2
    assert model_size_bytes(model) / model_size_bytes(quantized) > min_ratio
    x = torch.randint(4, len(tokenizer), (2, 12))
    with torch.no_grad():
        a, b = model(x).logits, quantized(x).logits
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
    # the embedding reads the head's codes: one table, stored once
    torch.testing.assert_close(quantized.transformer.wte.weight, quantized.lm_head.dequantized_weight())
    assert not any("wte" in name for name in quantized.state_dict())


def test_quantize_gpt2_bad_input(tokenizer):
    with pytest.raises(TypeError, match="model"):
        quantize_gpt2(torch.nn.Linear(3, 3))
    model = tiny_model(tokenizer)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    with pytest.raises(ValueError, match="tie"):
        quantize_gpt2(model)


def test_train_lm_early_stopping_keeps_best(tokenizer):
    model = tiny_model(tokenizer)
    train = g.build_lm_dataset(tokenizer, load_dialogues("val")[:6], 64, mask_user=False)
    val = g.build_lm_dataset(tokenizer, load_dialogues("val")[6:10], 64, mask_user=False)
    history = g.train_lm(model, train, val, epochs=12, batch_size=2, lr=1e-2, warmup_steps=1, patience=2)
    assert history.best_epoch is not None and 1 <= history.best_epoch <= 12
    assert len(history.val_perplexity) - 1 <= 12
    assert g.perplexity(model, val) == pytest.approx(min(history.val_perplexity[1:]), rel=1e-6)
    with pytest.raises(ValueError, match="patience"):
        g.train_lm(model, train, val, epochs=1, patience=0)


def test_adamw_warmup_cosine_groups_and_learning_rates():
    import math

    from torch import nn

    layer = nn.Linear(3, 2)
    optimizer, scheduler = g.adamw_warmup_cosine(layer.parameters(), 0.1, 0.01, warmup_steps=2, total_steps=6)
    decayed, plain = optimizer.param_groups
    assert decayed["params"] == [layer.weight] and decayed["weight_decay"] == 0.01
    assert plain["params"] == [layer.bias] and plain["weight_decay"] == 0.0
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.05, 0.1] + [0.05 * (1 + math.cos(math.pi * min(k / 4, 1))) for k in range(5)]
    assert rates == pytest.approx(expected)
