r"""Audio preprocessing from scratch in NumPy: frames, STFT, mel filter bank, log-mel and MFCC.

The pipeline that turns a waveform into the features an audio encoder reads:

1. **frame** the signal into overlapping windows of ``n_fft`` samples, ``hop_length`` apart;
2. multiply each frame by a **window** (Hann) and take its discrete Fourier transform — the
   short-time Fourier transform (STFT)

   .. math:: X[k, m] = \sum_{n=0}^{N-1} x[n + mH]\, w[n]\, e^{-2\pi i k n / N},
             \qquad k = 0, \dots, N/2;

3. keep the **power** :math:`|X[k, m]|^2` (phase is dropped);
4. pool the linear frequency bins with triangular **mel filters** spaced evenly on the mel scale,
   which, like the ear, resolves low frequencies finely and high ones coarsely;
5. take **decibels**, :math:`10 \log_{10}` — the log-mel spectrogram, the input of Whisper-style
   encoders;
6. optionally decorrelate the log-mel bands with an orthonormal **DCT-II** and keep the first
   coefficients — the MFCCs.

Every function uses librosa's parameter names and defaults (librosa 0.11: ``center=True`` and,
since 0.10, ``pad_mode="constant"``, i.e. zero padding; Slaney mel scale, ``htk=False``, with
Slaney area normalisation), so that results can be compared one to one. Where librosa is
permissive this module is strict: integer, complex or non-finite waveforms, ``fmax`` above the
Nyquist frequency and ``n_mfcc > n_mels`` raise instead of being accepted silently.

Waveforms are float arrays ``(n,)`` or ``(channels, n)``; spectrograms have frequency on axis -2
and time (frames) on axis -1, as in librosa.

Accuracy against librosa 0.11, measured in ``tests/test_preprocess_audio.py`` on random signals
of random lengths and parameters (float64):

=======================  ======================================================================
``frame``                identical (exact equality)
``get_window``           :math:`\le 10^{-15}` (one rounding) against SciPy and librosa
``stft``                 :math:`\le 10^{-10}` relative to the largest magnitude
mel scale, filter bank   :math:`\le 10^{-10}` relative
``melspectrogram``       :math:`\le 10^{-6}` relative (librosa's filter bank is float32)
``power_to_db``          :math:`\le 10^{-9}` dB
``log_mel_spectrogram``  :math:`\le 10^{-4}` dB end to end
``mfcc``                 :math:`\le 10^{-4}` absolute (MFCCs are in dB units, tens to hundreds)
``dct_ii``               :math:`\le 10^{-10}` relative to ``scipy.fft.dct``
=======================  ======================================================================
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "check_sample_rate",
    "frame",
    "get_window",
    "stft",
    "power_spectrum",
    "fft_frequencies",
    "hz_to_mel",
    "mel_to_hz",
    "mel_frequencies",
    "mel_filter_bank",
    "melspectrogram",
    "power_to_db",
    "log_mel_spectrogram",
    "dct_matrix",
    "dct_ii",
    "mfcc",
]

WINDOWS = ("hann", "hamming", "rectangular")
"""Window names :func:`get_window` knows (aliases: ``hanning``, ``boxcar``, ``rect``, ``ones``)."""
_WINDOW_ALIASES = {"hann": "hann", "hanning": "hann", "hamming": "hamming",
                   "rectangular": "rectangular", "boxcar": "rectangular", "rect": "rectangular",
                   "ones": "rectangular"}
PAD_MODES = ("constant", "reflect", "edge", "symmetric")
"""``pad_mode`` values :func:`stft` accepts (``numpy.pad`` modes; ``"constant"`` pads zeros)."""


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------

def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _real_number(name: str, value, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def _bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def _real_array(name: str, x, ndims: tuple[int, ...], kinds: str = "f", what: str = "array") -> np.ndarray:
    """``x`` as a finite, non-empty ndarray of a rank in ``ndims`` and a dtype kind in ``kinds``."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a real {what}, got {type(x).__name__}: {x!r}"[:200])
    arr = np.asarray(x)
    if arr.dtype.kind not in kinds:
        expected = "floating" if kinds == "f" else "real numeric"
        raise TypeError(f"{name} must be a {what} with a {expected} dtype, got dtype {arr.dtype}"
                        + (" (take np.abs(...) ** 2 of a complex STFT first)" if arr.dtype.kind == "c" else "")
                        + (" (convert integer PCM with y / 32768.0 or similar)" if arr.dtype.kind in "iu"
                           and kinds == "f" else ""))
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must be a {' or '.join(f'{d}-D' for d in ndims)} {what}, "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {int(arr.size - np.isfinite(arr).sum())} "
                         f"NaN or infinite values")
    return arr


def _waveform(y) -> np.ndarray:
    return _real_array("y", y, (1, 2), kinds="f", what="waveform (n,) or (channels, n)")


def check_sample_rate(sr, expected=None) -> float:
    """Check that ``sr`` is a positive, finite sample rate in Hz (and equals ``expected`` if given).

    Loaders call this with the rate a model was trained at: feeding 44.1 kHz audio to a
    16 kHz model shifts every frequency by a factor 2.76 and is never an error anywhere else.
    Returns ``sr`` as a float.
    """
    sr = _real_number("sr", sr, minimum=0.0, strict=True)
    if expected is not None:
        expected = _real_number("expected", expected, minimum=0.0, strict=True)
        if sr != expected:
            raise ValueError(f"sr must be the expected sample rate {expected:g} Hz, got {sr:g} Hz; "
                             f"resample the audio first")
    return sr


# --------------------------------------------------------------------------------------------
# frames, windows, STFT
# --------------------------------------------------------------------------------------------

def frame(y, frame_length: int, hop_length: int) -> np.ndarray:
    r"""Overlapping frames ``(..., frame_length, n_frames)``: ``out[..., n, m] = y[..., m·hop_length + n]``.

    ``n_frames`` :math:`= 1 + \lfloor (\text{len}(y) - \text{frame\_length}) / \text{hop\_length} \rfloor`;
    trailing samples that do not fill a frame are dropped (as ``librosa.util.frame`` does). The
    result is a read-only view of ``y``: no sample is copied. ``y`` is ``(n,)`` or ``(channels, n)``
    of any real dtype.
    """
    arr = _real_array("y", y, (1, 2), kinds="fiu", what="signal (n,) or (channels, n)")
    frame_length = _positive_int("frame_length", frame_length)
    hop_length = _positive_int("hop_length", hop_length)
    if arr.shape[-1] < frame_length:
        raise ValueError(f"frame_length must be <= the signal length {arr.shape[-1]}, got {frame_length}")
    windows = sliding_window_view(arr, frame_length, axis=-1)[..., ::hop_length, :]
    return np.swapaxes(windows, -1, -2)


def get_window(window, n: int, *, fftbins: bool = True) -> np.ndarray:
    r"""A window of ``n`` samples: ``"hann"``, ``"hamming"`` or ``"rectangular"``.

    .. math::

        w[k] = \alpha - (1 - \alpha) \cos\frac{2\pi k}{M}, \qquad k = 0, \dots, n - 1,

    with :math:`\alpha = 1/2` (Hann), :math:`0.54` (Hamming), and :math:`w = 1` for the rectangular
    window. ``fftbins=True`` (the default, as in ``scipy.signal.get_window`` and librosa) gives the
    *periodic* window, :math:`M = n`, whose copies tile exactly when hopped by divisors of ``n``;
    ``fftbins=False`` gives the *symmetric* window, :math:`M = n - 1`, used for filter design.
    A one-sample window is ``[1.0]``, as in SciPy. ``window`` may also be a 1-D array of length
    ``n``, returned as float64.
    """
    n = _positive_int("n", n)
    fftbins = _bool("fftbins", fftbins)
    if not isinstance(window, str):
        w = _real_array("window", window, (1,), kinds="fiu", what="window array or name")
        if w.shape[0] != n:
            raise ValueError(f"window must have n = {n} samples, got {w.shape[0]}")
        return w.astype(np.float64)
    name = _WINDOW_ALIASES.get(window.lower())
    if name is None:
        raise ValueError(f"window must be one of {list(WINDOWS)} (or an array), got {window!r}")
    if name == "rectangular" or n == 1:
        return np.ones(n)
    alpha = 0.5 if name == "hann" else 0.54
    period = n if fftbins else n - 1
    return alpha - (1.0 - alpha) * np.cos(2.0 * np.pi * np.arange(n) / period)


def stft(y, n_fft: int = 2048, hop_length: int | None = None, win_length: int | None = None,
         window="hann", center: bool = True, pad_mode: str = "constant") -> np.ndarray:
    r"""Short-time Fourier transform ``(..., 1 + n_fft // 2, n_frames)``, complex.

    .. math:: X[k, m] = \sum_{n=0}^{N-1} x[n + mH]\; w[n]\; e^{-2\pi i k n / N}

    with :math:`N` = ``n_fft``, :math:`H` = ``hop_length``, and :math:`w` the ``window`` of
    ``win_length`` samples zero-padded (centred) to ``n_fft``. Only the non-negative frequencies
    :math:`k = 0, \dots, N/2` are kept, since :math:`X[N-k] = \overline{X[k]}` for a real signal.
    ``np.fft.rfft`` evaluates the sum (in :math:`O(N \log N)` rather than :math:`O(N^2)`).
    The parameters have librosa 0.11's names and defaults.

    Parameters
    ----------
    y : float array ``(n,)`` or ``(channels, n)``
    n_fft : int, default 2048
    hop_length : int, default ``win_length // 4``
    win_length : int <= n_fft, default ``n_fft``
    window : ``"hann"`` (periodic), ``"hamming"``, ``"rectangular"`` or an array of ``win_length``
    center : bool, default True
        Pad ``n_fft // 2`` samples on both sides so that frame ``m`` is centred on sample ``mH``;
        then ``n_frames = 1 + len(y) // hop_length`` (for even ``n_fft``). With ``center=False``
        frame ``m`` starts at sample ``mH`` and ``n_fft`` must not exceed ``len(y)``.
    pad_mode : one of :data:`PAD_MODES`, default ``"constant"`` (zeros; librosa's default since 0.10)
        The whole signal is padded, as librosa documents. librosa 0.11 itself pads only a head and
        a tail segment; with ``"reflect"`` or ``"symmetric"``, a very short signal or
        ``hop_length > n_fft / 2`` can leave a segment too short to reflect, and then its edge
        frames differ from this definition (about 1 case in 3,000 random ones; see the tests).
    """
    y = _waveform(y)
    n_fft = _positive_int("n_fft", n_fft)
    win_length = n_fft if win_length is None else _positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ValueError(f"win_length must be <= n_fft = {n_fft}, got {win_length}")
    if hop_length is None:
        hop_length = win_length // 4
        if hop_length < 1:
            raise ValueError(f"hop_length must be given when win_length < 4 (its default "
                             f"win_length // 4 would be 0), got win_length = {win_length}")
    hop_length = _positive_int("hop_length", hop_length)
    center = _bool("center", center)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {list(PAD_MODES)}, got {pad_mode!r}")
    w = get_window(window, win_length, fftbins=True)
    left = (n_fft - win_length) // 2
    w = np.pad(w, (left, n_fft - win_length - left))
    if center:
        pad = [(0, 0)] * (y.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        y = np.pad(y, pad, mode=pad_mode)
    elif n_fft > y.shape[-1]:
        raise ValueError(f"n_fft must be <= the signal length {y.shape[-1]} when center=False, "
                         f"got {n_fft} (use center=True or a shorter n_fft)")
    frames = frame(y, n_fft, hop_length)                       # (..., n_fft, n_frames)
    return np.fft.rfft(frames * w.astype(y.dtype)[:, None], axis=-2)


def power_spectrum(stft_matrix, power: float = 2.0) -> np.ndarray:
    r"""Magnitude raised to ``power``: :math:`|X|^p` (``p = 2`` power, ``p = 1`` magnitude)."""
    arr = _real_array("stft_matrix", stft_matrix, (1, 2, 3), kinds="fc", what="spectrogram")
    power = _real_number("power", power, minimum=0.0, strict=True)
    return np.abs(arr) ** power


def fft_frequencies(sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    r"""Centre frequency of each STFT bin: :math:`f_k = k \cdot sr / N`, :math:`k = 0, \dots, N/2`."""
    sr = check_sample_rate(sr)
    n_fft = _positive_int("n_fft", n_fft)
    return np.arange(1 + n_fft // 2) * (sr / n_fft)


# --------------------------------------------------------------------------------------------
# the mel scale
# --------------------------------------------------------------------------------------------

_F_SP = 200.0 / 3.0             # Slaney: 3 mels per 200 Hz below 1 kHz
_MIN_LOG_HZ = 1000.0            # Slaney: logarithmic above 1 kHz ...
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0   # ... 27 mels per factor 6.4 in frequency


def _scale_input(name: str, values) -> tuple[np.ndarray, bool]:
    arr = _real_array(name, values, (0, 1, 2), kinds="fiu", what="scalar or array").astype(np.float64)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got a minimum of {arr.min()}")
    return arr, arr.ndim == 0


def hz_to_mel(frequencies, htk: bool = False):
    r"""Hertz to mels.

    Slaney (``htk=False``, librosa's default; the Auditory Toolbox scale): linear below 1 kHz,
    logarithmic above,

    .. math::

        m(f) = \begin{cases} 3f/200 & f < 1000 \\
               15 + 27 \ln(f/1000) / \ln 6.4 & f \ge 1000. \end{cases}

    HTK (``htk=True``): :math:`m(f) = 2595 \log_{10}(1 + f/700)`.
    Returns a float for scalar input, an array otherwise.
    """
    f, scalar = _scale_input("frequencies", frequencies)
    if _bool("htk", htk):
        mels = 2595.0 * np.log10(1.0 + f / 700.0)
    else:
        log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
        mels = np.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)
    return float(mels) if scalar else mels


def mel_to_hz(mels, htk: bool = False):
    r"""Mels to hertz, the inverse of :func:`hz_to_mel`.

    Slaney: :math:`f = 200m/3` below 15 mels, :math:`f = 1000 \cdot 6.4^{(m - 15)/27}` above.
    HTK: :math:`f = 700 (10^{m/2595} - 1)`.
    """
    m, scalar = _scale_input("mels", mels)
    if _bool("htk", htk):
        freqs = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    else:
        log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
        freqs = np.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)
    return float(freqs) if scalar else freqs


def mel_frequencies(n_mels: int = 128, fmin: float = 0.0, fmax: float = 11025.0,
                    htk: bool = False) -> np.ndarray:
    """``n_mels`` frequencies (Hz) evenly spaced on the mel scale from ``fmin`` to ``fmax`` inclusive."""
    n_mels = _positive_int("n_mels", n_mels)
    lo, hi = hz_to_mel(float(fmin), htk=htk), hz_to_mel(float(fmax), htk=htk)
    return mel_to_hz(np.linspace(lo, hi, n_mels), htk=htk)


def _check_band(sr: float, fmin, fmax) -> tuple[float, float]:
    fmin = _real_number("fmin", fmin, minimum=0.0)
    fmax = sr / 2.0 if fmax is None else _real_number("fmax", fmax, minimum=0.0)
    if fmax > sr / 2.0:
        raise ValueError(f"fmax must be <= the Nyquist frequency sr/2 = {sr / 2:g} Hz, got {fmax:g} Hz")
    if fmin >= fmax:
        raise ValueError(f"fmin must be < fmax = {fmax:g} Hz, got fmin = {fmin:g} Hz")
    return fmin, fmax


def mel_filter_bank(sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                    fmax: float | None = None, htk: bool = False, norm="slaney") -> np.ndarray:
    r"""Triangular mel filters, a matrix ``(n_mels, 1 + n_fft // 2)`` that maps power bins to mel bands.

    ``n_mels + 2`` edge frequencies :math:`f_0 < f_1 < \dots < f_{M+1}` are spaced evenly in mels
    between ``fmin`` and ``fmax`` (default ``sr / 2``). Filter :math:`i` rises linearly from 0 at
    :math:`f_i` to 1 at :math:`f_{i+1}` and falls back to 0 at :math:`f_{i+2}`:

    .. math::

        H_i(f) = \max\Bigl(0,\; \min\Bigl(\frac{f - f_i}{f_{i+1} - f_i},\;
                                     \frac{f_{i+2} - f}{f_{i+2} - f_{i+1}}\Bigr)\Bigr),

    evaluated at the bin frequencies :math:`f = k \cdot sr / N`.

    ``norm="slaney"`` (librosa's default) scales filter :math:`i` by :math:`2 / (f_{i+2} - f_i)`,
    so that every triangle has unit area and the wider high-frequency filters do not collect more
    energy merely for being wide. ``norm=None`` keeps peak height 1; a number ``p`` scales each
    filter to unit :math:`\ell_p` norm (``np.inf`` for the maximum).

    A filter that falls between two FFT bins is all zeros (too many mels for ``n_fft``): a
    ``UserWarning`` says so, as in librosa.
    """
    sr = check_sample_rate(sr)
    n_fft = _positive_int("n_fft", n_fft)
    n_mels = _positive_int("n_mels", n_mels)
    fmin, fmax = _check_band(sr, fmin, fmax)
    edges = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)        # (n_mels + 2,)
    ramps = edges[:, None] - fft_frequencies(sr, n_fft)[None, :]              # f_i - f
    widths = np.diff(edges)[:, None]                                          # f_{i+1} - f_i
    rising = -ramps[:-2] / widths[:-1]
    falling = ramps[2:] / widths[1:]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if isinstance(norm, str) and norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    elif norm is not None:
        if isinstance(norm, str):
            raise ValueError(f"norm must be 'slaney', None or a positive number p, got {norm!r}")
        p = float("inf") if norm == np.inf else _real_number("norm", norm, minimum=0.0, strict=True)
        lengths = np.linalg.norm(weights, ord=p, axis=1, keepdims=True)
        weights = weights / np.where(lengths > 0, lengths, 1.0)
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if empty.size:
        warnings.warn(f"n_mels = {n_mels} is too many for n_fft = {n_fft} at sr = {sr:g} Hz: "
                      f"{empty.size} mel filters are empty (the first is {int(empty[0])}); "
                      f"use fewer mels or a larger n_fft", UserWarning, stacklevel=2)
    return weights


# --------------------------------------------------------------------------------------------
# mel spectrogram, decibels, DCT, MFCC
# --------------------------------------------------------------------------------------------

def melspectrogram(y=None, sr: float = 22050, S=None, n_fft: int = 2048, hop_length: int = 512,
                   win_length: int | None = None, window="hann", center: bool = True,
                   pad_mode: str = "constant", power: float = 2.0, n_mels: int = 128,
                   fmin: float = 0.0, fmax: float | None = None, htk: bool = False,
                   norm="slaney") -> np.ndarray:
    r"""Mel spectrogram ``(..., n_mels, n_frames)``: :math:`M = H\,|X|^p`.

    Give either a waveform ``y`` (the STFT is computed with the given parameters) or a
    spectrogram ``S = |X|^p`` of shape ``(..., 1 + n_fft // 2, n_frames)``. As in librosa, when ``S``
    is given and its number of bins disagrees with ``n_fft``, ``n_fft = 2 (\text{bins} - 1)`` is used.
    """
    sr = check_sample_rate(sr)
    if (y is None) == (S is None):
        raise ValueError(f"give exactly one of y (a waveform) and S (a spectrogram), got "
                         f"y={'None' if y is None else 'an array'} and S={'None' if S is None else 'an array'}")
    if S is None:
        S = power_spectrum(stft(y, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                                window=window, center=center, pad_mode=pad_mode), power=power)
    else:
        S = _real_array("S", S, (2, 3), kinds="fiu", what="spectrogram (bins, frames)")
        if n_fft // 2 + 1 != S.shape[-2]:
            n_fft = 2 * (S.shape[-2] - 1)
    basis = mel_filter_bank(sr, n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return np.einsum("mf,...ft->...mt", basis, S, optimize=True)


def power_to_db(S, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    r"""Power to decibels: :math:`10 \log_{10} \max(S, a) - 10 \log_{10} \max(\text{ref}, a)`.

    ``ref`` is a positive number or a function of ``S`` (``np.max`` gives 0 dB at the peak);
    ``amin`` (:math:`a`) keeps the logarithm of silence finite (-100 dB for 1e-10). With ``top_db``
    the result is clipped below at ``max - top_db``. ``S`` must be real and non-negative: pass
    ``np.abs(D) ** 2`` of a complex STFT (and use 20 log10 for magnitudes, or square them first).
    """
    S = _real_array("S", S, (1, 2, 3), kinds="fiu", what="power spectrogram")
    if np.any(S < 0):
        raise ValueError(f"S must be a non-negative power, got a minimum of {S.min()}")
    amin = _real_number("amin", amin, minimum=0.0, strict=True)
    if callable(ref):
        ref_value = _real_number("ref(S)", ref(S), minimum=0.0)
    else:
        ref_value = _real_number("ref", ref, minimum=0.0, strict=True)
    log_spec = 10.0 * np.log10(np.maximum(amin, S)) - 10.0 * np.log10(max(amin, ref_value))
    if top_db is not None:
        top_db = _real_number("top_db", top_db, minimum=0.0)
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def log_mel_spectrogram(y=None, sr: float = 22050, S=None, ref=1.0, amin: float = 1e-10,
                        top_db: float | None = 80.0, **kwargs) -> np.ndarray:
    """``power_to_db(melspectrogram(y, sr, S, **kwargs), ref, amin, top_db)``: log-mel features in dB."""
    return power_to_db(melspectrogram(y=y, sr=sr, S=S, **kwargs), ref=ref, amin=amin, top_db=top_db)


def dct_matrix(n: int, dct_type: int = 2, norm: str | None = "ortho") -> np.ndarray:
    r"""The ``(n, n)`` matrix :math:`D` of a DCT of type 2 or 3, so that :math:`y = D x`.

    DCT-II with ``norm="ortho"``:

    .. math::

        y[k] = \sqrt{\tfrac{2}{N}}\; c_k \sum_{j=0}^{N-1} x[j] \cos\frac{\pi k (2j + 1)}{2N},
        \qquad c_0 = \tfrac{1}{\sqrt 2},\; c_{k>0} = 1,

    an orthogonal matrix (:math:`D D^\top = I`), so it preserves energy. ``norm=None`` is SciPy's
    unnormalised :math:`y[k] = 2\sum_j x[j]\cos(\dots)`. The orthonormal DCT-III is the transpose
    (the inverse) of the orthonormal DCT-II; unnormalised, :math:`y[k] = x[0] + 2\sum_{j\ge1} x[j]
    \cos\frac{\pi j (2k+1)}{2N}`, as in ``scipy.fft.dct(type=3)``.
    """
    n = _positive_int("n", n)
    if dct_type not in (2, 3) or isinstance(dct_type, bool):
        raise ValueError(f"dct_type must be 2 or 3, got {dct_type!r}")
    if norm not in ("ortho", None, "backward"):
        raise ValueError(f"norm must be 'ortho', 'backward' or None, got {norm!r}")
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    dct2 = 2.0 * np.cos(np.pi * k * (2 * j + 1) / (2 * n))                    # unnormalised DCT-II
    if norm == "ortho":
        scale = np.full(n, np.sqrt(1.0 / (2 * n)))
        scale[0] = np.sqrt(1.0 / (4 * n))
        dct2 = dct2 * scale[:, None]
        return dct2 if dct_type == 2 else dct2.T
    if dct_type == 2:
        return dct2
    dct3 = dct2.T.copy()                                                     # 2 cos(pi j (2k+1) / 2N)
    dct3[:, 0] = 1.0
    return dct3


def _apply_dct(x, dct_type: int, axis: int, norm) -> np.ndarray:
    arr = _real_array("x", x, (1, 2, 3), kinds="fiu", what="array")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis must be an int in [{-arr.ndim}, {arr.ndim}) for a {arr.ndim}-D x, got {axis!r}")
    matrix = dct_matrix(arr.shape[axis], dct_type=dct_type, norm=norm)
    return np.moveaxis(np.tensordot(matrix, arr, axes=([1], [axis])), 0, axis)


def dct_ii(x, axis: int = -1, norm: str | None = "ortho") -> np.ndarray:
    """DCT-II of ``x`` along ``axis`` (a matrix product with :func:`dct_matrix`; see there for the formula)."""
    return _apply_dct(x, 2, axis, norm)


def mfcc(y=None, sr: float = 22050, S=None, n_mfcc: int = 20, dct_type: int = 2,
         norm: str | None = "ortho", lifter: float = 0, mel_norm="slaney", **kwargs) -> np.ndarray:
    r"""Mel-frequency cepstral coefficients ``(..., n_mfcc, n_frames)``.

    .. math:: c[q, m] = \sum_{i} D[q, i]\; L[i, m], \qquad q < \text{n\_mfcc},

    where :math:`L` is the log-mel spectrogram in dB (``S`` if given, else
    ``power_to_db(melspectrogram(y, sr, norm=mel_norm, **kwargs))`` with its defaults
    ``ref=1.0, top_db=80``) and :math:`D` the DCT of :func:`dct_matrix` along the mel axis. The DCT
    decorrelates neighbouring bands; the first coefficients describe the smooth spectral envelope
    (timbre, the vocal tract), the later ones fine detail. With ``lifter = L > 0`` coefficient
    :math:`q` is multiplied by :math:`1 + \tfrac{L}{2}\sin(\pi (q+1) / L)`, as in librosa.
    """
    if S is None:
        S = log_mel_spectrogram(y=y, sr=sr, norm=mel_norm, **kwargs)
    else:
        if y is not None:
            raise ValueError("give exactly one of y (a waveform) and S (a log-mel spectrogram), got both")
        S = _real_array("S", S, (2, 3), kinds="fiu", what="log-mel spectrogram (n_mels, frames)")
    n_mfcc = _positive_int("n_mfcc", n_mfcc)
    if n_mfcc > S.shape[-2]:
        raise ValueError(f"n_mfcc must be <= n_mels = {S.shape[-2]}, got {n_mfcc}")
    lifter = _real_number("lifter", lifter, minimum=0.0)
    coefficients = _apply_dct(S, dct_type, -2, norm)[..., :n_mfcc, :]
    if lifter > 0:
        weights = 1.0 + (lifter / 2.0) * np.sin(np.pi * np.arange(1, n_mfcc + 1) / lifter)
        coefficients = coefficients * weights[:, None]
    return coefficients
