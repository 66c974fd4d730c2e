r"""all-MiniLM-L6-v2 as a compression subject: its sentences, a fixed batch, and embeddings from any variant.

The encoder itself is :class:`mmtutor.preprocess.text.MiniLMEncoder` (tokeniser + 6-layer BERT, mean
pooling, unit length). Compressing it means swapping its ``model`` for a smaller one and asking how far the
sentence embeddings move, so this module gives:

- :func:`evaluation_sentences`: the English turns of the book's dialogue corpus
  (:func:`mmtutor.data.dialogue.load_dialogues`), 254 sentences about the book's own subject;
- :func:`calibration_sentences`: different text (captions and questions of the shapes scenes,
  :func:`mmtutor.data.shapes.load_shapes`), for statistics a method needs before it sees the evaluation set;
- :func:`encode_with`: the sentence embeddings that ``encoder`` gives with another ``model`` in its place;
- :func:`latency_batch`: one padded batch of tokenised sentences, the input of latency measurements;
- :func:`float_skeleton`: a randomly initialised float model of the same architecture (to load weights into).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mmtutor.preprocess.text import MiniLMEncoder
from mmtutor.runtime import _check_int

__all__ = ["evaluation_sentences", "calibration_sentences", "encode_with", "latency_batch", "float_skeleton"]


def _check_encoder(encoder) -> MiniLMEncoder:
    if not isinstance(encoder, MiniLMEncoder):
        raise TypeError(f"encoder must be a mmtutor.preprocess.text.MiniLMEncoder, got {type(encoder).__name__}")
    return encoder


def evaluation_sentences() -> list[str]:
    """Every English turn (questions and answers) of the dialogue corpus, in corpus order (254 sentences)."""
    from mmtutor.data.dialogue import load_dialogues

    return [turn["text"] for dialogue in load_dialogues(language="en") for turn in dialogue["turns"]]


def calibration_sentences(n: int = 64) -> list[str]:
    """``n`` captions and questions of the shapes training scenes: text that is not in the evaluation set."""
    from mmtutor.data.shapes import load_shapes

    n = _check_int("n", n, 1)
    scenes = load_shapes("train", n=n)
    texts = []
    for caption, questions in zip(scenes.captions, scenes.questions):
        for text in (caption, *questions):
            if text not in texts:
                texts.append(text)
    return texts[:n]


def encode_with(encoder: MiniLMEncoder, model: nn.Module, sentences, batch_size: int = 32) -> np.ndarray:
    """Unit-length sentence embeddings ``(N, 384)`` computed by ``encoder``'s recipe with ``model`` inside.

    The tokeniser, the batching (longest first, padded per batch), the mean pooling and the normalisation
    are those of :meth:`mmtutor.preprocess.text.MiniLMEncoder.encode`; only the transformer is swapped
    (``encoder`` is not modified).
    """
    _check_encoder(encoder)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    swapped = copy.copy(encoder)
    swapped.model = model
    return swapped.encode(sentences, batch_size=batch_size)


def latency_batch(encoder: MiniLMEncoder, sentences, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """The first ``batch_size`` of ``sentences`` tokenised as one batch, padded to its longest sentence.

    Returns the tokeniser's dict (``input_ids``, ``token_type_ids``, ``attention_mask``), to be called as
    ``model(**batch)``.
    """
    _check_encoder(encoder)
    batch_size = _check_int("batch_size", batch_size, 1)
    if isinstance(sentences, str) or len(sentences) < batch_size:
        raise ValueError(f"sentences must be a list of at least batch_size={batch_size} strings, "
                         f"got {type(sentences).__name__} of length {len(sentences)}")
    return dict(encoder.tokenizer(list(sentences[:batch_size]), padding=True, truncation=True,
                                  max_length=encoder.max_length, return_tensors="pt"))


def float_skeleton(encoder: MiniLMEncoder) -> nn.Module:
    """A float model with ``encoder.model``'s architecture and random weights (to load a checkpoint into)."""
    from transformers import AutoModel

    _check_encoder(encoder)
    return AutoModel.from_config(encoder.model.config).eval()
