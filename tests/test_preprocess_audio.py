"""mmtutor.preprocess.audio against librosa 0.11 and SciPy on random signals of random lengths and parameters.

Tolerances reached (float64 inputs; asserted below, observed values in brackets):

* ``frame``: exactly equal to ``librosa.util.frame``; ``get_window``: within 1e-15 (one rounding)
  of ``scipy.signal.get_window`` and ``librosa.filters.get_window``.
* ``stft``: within 1e-10 of ``librosa.stft`` relative to the largest magnitude [~1e-15], for every
  ``pad_mode``, window, ``win_length < n_fft``, ``center`` and signals shorter than ``n_fft``;
  float32 input gives complex64, within 1e-5. It also equals the explicit DFT sum of its docstring.
  Exception: in rare ``reflect``/``symmetric`` cases librosa's edge frames depart from its own
  definition (see ``_librosa_pads_the_whole_signal``); there we match the definition instead.
* ``hz_to_mel``/``mel_to_hz``: 1e-10 relative (Slaney and HTK); ``mel_filter_bank``: 1e-10 relative
  to ``librosa.filters.mel(dtype=float64)`` for ``norm`` in {"slaney", None, 1, 2, inf} [~1e-11].
* ``melspectrogram``: 1e-6 relative to the largest value [~1e-7]: librosa builds its filter bank
  in float32 by default.
* ``power_to_db``: 1e-9 dB on the same input (the same formula); ``log_mel_spectrogram`` end to end
  within 1e-4 dB of ``librosa.power_to_db(librosa.feature.melspectrogram(...))``.
* ``mfcc``: 1e-4 absolute [~1e-5] — MFCCs are sums of tens of dB values, and librosa's float32
  filter bank costs about 1e-7 relative in each band.
* ``dct_ii`` and the DCT-III: 1e-10 relative to ``scipy.fft.dct`` (types 2 and 3, ``norm`` ortho
  and None).
"""

import warnings

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from mmtutor.preprocess import audio

FAST = settings(max_examples=30, deadline=None)
SAMPLE_RATES = st.sampled_from([8000, 16000, 22050, 44100])


def _max_rel_error(actual, expected):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    error, scale = float(np.abs(actual - expected).max()), float(np.abs(expected).max())
    return error / scale if scale > 0 else error


def _quiet(fn, *args, **kwargs):
    """Call librosa without its warnings (short signals, empty mel filters): we test the numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


stft_cases = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "n": st.integers(1, 3000),
    "n_fft": st.integers(2, 1024),
    "win_fraction": st.floats(0.05, 1.0),
    "hop_length": st.integers(1, 700),
    "center": st.booleans(),
    "pad_mode": st.sampled_from(["constant", "reflect", "edge", "symmetric"]),
    "window": st.sampled_from(["hann", "hamming", "boxcar"]),
})


def _stft_args(case):
    n_fft = case["n_fft"]
    if not case["center"]:
        n_fft = min(n_fft, case["n"])
    args = dict(n_fft=n_fft, hop_length=case["hop_length"], window=case["window"],
                win_length=max(1, int(case["win_fraction"] * n_fft)), center=case["center"],
                pad_mode=case["pad_mode"] if case["n"] > 1 else "constant")
    y = np.random.default_rng(case["seed"]).standard_normal(case["n"])
    return y, args


# --------------------------------------------------------------------------------------------
# frames, windows, STFT
# --------------------------------------------------------------------------------------------

@FAST
@given(st.integers(0, 2**32 - 1), st.integers(1, 500), st.integers(1, 500), st.integers(1, 100), st.booleans())
def test_frame_matches_librosa(seed, n, frame_length, hop_length, stereo):
    frame_length = min(frame_length, n)
    y = np.random.default_rng(seed).standard_normal((2, n) if stereo else n)
    ours = audio.frame(y, frame_length=frame_length, hop_length=hop_length)
    expected = librosa.util.frame(y, frame_length=frame_length, hop_length=hop_length)
    np.testing.assert_array_equal(ours, expected)
    assert ours.shape[-1] == 1 + (n - frame_length) // hop_length
    assert not ours.flags.writeable and np.shares_memory(ours, y)      # a view, no copy


@pytest.mark.parametrize("name", ["hann", "hamming", "boxcar"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 16, 255, 400, 2048])
@pytest.mark.parametrize("fftbins", [True, False])
def test_get_window_matches_scipy_and_librosa(name, n, fftbins):
    ours = audio.get_window(name, n, fftbins=fftbins)
    np.testing.assert_allclose(ours, scipy.signal.get_window(name, n, fftbins=fftbins), rtol=0, atol=1e-15)
    np.testing.assert_allclose(ours, librosa.filters.get_window(name, n, fftbins=fftbins), rtol=0, atol=1e-15)


def test_periodic_hann_windows_tile_to_a_constant():
    """Hann windows hopped by n/4 overlap-add to exactly 2: why the periodic form is the default."""
    n = 512
    w = audio.get_window("hann", n)
    total = sum(np.roll(np.pad(w, (0, 3 * n)), k * n // 4) for k in range(16))
    np.testing.assert_allclose(total[n:3 * n], 2.0, atol=1e-12)
    assert audio.get_window("rectangular", 4).tolist() == [1.0] * 4


def _librosa_pads_the_whole_signal(n, n_fft, hop_length, pad_mode):
    """False in the rare cases where librosa 0.11's centred STFT departs from padding the whole signal.

    To save a copy, ``librosa.stft`` pads only a head and a tail segment of the signal. When such a
    segment is shorter than the reflection needs (``reflect``: ``n_fft // 2 + 1`` samples,
    ``symmetric``: ``n_fft // 2``), ``numpy.pad`` reflects within the segment and the edge frames
    differ from the documented definition (pad the whole signal by ``n_fft // 2``). It happens
    only for very short signals or ``hop_length > n_fft / 2``: 191 of 38,088 combinations with
    ``n, n_fft, hop_length < 25``, 1 in 3,000 random ones up to 3,000 samples. This predicts it
    exactly (checked on all those combinations) by retracing librosa's code.
    """
    if pad_mode in ("constant", "edge"):
        return True
    half = n_fft // 2
    need = half + 1 if pad_mode == "reflect" else half
    start_k = -(-half // hop_length)
    tail_k = (n + half - n_fft) // hop_length + 1
    if tail_k <= start_k:
        return True
    whole = min(n, (start_k - 1) * hop_length - half + n_fft + 1) >= need
    if tail_k * hop_length - half + n_fft <= n + half:
        whole = whole and n - (tail_k * hop_length - half) >= need
    return whole


def _check_stft_against_librosa(y, args, rtol):
    ours = audio.stft(y, **args)
    if args["center"]:    # the definition: pad the whole signal by n_fft // 2, then uncentred frames
        pad = [(0, 0)] * (y.ndim - 1) + [(args["n_fft"] // 2, args["n_fft"] // 2)]
        padded = np.pad(y, pad, mode=args["pad_mode"])
        definition = librosa.stft(padded, **{**args, "center": False})
        assert _max_rel_error(ours, definition) <= rtol
    if not args["center"] or _librosa_pads_the_whole_signal(y.shape[-1], args["n_fft"], args["hop_length"],
                                                            args["pad_mode"]):
        assert _max_rel_error(ours, _quiet(librosa.stft, y, **args)) <= rtol
    return ours


@FAST
@given(stft_cases)
def test_stft_matches_librosa(case):
    y, args = _stft_args(case)
    _check_stft_against_librosa(y, args, 1e-10)


@settings(max_examples=10, deadline=None)
@given(stft_cases)
def test_stft_float32_and_stereo_match_librosa(case):
    y, args = _stft_args(case)
    stereo = np.stack([y, -0.5 * y[::-1]]).astype(np.float32)
    assert _check_stft_against_librosa(stereo, args, 1e-5).dtype == np.complex64


def test_librosa_reflect_padding_quirk_on_a_two_sample_signal():
    """y = [a, b], n_fft = 2, hop 1, reflect: the padded signal is [b, a, b, a], so the frames end a, b, a."""
    y = np.array([0.25, -1.0])
    args = dict(n_fft=2, hop_length=1, pad_mode="reflect")
    assert not _librosa_pads_the_whole_signal(2, 2, 1, "reflect")
    np.testing.assert_allclose(audio.stft(y, **args)[0].real, [0.25, -1.0, 0.25])
    np.testing.assert_allclose(librosa.stft(y, **args)[0].real, [0.25, -1.0, -1.0])   # librosa 0.11


def test_stft_is_the_dft_sum_of_the_docstring():
    rng = np.random.default_rng(0)
    y, n_fft, hop = rng.standard_normal(1000), 64, 16
    X = audio.stft(y, n_fft=n_fft, hop_length=hop, center=False)
    w = audio.get_window("hann", n_fft)
    k, n = np.arange(n_fft // 2 + 1)[:, None], np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)
    for m in (0, 7, X.shape[1] - 1):
        np.testing.assert_allclose(X[:, m], dft @ (y[m * hop: m * hop + n_fft] * w), atol=1e-10)
    assert X.shape == (33, 1 + (1000 - 64) // 16)
    # centred: one frame per hop, starting at sample 0
    assert audio.stft(y, n_fft=n_fft, hop_length=hop).shape == (33, 1 + 1000 // 16)


def test_stft_defaults_are_librosas():
    y = np.random.default_rng(1).standard_normal(5000)
    np.testing.assert_allclose(audio.stft(y), librosa.stft(y), rtol=0, atol=1e-9)
    # zero padding (pad_mode="constant", librosa >= 0.10) differs from reflect at the edges only
    reflect = audio.stft(y, pad_mode="reflect")
    assert not np.allclose(audio.stft(y)[:, 0], reflect[:, 0])
    np.testing.assert_allclose(audio.stft(y)[:, 4:-4], reflect[:, 4:-4], atol=1e-9)


def test_power_spectrum():
    D = audio.stft(np.random.default_rng(2).standard_normal(3000), n_fft=256)
    np.testing.assert_allclose(audio.power_spectrum(D), np.abs(D) ** 2)
    np.testing.assert_allclose(audio.power_spectrum(D, power=1.0), np.abs(D))


# --------------------------------------------------------------------------------------------
# mel scale and filter bank
# --------------------------------------------------------------------------------------------

@FAST
@given(st.lists(st.floats(0.0, 30000.0), min_size=1, max_size=20), st.booleans())
def test_mel_scale_matches_librosa_and_inverts(freqs, htk):
    f = np.array(freqs)
    mels = audio.hz_to_mel(f, htk=htk)
    np.testing.assert_allclose(mels, librosa.hz_to_mel(f, htk=htk), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(audio.mel_to_hz(mels, htk=htk), librosa.mel_to_hz(mels, htk=htk),
                               rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(audio.mel_to_hz(mels, htk=htk), f, rtol=1e-10, atol=1e-9)
    assert isinstance(audio.hz_to_mel(1000.0), float)
    assert audio.hz_to_mel(1000.0) == pytest.approx(15.0)             # Slaney: 15 mels at 1 kHz
    assert audio.hz_to_mel(1000.0, htk=True) == pytest.approx(1000.0, abs=0.05)   # HTK: ~1000 mels


@FAST
@given(SAMPLE_RATES, st.integers(16, 2048), st.integers(1, 128), st.floats(0.0, 0.45), st.floats(0.05, 1.0),
       st.booleans(), st.sampled_from(["slaney", None, 1.0, 2.0, np.inf]))
def test_mel_filter_bank_matches_librosa(sr, n_fft, n_mels, fmin_fraction, fmax_fraction, htk, norm):
    fmin = fmin_fraction * sr / 2
    fmax = fmin + fmax_fraction * (sr / 2 - fmin)
    kwargs = dict(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = audio.mel_filter_bank(**kwargs)
        expected = librosa.filters.mel(dtype=np.float64, **kwargs)
    assert ours.shape == (n_mels, 1 + n_fft // 2)
    assert _max_rel_error(ours, expected) <= 1e-10


def test_slaney_filters_have_unit_area_and_empty_filters_warn():
    sr, n_fft = 16000, 4096
    bank = audio.mel_filter_bank(sr, n_fft, n_mels=40)
    edges = audio.mel_frequencies(42, 0.0, sr / 2)
    heights = bank.max(axis=1)
    # a triangle of base f_{i+2} - f_i and unit area peaks at 2 / base (up to bin sampling)
    np.testing.assert_allclose(heights, 2.0 / (edges[2:] - edges[:-2]), rtol=0.05)
    with pytest.warns(UserWarning, match="n_mels = 128 is too many for n_fft = 256"):
        audio.mel_filter_bank(sr, 256, n_mels=128)


# --------------------------------------------------------------------------------------------
# mel spectrogram, decibels, DCT, MFCC
# --------------------------------------------------------------------------------------------

mel_cases = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "sr": SAMPLE_RATES,
    "n": st.integers(300, 6000),
    "n_fft": st.sampled_from([256, 400, 512, 1024, 2048]),
    "hop_length": st.integers(64, 512),
    "n_mels": st.integers(8, 64),
    "fmax_fraction": st.floats(0.3, 1.0),
    "center": st.booleans(),
})


def _mel_args(case):
    y = np.random.default_rng(case["seed"]).standard_normal(case["n"])
    n_fft = case["n_fft"] if case["center"] else min(case["n_fft"], case["n"])
    return y, dict(sr=case["sr"], n_fft=n_fft, hop_length=case["hop_length"], n_mels=case["n_mels"],
                   fmax=case["fmax_fraction"] * case["sr"] / 2, center=case["center"])


@FAST
@given(mel_cases)
def test_melspectrogram_and_log_mel_match_librosa(case):
    y, args = _mel_args(case)
    expected = _quiet(librosa.feature.melspectrogram, y=y, **args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = audio.melspectrogram(y=y, **args)
        log_mel = audio.log_mel_spectrogram(y=y, **args)
    assert _max_rel_error(ours, expected) <= 1e-6
    assert np.abs(log_mel - librosa.power_to_db(expected)).max() <= 1e-4


def test_melspectrogram_from_a_spectrogram_infers_n_fft_like_librosa():
    y = np.random.default_rng(3).standard_normal(4000)
    S = np.abs(librosa.stft(y, n_fft=512, hop_length=128)) ** 2
    ours = audio.melspectrogram(S=S, sr=16000, n_mels=40)             # n_fft=2048 default, inferred 512
    expected = librosa.feature.melspectrogram(S=S, sr=16000, n_mels=40)
    assert _max_rel_error(ours, expected) <= 1e-6


@FAST
@given(st.integers(0, 2**32 - 1), st.sampled_from([1.0, 0.01, 5.0, np.max, np.median]),
       st.sampled_from([80.0, None, 0.0, 30.0]), st.sampled_from([1e-10, 1e-5]))
def test_power_to_db_matches_librosa(seed, ref, top_db, amin):
    S = np.random.default_rng(seed).exponential(size=(20, 30)) ** 3
    S[0, :5] = 0.0                                     # silence: clipped at amin
    ours = audio.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    np.testing.assert_allclose(ours, librosa.power_to_db(S, ref=ref, amin=amin, top_db=top_db), rtol=0, atol=1e-9)
    assert audio.power_to_db(np.array([1.0, 100.0, 0.0]), top_db=None).tolist() == [0.0, 20.0, -100.0]


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(1, 64), st.sampled_from([2, 3]), st.sampled_from(["ortho", None]),
       st.integers(0, 1))
def test_dct_matches_scipy(seed, n, dct_type, norm, axis):
    x = np.random.default_rng(seed).standard_normal((n, 5) if axis == 0 else (5, n))
    expected = scipy.fft.dct(x, type=dct_type, norm=norm, axis=axis)
    ours = audio.dct_ii(x, axis=axis, norm=norm) if dct_type == 2 else \
        np.moveaxis(np.tensordot(audio.dct_matrix(n, 3, norm), x, axes=([1], [axis])), 0, axis)
    assert _max_rel_error(ours, expected) <= 1e-10
    D = audio.dct_matrix(n)
    np.testing.assert_allclose(D @ D.T, np.eye(n), atol=1e-12)         # orthonormal
    np.testing.assert_allclose(audio.dct_matrix(n, 3), D.T)            # DCT-III = inverse of DCT-II


@FAST
@given(mel_cases, st.integers(1, 20), st.sampled_from([2, 3]), st.sampled_from(["ortho", None]),
       st.sampled_from([0, 22]))
def test_mfcc_matches_librosa(case, n_mfcc, dct_type, norm, lifter):
    y, args = _mel_args(case)
    n_mfcc = min(n_mfcc, args["n_mels"])
    kwargs = dict(n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter, **args)
    expected = _quiet(librosa.feature.mfcc, y=y, **kwargs)
    ours = _quiet(audio.mfcc, y=y, **kwargs)
    assert ours.shape == expected.shape == (n_mfcc, expected.shape[1])
    scale = 1.0 if norm == "ortho" else np.sqrt(2 * args["n_mels"])    # unnormalised DCT is larger
    assert np.abs(ours - expected).max() <= 1e-4 * scale * max(1.0, lifter)
    log_mel = librosa.power_to_db(_quiet(librosa.feature.melspectrogram, y=y, **args))
    from_S = audio.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter)
    np.testing.assert_allclose(from_S, librosa.feature.mfcc(S=log_mel, **{k: kwargs[k] for k in
                                                            ("n_mfcc", "dct_type", "norm", "lifter")}),
                               rtol=1e-10, atol=1e-9)


def test_check_sample_rate():
    assert audio.check_sample_rate(16000, expected=16000) == 16000.0
    assert audio.check_sample_rate(22050.0) == 22050.0
    with pytest.raises(ValueError, match=r"sr must be the expected sample rate 16000 Hz, got 44100 Hz"):
        audio.check_sample_rate(44100, expected=16000)


# --------------------------------------------------------------------------------------------
# bad input: each error names the argument, what was expected and what came
# --------------------------------------------------------------------------------------------

Y = np.zeros(1000)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: audio.stft(np.zeros((2, 2, 2, 100))), ValueError, r"y must be a 1-D or 2-D waveform.*got 4-D"),
    (lambda: audio.stft(Y.astype(complex)), TypeError, r"y must be a waveform .* floating dtype, got dtype complex128"),
    (lambda: audio.stft(np.zeros(1000, np.int16)), TypeError, r"y must be .*floating dtype, got dtype int16 \(convert integer PCM"),
    (lambda: audio.stft(Y.astype(bool)), TypeError, r"y must be .*floating dtype, got dtype bool"),
    (lambda: audio.stft("hello"), TypeError, r"y must be a real waveform.*str"),
    (lambda: audio.stft(np.zeros(0)), ValueError, r"y must not be empty"),
    (lambda: audio.stft(np.array([0.0, np.nan, 1.0])), ValueError, r"y must be finite, got 1 NaN"),
    (lambda: audio.stft(Y, n_fft=2048, center=False), ValueError, r"n_fft must be <= the signal length 1000 when center=False, got 2048"),
    (lambda: audio.stft(Y, n_fft=0), ValueError, r"n_fft must be >= 1, got 0"),
    (lambda: audio.stft(Y, n_fft=256.0), TypeError, r"n_fft must be an int, got float"),
    (lambda: audio.stft(Y, n_fft=256, hop_length=0), ValueError, r"hop_length must be >= 1, got 0"),
    (lambda: audio.stft(Y, n_fft=256, hop_length=-3), ValueError, r"hop_length must be >= 1, got -3"),
    (lambda: audio.stft(Y, n_fft=256, win_length=512), ValueError, r"win_length must be <= n_fft = 256, got 512"),
    (lambda: audio.stft(Y, n_fft=2, win_length=2), ValueError, r"hop_length must be given when win_length < 4"),
    (lambda: audio.stft(Y, n_fft=256, window="kaiser"), ValueError, r"window must be one of \['hann', 'hamming', 'rectangular'\].*got 'kaiser'"),
    (lambda: audio.stft(Y, n_fft=256, window=np.ones(100)), ValueError, r"window must have n = 256 samples, got 100"),
    (lambda: audio.stft(Y, n_fft=256, pad_mode="wrap"), ValueError, r"pad_mode must be one of .*got 'wrap'"),
    (lambda: audio.stft(Y, n_fft=256, center="yes"), TypeError, r"center must be a bool"),
    (lambda: audio.frame(Y, frame_length=2000, hop_length=10), ValueError, r"frame_length must be <= the signal length 1000, got 2000"),
    (lambda: audio.frame(Y, frame_length=100, hop_length=0), ValueError, r"hop_length must be >= 1, got 0"),
    (lambda: audio.get_window("hann", 0), ValueError, r"n must be >= 1, got 0"),
    (lambda: audio.mel_filter_bank(16000, 512, fmax=9000.0), ValueError, r"fmax must be <= the Nyquist frequency sr/2 = 8000 Hz, got 9000 Hz"),
    (lambda: audio.mel_filter_bank(16000, 512, fmin=4000.0, fmax=3000.0), ValueError, r"fmin must be < fmax = 3000 Hz, got fmin = 4000 Hz"),
    (lambda: audio.mel_filter_bank(16000, 512, fmin=-1.0), ValueError, r"fmin must be >= 0.0, got -1.0"),
    (lambda: audio.mel_filter_bank(16000, 512, n_mels=0), ValueError, r"n_mels must be >= 1, got 0"),
    (lambda: audio.mel_filter_bank(16000, 512, norm="l2"), ValueError, r"norm must be 'slaney', None or a positive number p, got 'l2'"),
    (lambda: audio.mel_filter_bank(-16000, 512), ValueError, r"sr must be > 0.0, got -16000"),
    (lambda: audio.mel_filter_bank(True, 512), TypeError, r"sr must be a real number, got bool"),
    (lambda: audio.hz_to_mel(-5.0), ValueError, r"frequencies must be >= 0, got a minimum of -5.0"),
    (lambda: audio.melspectrogram(), ValueError, r"give exactly one of y \(a waveform\) and S"),
    (lambda: audio.melspectrogram(y=Y, S=np.ones((1025, 3))), ValueError, r"give exactly one of y"),
    (lambda: audio.power_to_db(np.ones((3, 3)) * (1 + 1j)), TypeError, r"S must be a power spectrogram with a real numeric dtype, got dtype complex128 \(take np.abs"),
    (lambda: audio.power_to_db(-np.ones((3, 3))), ValueError, r"S must be a non-negative power, got a minimum of -1.0"),
    (lambda: audio.power_to_db(np.ones((3, 3)), amin=0.0), ValueError, r"amin must be > 0.0, got 0.0"),
    (lambda: audio.power_to_db(np.ones((3, 3)), top_db=-1.0), ValueError, r"top_db must be >= 0.0, got -1.0"),
    (lambda: audio.power_to_db(np.ones((3, 3)), ref=0.0), ValueError, r"ref must be > 0.0, got 0.0"),
    (lambda: audio.mfcc(S=np.ones((13, 5)), n_mfcc=20), ValueError, r"n_mfcc must be <= n_mels = 13, got 20"),
    (lambda: audio.mfcc(S=np.ones((13, 5)), n_mfcc=5, dct_type=1), ValueError, r"dct_type must be 2 or 3, got 1"),
    (lambda: audio.mfcc(S=np.ones((13, 5)), n_mfcc=5, lifter=-1), ValueError, r"lifter must be >= 0.0, got -1.0"),
    (lambda: audio.dct_ii(np.ones(8), norm="forward"), ValueError, r"norm must be 'ortho', 'backward' or None, got 'forward'"),
    (lambda: audio.dct_ii(np.ones(8), axis=1), ValueError, r"axis must be an int in \[-1, 1\) for a 1-D x, got 1"),
    (lambda: audio.check_sample_rate(16000, expected=0), ValueError, r"expected must be > 0.0, got 0"),
    (lambda: audio.check_sample_rate("16k"), TypeError, r"sr must be a real number, got str"),
])
def test_bad_input_is_rejected_with_a_clear_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
