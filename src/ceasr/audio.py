"""Audio in and out: one backend, soundfile (libsndfile) to read and write, soxr to resample.

Every file the toolkit reads goes through :func:`load` or :func:`info`; anything wrong with the file (missing,
not audio, broken header, no samples, absurd rate, NaN samples, offset past the end) raises
:class:`~ceasr.errors.AudioError` naming the file and the reason, never a bare library error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ceasr.errors import AudioError
from ceasr.io import atomic_path

SAMPLE_RATE = 16000
MIN_RATE, MAX_RATE = 1000, 384000  # outside this a header is corrupt, not just unusual

# soxr's HQ filter reaches ~128 samples of the lower rate each side; a segment is resampled with this much
# context (in output samples at the lower rate) so it equals the same slice of a whole-file load.
_CONTEXT = 256

_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: native rate, length in frames, channel count, duration in seconds."""

    sample_rate: int
    frames: int
    channels: int
    duration: float


def _libsndfile_reason(e: Exception) -> str:
    # LibsndfileError's str() repeats the path; its error_string is the bare reason.
    reason = str(getattr(e, "error_string", None) or e).strip().rstrip(".")
    if "does not exist" in reason:
        # The file was checked to exist; libsndfile says this when, e.g., an MP3 holds no decodable frame.
        return "no decodable audio data"
    return reason


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` for reading and check its header; raises AudioError for every kind of bad file."""
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(path, f"not a readable audio file ({_libsndfile_reason(e)})") from None
    try:
        if not MIN_RATE <= f.samplerate <= MAX_RATE:
            raise AudioError(path, f"absurd sample rate {f.samplerate} Hz (expected {MIN_RATE}..{MAX_RATE})")
        if f.channels < 1:
            raise AudioError(path, "no audio channels")
        if f.frames <= 0:
            raise AudioError(path, "no audio samples")
    except AudioError:
        f.close()
        raise
    return f


def info(path: str | Path) -> AudioInfo:
    """Read only the header of ``path``. MP3 frame counts are libsndfile's estimate."""
    path = Path(path)
    with _open(path) as f:
        return AudioInfo(f.samplerate, f.frames, f.channels, f.frames / f.samplerate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the first axis with soxr (HQ); ``wave`` is (T,) or (T, C), float32 out."""
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """(T, C) → (T,) by the mean over channels; a 1-D wave is returned as is."""
    return wave if wave.ndim == 1 else wave.mean(axis=1)


def _read_frames(f: sf.SoundFile, path: Path, start: int, stop: int | None) -> np.ndarray:
    """Native frames ``[start, stop)`` (stop None: to the end) as (T, C) float32."""
    try:
        if f.format == "MP3":
            # libsndfile 1.2.2 mis-decodes some MP3 streams after a seek or on a second read call
            # (mpg123 "part2_3_length too large"); one read from the start is exact, so decode and drop.
            data = f.read(-1 if stop is None else stop, dtype="float32", always_2d=True)
            return data[start:]
        f.seek(start)
        frames = -1 if stop is None else stop - start
        return f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"cannot decode audio ({_libsndfile_reason(e)})") from None


def load(
    path: str | Path,
    offset: float = 0.0,
    duration: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Read ``path`` as mono float32 (T,) in [-1, 1] at ``sample_rate``.

    ``offset``/``duration`` (seconds) select a segment; only that part (plus a few ms of resampling context)
    is read, and the result equals ``load(path)[round(offset*sr):][:round(duration*sr)]``. A duration running
    past the end is cut at the end; an offset at or past the end raises :class:`AudioError`.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if offset < 0 or not math.isfinite(offset):
        raise AudioError(path, f"bad offset {offset!r} s")
    if duration is not None and (not duration > 0 or not math.isfinite(duration)):
        raise AudioError(path, f"bad duration {duration!r} s")
    with _open(path) as f:
        native = f.samplerate
        g = math.gcd(native, sample_rate)
        p, q = native // g, sample_rate // g  # p native frames ↔ q output samples, exactly
        first = round(offset * sample_rate)  # wanted output samples [first, first + count)
        count = None if duration is None else round(duration * sample_rate)
        if first * p >= f.frames * q:
            raise AudioError(path, f"offset {offset:.3f} s is beyond the end ({f.frames / native:.3f} s)")
        margin = 0 if p == q else math.ceil(_CONTEXT * sample_rate / min(native, sample_rate))
        block = max(0, first - margin) // q  # start on a whole block so output samples line up
        start = block * p
        stop = None if count is None else math.ceil((first + count + margin) * p / q) + 1
        if stop is not None and stop >= f.frames:
            stop = None
        data = _read_frames(f, path, start, stop)  # (T, C)
    if not np.isfinite(data).all():
        raise AudioError(path, "non-finite samples (NaN or inf)")
    wave = resample(to_mono(data), native, sample_rate)
    lo = first - block * q
    wave = wave[lo:] if count is None else wave[lo : lo + count]
    if wave.size == 0:
        raise AudioError(path, "no audio samples" if offset == 0 else f"offset {offset:.3f} s is beyond the end")
    return np.clip(wave, -1.0, 1.0)


def save(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``wave`` ((T,) or (T, C) float in [-1, 1]) atomically; the format follows the suffix.

    .wav and .flac are 16-bit PCM, .ogg is Vorbis, .mp3 is MPEG layer III. Samples are clipped to [-1, 1].
    """
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        kinds = ", ".join(_WRITE_FORMATS)
        raise AudioError(path, f"cannot write {path.suffix or 'suffix-less'!r} files (use {kinds})")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2) or wave.shape[0] == 0:
        raise AudioError(path, f"cannot write a wave of shape {wave.shape}; expected (T,) or (T, C)")
    if not np.isfinite(wave).all():
        raise AudioError(path, "cannot write non-finite samples (NaN or inf)")
    try:
        with atomic_path(path) as tmp:
            sf.write(tmp, np.clip(wave, -1.0, 1.0), sample_rate, format=fmt[0], subtype=fmt[1])
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"cannot write audio ({_libsndfile_reason(e)})") from None


def frame_db(wave: np.ndarray, n: int) -> np.ndarray:
    """(F,) level in dBFS of each whole frame of ``n`` samples."""
    frames = wave[: len(wave) // n * n].reshape(-1, n).astype(np.float64)
    return 10 * np.log10((frames ** 2).mean(axis=1) + 1e-12)


@functools.lru_cache(maxsize=8)
def _hann_and_band(win: int, sample_rate: int, low: float, high: float):
    """A float32 symmetric Hann window of ``win`` samples (np.hanning's, as a torch tensor) and the rfft bins
    [lo, hi) between ``low`` and ``high`` Hz: the same for every clip, so made once."""
    import torch

    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    lo, hi = int(np.searchsorted(freqs, low, "left")), int(np.searchsorted(freqs, high, "right"))
    return torch.hann_window(win, periodic=False), lo, hi


def level_spread_db(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, band: tuple[float, float] = (100.0, 4000.0),
                    percent: float = 5.0) -> float:
    """How far the loud moments of ``wave`` rise above its quiet ones, in dB: the ``100 - percent``-th minus
    the ``percent``-th percentile of the energy in ``band`` Hz per 25 ms Hann frame (10 ms hop), averaged
    over 3 frames; 0 when the wave is shorter than a frame.

    Speech comes and goes with its syllables; stationary noise, hum and silence do not. Measured on
    2026-12-01 (0.5-3 s clips; corpus test utterances with noise mixed in): white, pink and near-silent
    noise and 50/60 Hz hum span at most 2.5 dB, speech at 0 dB SNR at least 7.9 (white) and 9.1 (pink).
    The band leaves out the sub-100 Hz rumble whose slow swings make pink noise look modulated."""
    import torch  # float32 FFTs in torch: 2.7x faster than numpy's float64 ones, the same dB to 1e-4

    win, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
    if len(wave) < win:
        return 0.0
    window, lo, hi = _hann_and_band(win, sample_rate, *band)
    frames = torch.from_numpy(np.asarray(wave, np.float32)).unfold(0, win, hop)  # (F, win) views
    spec = torch.fft.rfft(frames * window)[:, lo:hi]  # the band's bins
    energy = torch.view_as_real(spec).square().sum(dim=(1, 2))  # (F,)
    if len(energy) >= 3:  # a 3-frame moving average
        energy = (energy[:-2] + energy[1:-1] + energy[2:]) / 3
    db = (10 * torch.log10(energy + 1e-20)).sort().values.tolist()
    return _percentile(db, 100.0 - percent) - _percentile(db, percent)


def _percentile(ascending: list[float], percent: float) -> float:
    """The ``percent``-th percentile of sorted values, interpolated linearly (numpy's default rule)."""
    pos = percent / 100 * (len(ascending) - 1)
    i = min(int(pos), len(ascending) - 2) if len(ascending) > 1 else 0
    return ascending[i] + (pos - i) * (ascending[min(i + 1, len(ascending) - 1)] - ascending[i])
