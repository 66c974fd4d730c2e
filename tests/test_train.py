"""The training loop: learns, repeats exactly with a seed, stops early, schedules, checkpoints."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmtutor.train import History, evaluate, fit, load_checkpoint, predict, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def loaders(x, y, xv, yv, batch_size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch_size,
                       shuffle=True, generator=g)
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=256)
    return train, val


def test_softmax_regression_matches_sklearn(digits):
    x, y, xv, yv = digits
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    train, val = loaders(x, y, xv, yv)
    history = fit(model, train, val, epochs=30, lr=0.05, progress=False)
    ours = history.epochs[-1]["val_accuracy"]
    reference = LogisticRegression(max_iter=2000).fit(x, y).score(xv, yv)
    assert ours >= reference - 0.03, (ours, reference)
    # evaluate() agrees with scikit-learn on the same predictions
    logits = predict(model, val)
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    scores = evaluate(model, val)
    assert scores["accuracy"] == pytest.approx(accuracy_score(yv, logits.argmax(1)))
    assert scores["loss"] == pytest.approx(log_loss(yv, probs, labels=range(10)), rel=1e-4)


def test_seeded_runs_repeat_exactly(digits):
    x, y, xv, yv = digits
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))
        runs.append(fit(model, *loaders(x, y, xv, yv, seed=1), epochs=3, progress=False))
    keys = ("train_loss", "val_loss", "val_accuracy")
    assert [[e[k] for k in keys] for e in runs[0].epochs] == [[e[k] for k in keys] for e in runs[1].epochs]


def test_cosine_schedule(digits):
    x, y, xv, yv = digits
    model = nn.Linear(64, 10)
    history = fit(model, *loaders(x, y, xv, yv), epochs=5, lr=0.1, progress=False)
    expected = [0.1 * (1 + math.cos(math.pi * t / 5)) / 2 for t in range(5)]
    np.testing.assert_allclose(history.column("lr"), expected, rtol=1e-9)
    flat = fit(nn.Linear(64, 10), *loaders(x, y, xv, yv), epochs=3, lr=0.1, schedule=None, progress=False)
    assert set(flat.column("lr")) == {0.1}


def test_early_stopping_keeps_the_best_weights(digits):
    x, y, xv, yv = digits
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    # 60 training examples with shuffled labels: the model memorises them and validation loss climbs
    train, val = loaders(x[:60], rng.permutation(y[:60]), xv, yv, batch_size=20)
    history = fit(model, train, val, epochs=200, lr=0.01, patience=3, schedule=None, progress=False)
    assert history.stopped_early and len(history.epochs) < 200
    assert len(history.epochs) == history.best_epoch + 3
    best = history.epochs[history.best_epoch - 1]["val_loss"]
    assert evaluate(model, val)["loss"] == pytest.approx(best, rel=1e-6)


def test_checkpoint_round_trip(tmp_path, digits):
    x, y, xv, yv = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    train, val = loaders(x, y, xv, yv)
    path = tmp_path / "best.safetensors"
    history = fit(model, train, val, epochs=4, progress=False, checkpoint=path)
    fresh = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    meta = load_checkpoint(fresh, path)
    assert int(meta["epoch"]) == history.best_epoch
    np.testing.assert_array_equal(predict(fresh, val), predict(model, val))
    # the same weights and metadata written twice give the same file, byte for byte
    save_checkpoint(fresh, tmp_path / "a.safetensors", {"epoch": 1})
    save_checkpoint(model, tmp_path / "b.safetensors", {"epoch": 1})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_l1_penalty_sparsifies(digits):
    x, y, xv, yv = digits
    fractions = []
    for l1 in (0.0, 1e-3):
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        fit(model, *loaders(x, y, xv, yv), epochs=10, lr=0.01, l1=l1, progress=False)
        fractions.append(float((model.weight.abs() < 1e-2).float().mean()))
    assert fractions[1] > fractions[0] + 0.2


def test_history_column_names_the_key():
    with pytest.raises(KeyError, match="key"):
        History(epochs=[{"epoch": 1}]).column("val_loss")


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"lr": -1.0}, ValueError, "lr"),
    ({"l1": float("nan")}, ValueError, "l1"),
    ({"schedule": "linear"}, ValueError, "schedule"),
    ({"patience": 0}, ValueError, "patience"),
])
def test_fit_bad_input(kwargs, exc, name, digits):
    x, y, xv, yv = digits
    train, val = loaders(x[:64], y[:64], xv, yv)
    with pytest.raises(exc, match=name):
        fit(nn.Linear(64, 10), train, val, progress=False, **kwargs)


def test_bad_model_and_loaders(digits, tmp_path):
    x, y, xv, yv = digits
    train, val = loaders(x[:64], y[:64], xv, yv)
    with pytest.raises(TypeError, match="model"):
        fit(lambda t: t, train, val)
    with pytest.raises(ValueError, match="val_loader"):
        fit(nn.Linear(64, 10), train, None, patience=2, progress=False)
    with pytest.raises(ValueError, match="batch"):
        fit(nn.Linear(64, 10), [torch.zeros(4, 64)], progress=False)
    with pytest.raises(ValueError, match="loader"):
        evaluate(nn.Linear(64, 10), [])
    with pytest.raises(ValueError, match="path"):
        load_checkpoint(nn.Linear(64, 10), tmp_path / "missing.safetensors")
