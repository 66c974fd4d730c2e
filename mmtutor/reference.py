r"""The reference model of Part II: one trained AV-digits fusion model that every compression method starts from.

Part II compares methods (pruning, quantization, distillation, factorisation, weight sharing) by how far
each moves one fixed starting point, so the starting point is defined once, here:

- **data**: clean AV-digits (:func:`mmtutor.data.avdigits.load_avdigits`); the 640 training clips are
  each paired with 2 different digit images (1,280 training pairs), the 160 validation and 160 test
  clips with 5 (800 pairs each), so that one test error moves accuracy by 0.125 points, not 0.625;
- **model**: :func:`mmtutor.models.avdigits.avdigits_classifier` with intermediate fusion, embeddings and
  hidden layers of width 256 (:data:`REFERENCE_ARCHITECTURE`; 563,850 parameters, 2.26 MB as float32
  safetensors): wide enough that its size and its latency are dominated by weights and arithmetic, not
  by file headers and Python overhead, as in the large models the methods are meant for;
- **training**: :func:`mmtutor.train.fit` with :data:`REFERENCE_TRAINING` (AdamW, cosine schedule, early
  stopping on validation loss), seeded, on one thread (small matrices run fastest that way).

:func:`train_reference` takes about 5 s of CPU time and is deterministic for a given seed.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmtutor.data.avdigits import load_avdigits
from mmtutor.evaluate import fixed_threads
from mmtutor.models.avdigits import avdigits_classifier, avdigits_tensors
from mmtutor.runtime import _check_int
from mmtutor.train import History, evaluate, fit

__all__ = ["REFERENCE_ARCHITECTURE", "REFERENCE_TRAINING", "PAIRS_PER_CLIP", "reference_datasets",
           "train_loader", "eval_loader", "reference_architecture", "train_reference", "accuracy"]

REFERENCE_ARCHITECTURE = {"style": "intermediate", "dim": 256, "hidden": 256}
REFERENCE_TRAINING = {"epochs": 8, "lr": 3e-3, "weight_decay": 1e-2, "patience": 3}
PAIRS_PER_CLIP = {"train": 2, "val": 5, "test": 5}
BATCH_SIZE = 64


@lru_cache(maxsize=1)
def _datasets() -> dict[str, TensorDataset]:
    return {split: TensorDataset(*avdigits_tensors(load_avdigits(split, pairs_per_clip=pairs)))
            for split, pairs in PAIRS_PER_CLIP.items()}


def reference_datasets() -> dict[str, TensorDataset]:
    """``{"train", "val", "test"}`` -> ``TensorDataset(images (N, 1, 8, 8), log_mel (N, 32, 96), labels (N,))``.

    Built once per process (about 4 s: the log-mel features of 2,880 pairs) and shared.
    """
    return dict(_datasets())


def train_loader(dataset: TensorDataset, seed: int = 0, batch_size: int = BATCH_SIZE) -> DataLoader:
    """Shuffled mini-batches whose order depends only on ``seed``."""
    seed = _check_int("seed", seed, minimum=0)
    return DataLoader(dataset, batch_size=_check_int("batch_size", batch_size, minimum=1), shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def eval_loader(dataset: TensorDataset, batch_size: int = 400) -> DataLoader:
    """Batches in the dataset's order, for evaluation."""
    return DataLoader(dataset, batch_size=_check_int("batch_size", batch_size, minimum=1))


def reference_architecture(**overrides) -> nn.Module:
    """A freshly initialised model of the reference architecture (``overrides`` change its arguments)."""
    return avdigits_classifier(**{**REFERENCE_ARCHITECTURE, **overrides})


@lru_cache(maxsize=4)
def _trained(seed: int) -> tuple[dict, History]:
    torch.manual_seed(seed)
    model = reference_architecture()
    data = _datasets()
    with fixed_threads(1):
        history = fit(model, train_loader(data["train"], seed), eval_loader(data["val"]),
                      **REFERENCE_TRAINING, progress=False)
    return copy.deepcopy(model.state_dict()), history


def train_reference(seed: int = 0) -> tuple[nn.Module, History]:
    """The trained reference model (in eval mode) and its training history.

    Trained once per process and seed; every call returns a fresh copy, so a caller may compress it in
    place without changing what the next caller gets.
    """
    state, history = _trained(_check_int("seed", seed, minimum=0))
    model = reference_architecture()
    model.load_state_dict(state)
    return model.eval(), history


def accuracy(model: nn.Module, split: str = "test") -> float:
    """Accuracy of ``model`` on a split of :func:`reference_datasets`."""
    if split not in PAIRS_PER_CLIP:
        raise ValueError(f"split must be one of {list(PAIRS_PER_CLIP)}, got {split!r}")
    return float(evaluate(model, eval_loader(_datasets()[split]))["accuracy"])
