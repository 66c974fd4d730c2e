"""Synthesise the spoken half of AV-digits with espeak-ng, byte-for-byte from a seed.

    apt-get install espeak-ng        # 1.51 was used for the committed file
    python tools/make_avdigits_audio.py            # writes mmtutor/data/assets/avdigits_audio.npz
    python tools/make_avdigits_audio.py --check    # regenerates in memory, compares with the committed file

What it makes: the digits 0-9 spoken in English (``en``, words "zero" ... "nine", US and British base voices)
and Mandarin (``cmn``, characters 零 一 二 三 四 五 六 七 八 九), by 12 espeak-ng voice variants (m1-m7, f1-f5),
4 takes per (language, variant, digit) whose speed (words per minute) and pitch (0-99) are drawn from one
seeded generator: 2 x 12 x 10 x 4 = 960 clips. Each clip is resampled from espeak's 22,050 Hz to 8,000 Hz
(polyphase filter), trimmed of leading and trailing silence, peak-normalised and stored as 8-bit mu-law
(ITU-T G.711 style, mu = 255) in a zip archive that ``numpy.load`` reads as an ``.npz``. Every byte of the
archive is a function of the seed and the espeak-ng version: fixed zip timestamps, a fixed member order.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mmtutor.data.avdigits import (AUDIO_ASSET, LANGUAGES, SAMPLE_RATE, VOICES, WORDS,  # noqa: E402
                                   mu_law_encode)

# espeak-ng's plain "cmn" voice turns a character into numbered pinyin ("si4") and then reads that text
# with *English* rules: 四 comes out as "si" followed by the English word "four" (`espeak-ng -v cmn -x 四`
# prints (en)sɪ5fˈɔːɔː(cmn)). The "cmn-latn-pinyin" voice reads the same pinyin as Mandarin, with tones.
SEED = 2026
TAKES = 4
SPEED_RANGE = (120, 200)   # words per minute, espeak-ng's -s
PITCH_RANGE = (25, 75)     # 0-99, espeak-ng's -p
BASE_VOICES = {"en": ("en-us", "en-gb"), "cmn": ("cmn-latn-pinyin",)}
ESPEAK_RATE = 22050
MAX_SECONDS = 1.0


def speak(text: str, voice: str, speed: int, pitch: int, workdir: Path) -> np.ndarray:
    """Run espeak-ng once and return its 22,050 Hz int16 waveform."""
    out = workdir / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
                   check=True, capture_output=True)
    rate, wave = wavfile.read(out)
    assert rate == ESPEAK_RATE, rate
    return wave


def condition(wave: np.ndarray) -> np.ndarray:
    """22,050 Hz int16 -> 8,000 Hz float in [-1, 1], silence trimmed (10 ms margin), peak at 0.9."""
    x = resample_poly(wave.astype(np.float64) / 32768.0, SAMPLE_RATE, ESPEAK_RATE)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    margin = SAMPLE_RATE // 100
    x = x[max(loud[0] - margin, 0): loud[-1] + margin + 1][: int(MAX_SECONDS * SAMPLE_RATE)]
    return 0.9 * x / np.abs(x).max()


def synthesise() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    clips, meta = [], {"digit": [], "language": [], "voice": [], "speed": [], "pitch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for language in LANGUAGES:
            for v, variant in enumerate(VOICES):
                base = BASE_VOICES[language][v % len(BASE_VOICES[language])]
                for digit, word in enumerate(WORDS[language]):
                    for _ in range(TAKES):
                        speed = int(rng.integers(*SPEED_RANGE, endpoint=True))
                        pitch = int(rng.integers(*PITCH_RANGE, endpoint=True))
                        wave = condition(speak(word, f"{base}+{variant}", speed, pitch, Path(tmp)))
                        clips.append(mu_law_encode(wave))
                        for key, value in zip(meta, (digit, language, variant, speed, pitch)):
                            meta[key].append(value)
    lengths = np.array([len(c) for c in clips])
    return {
        "audio": np.concatenate(clips).astype(np.uint8),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "digit": np.array(meta["digit"], dtype=np.int8),
        "language": np.array(meta["language"], dtype="<U3"),
        "voice": np.array(meta["voice"], dtype="<U2"),
        "speed": np.array(meta["speed"], dtype=np.int16),
        "pitch": np.array(meta["pitch"], dtype=np.int16),
        "sample_rate": np.array(SAMPLE_RATE, dtype=np.int32),
        "seed": np.array(SEED, dtype=np.int64),
    }


def archive(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (zip of .npy members) with fixed timestamps, so the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, arrays[name], allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_LZMA
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    data = archive(synthesise())
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        committed = AUDIO_ASSET.read_bytes()
        same = committed == data
        print(f"regenerated {len(data):,} bytes sha256 {digest}; committed {len(committed):,} bytes: "
              f"{'identical' if same else 'DIFFERENT'}")
        raise SystemExit(0 if same else 1)
    AUDIO_ASSET.write_bytes(data)
    print(f"wrote {AUDIO_ASSET} ({len(data):,} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
