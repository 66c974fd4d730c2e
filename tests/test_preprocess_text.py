"""mmtutor.preprocess.text against Hugging Face tokenizers/transformers, PyTorch and sentence-transformers.

What is checked, on random inputs where hypothesis can generate them:

* ``pad_and_truncate`` equals ``PreTrainedTokenizerFast.__call__(padding=..., truncation=True,
  max_length=...)`` exactly (ids and attention mask), for both padding and truncation sides and
  for ``padding="max_length"`` and ``"longest"``;
* ``embedding_lookup`` equals ``torch.nn.Embedding`` exactly; ``mean_pool`` equals
  sentence-transformers' mean pooling written in torch to 1e-6 (float32), all-padding rows
  included; ``l2_normalize`` equals ``torch.nn.functional.normalize``;
* the byte-level BPE is lossless — ``decode(encode(t)) == t`` for random Unicode text with Chinese
  and emoji — and ``save_pretrained``/``from_pretrained`` gives identical ids;
* ``MiniLMEncoder`` equals a hand-written ``AutoModel`` + mean pooling + L2 pipeline and
  ``sentence_transformers.SentenceTransformer`` to 1e-5, gives unit vectors, and puts a
  paraphrase closer than an unrelated sentence;
* bad input raises ``TypeError``/``ValueError`` naming the argument.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.preprocess import text

FAST = settings(max_examples=30, deadline=None)

CORPUS = [
    "Multimodal models read text, images and audio.",
    "Quantization stores each weight in eight bits instead of thirty-two.",
    "Pruning removes the weights that matter least.",
    "Knowledge distillation trains a small student to imitate a large teacher.",
    "多模态模型可以同时理解文字、图像和声音。",
    "量化把每个权重从三十二位压缩到八位。",
    "剪枝去掉最不重要的权重。",
    "知识蒸馏让小模型模仿大模型。",
    "Emoji are bytes too 😀🚀, and so is café.",
] * 8


@pytest.fixture(scope="module")
def bpe():
    return text.train_bpe_tokenizer(CORPUS, vocab_size=400, min_frequency=2)


@pytest.fixture(scope="module")
def minilm():
    return text.load_minilm()


# --------------------------------------------------------------------------------------------
# characters and words
# --------------------------------------------------------------------------------------------

def test_word_tokenize_rule():
    assert text.word_tokenize("Don't prune 3.5% of GPT-2! 你好，世界") == [
        "Don't", "prune", "3.5", "%", "of", "GPT", "-", "2", "!", "你", "好", "，", "世", "界"]
    assert text.word_tokenize("café 1,000 l’été😀") == ["café", "1,000", "l’été", "😀"]
    # Chinese: word tokens and character tokens coincide
    assert text.word_tokenize("剪枝去掉权重") == text.char_tokenize("剪枝去掉权重")


@FAST
@given(st.text(min_size=1, max_size=60))
def test_tokenizers_cover_the_text(s):
    assert "".join(text.char_tokenize(s)) == s
    assert "".join(text.word_tokenize(s)) == "".join(s.split())


def test_build_vocab_and_encode():
    lists = [text.word_tokenize("the cat saw the dog"), text.word_tokenize("the dog ran")]
    vocab = text.build_vocab(lists)
    assert list(vocab)[:4] == list(text.SPECIAL_TOKENS)
    assert vocab["the"] == 4 and vocab["dog"] == 5  # most frequent first, ties by first appearance
    assert text.encode(["the", "zebra"], vocab) == [4, vocab["<unk>"]]
    rare = text.build_vocab(lists, min_freq=2)
    assert set(rare) == set(text.SPECIAL_TOKENS) | {"the", "dog"}
    with pytest.raises(ValueError, match="unk_token"):
        text.encode(["zebra"], text.build_vocab(lists, specials=("<pad>",)))


# --------------------------------------------------------------------------------------------
# byte-level BPE
# --------------------------------------------------------------------------------------------

def test_bpe_special_tokens_and_size(bpe):
    assert [bpe.pad_token_id, bpe.unk_token_id, bpe.bos_token_id, bpe.eos_token_id] == [0, 1, 2, 3]
    assert 260 < len(bpe) <= 400
    assert bpe.encode("hello", add_special_tokens=False) == bpe.encode("hello")  # adds nothing
    # learnt merges: a frequent word is fewer tokens than bytes
    assert len(bpe.encode("weights")) < len("weights".encode())


mixed_text = st.lists(
    st.one_of(st.text(min_size=1, max_size=8),
              st.sampled_from(["你好", "模型", "量化", "😀", "🚀", "👍🏽", " ", "  ", "\n", "weights",
                               " the", "多模态"])),
    min_size=1, max_size=8).map("".join)


@FAST
@given(mixed_text)
def test_bpe_is_lossless(bpe, s):
    ids = bpe.encode(s)
    if "<unk>" not in s:  # the literal text of a special token is read as that token
        assert bpe.unk_token_id not in ids
    assert bpe.decode(ids) == s


@FAST
@given(mixed_text)
def test_bpe_on_chinese_costs_at_most_three_tokens_per_character(bpe, s):
    han = "".join(ch for ch in s if "\u4e00" <= ch <= "\u9fff") or "量"
    assert len(bpe.encode(han)) <= 3 * len(han)  # each Han character is 3 UTF-8 bytes


def test_bpe_save_load_round_trip(bpe, tmp_path):
    path = text.save_tokenizer(bpe, tmp_path / "bpe")
    assert (path / "tokenizer.json").is_file()
    again = text.load_tokenizer(path)
    for s in CORPUS[:9] + ["unseen words 未见过的字 🙂"]:
        assert again.encode(s) == bpe.encode(s)
    assert (again.pad_token, again.unk_token, again.bos_token, again.eos_token) == text.SPECIAL_TOKENS


def test_bpe_training_is_deterministic():
    a = text.train_bpe_tokenizer(CORPUS, vocab_size=300)
    b = text.train_bpe_tokenizer(CORPUS, vocab_size=300)
    assert a.get_vocab() == b.get_vocab()


# --------------------------------------------------------------------------------------------
# padding, truncation, masks: equal to transformers
# --------------------------------------------------------------------------------------------

@FAST
@given(texts=st.lists(mixed_text, min_size=1, max_size=5), max_length=st.integers(1, 12),
       side=st.sampled_from(["right", "left"]), truncation_side=st.sampled_from(["right", "left"]),
       padding=st.sampled_from(["max_length", "longest"]))
def test_pad_and_truncate_equals_transformers(bpe, texts, max_length, side, truncation_side, padding):
    bpe.padding_side, bpe.truncation_side = side, truncation_side
    try:
        expected = bpe(texts, padding=padding, truncation=True, max_length=max_length,
                       return_tensors="np")
    finally:
        bpe.padding_side = bpe.truncation_side = "right"
    ids = [bpe.encode(t) for t in texts]
    got = text.pad_and_truncate(ids, max_length, bpe.pad_token_id, side=side,
                                truncation_side=truncation_side, padding=padding)
    np.testing.assert_array_equal(got["input_ids"], expected["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], expected["attention_mask"])
    assert got["input_ids"].dtype == np.int64


def test_pad_and_truncate_by_hand():
    out = text.pad_and_truncate([[5, 6, 7], [8]], max_length=2, pad_id=0, side="left")
    np.testing.assert_array_equal(out["input_ids"], [[5, 6], [0, 8]])
    np.testing.assert_array_equal(out["attention_mask"], [[1, 1], [0, 1]])


# --------------------------------------------------------------------------------------------
# embeddings and pooling: equal to torch
# --------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 2**32 - 1), vocab=st.integers(1, 50), dim=st.integers(1, 16),
       shape=st.lists(st.integers(0, 5), min_size=1, max_size=3))
def test_embedding_lookup_equals_torch(seed, vocab, dim, shape):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((vocab, dim)).astype(np.float32)
    ids = rng.integers(0, vocab, size=shape)
    layer = torch.nn.Embedding(vocab, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(table))
        expected = layer(torch.from_numpy(ids)).numpy()
    np.testing.assert_array_equal(text.embedding_lookup(ids, table), expected)


def _torch_mean_pool(token_embeddings, attention_mask):
    """sentence-transformers' mean pooling, as on the all-MiniLM-L6-v2 model card."""
    mask = attention_mask.unsqueeze(-1).expand(token_embeddings.size()).float()
    return torch.sum(token_embeddings * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), length=st.integers(1, 10),
       dim=st.integers(1, 24), p_keep=st.floats(0.0, 1.0))
def test_mean_pool_equals_torch(seed, n, length, dim, p_keep):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, length, dim)).astype(np.float32)
    mask = (rng.random((n, length)) < p_keep).astype(np.int64)  # all-zero rows included
    expected = _torch_mean_pool(torch.from_numpy(h), torch.from_numpy(mask)).numpy()
    got = text.mean_pool(h, mask)
    assert got.shape == (n, dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), dim=st.integers(1, 24))
def test_l2_normalize_and_cosine_equal_torch(seed, n, dim):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    expected = torch.nn.functional.normalize(torch.from_numpy(x), p=2, dim=-1).numpy()
    np.testing.assert_allclose(text.l2_normalize(x), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(text.l2_normalize(x[0]), expected[0], rtol=1e-12, atol=1e-15)
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(x)[:, None], torch.from_numpy(x)[None],
                                                dim=-1).numpy()
    np.testing.assert_allclose(text.cosine_similarity_matrix(x), cos, atol=1e-12)


# --------------------------------------------------------------------------------------------
# measuring tokenisers
# --------------------------------------------------------------------------------------------

def test_tokens_per_character(bpe):
    assert text.tokens_per_character(text.char_tokenize, "abc 你好") == 1.0
    assert text.tokens_per_character(text.word_tokenize, ["ab cd", "你好"]) == 4 / 7
    assert text.count_tokens(bpe, ["hello", "你好"]) == len(bpe.encode("hello")) + len(bpe.encode("你好"))
    assert text.unk_rate(bpe, CORPUS[:9]) == 0.0


# --------------------------------------------------------------------------------------------
# the real all-MiniLM-L6-v2
# --------------------------------------------------------------------------------------------

SENTENCES = ["Quantization stores each weight in eight bits.",
             "Each weight is kept with only 8 bits after quantizing the model.",
             "The cat slept on the warm windowsill all afternoon.",
             "Pruning removes the least important connections of a network."]


def test_minilm_equals_hand_written_pipeline(minilm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(text._minilm_path())
    model = minilm.model  # the BertModel that AutoModel.from_pretrained loaded; reused to save time
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    expected = torch.nn.functional.normalize(_torch_mean_pool(hidden, batch["attention_mask"]), dim=1)
    got = minilm.encode(SENTENCES)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    # batching does not change the result beyond float noise
    np.testing.assert_allclose(minilm.encode(SENTENCES, batch_size=1), got, atol=1e-5)


def test_minilm_equals_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(text._minilm_path(), device="cpu")
    expected = reference.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.encode(SENTENCES), expected, atol=1e-5)


def test_minilm_unit_norm_and_paraphrase(minilm):
    emb = minilm.encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = emb @ emb.T
    assert cos[0, 1] > cos[0, 2] + 0.3  # paraphrase far closer than an unrelated sentence
    assert cos[0, 1] > cos[0, 3]
    raw = minilm.encode(SENTENCES[:1], normalize=False)
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3  # normalize=False really skips step 4


def test_minilm_maps_unknown_chinese_characters_to_unk(minilm):
    assert text.unk_rate(minilm.tokenizer, "多模态模型可以同时理解文字、图像和声音。") > 0.1
    assert text.unk_rate(minilm.tokenizer, SENTENCES) == 0.0


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: text.char_tokenize(""), ValueError, "text"),
    (lambda: text.word_tokenize(b"bytes"), TypeError, "text"),
    (lambda: text.word_tokenize(None), TypeError, "text"),
    (lambda: text.build_vocab([]), ValueError, "token_lists"),
    (lambda: text.build_vocab(["a b"]), TypeError, r"token_lists\[0\]"),
    (lambda: text.build_vocab([["a", 1]]), TypeError, "token_lists"),
    (lambda: text.build_vocab([["a"]], min_freq=0), ValueError, "min_freq"),
    (lambda: text.build_vocab([["a"]], specials=("<pad>", "<pad>")), ValueError, "specials"),
    (lambda: text.encode([], {"a": 0}), ValueError, "tokens"),
    (lambda: text.encode("abc", {"a": 0}), TypeError, "tokens"),
    (lambda: text.encode(["a"], ["a"]), TypeError, "vocab"),
    (lambda: text.train_bpe_tokenizer("one string", vocab_size=300), TypeError, "texts"),
    (lambda: text.train_bpe_tokenizer([], vocab_size=300), ValueError, "texts"),
    (lambda: text.train_bpe_tokenizer(["ok", 3], vocab_size=300), TypeError, r"texts\[1\]"),
    (lambda: text.train_bpe_tokenizer(["ok"], vocab_size=100), ValueError, "vocab_size"),
    (lambda: text.train_bpe_tokenizer(["ok"], vocab_size=300.0), TypeError, "vocab_size"),
    (lambda: text.train_bpe_tokenizer(["ok"], min_frequency=0), ValueError, "min_frequency"),
    (lambda: text.train_bpe_tokenizer(["ok"], special_tokens=("<pad>",)), ValueError, "special_tokens"),
    (lambda: text.load_tokenizer("/nonexistent/dir"), ValueError, "directory"),
    (lambda: text.save_tokenizer("not a tokenizer", "/tmp/x"), TypeError, "tokenizer"),
    (lambda: text.pad_and_truncate([], 4, 0), ValueError, "sequences"),
    (lambda: text.pad_and_truncate([[1, 2]], 0, 0), ValueError, "max_length"),
    (lambda: text.pad_and_truncate([[1, 2]], -3, 0), ValueError, "max_length"),
    (lambda: text.pad_and_truncate([[1, 2.5]], 4, 0), TypeError, r"sequences\[0\]"),
    (lambda: text.pad_and_truncate([[1, True]], 4, 0), TypeError, r"sequences\[0\]"),
    (lambda: text.pad_and_truncate(["ab"], 4, 0), TypeError, r"sequences\[0\]"),
    (lambda: text.pad_and_truncate([[1]], 4, 0, side="middle"), ValueError, "side"),
    (lambda: text.pad_and_truncate([[1]], 4, 0, padding="shortest"), ValueError, "padding"),
    (lambda: text.embedding_lookup([0, 5], np.zeros((5, 2))), ValueError, "ids"),
    (lambda: text.embedding_lookup([-1], np.zeros((5, 2))), ValueError, "ids"),
    (lambda: text.embedding_lookup([0.0], np.zeros((5, 2))), TypeError, "ids"),
    (lambda: text.embedding_lookup([0], np.zeros(5)), ValueError, "table"),
    (lambda: text.embedding_lookup([0], torch.zeros(5, 2)), TypeError, "table"),
    (lambda: text.mean_pool(np.zeros((2, 3, 4)), np.ones((2, 4))), ValueError, "attention_mask"),
    (lambda: text.mean_pool(np.zeros((2, 3, 4)), np.full((2, 3), 2)), ValueError, "attention_mask"),
    (lambda: text.mean_pool(np.zeros((2, 3)), np.ones((2, 3))), ValueError, "token_embeddings"),
    (lambda: text.mean_pool(np.full((1, 1, 1), np.nan), np.ones((1, 1))), ValueError, "token_embeddings"),
    (lambda: text.l2_normalize(np.zeros((1, 2, 3))), ValueError, "x"),
    (lambda: text.cosine_similarity_matrix(np.ones((2, 3)), np.ones((2, 4))), ValueError, "b"),
    (lambda: text.tokens_per_character(text.word_tokenize, ""), ValueError, "texts"),
    (lambda: text.tokens_per_character(42, "abc"), TypeError, "tokenizer"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_minilm_bad_input(minilm):
    with pytest.raises(ValueError, match="sentences"):
        minilm.encode([])
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        minilm.encode(["fine", None])
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["fine"], batch_size=0)
    with pytest.raises(TypeError, match="normalize"):
        minilm.encode(["fine"], normalize="yes")
