"""AV-digits models: the log-mel front end against librosa, and every classifier style's contract.

``log_mel_features`` is compared clip by clip with an independent reference: librosa's mel spectrogram of
the clip alone (not of the zero-padded batch), followed by the dB / peak / clip / scale recipe written out
here. The classifiers are checked for output shape, gradient flow to every parameter, unimodal models
ignoring the other modality, the closed-form parameter counts, and input validation.
"""

import warnings

import librosa
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from mmtutor.data.avdigits import load_avdigits
from mmtutor.models.avdigits import (AUDIO_FEATURES, N_FRAMES, STYLES, AudioEncoder, ImageEncoder,
                                     avdigits_classifier, avdigits_tensors, log_mel_features)
from mmtutor.sizes import count_parameters

N_MELS, HOP = 32, 80


def reference_log_mel(clip: np.ndarray, n_frames: int = N_FRAMES) -> np.ndarray:
    """librosa's mel power spectrogram of one clip, in dB below the clip's peak, clipped at -80 dB,
    mapped to [0, 1] by (dB + 80) / 80, cut or zero-padded to ``n_frames``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_fft=256 is too large", category=UserWarning)
        mel = librosa.feature.melspectrogram(y=clip.astype(np.float64), sr=8000, n_fft=256, hop_length=80,
                                             n_mels=32, fmin=0, fmax=4000, center=True, pad_mode="constant",
                                             power=2)
    peak = max(mel.max(), 1e-10)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10) / peak)
    scaled = (np.maximum(db, -80.0) + 80.0) / 80.0
    out = np.zeros((N_MELS, n_frames))
    keep = min(scaled.shape[1], n_frames)
    out[:, :keep] = scaled[:, :keep]
    return out


def padded_batch(clips):
    lengths = np.array([len(c) for c in clips])
    waveforms = np.zeros((len(clips), lengths.max()), dtype=np.float32)
    for row, clip in enumerate(clips):
        waveforms[row, :len(clip)] = clip
    return waveforms, lengths


def random_inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, N_MELS, N_FRAMES, generator=g)


# ------------------------------------------------------------------------------------------------
# the log-mel front end
# ------------------------------------------------------------------------------------------------

def test_feature_constants_are_the_documented_ones():
    assert AUDIO_FEATURES == {"sr": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "fmin": 0.0,
                              "fmax": 4000.0}
    assert N_FRAMES == 96


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_clips=st.integers(1, 5),
       edge=st.sampled_from([None, 1, 79, 80, 81, 255, 256, 95 * HOP, 96 * HOP, 8500]))
def test_log_mel_matches_librosa_on_random_clips(seed, n_clips, edge):
    rng = np.random.default_rng(seed)
    lengths = list(rng.integers(1, 8500, size=n_clips))
    if edge is not None:
        lengths[0] = edge                          # single samples, frame boundaries, more than 96 frames
    # random loudness per clip: the features are relative to each clip's own peak
    clips = [(rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 0)).astype(np.float32) for n in lengths]
    waveforms, lengths = padded_batch(clips)
    ours = log_mel_features(waveforms, lengths)
    assert ours.shape == (n_clips, N_MELS, N_FRAMES) and ours.dtype == np.float32
    for row, clip in enumerate(clips):
        np.testing.assert_allclose(ours[row], reference_log_mel(clip), atol=1e-5, rtol=0)


def test_log_mel_matches_librosa_on_real_clips():
    data = load_avdigits("test", audio_noise=0.3)            # real speech, with noise mixed in
    rows = np.arange(0, len(data), 16)
    ours = log_mel_features(data.waveforms[rows], data.lengths[rows])
    for out, clip, n in zip(ours, data.waveforms[rows], data.lengths[rows]):
        np.testing.assert_allclose(out, reference_log_mel(clip[:n]), atol=1e-5, rtol=0)


def test_log_mel_range_peak_and_silence_after_the_clip():
    data = load_avdigits("val")
    features = log_mel_features(data.waveforms, data.lengths)
    assert features.shape == (len(data), N_MELS, N_FRAMES)
    assert features.min() >= 0.0 and features.max() <= 1.0
    frames = 1 + data.lengths // HOP
    assert frames.max() <= N_FRAMES                          # every real clip fits in 96 frames
    for row, n in enumerate(frames):
        assert np.all(features[row, :, n:] == 0.0)             # exactly zero: silence after the clip
        assert features[row, :, :n].max() == 1.0                # the clip's own peak maps to 0 dB -> 1
    # the same clip gives the same features whatever else is in the batch (padding does not leak in)
    alone = log_mel_features(data.waveforms[:1, :data.lengths[0]], data.lengths[:1])
    np.testing.assert_allclose(alone[0], features[0], atol=1e-6, rtol=0)


def test_avdigits_tensors_shapes_and_dtypes():
    data = load_avdigits("test")
    images, log_mel, labels = avdigits_tensors(data)
    assert images.shape == (len(data), 1, 8, 8) and images.dtype == torch.float32
    assert log_mel.shape == (len(data), N_MELS, N_FRAMES) and log_mel.dtype == torch.float32
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.from_numpy(data.labels))


def test_log_mel_rejects_bad_input():
    waveforms = np.zeros((2, 400), dtype=np.float32)
    with pytest.raises(ValueError, match="lengths"):
        log_mel_features(waveforms, np.array([0, 400]))        # below 1
    with pytest.raises(ValueError, match="lengths"):
        log_mel_features(waveforms, np.array([10, 401]))       # beyond the padded length
    with pytest.raises(ValueError, match="lengths"):
        log_mel_features(waveforms, np.array([10, 20, 30]))    # one length per clip
    with pytest.raises(ValueError, match="waveforms"):
        log_mel_features(np.zeros((2, 400), dtype=np.int16), np.array([10, 20]))
    with pytest.raises(ValueError, match="waveforms"):
        log_mel_features(np.zeros(400, dtype=np.float32), np.array([400]))


# ------------------------------------------------------------------------------------------------
# the classifiers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", STYLES)
def test_every_style_gives_logits_and_gradients_reach_every_parameter(style):
    torch.manual_seed(0)
    model = avdigits_classifier(style)
    images, log_mel = random_inputs()
    logits = model(images, log_mel)
    assert logits.shape == (6, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(6) % 10).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{style}: no gradient reaches {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{style}: zero gradient at {name}"


@pytest.mark.parametrize("style", STYLES)
def test_other_sizes_and_class_counts(style):
    model = avdigits_classifier(style, dim=32, hidden=16, num_classes=3, rank=2)
    assert model(*random_inputs(n=4)).shape == (4, 3)


@pytest.mark.parametrize("style, changed", [("image", 1), ("audio", 0)])
def test_unimodal_models_ignore_the_other_modality(style, changed):
    torch.manual_seed(0)
    model = avdigits_classifier(style).eval()
    inputs = list(random_inputs(seed=1))
    before = model(*inputs)
    inputs[changed] = torch.rand_like(inputs[changed]) * 5 - 2     # a completely different other modality
    assert torch.equal(model(*inputs), before)
    # ...while changing its own modality changes the output
    inputs[1 - changed] = torch.rand_like(inputs[1 - changed])
    assert not torch.equal(model(*inputs), before)


@pytest.mark.parametrize("style", [s for s in STYLES if s not in ("image", "audio")])
def test_fused_models_use_both_modalities(style):
    torch.manual_seed(0)
    model = avdigits_classifier(style).eval()
    images, log_mel = random_inputs(seed=2)
    before = model(images, log_mel)
    assert not torch.equal(model(torch.rand_like(images), log_mel), before)
    assert not torch.equal(model(images, torch.rand_like(log_mel)), before)


@pytest.mark.parametrize("hidden, num_classes", [(64, 10), (16, 3), (1, 2)])
def test_early_fusion_parameter_count_closed_form(hidden, num_classes):
    inputs = 8 * 8 + N_MELS * N_FRAMES                       # raw pixels and raw log-mel, concatenated
    expected = (inputs + 1) * hidden + (hidden + 1) * num_classes
    model = avdigits_classifier("early", hidden=hidden, num_classes=num_classes)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("dim", [64, 8])
def test_unimodal_parameter_counts_closed_form(dim):
    image_cnn = (1 * 9 + 1) * 16 + (16 * 9 + 1) * 32                  # two 3x3 convolutions
    audio_cnn = 2 * N_MELS + (N_MELS * 5 + 1) * 64 + (64 * 5 + 1) * 64   # batch norm, two kernel-5 convolutions
    pooled = 32 * 4 * 4                                                # 32 channels on the 4x4 map; 64 x 8 slots
    head = (dim + 1) * 10
    assert count_parameters(avdigits_classifier("image", dim=dim)) == image_cnn + (pooled + 1) * dim + head
    assert count_parameters(avdigits_classifier("audio", dim=dim)) == audio_cnn + (64 * 8 + 1) * dim + head


def test_encoders_token_outputs():
    images, log_mel = random_inputs(n=3)
    assert ImageEncoder(24, tokens=True)(images).shape == (3, 16, 24)
    assert AudioEncoder(24, tokens=True)(log_mel).shape == (3, N_FRAMES // 2, 24)
    assert ImageEncoder(24)(images.reshape(3, 64)).shape == (3, 24)     # flat pixels are accepted


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["foo", "Image", "", "late_fusion"])
def test_unknown_style_is_rejected(style):
    with pytest.raises(ValueError, match="style"):
        avdigits_classifier(style)


@pytest.mark.parametrize("style", [s for s in STYLES if s not in ("audio", "early")])
@pytest.mark.parametrize("shape", [(4, 1, 7, 7), (4, 3, 8, 8), (4, 63), (4, 1, 1, 8, 8)])
def test_wrong_image_shape_is_rejected(style, shape):
    _, log_mel = random_inputs(n=4)
    with pytest.raises(ValueError, match="images"):
        avdigits_classifier(style)(torch.rand(shape), log_mel)


def test_wrong_image_shape_is_rejected_by_early_fusion():
    _, log_mel = random_inputs(n=4)
    with pytest.raises(ValueError, match=r"features\[0\]"):     # early fusion names its flattened input
        avdigits_classifier("early")(torch.rand(4, 1, 7, 7), log_mel)


@pytest.mark.parametrize("style", [s for s in STYLES if s not in ("image", "early")])
@pytest.mark.parametrize("shape", [(4, N_MELS * N_FRAMES), (4, N_MELS, N_FRAMES, 1), (N_MELS,)])
def test_wrong_log_mel_rank_is_rejected(style, shape):
    images, _ = random_inputs(n=4)
    with pytest.raises(ValueError, match="log_mel"):
        avdigits_classifier(style)(images, torch.rand(shape))


def test_audio_encoder_names_a_transposed_log_mel():
    import torch

    from mmtutor.models.avdigits import AudioEncoder

    with pytest.raises(ValueError, match="log_mel"):
        AudioEncoder()(torch.zeros(2, 96, 32))


def test_encoder_widths_change_the_convolutions_only():
    narrow = avdigits_classifier("intermediate", image_channels=(4, 8), audio_channels=(8, 8))
    image_convs = [m for m in narrow.encoders[0].features if isinstance(m, torch.nn.Conv2d)]
    audio_convs = [m for m in narrow.encoders[1].features if isinstance(m, torch.nn.Conv1d)]
    assert [c.out_channels for c in image_convs] == [4, 8] and [c.out_channels for c in audio_convs] == [8, 8]
    images, log_mel = torch.rand(3, 1, 8, 8), torch.rand(3, 32, 96)
    assert narrow(images, log_mel).shape == (3, 10)
    torch.manual_seed(0)
    default = avdigits_classifier("intermediate")
    torch.manual_seed(0)
    explicit = avdigits_classifier("intermediate", image_channels=(16, 32), audio_channels=(64, 64))
    for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("channels", [(4,), (4, 0), (4, 2.0), "48", (True, 4)])
def test_encoder_widths_are_checked(channels):
    with pytest.raises(ValueError, match="channels"):
        avdigits_classifier("late", image_channels=channels)
