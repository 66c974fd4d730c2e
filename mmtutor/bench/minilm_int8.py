"""Benchmark row "all-MiniLM-L6-v2 int8": the pretrained sentence encoder with int8 weights, activations and embeddings.

The recipe (:func:`compress_minilm`, the one chapter 10's case study arrives at) calls
:func:`mmtutor.compress.outliers.quantize_int8_dynamic`: every ``nn.Linear`` becomes an
:class:`~mmtutor.compress.outliers.Int8DynamicLinear` (int8 weights with one scale per output row, inputs
quantized per call), and every embedding table a :class:`~mmtutor.compress.outliers.QuantizedEmbedding`
(int8, one scale per row). Activations use all 8 bits when the CPU has VNNI
(:func:`~mmtutor.compress.outliers.has_vnni`) and 7 otherwise. LayerNorm, softmax, GELU and the
attention products stay in float32.

Measured side by side with the float32 model: size (:func:`mmtutor.evaluate.model_size_bytes`), mean cosine
similarity of the sentence embeddings (mean pooling, unit length) on the 254 English dialogue turns
(:func:`mmtutor.models.minilm.evaluation_sentences`), and latency on one batch of :data:`BATCH_SIZE` sentences
padded to the longest, with :data:`THREADS` PyTorch threads. The int8 model is written to a safetensors
file, read back into a fresh float skeleton, and must give the same embeddings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmtutor.bench import Row
from mmtutor.compress.outliers import has_vnni, load_int8, quantize_int8_dynamic, save_int8
from mmtutor.evaluate import compare_latency, cosine_fidelity, model_size_bytes
from mmtutor.models.minilm import encode_with, evaluation_sentences, float_skeleton, latency_batch
from mmtutor.preprocess.text import MiniLMEncoder

__all__ = ["NAME", "THREADS", "BATCH_SIZE", "compress_minilm", "round_trip_max_difference", "run"]

NAME = "all-MiniLM-L6-v2 int8"
#: PyTorch threads for the latency comparison (a laptop's two performance cores).
THREADS = 2
#: Sentences per batch in the latency comparison (sentence-transformers' default ``batch_size``).
BATCH_SIZE = 32


def compress_minilm(model: nn.Module, reduce_range: bool | None = None) -> nn.Module:
    """The int8 recipe: int8 linear layers (per-row weight scales) and int8 embeddings (per-row scales).

    ``reduce_range=None`` uses 8-bit activations on a CPU with VNNI and 7-bit ones otherwise. ``model``
    (the float ``BertModel``) is not modified.
    """
    if reduce_range is None:
        reduce_range = not has_vnni()
    return quantize_int8_dynamic(model, reduce_range=reduce_range, embeddings=True)


def round_trip_max_difference(encoder: MiniLMEncoder, model: nn.Module, sentences) -> float:
    """Save ``model`` with :func:`~mmtutor.compress.outliers.save_int8`, load it into a fresh skeleton, and
    return the largest absolute difference between the sentence embeddings of the two."""
    with tempfile.TemporaryDirectory() as directory:
        path = save_int8(model, Path(directory) / "minilm-int8.safetensors")
        loaded = load_int8(path, float_skeleton(encoder))
    a, b = encode_with(encoder, model, sentences), encode_with(encoder, loaded, sentences)
    return float(np.abs(a - b).max())


def run(repeats: int = 20) -> list[Row]:
    """Measure the row; under a minute on two quiet cores."""
    encoder = MiniLMEncoder()
    model = encoder.model
    int8 = compress_minilm(model)
    sentences = evaluation_sentences()
    with torch.no_grad():
        reference = encode_with(encoder, model, sentences)
        embeddings = encode_with(encoder, int8, sentences)
        batch = latency_batch(encoder, sentences, BATCH_SIZE)
        timing = compare_latency(lambda: model(**batch), lambda: int8(**batch), repeats=repeats, warmup=3,
                                 threads=THREADS)
    round_trip = round_trip_max_difference(encoder, int8, sentences[:32])
    return [Row(name=NAME, model="all-MiniLM-L6-v2 (22.7M parameters)", baseline_bytes=model_size_bytes(model),
                bytes=model_size_bytes(int8), metric="mean cosine to fp32 sentence embeddings",
                baseline_metric_value=1.0, metric_value=cosine_fidelity(reference, embeddings),
                latency_ratio=timing.ratio, threads=THREADS, batch_size=BATCH_SIZE,
                extra={"sequence_length": int(batch["input_ids"].shape[1]), "sentences": len(sentences),
                       "activation_bits": 7 if int8.encoder.layer[0].output.dense.reduce_range else 8,
                       "round_trip_max_abs_difference": round_trip})]
