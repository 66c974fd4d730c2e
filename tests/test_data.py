"""AV-digits and shapes: offline, deterministic, split hygiene, noise, bad input."""

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmtutor.data import avdigits, shapes
from mmtutor.data.avdigits import load_avdigits, load_avdigits_audio, mu_law_decode, mu_law_encode

ROOT = Path(__file__).resolve().parents[1]
AUDIO_SHA256 = "752a7159666b50e3baa9a0a0a42f81f11732914425af76aca6418f4e15b1c96c"


def test_audio_asset_is_the_committed_one_and_compact():
    data = avdigits.AUDIO_ASSET.read_bytes()
    assert len(data) <= 6 * 2**20
    assert hashlib.sha256(data).hexdigest() == AUDIO_SHA256


def test_audio_inventory():
    audio = load_avdigits_audio()
    assert audio["sample_rate"] == 8000
    assert len(audio["waveforms"]) == 2 * 12 * 10 * 4
    for language in avdigits.LANGUAGES:
        for voice in avdigits.VOICES:
            rows = (audio["language"] == language) & (audio["voice"] == voice)
            assert np.bincount(audio["digit"][rows], minlength=10).tolist() == [4] * 10
    assert len(set(zip(audio["speed"], audio["pitch"]))) > 100  # speeds and pitches really vary
    lengths = np.array([len(w) for w in audio["waveforms"]]) / 8000
    assert lengths.min() > 0.1 and lengths.max() <= 1.0
    assert all(np.abs(w).max() > 0.5 for w in audio["waveforms"])  # no silent clip


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_audio_regenerates_byte_for_byte():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "make_avdigits_audio.py"), "--check"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "identical" in run.stdout


def test_mu_law_round_trip_error_is_small_where_speech_lives():
    x = np.linspace(-1, 1, 20001)
    y = mu_law_decode(mu_law_encode(x))
    quiet = np.abs(x) < 0.05
    assert np.abs(y - x)[quiet].max() < 1.5e-3
    assert np.abs(y - x).max() < 0.025
    # mu-law is 8 bits: 256 codes at most, with finer steps near zero than near full scale
    steps = np.diff(np.unique(y))
    assert len(np.unique(mu_law_encode(x))) == 256 and steps[127] < steps[0] / 20


def test_splits_hold_out_voices_and_images():
    splits = {s: load_avdigits(s) for s in ("train", "val", "test")}
    voices = {s: set(d.voices) for s, d in splits.items()}
    assert voices["train"].isdisjoint(voices["test"]) and voices["train"].isdisjoint(voices["val"])
    assert voices["val"].isdisjoint(voices["test"])
    pool = {s: {img.tobytes() for img in avdigits._image_splits()[s][0]} for s in splits}
    assert pool["train"].isdisjoint(pool["test"]) and pool["train"].isdisjoint(pool["val"])
    train = splits["train"]
    assert len(train) == 2 * 8 * 10 * 4 and set(train.languages) == {"en", "cmn"}
    assert train.images.shape == (640, 8, 8) and train.images.dtype == np.float32
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.waveforms.shape == (640, train.lengths.max())
    # padding is zero and every pair has the same label on both sides
    for row in range(0, 640, 37):
        assert not train.waveforms[row, train.lengths[row]:].any()
    assert np.array_equal(np.bincount(train.labels), [64] * 10)


def test_pairs_images_by_label_against_sklearn():
    from sklearn.datasets import load_digits

    digits = load_digits()
    lookup = {(img / 16.0).astype(np.float32).tobytes(): y for img, y in zip(digits.images, digits.target)}
    data = load_avdigits("val", pairs_per_clip=2)
    assert len(data) == 2 * 2 * 2 * 10 * 4
    assert all(lookup[img.tobytes()] == y for img, y in zip(data.images, data.labels))


def test_loading_is_deterministic_and_seeded():
    a, b = load_avdigits("test", seed=3, image_noise=0.5), load_avdigits("test", seed=3, image_noise=0.5)
    c = load_avdigits("test", seed=4, image_noise=0.5)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_noise_levels_mix_towards_pure_noise():
    clean = load_avdigits("test", seed=0)
    full = load_avdigits("test", seed=0, image_noise=1.0, audio_noise=1.0)
    # at level 1 nothing of the signal is left: images are uniform noise, clips are noise at the clip's rms
    assert abs(full.images.mean() - 0.5) < 0.01 and abs(np.corrcoef(full.images.ravel(), clean.images.ravel())[0, 1]) < 0.05
    corr = np.corrcoef(full.waveforms.ravel(), clean.waveforms.ravel())[0, 1]
    assert abs(corr) < 0.05
    half = load_avdigits("test", seed=0, audio_noise=0.5)
    np.testing.assert_allclose(half.waveforms, 0.5 * clean.waveforms + 0.5 * full.waveforms, atol=1e-6)


def test_framework_views():
    import torch

    data = load_avdigits("val")
    ds = data.as_torch()
    image, wave, label = ds[5]
    assert image.shape == (1, 8, 8) and wave.shape == (data.waveforms.shape[1],) and label.dtype == torch.int64
    assert int(label) == data.labels[5]


def test_tf_view():
    import tensorflow as tf

    data = load_avdigits("test")
    (image, wave), label = next(iter(data.as_tf().batch(4)))
    assert tuple(image.shape) == (4, 8, 8, 1) and tuple(wave.shape) == (4, data.waveforms.shape[1])
    assert label.dtype == tf.int64
    np.testing.assert_array_equal(label.numpy(), data.labels[:4])


def test_loads_fast():
    avdigits._audio_archive.cache_clear()
    avdigits._image_splits.cache_clear()
    start = time.perf_counter()
    load_avdigits("train")
    assert time.perf_counter() - start < 2.0
    start = time.perf_counter()
    shapes.load_shapes("train")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"split": "dev"}, ValueError, "split"),
    ({"languages": ("en", "fr")}, ValueError, "languages"),
    ({"languages": "en"}, TypeError, "languages"),
    ({"image_noise": 1.5}, ValueError, "image_noise"),
    ({"audio_noise": -0.1}, ValueError, "audio_noise"),
    ({"audio_noise": "loud"}, TypeError, "audio_noise"),
    ({"pairs_per_clip": 0}, ValueError, "pairs_per_clip"),
    ({"seed": 1.0}, TypeError, "seed"),
])
def test_avdigits_bad_input(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        load_avdigits(**kwargs)


def test_mu_law_bad_input():
    with pytest.raises(ValueError, match="x"):
        mu_law_encode([0.5, 2.0])
    with pytest.raises(ValueError, match="x"):
        mu_law_encode(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="codes"):
        mu_law_decode(np.array([1, 2, 3]))


def test_shapes_are_deterministic_and_match_their_captions():
    a, b = shapes.generate_shapes(50, seed=5), shapes.generate_shapes(50, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    for image, objects, caption in zip(a.images, a.objects, a.captions):
        for o in objects:
            assert f"{o['size']} {o['color']} {o['shape']}" in caption
            # the object's colour is painted at its centre
            assert tuple(image[int(o["y"]), int(o["x"])]) == shapes.COLORS[o["color"]]
        drawn = {tuple(p) for p in image.reshape(-1, 3)} - {(0, 0, 0)}
        assert drawn == {shapes.COLORS[o["color"]] for o in objects}


def test_shapes_splits_and_answers():
    train, test = shapes.load_shapes("train"), shapes.load_shapes("test")
    assert (len(train), len(test)) == (3000, 500) and train.images.shape[1:] == (32, 32, 3)
    assert not np.array_equal(train.images[:500], test.images)
    for objects, qs, ans in zip(train.objects[:200], train.questions, train.answers):
        qa = dict(zip(qs, ans))
        assert qa["how many shapes are there?"] == shapes.NUMBER_WORDS[len(objects)]
        kinds = [(o["color"], o["shape"]) for o in objects]
        for o in objects:
            question = f"what size is the {o['color']} {o['shape']}?"
            if kinds.count((o["color"], o["shape"])) == 1:
                assert qa[question] == o["size"]
            else:  # two objects of the same colour and shape: the question would be ambiguous
                assert question not in qa
    sizes = {o["size"] for objs in train.objects for o in objs}
    assert sizes == set(shapes.SIZES) and {len(o) for o in train.objects} == {1, 2}


@pytest.mark.parametrize("call, exc, name", [
    (lambda: shapes.load_shapes("dev"), ValueError, "split"),
    (lambda: shapes.generate_shapes(0), ValueError, "n"),
    (lambda: shapes.generate_shapes(5, seed=-1), ValueError, "seed"),
    (lambda: shapes.generate_shapes(5, max_objects=3), ValueError, "max_objects"),
    (lambda: shapes.generate_shapes(2.5), TypeError, "n"),
    (lambda: shapes.render_object(np.zeros((8, 8, 3), np.uint8), "star", "red", "small", 4, 4), ValueError, "shape"),
    (lambda: shapes.render_object(np.zeros((8, 8, 3), np.uint8), "circle", "pink", "small", 4, 4), ValueError, "color"),
])
def test_shapes_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
