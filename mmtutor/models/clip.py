r"""A CLIP-style contrastive image–text model, small enough to train on a laptop CPU.

CLIP (Radford et al., 2021) trains two encoders, one per modality, so that an image and the text that
describes it land close together in a shared space, and mismatched pairs land far apart. For a batch
of :math:`N` matching pairs :math:`(x_i, t_i)`:

1. encode and project: :math:`a_i = W_I f(x_i)`, :math:`b_j = W_T g(t_j)` (a CNN :math:`f`, a text
   encoder :math:`g`, linear *projection heads* :math:`W_I, W_T` into a shared :math:`d`-dimensional space);
2. L2-normalise: :math:`u_i = a_i / \lVert a_i \rVert`, :math:`v_j = b_j / \lVert b_j \rVert`, so that
   :math:`u_i^\top v_j` is a cosine similarity in :math:`[-1, 1]`;
3. scale by a learnt inverse temperature :math:`\lambda = 1/\tau = e^{\theta}` (:math:`\theta` is the
   parameter, so :math:`\lambda` stays positive), clamped to :math:`[1, 100]` as in CLIP:
   :math:`s_{ij} = \lambda\, u_i^\top v_j`;
4. :func:`clip_loss`: the symmetric InfoNCE loss (van den Oord et al., 2018), a cross-entropy that asks
   each image to pick its own caption among the :math:`N` captions of the batch, and each caption its own
   image. The other :math:`N - 1` pairs of the batch serve as negatives, for free.

Pieces, each usable alone:

* :func:`images_to_tensor` — ``(N, 32, 32, 3)`` uint8 scenes to ``(N, 3, 32, 32)`` floats in [0, 1];
* :class:`ImageEncoder` — a small CNN that keeps the spatial layout (left/right matters);
* :class:`CaptionTokenizer` — a word-level vocabulary over captions, strings to padded id tensors;
* :class:`TextTransformer` — token + position embeddings, a transformer encoder, masked mean pooling:
  trained from scratch, and sensitive to word order (a bag of words would not be);
* :class:`PrecomputedText` — a *frozen* text tower: sentence embeddings computed once by a pretrained
  encoder (all-MiniLM-L6-v2, 384-d) and passed through unchanged; only the projection head trains;
* :class:`CLIPModel` — both towers, the projection heads and the temperature;
* :func:`clip_loss`, :func:`similarity_matrix`, :func:`zero_shot_classify`, :func:`train_clip`;
* :func:`caption_groups` (which captions are identical) and :func:`swapped_caption` (a hard negative).

The image encoder's class and constructor arguments (:attr:`ImageEncoder.config`) are what a later model
needs to rebuild it before loading a checkpoint written with :func:`mmtutor.train.save_checkpoint`.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from mmtutor.preprocess.text import SPECIAL_TOKENS, _check_texts, build_vocab, pad_and_truncate, word_tokenize
from mmtutor.runtime import _describe

__all__ = [
    "IMAGE_SHAPE",
    "images_to_tensor",
    "ImageEncoder",
    "CaptionTokenizer",
    "TextTransformer",
    "PrecomputedText",
    "CLIPModel",
    "clip_loss",
    "similarity_matrix",
    "zero_shot_classify",
    "caption_groups",
    "swapped_caption",
    "ClipHistory",
    "train_clip",
]

IMAGE_SHAPE = (32, 32, 3)
"""Height, width and channels of the scenes of :mod:`mmtutor.data.shapes`."""


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _check_positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_captions(name: str, captions) -> list[str]:
    captions = _check_texts(name, captions)  # a non-empty list of non-empty str
    blank = next((i for i, caption in enumerate(captions) if not caption.strip()), None)
    if blank is not None:
        raise ValueError(f"{name}[{blank}] must contain at least one word, got {captions[blank]!r}")
    return captions


def _check_embeddings(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor (batch, dim), got shape {tuple(x.shape)}")
    return x


def _check_image_tensor(images, channels: int, size: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        hint = "; convert uint8 scenes with images_to_tensor(images)" if isinstance(images, np.ndarray) else ""
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}{hint}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating-point tensor with values in [0, 1], got dtype {images.dtype}; "
                        f"convert uint8 scenes with images_to_tensor(images)")
    if images.ndim != 4 or tuple(images.shape[1:]) != (channels, size, size) or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, {channels}, {size}, {size}) with N >= 1, "
                         f"got {tuple(images.shape)}")
    return images


# --------------------------------------------------------------------------------------------
# the image tower
# --------------------------------------------------------------------------------------------

def images_to_tensor(images) -> torch.Tensor:
    """Scenes as a batch for :class:`ImageEncoder`: uint8 ``(N, 32, 32, 3)`` (channels last, as
    :func:`mmtutor.data.shapes.load_shapes` returns them) to float32 ``(N, 3, 32, 32)`` in [0, 1].

    A single scene ``(32, 32, 3)`` is refused rather than guessed at: pass ``images[None]``.
    """
    if isinstance(images, torch.Tensor) or not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a NumPy uint8 array of shape (N, 32, 32, 3), got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must have dtype uint8 (pixel values 0..255), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, 32, 32, 3) with N >= 1, got {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0).contiguous()


class ImageEncoder(nn.Module):
    r"""A small CNN for 32×32 RGB scenes: ``(N, 3, 32, 32)`` floats to ``(N, out_dim)`` features.

    Layers (``w`` = ``width``)::

        conv 2x2, stride 2, 3 -> w,  batch norm, ReLU                  32x32 -> 16x16
        conv 3x3, w -> w,            batch norm, ReLU, max-pool 2     16x16 -> 8x8
        conv 3x3, w -> 2w,           batch norm, ReLU, max-pool 2      8x8 -> 4x4
        flatten (2w * 4 * 4), linear -> out_dim

    The stem cuts the image into 2×2 patches (a "patchify" convolution, cheap on a CPU). Batch
    normalisation makes the network train in a third of the epochs it needs without. The last feature
    map is flattened, not averaged, so the features still know *where* each object is: global average
    pooling would make "a red circle on the left and a blue square on the right" and the swapped scene
    indistinguishable. Parameters (weights, biases, batch-norm scales and shifts):
    :math:`27w^2 + 24w + (32w + 1)\,d_\text{out}`.
    """

    def __init__(self, width: int = 32, out_dim: int = 128):
        super().__init__()
        self.width = _check_positive_int("width", width)
        self.out_dim = _check_positive_int("out_dim", out_dim)
        w = self.width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, kernel_size=2, stride=2), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, kernel_size=3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, kernel_size=3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * w * 4 * 4, self.out_dim)

    @property
    def config(self) -> dict:
        """Constructor arguments: ``ImageEncoder(**encoder.config)`` rebuilds the architecture."""
        return {"width": self.width, "out_dim": self.out_dim}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = _check_image_tensor(images, 3, IMAGE_SHAPE[0])
        return self.head(self.features(images))


# --------------------------------------------------------------------------------------------
# the text towers
# --------------------------------------------------------------------------------------------

class CaptionTokenizer:
    """Word-level tokenizer: a caption to a row of ids, padded with ``<pad>`` (id 0) to ``max_length``.

    Words are lower-cased and split with :func:`mmtutor.preprocess.text.word_tokenize`; a word outside the
    vocabulary becomes ``<unk>`` (id 1). Build one from training captions with :meth:`from_captions`;
    :meth:`to_json` / :meth:`from_json` store it next to a checkpoint (a state dict holds no vocabulary).
    """

    def __init__(self, tokens: Sequence[str], max_length: int):
        if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
            raise TypeError(f"tokens must be a list of str, got {_describe(tokens)}")
        if tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS or len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be distinct and start with {SPECIAL_TOKENS}, got {list(tokens[:6])}...")
        self.tokens = list(tokens)
        self.vocab = {token: i for i, token in enumerate(self.tokens)}
        self.max_length = _check_positive_int("max_length", max_length)
        self.pad_id, self.unk_id = self.vocab["<pad>"], self.vocab["<unk>"]

    @classmethod
    def from_captions(cls, captions, max_length: int | None = None) -> "CaptionTokenizer":
        """Vocabulary of every word in ``captions``; ``max_length`` defaults to the longest caption."""
        words = [word_tokenize(c.lower()) for c in _check_captions("captions", captions)]
        vocab = build_vocab(words)
        return cls(list(vocab), max(len(w) for w in words) if max_length is None else max_length)

    def __len__(self) -> int:
        return len(self.tokens)

    def __call__(self, captions) -> torch.Tensor:
        """Ids ``(N, max_length)`` int64; longer captions are truncated (on the right)."""
        captions = _check_captions("captions", captions)
        ids = [[self.vocab.get(w, self.unk_id) for w in word_tokenize(c.lower())] for c in captions]
        return torch.from_numpy(pad_and_truncate(ids, self.max_length, self.pad_id)["input_ids"])

    def to_json(self) -> str:
        """The vocabulary and ``max_length`` as a JSON string (rebuild with :meth:`from_json`)."""
        return json.dumps({"tokens": self.tokens, "max_length": self.max_length})

    @classmethod
    def from_json(cls, text: str) -> "CaptionTokenizer":
        """The tokenizer that :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(data["tokens"], data["max_length"])

    def __repr__(self) -> str:
        return f"CaptionTokenizer(vocab_size={len(self)}, max_length={self.max_length})"


class TextTransformer(nn.Module):
    r"""A text encoder trained from scratch: caption ids ``(N, L)`` to features ``(N, dim)``.

    .. math::
        h^{(0)}_{p} = E_{t_p} + P_p, \qquad h = \mathrm{TransformerEncoder}(h^{(0)}), \qquad
        g(t) = \mathrm{LayerNorm}\Big(\frac{\sum_p m_p h_p}{\sum_p m_p}\Big),

    token embeddings :math:`E`, learnt position embeddings :math:`P`, ``layers`` pre-norm transformer
    layers with ``heads`` heads whose attention ignores padding (:math:`m_p = 0`), then the mean over the real
    tokens. Without :math:`P` the whole model would be a function of the *set* of words and could not tell
    "a red circle on the left and a blue square on the right" from the swapped caption; the position
    embeddings, mixed across words by attention, make the two differ.
    ``prepare(captions)`` turns strings into the ids this module takes.

    Both tables start as :math:`\mathcal{N}(0, 1)` draws by default (``position_init_std=1``), so a word's
    position weighs as much as its identity in :math:`h^{(0)}`. BERT and GPT-2 start the position table at a
    standard deviation of 0.02; at this scale, trained contrastively on the shapes captions, that choice
    gives a text encoder that ignores word order (the notebook of chapter 13 measures it).
    """

    def __init__(self, tokenizer: CaptionTokenizer, dim: int = 64, heads: int = 4, layers: int = 1,
                 position_init_std: float = 1.0):
        super().__init__()
        if not isinstance(tokenizer, CaptionTokenizer):
            raise TypeError(f"tokenizer must be a CaptionTokenizer, got {_describe(tokenizer)}")
        self.tokenizer = tokenizer
        self.dim, self.heads, self.layers = (_check_positive_int(n, v) for n, v in
                                             (("dim", dim), ("heads", heads), ("layers", layers)))
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads ({heads}), got {dim}")
        self.out_dim = self.dim
        self.token_embedding = nn.Embedding(len(tokenizer), dim, padding_idx=tokenizer.pad_id)
        self.position_init_std = _check_positive_float("position_init_std", position_init_std)
        self.position_embedding = nn.Parameter(torch.randn(tokenizer.max_length, dim) * self.position_init_std)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    @property
    def config(self) -> dict:
        """Constructor arguments other than the tokenizer."""
        return {"dim": self.dim, "heads": self.heads, "layers": self.layers,
                "position_init_std": self.position_init_std}

    def prepare(self, captions) -> torch.Tensor:
        """Strings to the ``(N, max_length)`` ids that :meth:`forward` takes."""
        return self.tokenizer(captions)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64:
            raise TypeError(f"ids must be an int64 tensor from prepare(captions), got {_describe(ids)}")
        if ids.ndim != 2 or ids.shape[0] == 0 or not 1 <= ids.shape[1] <= self.tokenizer.max_length:
            raise ValueError(f"ids must have shape (N, L) with N >= 1 and 1 <= L <= {self.tokenizer.max_length}, "
                             f"got {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= len(self.tokenizer):
            raise ValueError(f"ids must lie in [0, {len(self.tokenizer) - 1}], got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        padding = ids == self.tokenizer.pad_id
        if bool(padding.all(dim=1).any()):
            raise ValueError("ids must hold at least one real (non-padding) token per row")
        h = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(h.dtype)
        return self.norm((h * keep).sum(dim=1) / keep.sum(dim=1))


class PrecomputedText(nn.Module):
    """A frozen text tower: sentence embeddings computed outside the model pass through unchanged.

    ``forward`` takes the ``(N, dim)`` embeddings of a frozen pretrained encoder (for example
    :class:`mmtutor.preprocess.text.MiniLMEncoder`, ``dim = 384``); only :class:`CLIPModel`'s projection
    head on top of it trains. Computing the embeddings once, before training, is what makes a frozen tower
    cheap: the 22-million-parameter encoder never runs in the training loop. ``encoder`` (optional,
    any callable ``list[str] -> (N, dim) array``) lets :meth:`prepare` embed new text such as prompts.
    """

    def __init__(self, dim: int = 384, encoder: Callable | None = None):
        super().__init__()
        self.dim = self.out_dim = _check_positive_int("dim", dim)
        if encoder is not None and not callable(encoder):
            raise TypeError(f"encoder must be callable (list of str -> array) or None, got {_describe(encoder)}")
        self.encoder = encoder

    @property
    def config(self) -> dict:
        """Constructor arguments other than the encoder."""
        return {"dim": self.dim}

    def prepare(self, captions) -> torch.Tensor:
        """Strings to their ``(N, dim)`` float32 sentence embeddings, computed by ``encoder``."""
        captions = _check_captions("captions", captions)
        if self.encoder is None:
            raise ValueError("encoder must be set to embed captions: PrecomputedText(dim, encoder=MiniLMEncoder())")
        return torch.as_tensor(np.asarray(self.encoder(captions)), dtype=torch.float32)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The embeddings themselves, after checking their shape: the tower has no parameters."""
        embeddings = _check_embeddings("embeddings", embeddings)
        if embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must have {self.dim} columns, got shape {tuple(embeddings.shape)}")
        return embeddings


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

class CLIPModel(nn.Module):
    r"""Two towers, two projection heads into a shared ``embed_dim``-space, and a learnt temperature.

    ``forward(images, text)`` returns ``(u, v, logit_scale)``: the L2-normalised image and text embeddings
    ``(N, embed_dim)`` and :math:`\lambda = 1/\tau`, ready for :func:`clip_loss`. The temperature is stored
    as :math:`\theta = \log(1/\tau)` (initialised from ``init_temperature``, 0.07 as in CLIP), so gradient
    steps keep it positive, and it is clamped to :math:`1 \le \lambda \le` ``max_logit_scale`` (100 in CLIP)
    when read, which keeps the softmax from becoming arbitrarily sharp.

    ``text_encoder`` is a :class:`TextTransformer` (trained with the rest) or a :class:`PrecomputedText`
    (frozen sentence embeddings); either exposes ``out_dim`` and ``prepare(captions)``. The projection heads
    are linear maps without bias (CLIP's choice); ``projection_hidden`` makes them two-layer MLPs instead.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, embed_dim: int = 64,
                 init_temperature: float = 0.07, max_logit_scale: float = 100.0,
                 projection_hidden: int | None = None):
        super().__init__()
        for name, module in (("image_encoder", image_encoder), ("text_encoder", text_encoder)):
            if not isinstance(module, nn.Module) or not isinstance(getattr(module, "out_dim", None), int):
                raise TypeError(f"{name} must be a torch.nn.Module with an int out_dim, got {_describe(module)}")
        self.embed_dim = _check_positive_int("embed_dim", embed_dim)
        init_temperature = _check_positive_float("init_temperature", init_temperature)
        self.max_logit_scale = _check_positive_float("max_logit_scale", max_logit_scale)
        if self.max_logit_scale < 1:
            raise ValueError(f"max_logit_scale must be >= 1, got {max_logit_scale!r}")
        if not 1 <= 1 / init_temperature <= self.max_logit_scale:
            raise ValueError(f"init_temperature must lie in [1/max_logit_scale, 1] = "
                             f"[{1 / self.max_logit_scale:g}, 1], got {init_temperature!r}")
        if projection_hidden is not None:
            _check_positive_int("projection_hidden", projection_hidden)
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_projection = self._head(image_encoder.out_dim, projection_hidden)
        self.text_projection = self._head(text_encoder.out_dim, projection_hidden)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def _head(self, in_dim: int, hidden: int | None) -> nn.Module:
        if hidden is None:
            return nn.Linear(in_dim, self.embed_dim, bias=False)
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, self.embed_dim, bias=False))

    @property
    def logit_scale(self) -> torch.Tensor:
        r""":math:`\lambda = \min(\max(e^\theta, 1), \lambda_\max)` (a 0-d tensor that carries gradients)."""
        return self.log_logit_scale.clamp(0.0, math.log(self.max_logit_scale)).exp()

    @property
    def temperature(self) -> float:
        r"""The current temperature :math:`\tau = 1/\lambda` as a float."""
        return float(1.0 / self.logit_scale.detach())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``(N, embed_dim)`` of ``(N, 3, 32, 32)`` images."""
        return F.normalize(self.image_projection(self.image_encoder(images)), dim=-1)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings of prepared text (ids or precomputed sentence embeddings)."""
        return F.normalize(self.text_projection(self.text_encoder(text)), dim=-1)

    def prepare_text(self, captions) -> torch.Tensor:
        """Strings to what :meth:`encode_text` takes (the text tower's ``prepare``)."""
        return self.text_encoder.prepare(captions)

    @torch.no_grad()
    def embed_captions(self, captions) -> torch.Tensor:
        """Strings straight to L2-normalised embeddings, in eval mode."""
        was_training = self.training
        self.eval()
        out = self.encode_text(self.prepare_text(captions))
        self.train(was_training)
        return out

    @torch.no_grad()
    def embed_images(self, images) -> torch.Tensor:
        """uint8 scenes ``(N, 32, 32, 3)`` or an image tensor straight to embeddings, in eval mode."""
        was_training = self.training
        self.eval()
        out = self.encode_image(images_to_tensor(images) if isinstance(images, np.ndarray) else images)
        self.train(was_training)
        return out

    def forward(self, images: torch.Tensor, text: torch.Tensor):
        if isinstance(text, torch.Tensor) and isinstance(images, torch.Tensor) and len(text) != len(images):
            raise ValueError(f"text must hold one entry per image: images has batch size {len(images)}, "
                             f"text has {len(text)}")
        return self.encode_image(images), self.encode_text(text), self.logit_scale


# --------------------------------------------------------------------------------------------
# loss, similarity, zero-shot classification
# --------------------------------------------------------------------------------------------

def _check_logit_scale(logit_scale):
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(f"logit_scale must be a scalar, got a tensor of shape {tuple(logit_scale.shape)}")
        value = float(logit_scale.detach())
    elif isinstance(logit_scale, numbers.Real) and not isinstance(logit_scale, bool):
        value = float(logit_scale)
    else:
        raise TypeError(f"logit_scale must be a positive number or 0-d tensor, got {_describe(logit_scale)}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"logit_scale must be finite and > 0 (it is 1/temperature), got {value!r}")
    return logit_scale.reshape(()) if isinstance(logit_scale, torch.Tensor) else value


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale, groups=None,
              negative_text_emb: torch.Tensor | None = None) -> torch.Tensor:
    r"""Symmetric InfoNCE loss of CLIP over a batch of ``N`` matching pairs.

    With logits :math:`s_{ij} = \lambda\, u_i^\top v_j` (``logit_scale`` :math:`\lambda = 1/\tau`),

    .. math::
        \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{N} \Big[
            -\log \frac{e^{s_{ii}}}{\sum_{j=1}^{N} e^{s_{ij}}}
            -\log \frac{e^{s_{ii}}}{\sum_{j=1}^{N} e^{s_{ji}}} \Big],

    the mean of two cross-entropies: rows (each image classifies which caption is its own) and columns
    (each caption classifies which image). ``F.cross_entropy(S, arange(N))`` and
    ``F.cross_entropy(S.T, arange(N))`` compute the two halves. A random guess scores
    :math:`\log N`; a perfect, confident model scores 0.

    ``groups`` (optional, ``N`` integers) handles duplicates: when pairs ``i`` and ``j`` share a group
    (identical captions, say), caption ``j`` is just as correct for image ``i`` as caption ``i``. The
    one-hot target of row ``i`` is then replaced by the uniform distribution over its group,
    :math:`y_{ij} = [g_i = g_j] / |\{k : g_k = g_i\}|`, so that the loss stops pushing apart pairs that are
    really the same. With all groups distinct this is the formula above.

    ``negative_text_emb`` (optional, ``(M, d)``) adds *hard negatives* (NegCLIP, Yuksekgonul et al., 2023):
    extra captions that are wrong for every image of the batch, such as a caption with its left and right
    halves swapped. They become :math:`M` more columns of the image-to-text half only,
    :math:`-\log \big(e^{s_{ii}} / (\sum_{j \le N} e^{s_{ij}} + \sum_{m \le M} e^{\lambda u_i^\top n_m})\big)`;
    the text-to-image half is unchanged.

    The embeddings are used as given: pass L2-normalised ones (as :class:`CLIPModel` returns).
    """
    image_emb = _check_embeddings("image_emb", image_emb)
    text_emb = _check_embeddings("text_emb", text_emb)
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"text_emb must have the shape of image_emb {tuple(image_emb.shape)} (one caption per "
                         f"image, same dimension), got {tuple(text_emb.shape)}")
    scale = _check_logit_scale(logit_scale)
    logits = scale * image_emb @ text_emb.T
    n = len(logits)
    if groups is None:
        targets = torch.arange(n)
    else:
        groups = torch.as_tensor(groups)
        if groups.shape != (n,) or groups.is_floating_point() or groups.dtype == torch.bool:
            raise ValueError(f"groups must be {n} integer labels (one per pair), got dtype {groups.dtype} "
                             f"and shape {tuple(groups.shape)}")
        same = (groups[:, None] == groups[None, :]).to(logits.dtype)
        targets = same / same.sum(dim=1, keepdim=True)
    image_to_text = logits
    if negative_text_emb is not None:
        negative_text_emb = _check_embeddings("negative_text_emb", negative_text_emb)
        if negative_text_emb.shape[1] != text_emb.shape[1]:
            raise ValueError(f"negative_text_emb must have {text_emb.shape[1]} columns like text_emb, "
                             f"got shape {tuple(negative_text_emb.shape)}")
        image_to_text = torch.cat([logits, scale * image_emb @ negative_text_emb.T], dim=1)
        if targets.ndim == 2:
            targets_i2t = torch.cat([targets, targets.new_zeros(n, len(negative_text_emb))], dim=1)
        else:
            targets_i2t = targets
        return 0.5 * (F.cross_entropy(image_to_text, targets_i2t) + F.cross_entropy(logits.T, targets))
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def similarity_matrix(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    r"""Cosine similarities ``(N_images, N_texts)``: :math:`\cos(u_i, v_j) = u_i^\top v_j /
    (\lVert u_i\rVert\,\lVert v_j\rVert)`. The embeddings are normalised here, so raw ones are fine."""
    image_emb = _check_embeddings("image_emb", image_emb)
    text_emb = _check_embeddings("text_emb", text_emb)
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"text_emb must have the dimension of image_emb ({image_emb.shape[1]}), "
                         f"got {text_emb.shape[1]}")
    return F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T


def zero_shot_classify(model: CLIPModel, images, prompts) -> np.ndarray:
    r"""Classify images with no classifier trained: each class is described by text.

    ``prompts[c]`` is a prompt (a str) for class :math:`c`, or a list of prompts whose normalised embeddings
    are averaged and renormalised (CLIP's *prompt ensembling*), giving one class embedding :math:`w_c`.
    The prediction for image :math:`x` is :math:`\arg\max_c\, u(x)^\top w_c`.

    ``images`` are uint8 scenes ``(N, 32, 32, 3)`` or an image tensor. Returns the class indices ``(N,)``.
    """
    if not isinstance(model, CLIPModel):
        raise TypeError(f"model must be a CLIPModel, got {_describe(model)}")
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) < 2:
        raise ValueError(f"prompts must be a list with one prompt (or list of prompts) per class, "
                         f"at least 2 classes, got {_describe(prompts)}")
    class_embeddings = []
    for c, prompt in enumerate(prompts):
        texts = [prompt] if isinstance(prompt, str) else _check_captions(f"prompts[{c}]", prompt)
        class_embeddings.append(F.normalize(model.embed_captions(texts).mean(dim=0), dim=-1))
    scores = model.embed_images(images) @ torch.stack(class_embeddings).T
    return scores.argmax(dim=1).numpy()


# --------------------------------------------------------------------------------------------
# captions as labels: duplicates and hard negatives
# --------------------------------------------------------------------------------------------

def caption_groups(captions) -> torch.Tensor:
    """One integer per caption, equal for identical texts (ids of the sorted distinct captions).

    Pass it as ``groups`` to :func:`clip_loss` / :func:`train_clip`, so that two scenes with the same
    caption are not treated as each other's negatives.
    """
    captions = _check_captions("captions", captions)
    ids = {caption: i for i, caption in enumerate(sorted(set(captions)))}
    return torch.tensor([ids[caption] for caption in captions], dtype=torch.int64)


def swapped_caption(objects) -> str | None:
    """The caption of the mirrored scene, a *hard negative*: same words, left and right exchanged.

    ``objects`` is one entry of ``ShapesScenes.objects`` (:mod:`mmtutor.data.shapes`) (a list of dicts with
    ``size``, ``color`` and ``shape``). For two objects it returns "a {second} on the left and a {first} on
    the right", the caption :mod:`mmtutor.data.shapes` would write for the mirrored scene; for one object,
    or two identical objects (whose mirror image has the same caption), it returns ``None``.
    """
    if isinstance(objects, (str, bytes)) or not isinstance(objects, Sequence) or len(objects) not in (1, 2):
        raise ValueError(f"objects must be a list of 1 or 2 object dicts, got {_describe(objects)}")
    words = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not {"size", "color", "shape"} <= set(obj):
            raise ValueError(f"objects[{i}] must be a dict with size, color and shape, got {_describe(obj)}")
        words.append(f"a {obj['size']} {obj['color']} {obj['shape']}")
    if len(words) == 1 or words[0] == words[1]:
        return None
    return f"{words[1]} on the left and {words[0]} on the right"


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

@dataclass
class ClipHistory:
    """What :func:`train_clip` measured at every optimiser step: the loss and the temperature."""

    loss: list = field(default_factory=list)
    temperature: list = field(default_factory=list)
    steps_per_epoch: int = 0
    seconds: float = 0.0


def train_clip(model: CLIPModel, images: torch.Tensor, text: torch.Tensor, *, groups=None,
               negative_text: torch.Tensor | None = None, negative_mask=None, epochs: int = 10,
               batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.01, seed: int = 0,
               progress: bool = True, desc: str = "contrastive training") -> ClipHistory:
    """Train ``model`` on aligned ``images[i]`` / ``text[i]`` pairs with :func:`clip_loss`.

    Mini-batches are shuffled with ``seed`` every epoch (the last, incomplete batch is dropped, so every
    step sees ``batch_size - 1`` negatives per pair); AdamW with a cosine learning-rate decay over all steps
    (no weight decay on the temperature). ``groups`` (``N`` ints, e.g. caption ids) marks duplicates, see
    :func:`clip_loss`. ``negative_text[i]`` (prepared like ``text``) is a hard negative caption for image
    ``i``, used where ``negative_mask[i]`` is True; each batch adds its negatives to :func:`clip_loss`.
    :func:`mmtutor.train.fit` is not used because it expects ``(inputs, target)``
    batches and a loss of logits and targets; a contrastive batch has no target but its own diagonal.
    """
    if not isinstance(model, CLIPModel):
        raise TypeError(f"model must be a CLIPModel, got {_describe(model)}")
    images = _check_image_tensor(images, 3, IMAGE_SHAPE[0])
    if not isinstance(text, torch.Tensor) or len(text) != len(images):
        raise ValueError(f"text must be a tensor with one entry per image ({len(images)}), got "
                         f"{type(text).__name__} of length {len(text) if hasattr(text, '__len__') else '?'}")
    if groups is not None:
        groups = torch.as_tensor(groups)
        if groups.shape != (len(images),):
            raise ValueError(f"groups must hold one label per image ({len(images)}), got shape {tuple(groups.shape)}")
    if negative_text is not None:
        if not isinstance(negative_text, torch.Tensor) or len(negative_text) != len(images):
            raise ValueError(f"negative_text must be a tensor with one entry per image ({len(images)}), "
                             f"got {_describe(negative_text)}")
        negative_mask = torch.ones(len(images), dtype=torch.bool) if negative_mask is None \
            else torch.as_tensor(negative_mask)
        if negative_mask.dtype != torch.bool or negative_mask.shape != (len(images),):
            raise ValueError(f"negative_mask must be {len(images)} booleans, got dtype {negative_mask.dtype} "
                             f"and shape {tuple(negative_mask.shape)}")
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    if batch_size < 2 or batch_size > len(images):
        raise ValueError(f"batch_size must lie in [2, {len(images)}] (a pair needs negatives), got {batch_size}")
    lr = _check_positive_float("lr", lr)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")

    decay = [p for n, p in model.named_parameters() if p.requires_grad and n != "log_logit_scale"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": float(weight_decay)},
                                   {"params": [model.log_logit_scale], "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = len(images) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(int(seed))
    history = ClipHistory(steps_per_epoch=steps_per_epoch)
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, mininterval=1.0, ncols=90)
    for _ in bar:
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            image_emb, text_emb, scale = model(images[batch], text[batch])
            negatives = None
            if negative_text is not None and bool(negative_mask[batch].any()):
                negatives = model.encode_text(negative_text[batch[negative_mask[batch]]])
            loss = clip_loss(image_emb, text_emb, scale, None if groups is None else groups[batch], negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.loss.append(loss.item())
            history.temperature.append(model.temperature)
        bar.set_postfix(loss=f"{np.mean(history.loss[-steps_per_epoch:]):.3f}", tau=f"{model.temperature:.3f}")
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
