"""A short, readable PyTorch training loop: progress bar, validation, early stopping, schedule, checkpoints.

One epoch of mini-batch gradient descent minimises the mean loss over the training set,

.. math::  \\theta \\leftarrow \\theta - \\eta_t \\nabla_\\theta \\frac{1}{|B|} \\sum_{(x, y) \\in B} \\ell(f_\\theta(x), y)
           \\; [+\\; \\lambda_1 \\lVert \\theta \\rVert_1],

with the learning rate :math:`\\eta_t` following a cosine schedule from ``lr`` down to 0 (or staying constant).
After each epoch the model is scored on the validation set; the best state (lowest validation loss) is kept,
optionally written to a safetensors checkpoint, and training stops after ``patience`` epochs without
improvement. Loaders yield ``(*inputs, target)`` tuples and the model is called as ``model(*inputs)``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = ["History", "fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint"]


@dataclass
class History:
    """What :func:`fit` measured: one dict per epoch, the best epoch, whether it stopped early."""

    epochs: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def column(self, key: str) -> np.ndarray:
        """The values of one metric across epochs, e.g. ``history.column("val_accuracy")``."""
        if not self.epochs or key not in self.epochs[0]:
            known = sorted(self.epochs[0]) if self.epochs else []
            raise KeyError(f"key must be one of {known}, got {key!r}")
        return np.array([e[key] for e in self.epochs])


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _split_batch(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("each batch must be a tuple (*inputs, target) with at least one input")
    return batch[:-1], batch[-1]


@torch.no_grad()
def predict(model: nn.Module, loader) -> np.ndarray:
    """Concatenated model outputs (e.g. logits) over ``loader``, in eval mode, as a NumPy array."""
    _check_model(model)
    was_training = model.training
    model.eval()
    outputs = [model(*_split_batch(batch)[0]).float().cpu() for batch in loader]
    model.train(was_training)
    return torch.cat(outputs).numpy()


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn=None) -> dict:
    """Mean loss and accuracy of a classifier over ``loader``: ``{"loss": ..., "accuracy": ...}``."""
    _check_model(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    for batch in loader:
        inputs, target = _split_batch(batch)
        logits = model(*inputs)
        loss_sum += float(loss_fn(logits, target)) * len(target)
        correct += int((logits.argmax(dim=-1) == target).sum())
        total += len(target)
    model.train(was_training)
    if total == 0:
        raise ValueError("loader must yield at least one example, got an empty loader")
    return {"loss": loss_sum / total, "accuracy": correct / total}


def fit(model: nn.Module, train_loader, val_loader=None, *, epochs: int = 20, lr: float = 1e-3,
        weight_decay: float = 0.0, l1: float = 0.0, optimizer: torch.optim.Optimizer | None = None,
        loss_fn=None, schedule: str | None = "cosine", patience: int | None = None,
        checkpoint: str | Path | None = None, progress: bool = True, desc: str = "training",
        batch_loss=None) -> History:
    """Train ``model`` and return its :class:`History`; the model ends holding its best weights.

    Parameters
    ----------
    epochs : int
        Maximum number of passes over ``train_loader``.
    lr, weight_decay : float
        AdamW's learning rate and decoupled weight decay (an L2-like shrinkage), used when no
        ``optimizer`` is given.
    l1 : float
        Coefficient :math:`\\lambda_1` of an L1 penalty on all weight matrices (not biases).
    schedule : {"cosine", None}
        Cosine decay of the learning rate over ``epochs``, or a constant rate.
    patience : int or None
        Stop after this many epochs without a lower validation loss (needs ``val_loader``).
    checkpoint : path or None
        Where to save the best weights (safetensors), re-loadable with :func:`load_checkpoint`.
    batch_loss : callable or None
        ``batch_loss(model, inputs, target) -> (loss, logits)`` replaces ``loss_fn(model(*inputs), target)``
        on training batches (validation still uses ``loss_fn``): how a loss that needs more than the logits
        plugs in, such as distillation's, which also runs a teacher on the inputs
        (:func:`mmtutor.compress.distill.distill`).
    """
    _check_model(model)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("l1", l1)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if schedule not in ("cosine", None):
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        if val_loader is None:
            raise ValueError("patience needs a val_loader to watch, got val_loader=None")

    loss_fn = loss_fn or nn.CrossEntropyLoss()
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if schedule else None
    history, best_loss, best_state, waited = History(), float("inf"), None, 0
    start = time.perf_counter()
    bar = tqdm(total=epochs, desc=desc, disable=not progress, mininterval=1.0, ncols=90)
    for epoch in range(1, epochs + 1):
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for batch in train_loader:
            inputs, target = _split_batch(batch)
            if batch_loss is None:
                logits = model(*inputs)
                loss = loss_fn(logits, target)
            else:
                loss, logits = batch_loss(model, inputs, target)
            if l1 > 0:
                loss = loss + l1 * sum(p.abs().sum() for n, p in model.named_parameters() if p.ndim > 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(target)
            correct += int((logits.argmax(dim=-1) == target).sum())
            seen += len(target)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
               "train_accuracy": correct / seen}
        if scheduler is not None:
            scheduler.step()
        if val_loader is not None:
            scores = evaluate(model, val_loader, loss_fn)
            row.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        history.epochs.append(row)
        watched = row.get("val_loss", row["train_loss"])
        if watched < best_loss:
            best_loss, best_state, waited, history.best_epoch = watched, copy.deepcopy(model.state_dict()), 0, epoch
            if checkpoint is not None:
                save_checkpoint(model, checkpoint, {"epoch": epoch, "loss": watched})
        else:
            waited += 1
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row.get('val_accuracy', float('nan')):.3f}",
                        refresh=False)
        bar.update(1)
        if patience is not None and waited >= patience:
            history.stopped_early = True
            break
    bar.close()
    model.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return history


def save_checkpoint(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the model's ``state_dict`` to ``path`` in safetensors format (tensors made contiguous)."""
    from safetensors.torch import save_file

    _check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``; returns its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    _check_model(model)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing checkpoint file, got {str(path)!r}")
    model.load_state_dict(load_file(str(path)), strict=True)
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
