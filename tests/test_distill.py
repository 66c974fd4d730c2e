"""Distillation loss and loop, checked against PyTorch's ``kl_div``/``cross_entropy`` and Keras's losses."""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from mmtutor.compress.distill import distill, distillation_loss, soft_targets
from mmtutor.runtime import import_tensorflow

tf = import_tensorflow()  # once for the module: the Keras reference below
import keras  # noqa: E402  (Keras 3, after TensorFlow is loaded quietly)

FAST = settings(max_examples=30, deadline=None)


def random_batch(seed: int, n: int, classes: int, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    student = scale * torch.randn(n, classes, generator=g, dtype=torch.float64)
    teacher = scale * torch.randn(n, classes, generator=g, dtype=torch.float64)
    targets = torch.randint(0, classes, (n,), generator=g)
    return student, teacher, targets


def reference_loss(student, teacher, targets, temperature, alpha):
    """The same loss from PyTorch's own building blocks."""
    soft = F.kl_div(F.log_softmax(student / temperature, dim=-1), F.log_softmax(teacher / temperature, dim=-1),
                    reduction="batchmean", log_target=True)
    return alpha * temperature ** 2 * soft + (1 - alpha) * F.cross_entropy(student, targets)


# --------------------------------------------------------------------------------------------------
# the loss against independent references
# --------------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(1, 16), classes=st.integers(2, 12),
       temperature=st.floats(0.1, 20.0), alpha=st.floats(0.0, 1.0))
def test_loss_equals_torch_kl_div_and_cross_entropy(seed, n, classes, temperature, alpha):
    student, teacher, targets = random_batch(seed, n, classes)
    ours = distillation_loss(student, teacher, targets, temperature, alpha)
    torch.testing.assert_close(ours, reference_loss(student, teacher, targets, temperature, alpha),
                               rtol=1e-10, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 16), classes=st.integers(2, 12),
       temperature=st.floats(1.0, 10.0), alpha=st.floats(0.0, 1.0))
def test_loss_equals_keras_kl_divergence_and_crossentropy(seed, n, classes, temperature, alpha):
    student, teacher, targets = random_batch(seed, n, classes, scale=2.0)
    ours = float(distillation_loss(student, teacher, targets, temperature, alpha))
    p_teacher = tf.nn.softmax(teacher.numpy() / temperature)
    p_student = tf.nn.softmax(student.numpy() / temperature)
    kl = float(keras.losses.KLDivergence()(p_teacher, p_student))       # mean over the batch of sum_i p log p/q
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets.numpy(), student.numpy()))
    # Keras clips probabilities to [1e-7, 1] inside KLDivergence: agreement to about 1e-6, not to float64
    assert ours == pytest.approx(alpha * temperature ** 2 * kl + (1 - alpha) * ce, rel=1e-5, abs=1e-5)


def test_soft_targets_is_softmax_at_temperature_and_flattens():
    logits = torch.tensor([[4.0, 1.0, 0.0, -2.0]])
    torch.testing.assert_close(soft_targets(logits, 1.0), torch.softmax(logits, dim=-1))
    torch.testing.assert_close(soft_targets(logits, 2.0), torch.softmax(logits / 2, dim=-1))
    entropies = [float(-(p * p.log()).sum()) for p in (soft_targets(logits, t) for t in (1, 2, 4, 8, 1000))]
    assert entropies == sorted(entropies)                                 # a higher T is flatter
    assert entropies[-1] == pytest.approx(math.log(4), abs=1e-4)          # T -> inf: uniform


def test_alpha_zero_is_cross_entropy_and_alpha_one_ignores_labels():
    student, teacher, targets = random_batch(3, 8, 5)
    torch.testing.assert_close(distillation_loss(student, teacher, targets, 3.0, 0.0),
                               F.cross_entropy(student, targets))
    other_targets = (targets + 1) % 5
    torch.testing.assert_close(distillation_loss(student, teacher, targets, 3.0, 1.0),
                               distillation_loss(student, teacher, other_targets, 3.0, 1.0))
    assert float(distillation_loss(teacher, teacher, targets, 3.0, 1.0)) == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# gradients: the T^2 argument
# --------------------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 10_000), temperature=st.floats(0.5, 10.0))
def test_soft_gradient_is_T_times_probability_difference(seed, temperature):
    student, teacher, targets = random_batch(seed, 6, 7)
    student.requires_grad_(True)
    distillation_loss(student, teacher, targets, temperature, 1.0).backward()
    expected = temperature * (torch.softmax(student / temperature, -1) - torch.softmax(teacher / temperature, -1))
    torch.testing.assert_close(student.grad, expected.detach() / len(student), rtol=1e-9, atol=1e-12)


def test_soft_gradient_without_T_squared_shrinks_as_one_over_T_squared():
    student, teacher, targets = random_batch(0, 4, 10, scale=1.0)
    student, teacher = student - student.mean(-1, keepdim=True), teacher - teacher.mean(-1, keepdim=True)
    for temperature in (20.0, 50.0):
        leaf = student.clone().requires_grad_(True)
        (distillation_loss(leaf, teacher, targets, temperature, 1.0) / temperature ** 2).backward()
        approximation = (student - teacher) / (10 * temperature ** 2) / len(student)
        torch.testing.assert_close(leaf.grad, approximation, rtol=0.1, atol=1e-3 / temperature ** 2)


def test_teacher_logits_get_no_gradient():
    student, teacher, targets = random_batch(1, 4, 3)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    distillation_loss(student, teacher, targets, 2.0, 0.5).backward()
    assert teacher.grad is None and student.grad is not None


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(temperature):
    student, teacher, targets = random_batch(0, 3, 4)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, teacher, targets, temperature, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(student, temperature)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_must_be_in_unit_interval(alpha):
    student, teacher, targets = random_batch(0, 3, 4)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, teacher, targets, 2.0, alpha)


def test_bad_types_and_shapes_are_named():
    student, teacher, targets = random_batch(0, 3, 4)
    with pytest.raises(TypeError, match="temperature"):
        distillation_loss(student, teacher, targets, True, 0.5)
    with pytest.raises(TypeError, match="alpha"):
        distillation_loss(student, teacher, targets, 2.0, "0.5")
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(student, teacher[:, :3], targets, 2.0, 0.5)
    with pytest.raises(ValueError, match="student_logits"):
        distillation_loss(student[0], teacher[0], targets, 2.0, 0.5)
    with pytest.raises(TypeError, match="student_logits"):
        distillation_loss(student.numpy(), teacher, targets, 2.0, 0.5)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(student, teacher, targets[:2], 2.0, 0.5)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(student, teacher, torch.tensor([0, 1, 4]), 2.0, 0.5)
    with pytest.raises(TypeError, match="targets"):
        distillation_loss(student, teacher, targets.float(), 2.0, 0.5)
    with pytest.raises(TypeError, match="logits"):
        soft_targets([1.0, 2.0], 2.0)


# --------------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------------

def toy_problem():
    """Two-feature points in 4 classes; a wide teacher trained briefly on them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g)
    y = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        F.cross_entropy(teacher(x), y).backward()
        optimizer.step()
    data = TensorDataset(x, y)
    return teacher.eval(), DataLoader(data, batch_size=32, shuffle=True, generator=g), DataLoader(data, 256)


def test_distill_teaches_student_to_agree_with_frozen_teacher():
    torch.set_num_threads(1)
    teacher, train, val = toy_problem()
    teacher.train()                                    # the loop must put it in eval mode and restore this
    before = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(1)
    student = nn.Linear(2, 4)
    history = distill(student, teacher, train, val, epochs=15, lr=5e-2, temperature=2.0, alpha=0.7, progress=False)
    assert teacher.training and not student.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert len(history.epochs) == 15 and 1 <= history.best_epoch <= 15
    assert history.column("val_accuracy").max() > 0.9
    with torch.no_grad():
        x = val.dataset.tensors[0]
        assert float((student(x).argmax(1) == teacher.eval()(x).argmax(1)).float().mean()) > 0.9


def test_distill_with_alpha_zero_needs_no_teacher_and_trains_on_labels():
    _, train, val = toy_problem()
    torch.manual_seed(1)
    student = nn.Linear(2, 4)
    history = distill(student, None, train, val, epochs=5, lr=5e-2, alpha=0.0, progress=False)
    assert history.column("val_accuracy")[-1] > 0.8
    assert np.all(np.isfinite(history.column("train_loss")))


def test_distill_rejects_bad_arguments():
    teacher, train, val = toy_problem()
    student = nn.Linear(2, 4)
    with pytest.raises(TypeError, match="teacher"):
        distill(student, None, train, val, alpha=0.5, progress=False)
    with pytest.raises(TypeError, match="student"):
        distill("student", teacher, train, val, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        distill(student, teacher, train, val, epochs=0, progress=False)
    with pytest.raises(ValueError, match="temperature"):
        distill(student, teacher, train, val, temperature=0.0, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        distill(student, teacher, train, val, alpha=2.0, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        distill(student, teacher, train, val, schedule="linear", progress=False)
