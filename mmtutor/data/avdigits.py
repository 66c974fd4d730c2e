r"""AV-digits: handwritten digit images paired by label with spoken digits in English and Mandarin.

The image half is scikit-learn's bundled ``load_digits`` (1,797 greyscale 8x8 images, 16 grey levels).
The audio half is 960 clips synthesised once with espeak-ng by ``tools/make_avdigits_audio.py`` (2 languages
x 12 voice variants x 10 digits x 4 takes at seeded random speeds and pitches), stored as 8-bit mu-law at
8 kHz in ``assets/avdigits_audio.npz``. Splits hold out *voices* for validation and test, as AV-MNIST holds
out a speaker, and hold out *images* too: no test image or test voice is ever seen in training.

Each example pairs one clip with an image of the same digit. Noise can be mixed into either modality,

.. math::  \tilde x = (1 - \lambda)\, x + \lambda\, n,

with :math:`\lambda \in [0, 1]`: for images :math:`n \sim U[0, 1]` per pixel, for audio
:math:`n \sim \mathcal N(0, \mathrm{rms}(x)^2)` per sample. At :math:`\lambda = 1` an image carries no
information at all and a clip almost none (only its length survives, which still hints at the word), so a
level can be chosen at which neither modality alone is enough.

Mu-law companding (ITU-T G.711 style, :math:`\mu = 255`) stores a sample :math:`x \in [-1, 1]` in 8 bits as
:math:`F(x) = \operatorname{sign}(x)\,\ln(1 + \mu |x|) / \ln(1 + \mu)`, quantised to 256 levels; fine steps
for quiet samples, coarse ones for loud samples, as the ear prefers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["LANGUAGES", "VOICES", "SPLIT_VOICES", "SAMPLE_RATE", "WORDS", "AVDigits", "load_avdigits",
           "load_avdigits_audio", "mu_law_encode", "mu_law_decode"]

AUDIO_ASSET = Path(__file__).resolve().parent / "assets" / "avdigits_audio.npz"
SAMPLE_RATE = 8000
LANGUAGES = ("en", "cmn")
WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "cmn": ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九"),
}
VOICES = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPLIT_VOICES = {
    "train": ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3"),
    "val": ("m6", "f4"),
    "test": ("m7", "f5"),
}
SPLITS = tuple(SPLIT_VOICES)
_IMAGE_SPLIT_SEED = 1797       # fixed: the image split never depends on the caller's seed
_IMAGE_FRACTIONS = (0.6, 0.2)  # train, val; the rest is test


def mu_law_encode(x, mu: int = 255) -> np.ndarray:
    """Compand ``x`` in [-1, 1] to unsigned 8-bit codes 0..255 (``mu`` = 255)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D waveform, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.abs(x).max(initial=0.0) > 1.0:
        raise ValueError("x must be finite and within [-1, 1]")
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.rint((y + 1.0) / 2.0 * mu).astype(np.uint8)


def mu_law_decode(codes, mu: int = 255) -> np.ndarray:
    """Invert :func:`mu_law_encode`: codes 0..255 back to float32 samples in [-1, 1]."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8 mu-law codes, got dtype {codes.dtype}")
    y = 2.0 * np.arange(256, dtype=np.float64) / mu - 1.0
    table = (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)
    return table[codes]


@lru_cache(maxsize=1)
def _audio_archive() -> dict[str, np.ndarray]:
    with np.load(AUDIO_ASSET, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def load_avdigits_audio() -> dict[str, np.ndarray | list]:
    """All 960 clips, decoded: ``waveforms`` (a list of float32 arrays) and their metadata arrays."""
    arc = _audio_archive()
    decoded = mu_law_decode(arc["audio"])
    offsets = arc["offsets"]
    out = {key: arc[key] for key in ("digit", "language", "voice", "speed", "pitch")}
    out["waveforms"] = [decoded[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    out["sample_rate"] = int(arc["sample_rate"])
    return out


@lru_cache(maxsize=1)
def _image_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified, fixed split of load_digits into train/val/test (60/20/20 per digit)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    rng = np.random.default_rng(_IMAGE_SPLIT_SEED)
    parts = {split: [] for split in SPLITS}
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(digits.target == digit))
        a = int(round(_IMAGE_FRACTIONS[0] * len(index)))
        b = a + int(round(_IMAGE_FRACTIONS[1] * len(index)))
        for split, chunk in zip(SPLITS, (index[:a], index[a:b], index[b:])):
            parts[split].append(chunk)
    return {split: (images[np.sort(np.concatenate(p))], digits.target[np.sort(np.concatenate(p))])
            for split, p in parts.items()}


@dataclass(frozen=True)
class AVDigits:
    """One split of AV-digits as NumPy arrays, one row per (image, clip) pair.

    ``images`` (N, 8, 8) float32 in [0, 1]; ``waveforms`` (N, T) float32 at ``sample_rate`` Hz, zero-padded
    to the longest clip, with the true ``lengths``; ``labels`` (N,) int64 digits; ``languages`` and
    ``voices`` (N,) strings saying who spoke each clip.
    """

    images: np.ndarray
    waveforms: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    languages: np.ndarray
    voices: np.ndarray
    split: str
    sample_rate: int = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.labels)

    def as_torch(self):
        """A ``torch.utils.data.Dataset`` of ``(image (1, 8, 8), waveform (T,), label)`` tensors."""
        import torch
        from torch.utils.data import TensorDataset

        return TensorDataset(torch.from_numpy(self.images[:, None]), torch.from_numpy(self.waveforms),
                             torch.from_numpy(self.labels))

    def as_tf(self):
        """A ``tf.data.Dataset`` of ``((image (8, 8, 1), waveform (T,)), label)`` elements (unbatched)."""
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(((self.images[..., None], self.waveforms), self.labels))


def _check_level(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}: {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _check_choice(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def load_avdigits(split: str = "train", *, languages=LANGUAGES, image_noise: float = 0.0,
                  audio_noise: float = 0.0, pairs_per_clip: int = 1, seed: int = 0) -> AVDigits:
    """Load one split of AV-digits as paired NumPy arrays.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Voices and images are disjoint across splits (see ``SPLIT_VOICES``).
    languages : sequence of {"en", "cmn"}
        Which spoken languages to include.
    image_noise, audio_noise : float in [0, 1]
        Mixing level :math:`\\lambda` of noise into each modality (0: clean, 1: pure noise).
    pairs_per_clip : int >= 1
        How many different images of the same digit each clip is paired with.
    seed : int
        Seeds the pairing and, independently, each modality's noise (so the image noise of a seed is the
        same whatever ``audio_noise`` is); the splits themselves are fixed.
    """
    _check_choice("split", split, SPLITS)
    if isinstance(languages, str) or not all(isinstance(l, str) for l in languages) or not languages:
        raise TypeError(f"languages must be a non-empty sequence of names from {list(LANGUAGES)}, got {languages!r}")
    for language in languages:
        _check_choice("languages", language, LANGUAGES)
    image_noise = _check_level("image_noise", image_noise)
    audio_noise = _check_level("audio_noise", audio_noise)
    for name, value, low in (("pairs_per_clip", pairs_per_clip, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")

    audio = load_avdigits_audio()
    keep = np.flatnonzero(np.isin(audio["voice"], SPLIT_VOICES[split]) & np.isin(audio["language"], languages))
    clips = np.repeat(keep, pairs_per_clip)
    labels = audio["digit"][clips].astype(np.int64)
    pool_images, pool_labels = _image_splits()[split]
    rng = np.random.default_rng(seed)
    chosen = np.empty(len(clips), dtype=np.int64)
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        candidates = np.flatnonzero(pool_labels == digit)
        chosen[rows] = rng.choice(candidates, size=len(rows), replace=len(rows) > len(candidates))
    images = pool_images[chosen].copy()

    lengths = np.array([len(audio["waveforms"][i]) for i in clips], dtype=np.int64)
    waveforms = np.zeros((len(clips), lengths.max()), dtype=np.float32)
    for row, (i, n) in enumerate(zip(clips, lengths)):
        waveforms[row, :n] = audio["waveforms"][i]

    if image_noise > 0:
        noise = np.random.default_rng([seed, 1]).random(images.shape, dtype=np.float32)
        images = (1 - image_noise) * images + image_noise * noise
    if audio_noise > 0:
        rms = np.sqrt(np.array([np.mean(w[:n] ** 2) for w, n in zip(waveforms, lengths)], dtype=np.float32))
        noise = np.random.default_rng([seed, 2]).standard_normal(waveforms.shape, dtype=np.float32) * rms[:, None]
        noise[np.arange(waveforms.shape[1])[None, :] >= lengths[:, None]] = 0.0
        waveforms = (1 - audio_noise) * waveforms + audio_noise * noise
    return AVDigits(images=images.astype(np.float32), waveforms=waveforms.astype(np.float32), lengths=lengths,
                    labels=labels, languages=audio["language"][clips], voices=audio["voice"][clips], split=split)
