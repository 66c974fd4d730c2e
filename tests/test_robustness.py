"""mmtutor.robustness: noise and zeroing of one modality, robustness curves, their summaries, dropping a modality."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mmtutor import robustness
from mmtutor.data.avdigits import load_avdigits
from mmtutor.metrics import accuracy
from mmtutor.models.avdigits import avdigits_classifier, avdigits_tensors, log_mel_features
from mmtutor.models.fusion import LateFusion

FAST = settings(max_examples=25, deadline=None)
levels_01 = st.floats(0.0, 1.0, allow_nan=False)


@pytest.fixture(scope="module")
def test_split():
    return load_avdigits("test", seed=3)


@pytest.fixture(scope="module")
def test_tensors(test_split):
    return avdigits_tensors(test_split)


def random_inputs(seed, n=6, frames=20, as_tensor=True):
    """Images and log-mel features in [0.01, 1): never exactly 0, so that a zero is one that degrade() set."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.01, 1.0, (n, 1, 8, 8)).astype(np.float32)
    log_mel = rng.uniform(0.01, 1.0, (n, 32, frames)).astype(np.float32)
    return (torch.from_numpy(images), torch.from_numpy(log_mel)) if as_tensor else (images, log_mel)


class NearestMean(nn.Module):
    """Logits -||x - mean_c||^2 of one modality's inputs: a classifier with no training loop."""

    def __init__(self, inputs, labels, modality):
        super().__init__()
        self.modality = modality
        flat = inputs.flatten(1)
        self.register_buffer("means", torch.stack([flat[labels == c].mean(0) for c in range(10)]))

    def forward(self, images, log_mel):
        x = (images, log_mel)[self.modality].flatten(1)
        return -torch.cdist(x, self.means) ** 2


@pytest.fixture(scope="module")
def nearest_means():
    images, log_mel, labels = avdigits_tensors(load_avdigits("train"))
    return {"image": NearestMean(images, labels, 0), "audio": NearestMean(log_mel, labels, 1)}


# ----------------------------------------------------------------------------- noise in the raw signal
@pytest.mark.parametrize("modality, argument", [("image", "image_noise"), ("audio", "audio_noise")])
def test_mix_noise_is_the_noise_of_load_avdigits(test_split, modality, argument):
    ours = robustness.mix_noise(test_split, modality, 0.37, seed=3)
    theirs = load_avdigits("test", seed=3, **{argument: 0.37})
    np.testing.assert_array_equal(ours.images, theirs.images)
    np.testing.assert_array_equal(ours.waveforms, theirs.waveforms)
    np.testing.assert_array_equal(ours.labels, theirs.labels)


def test_mix_noise_leaves_data_and_the_padding_alone(test_split):
    before = test_split.waveforms.copy()
    noisy = robustness.mix_noise(test_split, "audio", 1.0, seed=0)
    np.testing.assert_array_equal(test_split.waveforms, before)
    outside = np.arange(before.shape[1])[None, :] >= test_split.lengths[:, None]
    assert np.all(noisy.waveforms[outside] == 0) and np.all(noisy.waveforms[~outside] != 0)
    # at level 1 a clip is noise at its own loudness: the rms of each clip stays close to the original's
    for clean, noise, n in zip(before, noisy.waveforms, test_split.lengths):
        assert abs(np.sqrt(np.mean(noise[:n] ** 2)) / np.sqrt(np.mean(clean[:n] ** 2)) - 1) < 0.15


def test_mix_noise_at_level_zero_changes_nothing(test_split):
    for modality in robustness.MODALITIES:
        same = robustness.mix_noise(test_split, modality, 0.0, seed=5)
        np.testing.assert_array_equal(same.images, test_split.images)
        np.testing.assert_array_equal(same.waveforms, test_split.waveforms)


# ----------------------------------------------------------------------------- degrade: features
def test_image_feature_noise_is_the_noise_of_load_avdigits(test_tensors):
    images, log_mel, _ = test_tensors
    noisy, same = robustness.degrade(images, log_mel, "image", 0.37, seed=3)
    theirs = load_avdigits("test", seed=3, image_noise=0.37).images[:, None]
    np.testing.assert_array_equal(noisy.numpy(), theirs)
    assert same is log_mel  # the other modality is passed through untouched


@FAST
@given(st.sampled_from(robustness.MODALITIES), st.sampled_from(robustness.KINDS), st.integers(0, 2**16),
       st.booleans())
def test_level_zero_leaves_the_inputs_unchanged(modality, kind, seed, as_tensor):
    images, log_mel = random_inputs(seed, as_tensor=as_tensor)
    out_images, out_log_mel = robustness.degrade(images, log_mel, modality, 0.0, kind, seed)
    for before, after in ((images, out_images), (log_mel, out_log_mel)):
        assert type(after) is type(before) and after.dtype == before.dtype and after.shape == before.shape
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


@FAST
@given(st.sampled_from(robustness.MODALITIES), levels_01, st.integers(0, 2**16))
def test_noise_is_the_mixing_formula(modality, level, seed):
    images, log_mel = random_inputs(seed)
    index = 0 if modality == "image" else 1
    x = (images, log_mel)[index]
    # at level 1 the output is the noise u itself, whatever the input
    u = robustness.degrade(torch.zeros_like(images), torch.zeros_like(log_mel), modality, 1.0, seed=seed)[index]
    mixed = robustness.degrade(images, log_mel, modality, level, seed=seed)[index]
    torch.testing.assert_close(mixed, (1 - level) * x + level * u, rtol=0, atol=1e-6)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0


@pytest.mark.parametrize("modality", robustness.MODALITIES)
def test_level_one_noise_carries_no_information(modality, test_tensors, nearest_means):
    # two unrelated inputs become the very same output: nothing of the input is left
    a, b = random_inputs(1), random_inputs(2)
    index = robustness.MODALITIES.index(modality)
    out_a = robustness.degrade(*a, modality, 1.0, seed=7)[index]
    out_b = robustness.degrade(*b, modality, 1.0, seed=7)[index]
    assert torch.equal(out_a, out_b)
    # so a classifier of that modality drops from well above chance to chance (10 classes, 160 examples)
    curve = robustness.robustness_curve(nearest_means[modality], test_tensors, modality=modality,
                                        levels=[0.0, 1.0])
    assert curve[0] > 0.5 and curve[1] < 0.2, curve


@FAST
@given(st.sampled_from(robustness.MODALITIES), st.floats(0.05, 0.95), st.integers(0, 2**16))
def test_zero_kind_zeroes_exactly(modality, level, seed):
    images, log_mel = random_inputs(seed, n=40, frames=50)
    index = robustness.MODALITIES.index(modality)
    x = (images, log_mel)[index]
    out = robustness.degrade(images, log_mel, modality, level, kind="zero", seed=seed)[index]
    dropped = out == 0
    assert torch.equal(out[~dropped], x[~dropped])          # everything else untouched, bit for bit
    if modality == "audio":                                    # whole frames: all mel bands or none
        assert torch.equal(dropped.all(dim=1), dropped.any(dim=1))
        fraction, count = dropped.all(dim=1).float().mean().item(), 40 * 50
    else:
        fraction, count = dropped.float().mean().item(), 40 * 64
    assert abs(fraction - level) < 5 * np.sqrt(level * (1 - level) / count)
    full = robustness.degrade(images, log_mel, modality, 1.0, kind="zero", seed=seed)[index]
    assert torch.equal(full, torch.zeros_like(x))              # level 1: the modality is missing


def test_degrade_keeps_dtype_and_container_and_never_writes_to_its_inputs():
    images, log_mel = random_inputs(0, as_tensor=False)
    copies = images.copy(), log_mel.copy()
    for modality in robustness.MODALITIES:
        for kind in robustness.KINDS:
            out = robustness.degrade(images, log_mel, modality, 0.5, kind, seed=1)
            assert all(isinstance(o, np.ndarray) and o.dtype == np.float32 for o in out)
    np.testing.assert_array_equal(images, copies[0])
    np.testing.assert_array_equal(log_mel, copies[1])
    doubles = torch.from_numpy(images).double(), torch.from_numpy(log_mel).double()
    out = robustness.degrade(*doubles, "audio", 0.5, seed=1)
    assert out[1].dtype == torch.float64 and out[0] is doubles[0]
    flat = robustness.degrade(images[:, 0], log_mel, "image", 0.5, seed=1)[0]   # (N, 8, 8) images work too
    assert flat.shape == images[:, 0].shape


# ----------------------------------------------------------------------------- curves
@pytest.fixture(scope="module")
def untrained_models():
    torch.manual_seed(0)
    return {style: avdigits_classifier(style).eval() for style in ("image", "audio", "late")}


def accuracy_of(model, images, log_mel, labels):
    with torch.no_grad():
        return accuracy(labels.numpy(), model(images, log_mel).argmax(1).numpy())


def test_curves_in_the_signal_recompute_the_log_mel(test_split, test_tensors, untrained_models, nearest_means):
    models = {**untrained_models, "nearest": nearest_means["audio"]}
    levels = [0.0, 0.3, 1.0]
    curves = robustness.robustness_curves(models, test_split, modality="audio", levels=levels, seed=4)
    assert list(curves.columns) == list(models) and curves.index.name == "level"
    np.testing.assert_array_equal(curves.index, levels)
    images, _, labels = test_tensors
    for level in levels:
        noisy = robustness.mix_noise(test_split, "audio", level, seed=4)
        log_mel = torch.from_numpy(log_mel_features(noisy.waveforms, noisy.lengths))
        for name, model in models.items():
            assert curves.loc[level, name] == accuracy_of(model, images, log_mel, labels)
    # a model that never looks at the audio has a flat audio curve
    assert curves["image"].nunique() == 1


def test_curves_on_tensors_degrade_the_features(test_tensors, nearest_means):
    model = nearest_means["image"]
    for kind in robustness.KINDS:
        curve = robustness.robustness_curve(model, test_tensors, modality="image", kind=kind, seed=2)
        assert curve.shape == robustness.DEFAULT_LEVELS.shape
        for level, value in zip(robustness.DEFAULT_LEVELS, curve):
            images, log_mel = robustness.degrade(*test_tensors[:2], "image", level, kind, seed=2)
            assert value == accuracy_of(model, images, log_mel, test_tensors[2])
    # image noise is the same whether mixed into the signal or into the features
    split_curve = robustness.robustness_curve(model, load_avdigits("test", seed=3), modality="image", seed=2)
    np.testing.assert_array_equal(split_curve, robustness.robustness_curve(model, test_tensors, modality="image",
                                                                           seed=2))


@FAST
@given(st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_relative_robustness_is_the_trapezoid_area(accuracies):
    levels = np.linspace(0, 1, len(accuracies))
    assert abs(robustness.relative_robustness(levels, accuracies) - np.trapezoid(accuracies, levels)) < 1e-12


def test_effective_robustness_compares_with_the_shifted_reference():
    levels = np.linspace(0, 1, 6)
    reference = np.array([0.9, 0.85, 0.7, 0.5, 0.3, 0.1])
    assert abs(robustness.effective_robustness(levels, reference, reference)) < 1e-12
    # the same drop from a lower start: effective robustness 0, relative robustness lower
    assert abs(robustness.effective_robustness(levels, reference - 0.05, reference)) < 1e-12
    flat = np.full(6, 0.8)
    assert robustness.effective_robustness(levels, flat, reference) == pytest.approx(
        np.trapezoid(flat - (reference - reference[0] + 0.8), levels))
    assert robustness.effective_robustness(levels, flat, reference) > 0
    assert robustness.relative_robustness([0, 1], [1, 1]) == 1.0


# ----------------------------------------------------------------------------- dropping a modality
def test_drop_modality_is_late_fusion_with_none(test_tensors):
    torch.manual_seed(0)
    late = avdigits_classifier("late").eval()
    images, log_mel, _ = test_tensors
    with torch.no_grad():
        image_embedding, audio_embedding = late.encoders[0](images), late.encoders[1](log_mel)
        without_image = robustness.DropModality(late, "image")(images, log_mel)
        without_audio = robustness.DropModality(late, "audio")(images, log_mel)
        torch.testing.assert_close(without_image, late.fusion(None, audio_embedding))
        torch.testing.assert_close(without_audio, late.fusion(image_embedding, None))
        # with the default equal weights, the fused logits are the mean of the two one-modality outputs
        torch.testing.assert_close(late(images, log_mel), (without_image + without_audio) / 2)
    assert isinstance(late.fusion, LateFusion)
    # the image is never looked at: garbage in its place changes nothing
    with torch.no_grad():
        assert torch.equal(robustness.DropModality(late, "image")(torch.full_like(images, 7.0), log_mel),
                           without_image)


def test_drop_modality_refuses_other_styles():
    for style in ("early", "intermediate", "image"):
        with pytest.raises(TypeError, match="model must be an EncodeThenFuse with a LateFusion"):
            robustness.DropModality(avdigits_classifier(style), "image")
    with pytest.raises(ValueError, match="modality"):
        robustness.DropModality(avdigits_classifier("late"), "text")
    with pytest.raises(ValueError, match="inputs"):
        robustness.DropModality(avdigits_classifier("late"), "audio")(torch.zeros(2, 1, 8, 8))


# ----------------------------------------------------------------------------- bad input
IMAGES, LOG_MEL = random_inputs(0)


class Constant(nn.Module):
    def forward(self, images, log_mel):
        return torch.zeros(len(images), 10)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(modality="text"), ValueError, r"modality must be one of \['image', 'audio'\]; got 'text'"),
    (dict(modality=0), ValueError, "modality"),
    (dict(kind="blur"), ValueError, r"kind must be one of \['noise', 'zero'\]; got 'blur'"),
    (dict(level=-0.1), ValueError, r"level must be in \[0, 1\].*-0.1"),
    (dict(level=1.5), ValueError, r"level must be in \[0, 1\].*1.5"),
    (dict(level=float("nan")), ValueError, "level must be in"),
    (dict(level="0.5"), TypeError, "level must be a number.*str"),
    (dict(level=True), TypeError, "level must be a number.*bool"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0; got -1"),
    (dict(seed=1.5), ValueError, "seed"),
    (dict(images=IMAGES[:, :, :4]), ValueError, r"images must have shape.*\(6, 1, 4, 8\)"),
    (dict(log_mel=LOG_MEL[0]), ValueError, r"log_mel must have shape.*\(32, 20\)"),
    (dict(log_mel=LOG_MEL[:3]), ValueError, "images and log_mel.*6 and 3"),
    (dict(images=[[0.0]]), TypeError, "images must be a torch.Tensor or a NumPy array; got list"),
])
def test_degrade_bad_input_names_the_argument(kwargs, error, pattern):
    arguments = dict(images=IMAGES, log_mel=LOG_MEL, modality="image", level=0.5, kind="noise", seed=0)
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        robustness.degrade(**arguments)


def test_mix_noise_bad_input(test_split):
    with pytest.raises(TypeError, match="data must be an AVDigits"):
        robustness.mix_noise(avdigits_tensors(test_split), "audio", 0.5)
    with pytest.raises(ValueError, match="modality"):
        robustness.mix_noise(test_split, "video", 0.5)
    with pytest.raises(ValueError, match="level"):
        robustness.mix_noise(test_split, "audio", 2)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(models=nn.Linear(2, 2)), TypeError, r"models must be a non-empty dict"),
    (dict(models={}), TypeError, "models must be a non-empty dict"),
    (dict(models={"a": "not a model"}), TypeError, r"models\['a'\] must be a torch.nn.Module"),
    (dict(data=np.zeros(3)), TypeError, "data must be an AVDigits split .* or a tuple of tensors"),
    (dict(data=(IMAGES, LOG_MEL, torch.zeros(5))), ValueError, "data tensors.*6, 6 and 5"),
    (dict(modality="video"), ValueError, "modality must be one of"),
    (dict(kind="shuffle"), ValueError, "kind must be one of"),
    (dict(levels=[]), ValueError, "levels must be a non-empty 1-D sequence"),
    (dict(levels=[0.0, 1.2]), ValueError, r"levels must be in \[0, 1\].*1.2"),
    (dict(levels="0.5"), ValueError, "levels must be a non-empty"),
    (dict(levels=[[0.0, 1.0]]), ValueError, "levels must be a non-empty 1-D"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int; got 0"),
])
def test_robustness_curves_bad_input_names_the_argument(kwargs, error, pattern):
    arguments = dict(models={"m": Constant()},
                     data=(IMAGES, LOG_MEL, torch.arange(6)), modality="image", kind="noise", levels=[0.0, 1.0])
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        robustness.robustness_curves(arguments.pop("models"), arguments.pop("data"), **arguments)


def test_curve_summaries_bad_input():
    with pytest.raises(ValueError, match="accuracies must hold one value per level"):
        robustness.relative_robustness([0, 0.5, 1], [1, 1])
    with pytest.raises(ValueError, match="levels must increase"):
        robustness.relative_robustness([0, 1, 0.5], [1, 1, 1])
    with pytest.raises(ValueError, match="reference must hold one value per level"):
        robustness.effective_robustness([0, 1], [1, 1], [1, 1, 1])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        robustness.robustness_curve(lambda images, log_mel: images, (IMAGES, LOG_MEL, torch.arange(6)),
                                    modality="image")
