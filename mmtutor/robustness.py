r"""Robustness of a multimodal classifier to a noisy or missing modality.

A model that scores well on clean test data may still fail when one input is degraded: a smudged
camera, a noisy room, a microphone that is off. MultiBench (Liang et al., 2021) measures this with a
*robustness curve*: accuracy on the test set as one modality is corrupted at levels
:math:`\lambda = 0, 0.1, \dots, 1`, from clean to useless. Its summary is the area under that curve,
the *relative robustness* (:func:`relative_robustness`), and the area between the curve and a
reference curve moved to start at the same clean accuracy, the *effective robustness*
(:func:`effective_robustness`). This module computes both for the AV-digits models of
:mod:`mmtutor.models.avdigits`, with two kinds of corruption of level :math:`\lambda \in [0, 1]`:

``kind="noise"``: mix noise into the modality, :math:`\tilde x = (1 - \lambda)\,x + \lambda\,n`, the
rule of :func:`mmtutor.data.avdigits.load_avdigits`. Where the noise goes is a choice:

* **the raw signal** (:func:`mix_noise`, and :func:`robustness_curves` given an
  :class:`~mmtutor.data.avdigits.AVDigits` split): uniform noise :math:`n \sim U[0, 1]` per pixel,
  Gaussian noise :math:`n \sim \mathcal N(0, \mathrm{rms}(x)^2)` per audio sample within the clip;
  the log-mel features are then recomputed, so the noise passes through the audio front end as a
  noisy microphone's would. This is the default and the honest test for audio.
* **the features** (:func:`degrade`, and :func:`robustness_curves` given tensors): uniform noise
  :math:`n \sim U[0, 1]` mixed into the model inputs, pixels or log-mel values alike (both lie in
  [0, 1]). For images the two coincide exactly (the pixels *are* the features); for audio, feature
  noise is a different, synthetic corruption: it does not pass through the logarithm and the
  per-clip peak normalisation of :func:`~mmtutor.models.avdigits.log_mel_features`.

``kind="zero"``: drop parts of the modality, each independently with probability :math:`\lambda`:
single pixels of an image, whole 10 ms frames (every mel band) of a log-mel spectrogram, MultiBench's
random and structured drops. Zero is what a blank image and silence (the padding) look like to the
models, so at :math:`\lambda = 1` the modality is **missing**: every value is exactly 0. Zeroing is
always applied to the features (a zeroed waveform would not give silent features, because the log-mel
front end normalises every clip to its own peak).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mmtutor.data.avdigits import AVDigits, _check_level  # the data's own noise-level check
from mmtutor.metrics import accuracy
from mmtutor.models.avdigits import avdigits_tensors, log_mel_features
from mmtutor.models.fusion import EncodeThenFuse, LateFusion
from mmtutor.train import predict

__all__ = ["MODALITIES", "KINDS", "DEFAULT_LEVELS", "mix_noise", "degrade", "robustness_curves",
           "robustness_curve", "relative_robustness", "effective_robustness", "DropModality"]

MODALITIES = ("image", "audio")
KINDS = ("noise", "zero")
DEFAULT_LEVELS = np.linspace(0.0, 1.0, 6)
_STREAM = {"image": 1, "audio": 2}  # the noise streams of load_avdigits: default_rng([seed, 1 or 2])


# ----------------------------------------------------------------------------- input checks
def _check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}.")


def _check_seed(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}.")
    return int(seed)


def _check_levels(levels):
    try:
        values = np.asarray(levels, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if isinstance(levels, str) or values is None or values.ndim != 1 or values.size == 0:
        raise ValueError(f"levels must be a non-empty 1-D sequence of numbers in [0, 1]; got {levels!r}.")
    for level in values:
        _check_level("levels", float(level))
    return values


def _check_model(model, name="model"):
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module called as model(images, log_mel); "
                        f"got {type(model).__name__}.")


# ----------------------------------------------------------------------------- degrading inputs
def mix_noise(data: AVDigits, modality: str, level: float, seed: int = 0) -> AVDigits:
    r"""A copy of ``data`` with noise mixed into the raw signal of one modality.

    :math:`\tilde x = (1 - \lambda)\,x + \lambda\,n`, exactly as
    :func:`~mmtutor.data.avdigits.load_avdigits` does it when loading (same noise for the same
    ``seed``): ``mix_noise(load_avdigits(split, seed=s), "audio", 0.3, seed=s)`` equals
    ``load_avdigits(split, audio_noise=0.3, seed=s)``. Images get :math:`n \sim U[0, 1]` per pixel;
    audio gets :math:`n \sim \mathcal N(0, \mathrm{rms}(x)^2)` per sample, inside each clip only (the
    zero padding stays zero). At :math:`\lambda = 1` an image is pure noise; a clip is noise at its
    own loudness and of its own duration, so its *length* still tells something about the word.

    Parameters
    ----------
    data : AVDigits
        A split from :func:`~mmtutor.data.avdigits.load_avdigits`; it is not modified.
    modality : {"image", "audio"}
    level : float in [0, 1]
    seed : int >= 0
    """
    if not isinstance(data, AVDigits):
        raise TypeError(f"data must be an AVDigits split from load_avdigits; got {type(data).__name__}.")
    _check_choice("modality", modality, MODALITIES)
    level, seed = _check_level("level", level), _check_seed(seed)
    rng = np.random.default_rng([seed, _STREAM[modality]])
    if modality == "image":
        noise = rng.random(data.images.shape, dtype=np.float32)
        return dataclasses.replace(data, images=((1 - level) * data.images + level * noise).astype(np.float32))
    inside = np.arange(data.waveforms.shape[1])[None, :] < data.lengths[:, None]
    rms = np.sqrt(np.array([np.mean(w[:n] ** 2) for w, n in zip(data.waveforms, data.lengths)], dtype=np.float32))
    noise = np.where(inside, rng.standard_normal(data.waveforms.shape, dtype=np.float32) * rms[:, None], np.float32(0))
    return dataclasses.replace(data, waveforms=((1 - level) * data.waveforms + level * noise).astype(np.float32))


def _as_numpy(x, name):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or a NumPy array; got {type(x).__name__}.")


def _like(values, template):
    """``values`` (NumPy) as the same type, dtype and device as ``template``."""
    if isinstance(template, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(values)).to(dtype=template.dtype, device=template.device)
    return values.astype(template.dtype, copy=False)


def degrade(images, log_mel, modality: str, level: float, kind: str = "noise", seed: int = 0):
    r"""Corrupt one modality of a batch of model inputs; return ``(images, log_mel)``.

    ``images`` are pixels in [0, 1], shape ``(N, 1, 8, 8)`` (or ``(N, 8, 8)``); ``log_mel`` are features
    in [0, 1], shape ``(N, n_mels, frames)``. Tensors in, tensors out (same dtype and device); NumPy
    arrays in, arrays out. The inputs are never modified; the other modality is returned as it came.

    * ``kind="noise"``: :math:`\tilde x = (1 - \lambda)\,x + \lambda\,u`, :math:`u \sim U[0, 1]` per
      value. At :math:`\lambda = 1` the result depends on ``seed`` only, not on the input: no
      information is left. For images this is exactly the noise of ``load_avdigits(image_noise=...)``
      with the same ``seed``; for audio it is *feature* noise (see the module notes; use
      :func:`mix_noise` for noise in the waveform).
    * ``kind="zero"``: each pixel, or each frame of the spectrogram (all its mel bands at once), is set
      to 0 with probability :math:`\lambda`; at :math:`\lambda = 1` the modality is entirely 0, i.e.
      missing.

    At :math:`\lambda = 0` both kinds return the inputs' values unchanged.
    """
    _check_choice("modality", modality, MODALITIES)
    _check_choice("kind", kind, KINDS)
    level, seed = _check_level("level", level), _check_seed(seed)
    arrays = {"images": _as_numpy(images, "images"), "log_mel": _as_numpy(log_mel, "log_mel")}
    if arrays["images"].ndim not in (3, 4) or arrays["images"][0].size != 64:
        raise ValueError(f"images must have shape (N, 1, 8, 8) or (N, 8, 8); got {arrays['images'].shape}.")
    if arrays["log_mel"].ndim != 3:
        raise ValueError(f"log_mel must have shape (N, n_mels, frames); got {arrays['log_mel'].shape}.")
    if len(arrays["images"]) != len(arrays["log_mel"]):
        raise ValueError(f"images and log_mel must hold the same number of examples; got "
                         f"{len(arrays['images'])} and {len(arrays['log_mel'])}.")
    target = "images" if modality == "image" else "log_mel"
    x = arrays[target].astype(np.float32)
    rng = np.random.default_rng([seed, _STREAM[modality]])
    if kind == "noise":
        x = (1 - level) * x + level * rng.random(x.shape, dtype=np.float32)
    else:
        # a mask per pixel, or per frame (shape (N, 1, frames): every mel band of a frame at once)
        shape = x.shape if modality == "image" else (x.shape[0], 1, x.shape[2])
        x = np.where(rng.random(shape) < level, np.float32(0.0), x)
    result = {"images": images, "log_mel": log_mel}
    result[target] = _like(x, images if target == "images" else log_mel)
    return result["images"], result["log_mel"]


# ----------------------------------------------------------------------------- robustness curves
def _check_models(models):
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty dict {{name: model}}; got {type(models).__name__}.")
    for name, model in models.items():
        _check_model(model, f"models[{name!r}]")


def _check_data(data):
    """``(images, log_mel, labels)`` tensors of ``data``, which is an AVDigits split or such a tuple."""
    if isinstance(data, AVDigits):
        return avdigits_tensors(data)
    if isinstance(data, (tuple, list)) and len(data) == 3 and all(isinstance(t, torch.Tensor) for t in data):
        images, log_mel, labels = data
        if not len(images) == len(log_mel) == len(labels):
            raise ValueError(f"data tensors must hold the same number of examples; got "
                             f"{len(images)}, {len(log_mel)} and {len(labels)}.")
        return images, log_mel, labels
    raise TypeError("data must be an AVDigits split (noise goes into the raw signal) or a tuple of "
                    f"tensors (images, log_mel, labels) (noise goes into the features); got {type(data).__name__}.")


def _accuracy(model, images, log_mel, labels, batch_size):
    loader = DataLoader(TensorDataset(images, log_mel, labels), batch_size=batch_size)
    return accuracy(labels.numpy(), predict(model, loader).argmax(axis=1))


def robustness_curves(models, data, *, modality: str, kind: str = "noise", levels=DEFAULT_LEVELS,
                      seed: int = 0, batch_size: int = 512):
    """Test accuracy of each model as one modality is degraded, level by level.

    Parameters
    ----------
    models : dict {name: nn.Module}
        Classifiers called as ``model(images, log_mel)``, e.g. from
        :func:`~mmtutor.models.avdigits.avdigits_classifier`; evaluated in eval mode.
    data : AVDigits or tuple (images, log_mel, labels) of tensors
        The test set. An :class:`AVDigits` split gets ``kind="noise"`` in its **raw signal**
        (:func:`mix_noise`; the log-mel features are recomputed at each level); tensors get it in the
        **features** (:func:`degrade`). ``kind="zero"`` always zeroes features.
    modality : {"image", "audio"}
    kind : {"noise", "zero"}
    levels : 1-D sequence of floats in [0, 1], default ``0, 0.2, ..., 1``
    seed : int
        Seeds the noise or the dropped parts; the same draw serves every level, so the curves are
        smooth in the level and every model sees the same corrupted inputs.
    batch_size : int

    Returns
    -------
    pandas.DataFrame
        One row per level (index ``level``), one column of accuracies per model.
    """
    import pandas as pd

    _check_models(models)
    _check_choice("modality", modality, MODALITIES)
    _check_choice("kind", kind, KINDS)
    levels, seed = _check_levels(levels), _check_seed(seed)
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
    images, log_mel, labels = _check_data(data)
    in_signal = isinstance(data, AVDigits) and kind == "noise"
    rows = []
    for level in levels:
        if in_signal and modality == "audio":
            noisy = mix_noise(data, "audio", level, seed)
            inputs = (images, torch.from_numpy(log_mel_features(noisy.waveforms, noisy.lengths)))
        elif in_signal:
            inputs = (torch.from_numpy(mix_noise(data, "image", level, seed).images[:, None]), log_mel)
        else:
            inputs = degrade(images, log_mel, modality, level, kind, seed)
        rows.append({name: _accuracy(model, *inputs, labels, batch_size) for name, model in models.items()})
    return pd.DataFrame(rows, index=pd.Index(levels, name="level"))


def robustness_curve(model, data, *, modality: str, kind: str = "noise", levels=DEFAULT_LEVELS,
                     seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """Accuracy of one model per level, as a NumPy array; see :func:`robustness_curves`."""
    _check_model(model)
    curves = robustness_curves({"model": model}, data, modality=modality, kind=kind, levels=levels,
                               seed=seed, batch_size=batch_size)
    return curves["model"].to_numpy()


def _check_curve(levels, accuracies, name):
    levels = _check_levels(levels)
    accuracies = np.asarray(accuracies, dtype=np.float64)
    if accuracies.shape != levels.shape:
        raise ValueError(f"{name} must hold one value per level ({levels.size}); got shape {accuracies.shape}.")
    if levels.size < 2 or np.any(np.diff(levels) <= 0):
        raise ValueError(f"levels must increase, with at least two of them; got {levels.tolist()}.")
    return levels, accuracies


def relative_robustness(levels, accuracies) -> float:
    r"""Area under the robustness curve (MultiBench's relative robustness), by the trapezoid rule.

    .. math:: R = \int_{\lambda_0}^{\lambda_K} \mathrm{acc}(\lambda)\, d\lambda
              \approx \sum_k \tfrac12 (\lambda_{k+1} - \lambda_k)(\mathrm{acc}_k + \mathrm{acc}_{k+1}).

    Over levels 0 to 1 it is the accuracy averaged over all corruption levels: 1 for a model that is
    always right whatever the noise, the chance accuracy for one that is always guessing.
    """
    levels, accuracies = _check_curve(levels, accuracies, "accuracies")
    return float(np.sum(np.diff(levels) * (accuracies[1:] + accuracies[:-1]) / 2))


def effective_robustness(levels, accuracies, reference) -> float:
    r"""Area between a robustness curve and a ``reference`` curve shifted to the same clean accuracy.

    MultiBench compares every method with late fusion this way: the reference
    :math:`\mathrm{ref}(\lambda) + \mathrm{acc}(\lambda_0) - \mathrm{ref}(\lambda_0)` is what the model
    would score if it lost accuracy exactly as the reference does; the area of
    :math:`\mathrm{acc}(\lambda)` above it (trapezoid rule) is positive when the model degrades more
    gracefully than the reference, negative when it degrades faster, whatever its clean accuracy.
    """
    levels, accuracies = _check_curve(levels, accuracies, "accuracies")
    _, reference = _check_curve(levels, reference, "reference")
    shifted = reference + accuracies[0] - reference[0]
    return relative_robustness(levels, accuracies - shifted)


# ----------------------------------------------------------------------------- dropping a modality
class DropModality(nn.Module):
    """A late-fusion classifier that ignores one modality: its head is left out of the average.

    :class:`~mmtutor.models.fusion.LateFusion` averages one classifier per modality and accepts
    ``None`` for a missing one, renormalising the weights of the others. Zeroing an input is not the
    same thing: a blank image still goes through the image head, whose (confident, wrong) logits are
    averaged in. ``DropModality(model, "image")(images, log_mel)`` runs only the audio encoder and head.
    Only late fusion can do this; every other style needs both inputs to compute anything.

    Parameters
    ----------
    model : EncodeThenFuse with a LateFusion module
        E.g. ``avdigits_classifier("late")``; it is shared, not copied.
    modality : {"image", "audio"}
        The modality to drop; ``images`` come first and ``log_mel`` second, as for every model here.
    """

    def __init__(self, model: nn.Module, modality: str):
        super().__init__()
        if not isinstance(model, EncodeThenFuse) or not isinstance(model.fusion, LateFusion):
            fusion = type(getattr(model, "fusion", None)).__name__
            raise TypeError(f"model must be an EncodeThenFuse with a LateFusion module (only late fusion "
                            f"can leave a modality out); got {type(model).__name__} with fusion {fusion}.")
        _check_choice("modality", modality, MODALITIES)
        self.model, self.missing = model, MODALITIES.index(modality)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.model.encoders):
            raise ValueError(f"inputs: expected {len(self.model.encoders)} tensors (images, log_mel); "
                             f"got {len(inputs)}.")
        embeddings = [None if m == self.missing else encoder(x)
                      for m, (encoder, x) in enumerate(zip(self.model.encoders, inputs))]
        return self.model.fusion(*embeddings)
