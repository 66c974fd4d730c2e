"""Benchmark row "distillation (fusion model)": a student with under 10% of the reference model's parameters.

The teacher is the reference model (:func:`mmtutor.reference.train_reference`); the student is the same
intermediate-fusion architecture with narrow encoders (:data:`STUDENT_ARCHITECTURE`), trained with
:func:`mmtutor.compress.distill.distill` and :data:`DISTILLATION` (Chapter 8 uses the same constants). The row
also reports, in ``labels_only_accuracy``, the same student trained from the labels alone by the same loop
(``alpha=0``), so that what distillation adds is measured rather than assumed. Latency: teacher and student
timed interleaved on one batch of test pairs, on one thread.
"""

from __future__ import annotations

import torch

from mmtutor.bench import Row
from mmtutor.compress.distill import distill
from mmtutor.evaluate import compare_latency, fixed_threads, model_size_bytes
from mmtutor.models.avdigits import avdigits_classifier
from mmtutor.reference import accuracy, eval_loader, reference_datasets, train_loader, train_reference

__all__ = ["STUDENT_ARCHITECTURE", "DISTILLATION", "train_student", "run"]

#: The student: the reference's intermediate fusion with every width cut down.
STUDENT_ARCHITECTURE = {"style": "intermediate", "dim": 48, "hidden": 48, "image_channels": (8, 16),
                        "audio_channels": (32, 32)}

#: How it is trained (``alpha=0`` for the labels-only baseline).
DISTILLATION = {"epochs": 20, "lr": 3e-3, "weight_decay": 1e-2, "temperature": 4.0, "alpha": 0.9}

THREADS, BATCH_SIZE = 1, 256


def train_student(seed: int = 0, alpha: float | None = None, teacher=None, **architecture):
    """A student trained on the reference data: ``(model, history)``.

    ``alpha`` overrides :data:`DISTILLATION`'s (0: labels only); ``architecture`` overrides entries of
    :data:`STUDENT_ARCHITECTURE`; ``teacher`` defaults to the reference model of seed 0. Initialisation and
    batch order depend only on ``seed``; training runs on one thread (tiny matrices run fastest that way).
    """
    settings = {**DISTILLATION, **({} if alpha is None else {"alpha": alpha})}
    if teacher is None and settings["alpha"] > 0:
        teacher = train_reference()[0]
    data = reference_datasets()
    torch.manual_seed(seed)
    student = avdigits_classifier(**{**STUDENT_ARCHITECTURE, **architecture})
    with fixed_threads(1):
        history = distill(student, teacher, train_loader(data["train"], seed), eval_loader(data["val"]),
                          progress=False, **settings)
    return student, history


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run() -> list[Row]:
    teacher, _ = train_reference()
    student, _ = train_student(seed=0, teacher=teacher)
    labels_only, _ = train_student(seed=0, alpha=0.0)
    images, log_mel, _ = reference_datasets()["test"].tensors
    batch = (images[:BATCH_SIZE], log_mel[:BATCH_SIZE])
    with torch.no_grad():
        timing = compare_latency(teacher, student, *batch, repeats=30, threads=THREADS)
    return [Row(name="distillation (fusion model)",
                model="AV-digits intermediate fusion: reference teacher -> narrow student",
                baseline_bytes=model_size_bytes(teacher), bytes=model_size_bytes(student), metric="test accuracy",
                baseline_metric_value=accuracy(teacher), metric_value=accuracy(student),
                latency_ratio=timing.ratio, threads=THREADS, batch_size=BATCH_SIZE,
                extra={"teacher_parameters": _parameters(teacher), "student_parameters": _parameters(student),
                       "labels_only_accuracy": accuracy(labels_only), "temperature": DISTILLATION["temperature"],
                       "alpha": DISTILLATION["alpha"], "epochs": DISTILLATION["epochs"]})]
