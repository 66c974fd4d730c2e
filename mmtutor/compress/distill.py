r"""Knowledge distillation: train a small *student* to imitate a large *teacher* (Hinton et al., 2015).

**Soft targets.** At temperature :math:`T > 0` the softmax of logits :math:`z` is

.. math:: p^{(T)}_i = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)} ;

:math:`T = 1` is the ordinary softmax, a larger :math:`T` flattens the distribution and makes visible the
small probabilities a teacher gives to the *wrong* classes (which classes it finds similar: the "dark
knowledge"), :math:`T \to \infty` tends to the uniform distribution.

**The loss** (:func:`distillation_loss`) mixes the soft term, scaled by :math:`T^2`, with the usual
cross-entropy of the student with the labels :math:`y`, averaged over a batch of :math:`N` examples:

.. math:: \mathcal{L} = \alpha\,T^2\,\frac{1}{N}\sum_{n=1}^N
          \mathrm{KL}\big(p^{(T)}_{t,n} \,\big\|\, p^{(T)}_{s,n}\big)
          + (1 - \alpha)\,\frac{1}{N}\sum_{n=1}^N -\log p^{(1)}_{s,n,y_n},
          \qquad \mathrm{KL}(p\,\|\,q) = \sum_i p_i \log\frac{p_i}{q_i} .

``alpha`` weights the soft (teacher) term; :math:`1 - \alpha` weights the hard (label) term, which uses the
student's logits at :math:`T = 1`.

**Why** :math:`T^2`. The gradient of :math:`\mathrm{KL}(p_t^{(T)} \| p_s^{(T)})` with respect to a student
logit is :math:`\frac{1}{T}\big(p^{(T)}_{s,i} - p^{(T)}_{t,i}\big)`, and for large :math:`T` (logits of
mean zero over :math:`K` classes) that is about :math:`\frac{1}{K T^2}(z_{s,i} - z_{t,i})`: it shrinks as
:math:`1/T^2`. Multiplying by :math:`T^2` keeps the soft term's gradients on the scale of the hard term's
whatever the temperature, so that ``alpha`` keeps its meaning when :math:`T` changes.

**The loop** (:func:`distill`) trains the student on this loss with the teacher frozen (eval mode, no
gradients), scoring the student on the validation labels after each epoch and keeping its best state. It
is :func:`mmtutor.train.fit`, the loop of ordinary training, with this loss plugged in. With ``alpha=0`` it
is ordinary training on the labels (the teacher is not even called), which makes the from-labels-only
baseline the same code path.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mmtutor.runtime import _describe
from mmtutor.train import History, fit

__all__ = ["soft_targets", "distillation_loss", "distill"]


def _check_number(name: str, value, low: float, high: float, low_open: bool, high_open: bool,
                  meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number ({meaning}), got {_describe(value)}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {'inf' if math.isinf(high) else format(high, 'g')}" \
                   f"{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval} ({meaning}), got {value!r}")
    return value


def _check_temperature(temperature) -> float:
    return _check_number("temperature", temperature, 0.0, math.inf, True, True, "T > 0 softens the softmax")


def _check_logits(name: str, logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch tensor, got {_describe(logits)}")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (batch, classes) with batch >= 1 and classes >= 2, "
                         f"got shape {tuple(logits.shape)}")
    return logits


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""The softmax of ``logits / temperature`` along the last axis, :math:`p^{(T)}_i \propto \exp(z_i/T)`."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch tensor, got {_describe(logits)}")
    return torch.softmax(logits / _check_temperature(temperature), dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    r"""Hinton et al.'s loss: :math:`\alpha T^2\,\mathrm{KL}(p_t^{(T)} \| p_s^{(T)}) + (1-\alpha)\,\mathrm{CE}(z_s, y)`.

    Parameters
    ----------
    student_logits : tensor (N, C)
        The student's logits :math:`z_s`; gradients flow through them.
    teacher_logits : tensor (N, C)
        The teacher's logits :math:`z_t` on the same inputs; treated as constants (detached).
    targets : int64 tensor (N,)
        The true classes :math:`y_n \in \{0, \dots, C-1\}`.
    temperature : float > 0
        :math:`T` of both soft distributions (the hard term always uses :math:`T = 1`).
    alpha : float in [0, 1]
        Weight of the soft term; ``1 - alpha`` weights the cross-entropy with the labels. ``alpha=0`` is
        plain cross-entropy, ``alpha=1`` learns from the teacher alone.

    Returns
    -------
    tensor
        The scalar loss, both terms averaged over the batch (KL summed over classes, then averaged over
        examples, as ``F.kl_div(..., reduction="batchmean")``).
    """
    student_logits = _check_logits("student_logits", student_logits)
    teacher_logits = _check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {tuple(student_logits.shape)}, "
                         f"got {tuple(teacher_logits.shape)}")
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64:
        raise TypeError(f"targets must be an int64 torch tensor of class indices, got {_describe(targets)}")
    if targets.shape != student_logits.shape[:1]:
        raise ValueError(f"targets must have shape ({student_logits.shape[0]},) (one class per row of "
                         f"student_logits), got {tuple(targets.shape)}")
    classes = student_logits.shape[1]
    if bool(((targets < 0) | (targets >= classes)).any()):
        raise ValueError(f"targets must be class indices in [0, {classes - 1}], got values from "
                         f"{int(targets.min())} to {int(targets.max())}")
    temperature = _check_temperature(temperature)
    alpha = _check_number("alpha", alpha, 0.0, 1.0, False, False, "the weight of the soft term")

    log_p_student = torch.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    # KL(p_t || p_s) = sum_i p_t,i (log p_t,i - log p_s,i); exp of a log-softmax is the softmax itself.
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1).mean()
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard


def distill(student: nn.Module, teacher: nn.Module | None, train_loader, val_loader=None, *, epochs: int = 20,
            lr: float = 3e-3, weight_decay: float = 0.0, temperature: float = 4.0, alpha: float = 0.9,
            schedule: str | None = "cosine", progress: bool = True, desc: str = "distilling") -> History:
    r"""Train ``student`` on :func:`distillation_loss` against a frozen ``teacher``; return its :class:`History`.

    Each batch ``(*inputs, target)`` of ``train_loader`` is fed to both models (``model(*inputs)``); the
    teacher runs in eval mode without gradients. AdamW (``lr``, ``weight_decay``) with an optional cosine
    schedule updates the student. After each epoch the student is scored on ``val_loader`` with the
    labels (cross-entropy and accuracy, :func:`mmtutor.train.evaluate`) and, as in
    :func:`mmtutor.train.fit`, the state with the lowest validation loss is kept and restored at the end
    (the training loss when there is no ``val_loader``). The teacher's mode is restored afterwards.

    ``alpha=0`` trains on the labels only and never calls the teacher (``teacher`` may then be ``None``):
    the baseline that tells what distillation adds. The loop is :func:`mmtutor.train.fit`'s, with the
    distillation loss plugged in through its ``batch_loss``; the student is returned in eval mode. Each
    epoch's row holds ``train_loss`` (the mixed loss), ``train_accuracy``, ``lr`` and, with a
    ``val_loader``, ``val_loss`` and ``val_accuracy``.
    """
    if not isinstance(student, nn.Module):
        raise TypeError(f"student must be a torch.nn.Module, got {_describe(student)}")
    alpha = _check_number("alpha", alpha, 0.0, 1.0, False, False, "the weight of the soft term")
    if not isinstance(teacher, nn.Module) and not (teacher is None and alpha == 0):
        raise TypeError(f"teacher must be a torch.nn.Module (None only with alpha=0), got {_describe(teacher)}")
    temperature = _check_temperature(temperature)
    lr = _check_number("lr", lr, 0.0, math.inf, True, True, "AdamW's learning rate")
    weight_decay = _check_number("weight_decay", weight_decay, 0.0, math.inf, False, True, "AdamW's decay")
    # epochs and schedule are checked by fit, with the same messages

    def batch_loss(model: nn.Module, inputs, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(*inputs)
        if alpha > 0:
            with torch.no_grad():
                teacher_logits = teacher(*inputs)
        else:                                           # labels only: the soft term has weight 0
            teacher_logits = logits.detach()
        return distillation_loss(logits, teacher_logits, target, temperature, alpha), logits

    teacher_was_training = teacher.training if teacher is not None else False
    if teacher is not None:
        teacher.eval()
    try:
        history = fit(student, train_loader, val_loader, epochs=epochs, lr=lr, weight_decay=weight_decay,
                      schedule=schedule, progress=progress, desc=desc, batch_loss=batch_loss)
    finally:
        if teacher is not None:
            teacher.train(teacher_was_training)
    student.eval()
    return history
