r"""A prefix captioner: image encoder → projector → prefix embeddings → a small GPT-2 decoder.

The design of ClipCap, BLIP-2 and LLaVA, at the size of the shapes scenes (:mod:`mmtutor.data.shapes`).
An image :math:`x` is encoded by :class:`mmtutor.models.clip.ImageEncoder` (the image tower of the chapter 13
CLIP model, trained end to end or frozen) into a :math:`4 \times 4` grid of feature vectors
:math:`g_1, \dots, g_{16}` and, through its linear head, one vector :math:`f(x)`. Two projector MLPs map them
into the decoder's embedding space: :math:`P` *global* tokens from :math:`f(x)` (ClipCap's design) and one
*patch* token per grid cell (LLaVA's design),

.. math:: [e_1, \dots, e_P] = \mathrm{reshape}\big(W_2\, \mathrm{GELU}(W_1 f(x) + b_1) + b_2\big), \qquad
          e_{P+k} = V_2\, \mathrm{GELU}(V_1 g_k + c_1) + c_2,

and these *prefix embeddings* are placed before the token embeddings of the text (``inputs_embeds``), so
that the decoder (``transformers.GPT2LMHeadModel``) reads the image as if it were extra tokens.
A sequence is laid out as

.. code-block:: text

    [e_1 ... e_(P+16)] <bos> question tokens | target tokens <eos>

with an empty question for captioning. The loss is the causal language-model cross-entropy on the target
and ``<eos>`` only: prefix, ``<bos>``, question and padding carry the label ``-100``, which
``GPT2LMHeadModel`` skips,

.. math:: \mathcal{L} = -\frac{1}{|T|}\sum_{t \in T} \log p_\theta\big(y_t \mid e, y_{<t}\big).

The vocabulary is word-level (:class:`CaptionerTokenizer`): the captions, questions and answers use 32
distinct words and a question mark, so a subword tokenizer would only split words that never need
splitting, and a word is the unit in which captions are scored.

Scoring (:func:`caption_scores`): a caption is parsed back into objects (:func:`parse_caption`) and compared
with the scene's ground truth slot by slot (alone, or left and right) and attribute by attribute (size,
colour, shape); also full-caption exact match and corpus BLEU-4 (:func:`mmtutor.text_metrics.bleu`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
import re
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmtutor.data.shapes import COLORS, SHAPES, SIZES
from mmtutor.models.clip import CaptionTokenizer, ImageEncoder, images_to_tensor
from mmtutor.models.gpt2 import IGNORE_INDEX, adamw_warmup_cosine, build_gpt2, small_gpt2_config
from mmtutor.preprocess.text import word_tokenize
from mmtutor.runtime import _check_int, _describe

__all__ = ["ATTRIBUTES", "CaptionerTokenizer", "PrefixCaptioner", "collate_captioner", "captioner_examples",
           "CaptionerHistory", "fit_captioner", "train_captioner", "parse_caption", "scene_slots",
           "attribute_matches", "caption_scores", "CaptionerReport", "evaluate_captioner", "QUESTION_KINDS",
           "question_kind", "qa_accuracy_by_kind"]

GRID_CELLS = 16
"""Cells of the 4×4 feature map of :class:`mmtutor.models.clip.ImageEncoder`: one patch token each."""

ATTRIBUTES = ("size", "color", "shape")
"""The attributes a caption names for every object, in caption order."""


# --------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------

class CaptionerTokenizer(CaptionTokenizer):
    """Word-level tokenizer of the captions, questions and answers, with unpadded ``encode``/``decode``.

    Built with :meth:`from_scenes` (the words of the training split); ``<pad>``, ``<unk>``, ``<bos>``,
    ``<eos>`` are ids 0-3 as in :class:`mmtutor.models.clip.CaptionTokenizer`.
    """

    @classmethod
    def from_scenes(cls, scenes) -> "CaptionerTokenizer":
        """The vocabulary of every caption, question and answer of ``scenes`` (a ``ShapesScenes``)."""
        if not all(hasattr(scenes, a) for a in ("captions", "questions", "answers")):
            raise TypeError(f"scenes must be a ShapesScenes (load_shapes), got {_describe(scenes)}")
        texts = list(scenes.captions) + [q for qs in scenes.questions for q in qs] + \
            [a for answers in scenes.answers for a in answers]
        return cls.from_captions(texts)

    @property
    def bos_id(self) -> int:
        return self.vocab["<bos>"]

    @property
    def eos_id(self) -> int:
        return self.vocab["<eos>"]

    def encode(self, text: str) -> list[int]:
        """The ids of the words of ``text`` (lower-cased), without padding or special tokens."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {_describe(text)}")
        if not text.strip():
            return []
        return [self.vocab.get(w, self.unk_id) for w in word_tokenize(text.lower())]

    def decode(self, ids) -> str:
        """Words of ``ids`` up to the first ``<eos>``, joined by spaces; other special tokens are dropped."""
        words = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)):
            if i == self.eos_id:
                break
            if not 0 <= int(i) < len(self.tokens):
                raise ValueError(f"ids must lie in [0, {len(self.tokens) - 1}], got {i}")
            if int(i) > self.eos_id:                    # ids 0-3 are <pad>, <unk>, <bos>, <eos>
                words.append(self.tokens[int(i)])
        return " ".join(words)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------

def _as_image_batch(images) -> torch.Tensor:
    """uint8 scenes ``(N, 32, 32, 3)`` or a float tensor ``(N, 3, 32, 32)``, checked, as a float tensor."""
    if isinstance(images, np.ndarray):
        return images_to_tensor(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be uint8 scenes (N, 32, 32, 3) or a float tensor (N, 3, 32, 32), "
                        f"got {_describe(images)}")
    if not images.is_floating_point() or images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32) \
            or images.shape[0] == 0:
        raise ValueError(f"images must be a float tensor of shape (N, 3, 32, 32) with N >= 1 (or uint8 scenes "
                         f"(N, 32, 32, 3)), got {_describe(images)}")
    return images


class PrefixCaptioner(nn.Module):
    r"""Image encoder, projector MLP and GPT-2 decoder: captions scenes and answers questions about them.

    Parameters
    ----------
    tokenizer : CaptionerTokenizer
        Its vocabulary sizes the decoder's embedding table and output head (tied, as in GPT-2).
    image_encoder : nn.Module, optional
        Anything that maps ``(N, 3, 32, 32)`` floats to ``(N, out_dim)`` and has an int ``out_dim``;
        default a fresh :class:`mmtutor.models.clip.ImageEncoder` (``width=32``, ``out_dim=128``).
    prefix_length : int
        :math:`P`, the number of global prefix tokens (from the encoder's feature vector).
    patch_tokens : bool
        Add one prefix token per cell of the encoder's 4×4 feature grid (needs an encoder with ``features``
        and a linear ``head``, as :class:`mmtutor.models.clip.ImageEncoder` has).
    n_embd, n_layer, n_head, n_positions : int
        The decoder's width, depth, heads and context (``mmtutor.models.gpt2.small_gpt2_config``).
    projector_hidden : int
        Hidden width of the projector MLP.
    freeze_image_encoder : bool
        Keep the encoder's weights fixed (no gradients) and its batch-norm statistics in eval mode, as
        when it comes pretrained (the CLIP image tower).
    """

    def __init__(self, tokenizer: CaptionerTokenizer, image_encoder: nn.Module | None = None, *,
                 prefix_length: int = 2, patch_tokens: bool = True, n_embd: int = 64, n_layer: int = 2,
                 n_head: int = 4, n_positions: int = 40, projector_hidden: int = 256,
                 freeze_image_encoder: bool = False):
        super().__init__()
        if not isinstance(tokenizer, CaptionerTokenizer):
            raise TypeError(f"tokenizer must be a CaptionerTokenizer, got {_describe(tokenizer)}")
        if image_encoder is None:
            image_encoder = ImageEncoder(width=32, out_dim=128)
        if not isinstance(image_encoder, nn.Module) or not isinstance(getattr(image_encoder, "out_dim", None), int):
            raise TypeError(f"image_encoder must be a torch.nn.Module with an int out_dim, got "
                            f"{_describe(image_encoder)}")
        for name, value in (("freeze_image_encoder", freeze_image_encoder), ("patch_tokens", patch_tokens)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {_describe(value)}")
        if patch_tokens and not (isinstance(getattr(image_encoder, "features", None), nn.Module)
                                 and isinstance(getattr(image_encoder, "head", None), nn.Linear)):
            raise TypeError("image_encoder must have a features module and a linear head (an ImageEncoder) "
                            f"when patch_tokens=True, got {type(image_encoder).__name__}")
        self.tokenizer = tokenizer
        self.prefix_length = _check_int("prefix_length", prefix_length, 1)
        self.projector_hidden = _check_int("projector_hidden", projector_hidden, 1)
        config = small_gpt2_config(len(tokenizer), n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                                   n_positions=n_positions, dropout=0.0, pad_token_id=tokenizer.pad_id,
                                   bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
        self.patch_tokens = patch_tokens
        self.num_prefix_tokens = self.prefix_length + (GRID_CELLS if patch_tokens else 0)
        if n_positions < self.num_prefix_tokens + 3:
            raise ValueError(f"n_positions must leave room for the prefix ({self.num_prefix_tokens}), <bos> and "
                             f"at least two tokens, got {n_positions}")
        self.image_encoder = image_encoder
        self.projector = nn.Sequential(nn.Linear(image_encoder.out_dim, self.projector_hidden), nn.GELU(),
                                       nn.Linear(self.projector_hidden, self.prefix_length * config.n_embd))
        if patch_tokens:
            channels = image_encoder.head.in_features // GRID_CELLS
            self.patch_projector = nn.Sequential(nn.Linear(channels, 2 * config.n_embd), nn.GELU(),
                                                 nn.Linear(2 * config.n_embd, config.n_embd))
        # the decoder's weights come from the global RNG too (build_gpt2 forks it with this seed)
        self.decoder = build_gpt2(config, seed=int(torch.randint(0, 2**31 - 1, ())))
        # name the loss explicitly: transformers cannot infer it from the class name and says so on stderr
        self.decoder.loss_type = "ForCausalLM"
        self.freeze_image_encoder = freeze_image_encoder
        if freeze_image_encoder:
            self.image_encoder.requires_grad_(False)
            self.image_encoder.eval()

    @property
    def config(self) -> dict:
        """Constructor arguments other than the tokenizer and the encoder."""
        c = self.decoder.config
        return {"prefix_length": self.prefix_length, "patch_tokens": self.patch_tokens, "n_embd": c.n_embd,
                "n_layer": c.n_layer, "n_head": c.n_head, "n_positions": c.n_positions,
                "projector_hidden": self.projector_hidden, "freeze_image_encoder": self.freeze_image_encoder}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_image_encoder:
            self.image_encoder.eval()                    # a frozen encoder keeps its batch-norm statistics
        return self

    def prefix(self, images) -> torch.Tensor:
        """The ``(N, num_prefix_tokens, n_embd)`` prefix embeddings of ``images`` (uint8 scenes or a float
        tensor): ``prefix_length`` global tokens, then (with ``patch_tokens``) one per cell of the 4×4 grid."""
        images = _as_image_batch(images)
        n = len(images)
        if not self.patch_tokens:
            return self.projector(self.image_encoder(images)).reshape(n, self.prefix_length, -1)
        maps = self.image_encoder.features(images)                   # (N, C * 16), channel-major
        tokens = self.projector(self.image_encoder.head(maps)).reshape(n, self.prefix_length, -1)
        cells = maps.reshape(n, -1, GRID_CELLS).transpose(1, 2)      # (N, 16, C): one vector per cell
        return torch.cat([tokens, self.patch_projector(cells)], dim=1)

    def forward(self, images, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None):
        """Decoder outputs (``loss`` when ``labels`` are given, ``logits`` over prefix and tokens) for
        right-padded ``input_ids`` ``(N, L)`` (see :func:`collate_captioner`) after the prefix of ``images``."""
        prefix = self.prefix(images)
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.int64 or input_ids.ndim != 2 \
                or len(input_ids) != len(prefix):
            raise ValueError(f"input_ids must be an int64 tensor (N, L) with one row per image ({len(prefix)}), "
                             f"got {_describe(input_ids)}")
        n, p = len(prefix), self.num_prefix_tokens
        if p + input_ids.shape[1] > self.decoder.config.n_positions:
            raise ValueError(f"input_ids must fit the context: {p} prefix + {input_ids.shape[1]} tokens > "
                             f"n_positions={self.decoder.config.n_positions}")
        embeds = torch.cat([prefix, self.decoder.get_input_embeddings()(input_ids)], dim=1)
        mask = torch.ones(n, p + input_ids.shape[1], dtype=torch.long)
        if attention_mask is not None:
            mask[:, p:] = attention_mask
        if labels is not None:
            labels = torch.cat([torch.full((n, p), IGNORE_INDEX, dtype=torch.long), labels], dim=1)
        return self.decoder(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    def _check_questions(self, questions, n: int) -> list[list[int]]:
        if questions is None:
            return [[self.tokenizer.bos_id] for _ in range(n)]
        if isinstance(questions, str):
            questions = [questions] * n if n == 1 else None
        if not isinstance(questions, (list, tuple)) or len(questions) != n:
            raise ValueError(f"questions must be None (caption the images) or a list of {n} str, one per image, "
                             f"got {_describe(questions)}")
        prompts = []
        for i, q in enumerate(questions):
            if not isinstance(q, str):
                raise TypeError(f"questions[{i}] must be a str, got {_describe(q)}")
            if not q.strip():
                raise ValueError(f"questions[{i}] must not be empty (pass questions=None to caption), got {q!r}")
            prompts.append([self.tokenizer.bos_id] + self.tokenizer.encode(q))
        return prompts

    @torch.no_grad()
    def generate(self, images, questions=None, max_new_tokens: int = 16, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> list[str]:
        """Captions (``questions=None``) or answers for ``images``, decoded to strings.

        Prompts are *left*-padded so that every row's last prompt token sits in the last column, where
        ``generate`` continues; the ``attention_mask`` is 0 on the padding (so no position attends to it)
        and ``transformers`` derives the position ids from it, so a padded row generates what it would alone.
        ``max_new_tokens``, ``pad_token_id`` and ``eos_token_id`` are always passed. Greedy by default;
        ``do_sample=True`` samples with ``temperature``/``top_k``/``top_p`` from ``torch.manual_seed(seed)``
        (the global RNG is restored afterwards).
        """
        images = _as_image_batch(images)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral):
            raise TypeError(f"max_new_tokens must be an int, got {_describe(max_new_tokens)}")
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be >= 1 (the number of tokens to add), got {max_new_tokens}")
        prompts = self._check_questions(questions, len(images))
        longest = max(len(p) for p in prompts)
        total = self.num_prefix_tokens + longest + int(max_new_tokens)
        if total > self.decoder.config.n_positions:
            raise ValueError(f"max_new_tokens={max_new_tokens} plus the prefix ({self.num_prefix_tokens}) and the "
                             f"longest prompt ({longest} tokens) must fit n_positions="
                             f"{self.decoder.config.n_positions}")
        was_training = self.training
        self.eval()
        n, p = len(images), self.num_prefix_tokens
        ids = torch.full((n, longest), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros(n, p + longest, dtype=torch.long)
        for i, prompt in enumerate(prompts):           # left padding
            ids[i, longest - len(prompt):] = torch.tensor(prompt)
            mask[i, longest - len(prompt):] = 1
        token_embeds = self.decoder.get_input_embeddings()(ids)
        prefix = self.prefix(images)
        # row i: [padding][prefix][prompt]: the prefix moves right past the row's padding
        embeds = torch.zeros(n, p + longest, prefix.shape[-1])
        for i, prompt in enumerate(prompts):
            pad = longest - len(prompt)
            embeds[i, :pad] = token_embeds[i, :pad]
            embeds[i, pad:pad + p] = prefix[i]
            embeds[i, pad + p:] = token_embeds[i, pad:]
        settings = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=int(max_new_tokens),
                        pad_token_id=self.tokenizer.pad_id, eos_token_id=self.tokenizer.eos_id,
                        do_sample=bool(do_sample))
        if do_sample:
            settings.update(temperature=float(temperature), top_k=top_k, top_p=top_p)
        else:
            settings.update(temperature=None, top_k=None, top_p=None)
        with torch.random.fork_rng(devices=[]), _quiet_padding_warning():
            if seed is not None:
                torch.manual_seed(_check_int("seed", seed, 0))
            output = self.decoder.generate(**settings)
        self.train(was_training)
        return [self.tokenizer.decode(row) for row in output]


@contextlib.contextmanager
def _quiet_padding_warning():
    """Silence transformers' "We strongly recommend passing in an `attention_mask`" during ``generate``.

    The mask is passed; ``generate`` drops it internally once it is all ones (a causal mask suffices) and then
    sees the ``<pad>`` tokens it appends to finished rows, and warns. Only ``transformers.modeling_utils``'s
    logger is raised to ERROR, and only for the call.
    """
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------------------------------
# data and training
# --------------------------------------------------------------------------------------------------

def collate_captioner(tokenizer: CaptionerTokenizer, questions, targets) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for ``<bos> question target <eos>``.

    ``questions[i]`` is ``""`` for a caption. Labels are ``-100`` on ``<bos>``, the question and padding,
    so only the target and ``<eos>`` are scored (the prefix is added by :meth:`PrefixCaptioner.forward`).
    """
    if not isinstance(tokenizer, CaptionerTokenizer):
        raise TypeError(f"tokenizer must be a CaptionerTokenizer, got {_describe(tokenizer)}")
    if len(questions) != len(targets) or len(targets) == 0:
        raise ValueError(f"questions and targets must be non-empty lists of equal length, got {len(questions)} "
                         f"and {len(targets)}")
    rows, scored = [], []
    for i, (q, t) in enumerate(zip(questions, targets)):
        target = tokenizer.encode(t)
        if not target:
            raise ValueError(f"targets[{i}] must not be empty, got {t!r}")
        prompt = [tokenizer.bos_id] + tokenizer.encode(q)
        rows.append(prompt + target + [tokenizer.eos_id])
        scored.append(len(prompt))
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, (row, start) in enumerate(zip(rows, scored)):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention_mask[i, :len(row)] = 1
        labels[i, start:len(row)] = torch.tensor(row[start:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def captioner_examples(scenes, questions_per_scene: int, rng: np.random.Generator):
    """One epoch of examples ``(scene index, question, target)``: every scene's caption (question ``""``)
    and ``questions_per_scene`` of its question–answer pairs drawn without replacement by ``rng``."""
    questions_per_scene = _check_int("questions_per_scene", questions_per_scene, 0)
    examples = [(i, "", caption) for i, caption in enumerate(scenes.captions)]
    for i, (qs, answers) in enumerate(zip(scenes.questions, scenes.answers)):
        picked = rng.permutation(len(qs))[:questions_per_scene]
        examples.extend((i, qs[j], answers[j]) for j in picked)
    return examples


@dataclass
class CaptionerHistory:
    """What :func:`fit_captioner` recorded: the loss of every step, the epoch count, and the process CPU
    time and wall time of the whole run (seconds)."""

    step_loss: list = field(default_factory=list)
    epochs: int = 0
    steps_per_epoch: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


def fit_captioner(model: PrefixCaptioner, scenes, *, epochs: int = 5, batch_size: int = 32, lr: float = 3e-3,
                  weight_decay: float = 0.01, warmup_steps: int = 20, questions_per_scene: int = 1, seed: int = 0,
                  progress: bool = False) -> CaptionerHistory:
    """Train ``model`` on the captions and questions of ``scenes`` (trained in place, left in eval mode).

    Every epoch draws :func:`captioner_examples` with ``np.random.default_rng(seed + epoch)``, shuffles them,
    and takes AdamW steps (linear warm-up, cosine decay, gradients clipped to norm 1) on batches of
    ``batch_size``. Returns a :class:`CaptionerHistory`.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, PrefixCaptioner):
        raise TypeError(f"model must be a PrefixCaptioner, got {_describe(model)}")
    epochs, batch_size = _check_int("epochs", epochs, 1), _check_int("batch_size", batch_size, 1)
    warmup_steps, seed = _check_int("warmup_steps", warmup_steps, 0), _check_int("seed", seed, 0)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a positive float, got {_describe(lr)}")
    images = images_to_tensor(scenes.images)
    n_examples = len(captioner_examples(scenes, questions_per_scene, np.random.default_rng(seed)))
    steps_per_epoch = math.ceil(n_examples / batch_size)
    total = epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = adamw_warmup_cosine(params, lr, weight_decay, warmup_steps, total)
    history = CaptionerHistory(epochs=epochs, steps_per_epoch=steps_per_epoch)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    bar = tqdm(total=total, desc="training the captioner", disable=not progress, leave=False)
    for epoch in range(epochs):
        rng = np.random.default_rng(seed + epoch)
        examples = captioner_examples(scenes, questions_per_scene, rng)
        order = rng.permutation(len(examples))
        model.train()
        for start in range(0, len(order), batch_size):
            batch = [examples[k] for k in order[start:start + batch_size]]
            tensors = collate_captioner(model.tokenizer, [q for _, q, _ in batch], [t for _, _, t in batch])
            loss = model(images[[i for i, _, _ in batch]], **tensors).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            history.step_loss.append(loss.item())
            bar.update(1)
    bar.close()
    model.eval()
    history.cpu_seconds = time.process_time() - start_cpu
    history.wall_seconds = time.perf_counter() - start_wall
    return history


_CACHE: dict = {}


def train_captioner(seed: int = 0, epochs: int = 5, image_encoder: nn.Module | None = None,
                    progress: bool = False):
    """The book's captioner, trained deterministically on the ``train`` split of the shapes scenes.

    Returns ``(model, history)``: a fresh :class:`PrefixCaptioner` (default sizes, tokenizer from the
    training scenes) trained by :func:`fit_captioner` with one PyTorch thread (tiny matrices run fastest
    on one thread, and the result does not depend on the machine's thread count). With ``image_encoder``
    given (e.g. a pretrained CLIP image tower) it is frozen; otherwise a new encoder trains end to end.
    Results without ``image_encoder`` are cached per process; each call returns copies.
    """
    from mmtutor.data.shapes import load_shapes
    from mmtutor.runtime import fixed_threads

    seed, epochs = _check_int("seed", seed, 0), _check_int("epochs", epochs, 1)
    key = (seed, epochs)
    if image_encoder is not None or key not in _CACHE:
        train = load_shapes("train")
        tokenizer = CaptionerTokenizer.from_scenes(train)
        with fixed_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            frozen = image_encoder is not None
            model = PrefixCaptioner(tokenizer, copy.deepcopy(image_encoder) if frozen else None,
                                    freeze_image_encoder=frozen)
            history = fit_captioner(model, train, epochs=epochs, seed=seed, progress=progress)
        if image_encoder is not None:
            return model, history
        _CACHE[key] = (model, history)
    model, history = _CACHE[key]
    return copy.deepcopy(model), copy.deepcopy(history)


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------

_OBJECT = (rf"a ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(SHAPES)})")
_ONE = re.compile(rf"^{_OBJECT}$")
_TWO = re.compile(rf"^{_OBJECT} on the left and {_OBJECT} on the right$")


def parse_caption(caption: str) -> dict | None:
    """The objects a caption describes, by slot: ``{"alone": {...}}`` or ``{"left": {...}, "right": {...}}``,
    each ``{"size", "color", "shape"}``; ``None`` when the caption follows neither template of
    :mod:`mmtutor.data.shapes`."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {_describe(caption)}")
    text = " ".join(caption.split())
    if match := _ONE.match(text):
        return {"alone": dict(zip(ATTRIBUTES, match.groups()))}
    if match := _TWO.match(text):
        return {"left": dict(zip(ATTRIBUTES, match.groups()[:3])),
                "right": dict(zip(ATTRIBUTES, match.groups()[3:]))}
    return None


def scene_slots(objects) -> dict:
    """The ground truth of one scene (an entry of ``ShapesScenes.objects``) in :func:`parse_caption`'s form."""
    if not isinstance(objects, (list, tuple)) or len(objects) not in (1, 2):
        raise ValueError(f"objects must be a list of 1 or 2 object dicts, got {_describe(objects)}")
    slots = ("alone",) if len(objects) == 1 else ("left", "right")
    return {slot: {a: o[a] for a in ATTRIBUTES} for slot, o in zip(slots, objects)}


def attribute_matches(caption: str, objects) -> dict[str, tuple[int, int]]:
    """Per attribute, ``(correct, total)`` for one caption against one scene.

    Every ground-truth object contributes one (slot, attribute) pair per attribute; it is correct when the
    caption, parsed by :func:`parse_caption`, has an object *in the same slot* with the same value. So a
    colour named for the wrong side, a one-object caption of a two-object scene, or a caption that does not
    parse scores 0 for those pairs. ``"position"`` counts the slots the caption fills correctly (an object
    of any description in each ground-truth slot, and no extra one: ``total`` is the number of slots).
    """
    truth, parsed = scene_slots(objects), parse_caption(caption) or {}
    out = {a: (sum(parsed.get(slot, {}).get(a) == obj[a] for slot, obj in truth.items()), len(truth))
           for a in ATTRIBUTES}
    out["position"] = (sum(slot in parsed for slot in truth) if set(parsed) == set(truth) else 0, len(truth))
    return out


def caption_scores(captions, scenes) -> dict[str, float]:
    r"""How well ``captions`` (one per scene of ``scenes``) describe their scenes.

    * ``attribute_match``: the attribute-level exact match, the fraction of all (scene, object, attribute)
      triples, attributes size, colour and shape, that the caption gets right in the right slot
      (:func:`attribute_matches`): :math:`\sum_s \sum_{o \in s} \sum_a [\hat a_{s,o} = a_{s,o}] \,/\, 3\sum_s |s|`;
    * ``size``, ``color``, ``shape``, ``position``: the same fraction per attribute;
    * ``exact_match``: the fraction of captions identical to the reference (after white-space folding);
    * ``parsed``: the fraction that follow a caption template at all;
    * ``bleu4``: corpus BLEU-4 against the one reference caption per scene (:func:`mmtutor.text_metrics.bleu`).
    """
    from mmtutor.text_metrics import bleu

    if isinstance(captions, str) or not isinstance(captions, (list, tuple)) or len(captions) != len(scenes):
        raise ValueError(f"captions must be a list with one caption per scene ({len(scenes)}), "
                         f"got {_describe(captions)}")
    sums = {a: [0, 0] for a in ATTRIBUTES + ("position",)}
    for caption, objects in zip(captions, scenes.objects):
        for a, (correct, total) in attribute_matches(caption, objects).items():
            sums[a][0] += correct
            sums[a][1] += total
    scores = {"attribute_match": sum(sums[a][0] for a in ATTRIBUTES) / sum(sums[a][1] for a in ATTRIBUTES)}
    scores.update({a: c / t for a, (c, t) in sums.items()})
    scores["exact_match"] = float(np.mean([" ".join(c.split()) == r for c, r in zip(captions, scenes.captions)]))
    scores["parsed"] = float(np.mean([parse_caption(c) is not None for c in captions]))
    scores["bleu4"] = bleu([c if c.strip() else [] for c in captions], list(scenes.captions))
    return scores


@dataclass
class CaptionerReport:
    """Greedy captions and answers on a split, and their scores (:func:`caption_scores` plus ``qa_accuracy``)."""

    captions: list
    answers: list
    scores: dict


def evaluate_captioner(model: PrefixCaptioner, scenes, batch_size: int = 500) -> CaptionerReport:
    """Caption every scene and answer every question of ``scenes`` greedily; score both.

    ``qa_accuracy`` is the fraction of questions whose generated answer equals the reference word."""
    if not isinstance(model, PrefixCaptioner):
        raise TypeError(f"model must be a PrefixCaptioner, got {_describe(model)}")
    batch_size = _check_int("batch_size", batch_size, 1)
    captions = []
    for start in range(0, len(scenes), batch_size):
        captions += model.generate(scenes.images[start:start + batch_size], max_new_tokens=16)
    index = [i for i, qs in enumerate(scenes.questions) for _ in qs]
    questions = [q for qs in scenes.questions for q in qs]
    truth = [a for answers in scenes.answers for a in answers]
    answers = []
    for start in range(0, len(questions), batch_size):
        answers += model.generate(scenes.images[index[start:start + batch_size]],
                                  questions[start:start + batch_size], max_new_tokens=2)
    nested, k = [], 0
    for qs in scenes.questions:
        nested.append(answers[k:k + len(qs)])
        k += len(qs)
    scores = caption_scores(captions, scenes)
    scores["qa_accuracy"] = float(np.mean([a == t for a, t in zip(answers, truth)]))
    return CaptionerReport(captions=captions, answers=nested, scores=scores)


QUESTION_KINDS = ("how many", "is there", "what color", "what shape", "what size", "where")
"""The six kinds of question that :mod:`mmtutor.data.shapes` asks, named by their first words."""


def question_kind(question: str) -> str:
    """The kind of a shapes question, the entry of ``QUESTION_KINDS`` that its first words spell.

    ``"where is the red circle?"`` is a ``"where"`` question, ``"what color is the square?"`` a
    ``"what color"`` one. A question of any other form raises ``ValueError``.
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {_describe(question)}")
    words = " ".join(question.lower().split()) + " "
    for kind in QUESTION_KINDS:
        if words.startswith(kind + " "):
            return kind
    raise ValueError(f"question must start with one of {QUESTION_KINDS}, got {question!r}")


def qa_accuracy_by_kind(answers, scenes) -> dict[str, tuple[int, int]]:
    r"""Per kind of question (``QUESTION_KINDS``), ``(correct, total)`` over all questions of ``scenes``.

    ``answers`` holds one list of answers per scene, in the order of ``scenes.questions`` (as
    ``CaptionerReport.answers`` does). An answer is correct when it equals the reference word after
    white-space folding, so :math:`\sum_k \mathrm{correct}_k / \sum_k \mathrm{total}_k` is the
    ``qa_accuracy`` of :func:`evaluate_captioner`. Kinds that ``scenes`` never asks are left out.
    """
    if isinstance(answers, str) or not isinstance(answers, (list, tuple)) or len(answers) != len(scenes):
        raise ValueError(f"answers must be a list with one list of answers per scene ({len(scenes)}), "
                         f"got {_describe(answers)}")
    counts = {kind: [0, 0] for kind in QUESTION_KINDS}
    for i, (said, questions, truths) in enumerate(zip(answers, scenes.questions, scenes.answers)):
        if isinstance(said, str) or not isinstance(said, (list, tuple)) or len(said) != len(questions):
            raise ValueError(f"answers[{i}] must be a list of {len(questions)} answers, one per question of "
                             f"scene {i}, got {_describe(said)}")
        for answer, question, truth in zip(said, questions, truths):
            if not isinstance(answer, str):
                raise TypeError(f"answers[{i}] must hold str answers, got {_describe(answer)}")
            tally = counts[question_kind(question)]
            tally[0] += " ".join(answer.split()) == truth
            tally[1] += 1
    return {kind: (correct, total) for kind, (correct, total) in counts.items() if total}


