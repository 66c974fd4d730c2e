r"""Encoders and classifiers for AV-digits: an image CNN, a log-mel audio CNN, and every fusion style.

Audio front end (:func:`log_mel_features`): each clip becomes a log-mel spectrogram with 32 mel bands
(0-4 kHz, the whole band of the 8 kHz clips), 32 ms windows (``n_fft=256``) every 10 ms
(``hop_length=80``), in dB relative to the clip's own peak and clipped at -80 dB, then mapped to
:math:`[0, 1]` by :math:`(\mathrm{dB} + 80) / 80` and zero-padded (silence) to 96 frames:

.. math:: F = \tfrac{1}{80}\Big(\max\big(10\log_{10}\tfrac{M}{\max M},\,-80\big) + 80\Big),
          \qquad M = H\,|\mathrm{STFT}(x)|^2 .

Encoders map one modality to an embedding of size ``dim`` (pooled) or to a sequence of tokens
(``tokens=True``, for cross-attention): the image CNN yields the 4x4 = 16 positions of its last feature
map, the audio CNN one token per 20 ms. :func:`avdigits_classifier` assembles them with a fusion module of
:mod:`mmtutor.models.fusion` (or a single head, for the unimodal baselines).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmtutor.models.fusion import (CrossAttentionFusion, EarlyFusion, EncodeThenFuse, IntermediateFusion,
                                   LateFusion, LowRankTensorFusion, TensorFusion)
from mmtutor.preprocess.audio import melspectrogram

__all__ = ["AUDIO_FEATURES", "N_FRAMES", "STYLES", "log_mel_features", "ImageEncoder", "AudioEncoder",
           "UnimodalClassifier", "avdigits_classifier", "avdigits_tensors"]

AUDIO_FEATURES = {"sr": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "fmin": 0.0, "fmax": 4000.0}
N_FRAMES = 96
STYLES = ("image", "audio", "early", "late", "intermediate", "tensor", "low_rank", "cross_attention")


def log_mel_features(waveforms, lengths, n_frames: int = N_FRAMES) -> np.ndarray:
    """Log-mel features ``(N, 32, n_frames)`` in [0, 1] of zero-padded clips ``(N, T)`` with true ``lengths``."""
    waveforms = np.asarray(waveforms)
    lengths = np.asarray(lengths)
    if waveforms.ndim != 2 or not np.issubdtype(waveforms.dtype, np.floating):
        raise ValueError(f"waveforms must be a float array (clips, samples), got {waveforms.dtype} {waveforms.shape}")
    if lengths.shape != (len(waveforms),) or np.any(lengths < 1) or np.any(lengths > waveforms.shape[1]):
        raise ValueError(f"lengths must hold one length in [1, {waveforms.shape[1]}] per clip, got {lengths!r}")
    # One batched STFT. With center=True a clip alone is padded with zeros, exactly what follows it in the
    # zero-padded batch, so its 1 + n // hop frames are the same; frames beyond those are masked out.
    mel = melspectrogram(y=waveforms.astype(np.float64), **AUDIO_FEATURES)          # (N, n_mels, frames)
    inside = np.arange(mel.shape[2])[None, None, :] < (1 + lengths // AUDIO_FEATURES["hop_length"])[:, None, None]
    mel = mel * inside
    peak = np.maximum(mel.max(axis=(1, 2), keepdims=True), 1e-10)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10) / peak)
    scaled = ((np.maximum(db, -80.0) + 80.0) / 80.0 * inside).astype(np.float32)
    features = np.zeros((len(waveforms), AUDIO_FEATURES["n_mels"], n_frames), dtype=np.float32)
    keep = min(scaled.shape[2], n_frames)
    features[:, :, :keep] = scaled[:, :, :keep]
    return features


def avdigits_tensors(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images (N, 1, 8, 8), log-mel (N, 32, 96), labels (N,))`` tensors of an :class:`AVDigits` split."""
    return (torch.from_numpy(data.images[:, None]), torch.from_numpy(log_mel_features(data.waveforms, data.lengths)),
            torch.from_numpy(data.labels))


def _check_channels(channels) -> tuple[int, int]:
    if (not isinstance(channels, (tuple, list)) or len(channels) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)):
        raise ValueError(f"channels must be two positive ints (first conv, second conv), got {channels!r}")
    return int(channels[0]), int(channels[1])


class ImageEncoder(nn.Module):
    """Two 3x3 convolutions (``channels``, by default 16 and 32) and a 2x2 max-pool on an 8x8 image; then a
    linear map to ``dim``.

    Pooled output ``(N, dim)``; with ``tokens=True`` the 16 positions of the 4x4 map, each mapped to
    ``dim``: ``(N, 16, dim)``. A flat ``(N, 64)`` or ``(N, 8, 8)`` input is reshaped to ``(N, 1, 8, 8)``.
    """

    def __init__(self, dim: int = 64, tokens: bool = False, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = _check_channels(channels)
        self.tokens = tokens
        self.features = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.out = nn.Linear(c2, dim) if tokens else nn.Linear(c2 * 16, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim not in (2, 3, 4) or images[0].numel() != 64:
            raise ValueError(f"images must have shape (N, 1, 8, 8), (N, 8, 8) or (N, 64), got {tuple(images.shape)}")
        x = self.features(images.reshape(len(images), 1, 8, 8))
        if self.tokens:
            return self.out(x.flatten(2).transpose(1, 2))
        return torch.relu(self.out(x.flatten(1)))


class AudioEncoder(nn.Module):
    """Two 1-D convolutions over time (kernel 5; the second with stride 2; ``channels``, by default 64 and
    64) on log-mel ``(N, 32, T)``.

    A batch normalisation of each mel band comes first: it standardises the input (noise raises the whole
    spectrogram's floor, and without it the network barely trains on noisy clips).

    Pooled output: the feature map averaged into 8 time slots (keeping the coarse order of the
    sounds), flattened and mapped to ``dim``; with ``tokens=True`` one ``dim``-vector per 20 ms:
    ``(N, T/2, dim)``.
    """

    def __init__(self, dim: int = 64, tokens: bool = False, n_mels: int = AUDIO_FEATURES["n_mels"],
                 channels: tuple[int, int] = (64, 64)):
        super().__init__()
        c1, c2 = _check_channels(channels)
        self.tokens = tokens
        self.features = nn.Sequential(nn.BatchNorm1d(n_mels), nn.Conv1d(n_mels, c1, 5, padding=2), nn.ReLU(),
                                      nn.Conv1d(c1, c2, 5, stride=2, padding=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(8)
        self.out = nn.Linear(c2, dim) if tokens else nn.Linear(c2 * 8, dim)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        if log_mel.ndim != 3 or log_mel.shape[1] != self.features[0].num_features:
            raise ValueError(f"log_mel must have shape (N, {self.features[0].num_features}, frames) "
                             f"(mel bands before frames), got {tuple(log_mel.shape)}")
        x = self.features(log_mel)
        if self.tokens:
            return self.out(x.transpose(1, 2))
        return torch.relu(self.out(self.pool(x).flatten(1)))


class UnimodalClassifier(nn.Module):
    """An encoder and a linear head: the single-modality baseline. Call it with both inputs;
    ``modality`` (0 = image, 1 = audio) says which one it looks at."""

    def __init__(self, encoder: nn.Module, dim: int, num_classes: int, modality: int):
        super().__init__()
        self.encoder, self.head, self.modality = encoder, nn.Linear(dim, num_classes), modality

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs[self.modality]))


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def avdigits_classifier(style: str, dim: int = 64, hidden: int = 64, num_classes: int = 10,
                        rank: int = 4, image_channels: tuple[int, int] = (16, 32),
                        audio_channels: tuple[int, int] = (64, 64)) -> nn.Module:
    """A classifier of ``(images, log_mel)`` batches for one of ``STYLES``.

    ``"image"``/``"audio"``: one encoder and a linear head. ``"early"``: the raw pixels (64) and the raw
    log-mel (32 x 96) concatenated into one MLP. ``"late"``, ``"intermediate"``, ``"tensor"``,
    ``"low_rank"`` (rank ``rank``): the two encoders' embeddings fused by the module of that name.
    ``"cross_attention"``: the 16 image tokens attend to the 48 audio tokens. ``image_channels`` and
    ``audio_channels`` set the widths of the two encoders' convolutions (narrow ones make small students
    for distillation, Chapter 8).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    if style == "image":
        return UnimodalClassifier(ImageEncoder(dim, channels=image_channels), dim, num_classes, modality=0)
    if style == "audio":
        return UnimodalClassifier(AudioEncoder(dim, channels=audio_channels), dim, num_classes, modality=1)
    if style == "early":
        n_audio = AUDIO_FEATURES["n_mels"] * N_FRAMES
        return EncodeThenFuse([_Flatten(), _Flatten()], EarlyFusion((64, n_audio), hidden, num_classes))
    if style == "cross_attention":
        return EncodeThenFuse([ImageEncoder(dim, tokens=True, channels=image_channels),
                               AudioEncoder(dim, tokens=True, channels=audio_channels)],
                              CrossAttentionFusion((dim, dim), hidden, num_classes, num_heads=4))
    fusion = {"late": lambda: LateFusion((dim, dim), hidden, num_classes),
              "intermediate": lambda: IntermediateFusion((dim, dim), hidden, num_classes),
              "tensor": lambda: TensorFusion((dim, dim), hidden, num_classes),
              "low_rank": lambda: LowRankTensorFusion((dim, dim), hidden, num_classes, rank=rank)}[style]()
    encoders = [ImageEncoder(dim, channels=image_channels), AudioEncoder(dim, channels=audio_channels)]
    return EncodeThenFuse(encoders, fusion)
