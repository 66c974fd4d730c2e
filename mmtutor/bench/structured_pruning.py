"""Benchmark row "structured pruning (fusion model)": remove channels and neurons, fine-tune, time side by side.

The reference model (:func:`mmtutor.reference.train_reference`) loses :data:`AMOUNT` of every width
(convolution channels of both encoders, the embeddings, the projections and the hidden layer) by
:func:`mmtutor.compress.prune.prune_avdigits_classifier`, then :func:`mmtutor.train.fit` fine-tunes the
smaller dense model for a few epochs (:data:`FINE_TUNING`). Latency is timed interleaved with the
reference by :func:`mmtutor.evaluate.compare_latency` on the whole test set (800 pairs) in one batch, with
one PyTorch thread (:data:`THREADS`); the ratio at batch size 1 is reported too. The pruned model is
written to a safetensors file and read back into the smaller architecture, and must give identical logits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from mmtutor.bench import Row
from mmtutor.compress.prune import load_avdigits_classifier, prune_avdigits_classifier, save_avdigits_classifier
from mmtutor.evaluate import compare_latency, fixed_threads, model_size_bytes
from mmtutor.reference import accuracy, eval_loader, reference_datasets, train_loader, train_reference
from mmtutor.runtime import _check_int
from mmtutor.train import History, fit

__all__ = ["NAME", "AMOUNT", "FINE_TUNING", "THREADS", "prune_and_fine_tune", "round_trip_max_difference", "run"]

NAME = "structured pruning (fusion model)"
#: Fraction of every width removed: 3/8 of the channels and neurons are kept.
AMOUNT = 0.625
#: Fine-tuning of the pruned model with :func:`mmtutor.train.fit` (AdamW, cosine schedule).
FINE_TUNING = {"epochs": 3, "lr": 3e-3, "weight_decay": 1e-2}
#: PyTorch threads for fine-tuning and for the latency comparison.
THREADS = 1


def prune_and_fine_tune(model: nn.Module, amount: float = AMOUNT, epochs: int = FINE_TUNING["epochs"],
                        seed: int = 0, progress: bool = False) -> tuple[nn.Module, History | None]:
    """Prune ``amount`` of every width of ``model`` (not modified) and fine-tune for ``epochs`` epochs.

    ``epochs=0`` skips fine-tuning (the history is then ``None``). The training batches' order depends only
    on ``seed``; training runs on :data:`THREADS` thread (tiny matrices run fastest on one). Returns the
    pruned model in eval mode and the fine-tuning history.
    """
    epochs = _check_int("epochs", epochs, 0)
    pruned = prune_avdigits_classifier(model, amount)
    history = None
    if epochs:
        data = reference_datasets()
        torch.manual_seed(_check_int("seed", seed, 0))
        with fixed_threads(THREADS):
            history = fit(pruned, train_loader(data["train"], seed), eval_loader(data["val"]),
                          **{**FINE_TUNING, "epochs": epochs}, progress=progress, desc="fine-tuning")
    return pruned.eval(), history


@torch.no_grad()
def round_trip_max_difference(model: nn.Module, *inputs: torch.Tensor) -> float:
    """Save ``model`` with :func:`~mmtutor.compress.prune.save_avdigits_classifier`, load it back into a
    freshly built architecture, and return the largest absolute difference of their outputs on ``inputs``."""
    with tempfile.TemporaryDirectory() as folder:
        path = save_avdigits_classifier(model, Path(folder) / "pruned.safetensors")
        loaded = load_avdigits_classifier(path)
    return float((model.eval()(*inputs) - loaded(*inputs)).abs().max())


def run() -> list[Row]:
    """The row: reference vs pruned and fine-tuned, size, test accuracy and latency (800 pairs, 1 thread)."""
    baseline, _ = train_reference()
    pruned, _ = prune_and_fine_tune(baseline)
    images, log_mel, _ = reference_datasets()["test"].tensors
    with torch.no_grad():
        batch = compare_latency(baseline, pruned, images, log_mel, repeats=30, threads=THREADS)
        single = compare_latency(baseline, pruned, images[:1], log_mel[:1], repeats=200, threads=THREADS)
    return [Row(name=NAME, model="AV-digits intermediate fusion (reference)",
                baseline_bytes=model_size_bytes(baseline), bytes=model_size_bytes(pruned),
                metric="test accuracy", baseline_metric_value=accuracy(baseline), metric_value=accuracy(pruned),
                latency_ratio=batch.ratio, threads=THREADS, batch_size=len(images),
                extra={"amount": AMOUNT, "fine_tuning_epochs": FINE_TUNING["epochs"],
                       "baseline_parameters": sum(p.numel() for p in baseline.parameters()),
                       "parameters": sum(p.numel() for p in pruned.parameters()),
                       "latency_ratio_batch_1": single.ratio,
                       "round_trip_max_difference": round_trip_max_difference(pruned, images, log_mel)})]
