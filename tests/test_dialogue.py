"""The bilingual dialogue corpus: schema, size, language balance, split hygiene, determinism, bad input."""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.data import dialogue
from mmtutor.data.dialogue import LANGUAGES, SPEAKERS, SPLITS, TOPICS, corpus_text, load_dialogues, qa_pairs

CJK = re.compile(r"[\u4e00-\u9fff]")
ID_PATTERN = re.compile(r"^(en|zh)-[a-z]+-\d{3}$")


@pytest.fixture(scope="module")
def corpus():
    return load_dialogues()


@pytest.fixture(scope="module")
def splits():
    return {split: load_dialogues(split) for split in SPLITS}


def n_turns(dialogues):
    return sum(len(d["turns"]) for d in dialogues)


def test_size_matches_the_docstring(corpus):
    """The module docstring states these numbers; keep them in step with the file."""
    turns = Counter()
    for d in corpus:
        turns[d["language"]] += len(d["turns"])
    assert len(corpus) == 172 and n_turns(corpus) == 508
    assert turns == {"en": 254, "zh": 254}
    assert len({d["pair"] for d in corpus if "pair" in d}) == 66
    assert sum("pair" not in d for d in corpus) == 40
    assert {d["topic"] for d in corpus} == set(TOPICS) and len(TOPICS) == 20
    for number in ("172", "508", "254", "66", "40", "20 topics", "134 / 20 / 18", "386 / 60 / 62"):
        assert number in dialogue.__doc__


def test_at_least_440_turns_and_40_percent_chinese(corpus):
    zh = sum(len(d["turns"]) for d in corpus if d["language"] == "zh")
    assert n_turns(corpus) >= 440
    assert zh / n_turns(corpus) >= 0.40


def test_every_topic_has_several_dialogues_in_both_languages(corpus):
    counts = Counter((d["topic"], d["language"]) for d in corpus)
    for topic in TOPICS:
        for language in LANGUAGES:
            assert counts[topic, language] >= 3, (topic, language)


def test_schema(corpus):
    ids = [d["id"] for d in corpus]
    assert len(ids) == len(set(ids))
    for d in corpus:
        assert ID_PATTERN.match(d["id"]) and d["id"].startswith(d["language"] + "-")
        assert set(d) <= {"id", "language", "topic", "turns", "pair"}
        assert 2 <= len(d["turns"]) <= 6 and len(d["turns"]) % 2 == 0
        for i, turn in enumerate(d["turns"]):
            assert turn["speaker"] == SPEAKERS[i % 2]
            text = turn["text"]
            assert text and text == text.strip() and "\n" not in text
            # Chinese dialogues are written in Chinese; English ones contain no CJK characters
            assert bool(CJK.search(text)) == (d["language"] == "zh"), (d["id"], text)
            if turn["speaker"] == "assistant":
                assert 1 <= len(turn["keywords"]) <= 3
                for keyword in turn["keywords"]:
                    assert keyword.casefold() in text.casefold(), (d["id"], keyword)
            else:
                assert "keywords" not in turn


def test_answers_are_one_to_three_sentences(corpus):
    for question, answer in ((q, a) for _, q, a, _ in qa_pairs(corpus)):
        if CJK.search(answer):
            sentences = len(re.findall(r"[。！？]", answer))
        else:
            sentences = len(re.findall(r"[.!?](?:\s+(?=[A-Z\"])|$)", answer))
        assert 1 <= sentences <= 3, answer


def test_translation_pairs_are_one_dialogue_per_language_on_one_topic(corpus):
    members = {}
    for d in corpus:
        if "pair" in d:
            members.setdefault(d["pair"], []).append(d)
    for pair, ds in members.items():
        assert sorted(d["language"] for d in ds) == ["en", "zh"], pair
        assert ds[0]["topic"] == ds[1]["topic"] and len(ds[0]["turns"]) == len(ds[1]["turns"]), pair


def test_file_is_utf8_jsonl_with_readable_chinese():
    raw = dialogue.DIALOGUE_ASSET.read_bytes()
    text = raw.decode("utf-8")
    lines = text.splitlines()
    assert len(lines) == 172 and text.endswith("\n")
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert "多模态" in text and "\\u" not in text  # stored as characters, not \u escapes
    assert len(raw) < 200_000


def test_splits_are_disjoint_cover_everything_and_hold_both_languages(corpus, splits):
    ids = {split: {d["id"] for d in ds} for split, ds in splits.items()}
    assert ids["train"].isdisjoint(ids["val"]) and ids["train"].isdisjoint(ids["test"])
    assert ids["val"].isdisjoint(ids["test"])
    assert set().union(*ids.values()) == {d["id"] for d in corpus}
    for split, ds in splits.items():
        assert {d["language"] for d in ds} == set(LANGUAGES), split
    assert {d["topic"] for d in splits["train"]} == set(TOPICS)
    shares = {split: len(ds) / len(corpus) for split, ds in splits.items()}
    assert 0.70 <= shares["train"] <= 0.85 and 0.08 <= shares["val"] <= 0.15 and 0.08 <= shares["test"] <= 0.15
    assert [len(splits[s]) for s in SPLITS] == [134, 20, 18]
    assert [n_turns(splits[s]) for s in SPLITS] == [386, 60, 62]


def test_translation_pairs_share_a_split_and_no_held_out_question_is_in_train(splits):
    split_of_pair = {}
    for split, ds in splits.items():
        for d in ds:
            if "pair" in d:
                assert split_of_pair.setdefault(d["pair"], split) == split, d["pair"]
    train_questions = {q for _, q, _, _ in qa_pairs(splits["train"])}
    for split in ("val", "test"):
        assert train_questions.isdisjoint(q for _, q, _, _ in qa_pairs(splits[split]))


def test_stratified_every_topic_mostly_in_train(splits):
    """Implicit stratification: every topic keeps most of its units in train, none loses more than two."""
    def units(ds):
        return Counter(topic for topic, _ in {(d["topic"], d.get("pair", d["id"])) for d in ds})
    held_out, train = units(splits["val"] + splits["test"]), units(splits["train"])
    for topic in TOPICS:
        assert held_out[topic] <= 2 and train[topic] > held_out[topic], topic


def test_language_filter_is_applied_after_splitting(splits):
    for split in SPLITS:
        for language in LANGUAGES:
            expected = [d for d in splits[split] if d["language"] == language]
            assert load_dialogues(split, language) == expected
    assert len(load_dialogues(language="zh")) == 86


def test_deterministic_and_fresh_copies(corpus, splits):
    again = load_dialogues()
    assert again == corpus and again is not corpus
    again[0]["turns"][0]["text"] = "changed"
    assert load_dialogues()[0]["turns"][0]["text"] != "changed"
    assert load_dialogues("test") == splits["test"]


def test_split_does_not_depend_on_the_hash_seed(splits):
    code = ("from mmtutor.data.dialogue import load_dialogues; "
            "print(' '.join(d['id'] for d in load_dialogues('test')))")
    expected = " ".join(d["id"] for d in splits["test"])
    for seed in ("1", "12345"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == expected.split()


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=False))
def test_split_does_not_depend_on_line_order(tmp_path_factory, rng):
    lines = dialogue.DIALOGUE_ASSET.read_text(encoding="utf-8").splitlines()
    rng.shuffle(lines)
    path = tmp_path_factory.mktemp("shuffled") / "dialogue.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in SPLITS:
        assert ({d["id"] for d in load_dialogues(split, path=path)}
                == {d["id"] for d in load_dialogues(split)})


def test_loads_fast():
    start = time.perf_counter()
    for split in (None, *SPLITS):
        load_dialogues(split)
    assert (time.perf_counter() - start) / 4 < 0.5


def test_qa_pairs(corpus):
    pairs = qa_pairs(corpus)
    assert len(pairs) == n_turns(corpus) // 2 == 254
    first = corpus[0]["turns"]
    assert pairs[0] == ((), first[0]["text"], first[1]["text"], tuple(first[1]["keywords"]))
    context, question, answer, keywords = pairs[1]
    assert context == (("user", first[0]["text"]), ("assistant", first[1]["text"]))
    assert question == first[2]["text"] and answer == first[3]["text"]
    assert pairs[1].keywords == keywords and isinstance(keywords, tuple)
    # context + question + answer rebuild each dialogue exactly
    rebuilt, k = [], 0
    for d in corpus:
        last = pairs[k + len(d["turns"]) // 2 - 1]
        rebuilt.append([*last.context, ("user", last.question), ("assistant", last.answer)])
        k += len(d["turns"]) // 2
    assert rebuilt == [[(t["speaker"], t["text"]) for t in d["turns"]] for d in corpus]
    assert qa_pairs([]) == [] and qa_pairs(iter(corpus[:2])) == pairs[:len(qa_pairs(corpus[:2]))]


def test_corpus_text(corpus):
    text = corpus_text(corpus)
    lines = text.split("\n")
    assert len(lines) == n_turns(corpus)
    assert lines[0] == corpus[0]["turns"][0]["text"] and lines[-1] == corpus[-1]["turns"][-1]["text"]
    zh = corpus_text(load_dialogues(language="zh"), separator=" ")
    assert "\n" not in zh and CJK.search(zh) and not re.search(r"\bthe\b", zh)
    assert corpus_text([]) == ""


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "dev"}, "split"), ({"split": "Train"}, "split"),
    ({"language": "cmn"}, "language"), ({"language": "EN"}, "language"),
])
def test_unknown_split_or_language(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dialogues(**kwargs)


def test_bad_argument_types():
    with pytest.raises(TypeError, match="path"):
        load_dialogues(path=3)
    with pytest.raises(TypeError, match="dialogues"):
        qa_pairs(load_dialogues()[0])  # one dialogue instead of a list
    with pytest.raises(TypeError, match="dialogues"):
        corpus_text("some text")
    with pytest.raises(TypeError, match=r"dialogues\[1\]"):
        qa_pairs([load_dialogues()[0], "not a dialogue"])
    with pytest.raises(TypeError, match="separator"):
        corpus_text([], separator=None)
    with pytest.raises(FileNotFoundError):
        load_dialogues(path="/nonexistent/dialogue.jsonl")


def _good_record(i, language="en", **extra):
    user = "What is quantization?" if language == "en" else "什么是量化？"
    answer = "It stores weights as int8." if language == "en" else "量化用 int8 存储权重。"
    return {"id": f"{language}-quant-{i:03d}", "language": language, "topic": "quantization", **extra,
            "turns": [{"speaker": "user", "text": user},
                      {"speaker": "assistant", "text": answer, "keywords": ["int8"]}]}


def _break(record, how):
    turns = record["turns"]
    if how == "missing turns":
        del record["turns"]
    elif how == "unknown field":
        record["author"] = "me"
    elif how == "bad language":
        record["language"] = "fr"
    elif how == "bad topic":
        record["topic"] = "cooking"
    elif how == "speaker order":
        turns[0]["speaker"], turns[1]["speaker"] = "assistant", "user"
    elif how == "keyword not in text":
        turns[1]["keywords"] = ["int4"]
    elif how == "no keywords":
        turns[1]["keywords"] = []
    elif how == "keywords on a user turn":
        turns[0]["keywords"] = ["quantization"]
    elif how == "odd number of turns":
        turns.append({"speaker": "user", "text": "And int4?"})
    elif how == "too many turns":
        turns.extend(turns[:2] * 3)
    elif how == "empty text":
        turns[0]["text"] = "  "
    elif how == "id without language":
        record["id"] = "quant-001"
    return record


@pytest.mark.parametrize("how, field", [
    ("missing turns", "turns"), ("unknown field", "author"), ("bad language", "language"),
    ("bad topic", "topic"), ("speaker order", "turns[0].speaker"), ("keyword not in text", "turns[1].keywords"),
    ("no keywords", "turns[1].keywords"), ("keywords on a user turn", "turns[0]"),
    ("odd number of turns", "turns"), ("too many turns", "turns"), ("empty text", "turns[0].text"),
    ("id without language", "id"),
])
def test_malformed_record_names_line_and_field(tmp_path, how, field):
    records = [_good_record(1), _good_record(2), _break(_good_record(3), how), _good_record(4)]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(ValueError, match="line 3") as info:
        load_dialogues(path=path)
    assert field in str(info.value)


def test_malformed_file_level_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(_good_record(1))
    path.write_text(good + "\n\n" + '{"id": "en-quant-002", "language": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: not valid JSON"):
        load_dialogues(path=path)
    path.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: field 'id'.*already used on line 1"):
        load_dialogues(path=path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        load_dialogues(path=path)
    # a translation pair needs one dialogue in each language
    lines = [_good_record(1, pair="p1"), _good_record(2, pair="p1")]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: field 'pair'"):
        load_dialogues(path=path)


def test_a_small_valid_file_loads_and_splits(tmp_path):
    records = [_good_record(i, language) for i in range(1, 10) for language in LANGUAGES]
    path = tmp_path / "ok.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "\n", encoding="utf-8")
    assert load_dialogues(path=path) == records
    sizes = [len(load_dialogues(split, path=path)) for split in SPLITS]
    assert sum(sizes) == 18 and sizes[1] >= 1 and sizes[2] >= 1
