"""Waveform augmentation: noise at an SNR, reverberation, gain with clipping, speed perturbation.

Everything works on mono float waves (T,) at 16 kHz in [-1, 1] (what ``ceasr.audio.load`` returns) and draws
its randomness from a ``numpy.random.Generator`` the caller passes, so one seed gives one result anywhere
(a DataLoader worker, the main process, another run). :class:`Augmenter` chains them as an
:class:`~ceasr.config.AugmentConfig` says; SpecAugment (on features) lives in :mod:`ceasr.features`.

Noise and room impulse responses may come from a user's folders (any audio files, searched recursively,
e.g. the MUSAN ``noise/`` tree); each file is checked once up front and a bad one is reported and skipped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr

from ceasr.audio import info as audio_info
from ceasr.audio import load as load_audio
from ceasr.config import AugmentConfig
from ceasr.errors import AudioError, ConfigError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".sph", ".aiff", ".aif")

# Power spectral density of each noise colour falls as 1 / f**exponent.
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def colored_noise(color: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise (num_samples,) float32 with unit RMS and PSD ∝ 1/f**k (white 0, pink 1, brown 2).

    Shaped in the frequency domain: white noise's spectrum times f**(-k/2); the DC bin is zeroed so the
    result has zero mean (brown noise would otherwise be dominated by a random offset).
    """
    if color not in NOISE_COLORS:
        raise ConfigError(f"unknown noise colour {color!r}; known: {', '.join(NOISE_COLORS)}")
    if num_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    white = rng.standard_normal(num_samples)
    k = NOISE_COLORS[color]
    if k:
        spec = np.fft.rfft(white)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        spec *= f ** (-k / 2)
        spec[0] = 0.0
        white = np.fft.irfft(spec, n=num_samples)
    rms = math.sqrt(float(np.mean(white**2)))
    return (white / max(rms, 1e-12)).astype(np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0


def fit_length(noise: np.ndarray, num_samples: int) -> np.ndarray:
    """``noise`` looped (or cropped) to ``num_samples`` samples."""
    noise = np.asarray(noise, dtype=np.float32)
    if len(noise) == 0:
        raise ValueError("fit_length: empty noise")
    return np.resize(noise, num_samples)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + a * noise`` with ``a`` such that 10 log10(P_speech / P_scaled_noise) = ``snr_db``.

    Powers are means over the whole utterance; the noise is looped or cropped to the speech's length. A
    silent speech or noise leaves the speech as is. No clipping (apply_gain clips).
    """
    speech = np.asarray(speech, dtype=np.float32)
    noise = fit_length(noise, len(speech))
    ps, pn = _power(speech), _power(noise)
    if ps == 0.0 or pn == 0.0:
        return speech.copy()
    scale = math.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return (speech + scale * noise).astype(np.float32)


def apply_gain(wave: np.ndarray, gain_db: float, clip: bool = True) -> np.ndarray:
    """``wave * 10**(gain_db / 20)``, clipped to [-1, 1] (as a recording saturates) unless ``clip`` is False."""
    out = np.asarray(wave, dtype=np.float32) * np.float32(10 ** (gain_db / 20))
    return np.clip(out, -1.0, 1.0) if clip else out


def synthetic_rir(rt60: float, rng: np.random.Generator, sr: int = 16000, drr_db: float = 0.0) -> np.ndarray:
    """A room impulse response: a unit direct path at index 0, then exponentially decaying Gaussian noise.

    The tail's energy falls 60 dB in ``rt60`` seconds (amplitude envelope exp(-6.91 t / rt60)); its total
    energy is ``drr_db`` below the direct path's. Length: ``rt60`` seconds (the tail is then 60 dB down).
    """
    if not rt60 > 0:
        raise ConfigError(f"rt60 must be positive, got {rt60}")
    n = max(2, int(round(rt60 * sr)))
    t = np.arange(1, n) / sr
    tail = rng.standard_normal(n - 1) * np.exp(-3 * math.log(10) * t / rt60)
    tail *= math.sqrt(10 ** (-drr_db / 10) / max(_power(tail) * len(tail), 1e-20))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve ``wave`` with ``rir`` keeping the direct path in place, at the input's RMS level.

    The direct path is the RIR's largest-magnitude tap ``d``; the output is the full convolution from
    ``d`` on, cut to ``len(wave)``, so sample t of the result is the sound arriving directly from sample t
    (labels and frame alignments stay valid). The result is rescaled to the input's RMS.
    """
    wave = np.asarray(wave, dtype=np.float32)
    rir = np.asarray(rir, dtype=np.float64)
    if len(wave) == 0 or len(rir) == 0:
        return wave.copy()
    d = int(np.argmax(np.abs(rir)))
    size = _fast_len(len(wave) + len(rir) - 1)
    full = np.fft.irfft(np.fft.rfft(wave, size) * np.fft.rfft(rir, size), size)[d : d + len(wave)]
    p_in, p_out = _power(wave), _power(full)
    if p_out > 0:
        full *= math.sqrt(p_in / p_out)
    return full.astype(np.float32)


def _fast_len(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n (FFT sizes pocketfft handles fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 << max(0, (-(-n // p35) - 1).bit_length())  # p35 * smallest power of two reaching n
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def speed_perturb(wave: np.ndarray, factor: float, sr: int = 16000) -> np.ndarray:
    """Play ``wave`` ``factor`` times faster (pitch and tempo together, as Kaldi's speed perturbation).

    Resampled with soxr from ``sr * factor`` to ``sr``: the duration becomes ``len(wave) / factor``.
    """
    if not factor > 0:
        raise ConfigError(f"speed factor must be positive, got {factor}")
    wave = np.asarray(wave, dtype=np.float32)
    if factor == 1.0:
        return wave.copy()
    return soxr.resample(wave, sr * factor, sr, quality="MQ").astype(np.float32, copy=False)


def babble(sources: list[np.ndarray], num_samples: int, rng: np.random.Generator, talkers: int) -> np.ndarray:
    """``talkers`` waves drawn from ``sources``, each at a random start (looped), at unit RMS, summed.

    Returns (num_samples,) float32 normalized to unit RMS; zeros if no source has any energy.
    """
    out = np.zeros(num_samples, dtype=np.float64)
    for _ in range(talkers):
        src = np.asarray(sources[int(rng.integers(len(sources)))], dtype=np.float32)
        p = _power(src)
        if p == 0.0:
            continue
        rolled = np.roll(fit_length(src, max(num_samples, len(src))), -int(rng.integers(len(src))))
        out += fit_length(rolled, num_samples) / math.sqrt(p)
    p = _power(out)
    return (out / math.sqrt(p) if p > 0 else out).astype(np.float32)


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file under ``folder`` (recursively, sorted); a missing folder or none found raises."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def _readable(files: list[Path], what: str) -> list[Path]:
    """The files whose header reads; each bad one is reported on stderr. None readable raises."""
    good = []
    for path in files:
        try:
            audio_info(path)
            good.append(path)
        except AudioError as e:
            print(f"skipped {what}: {e}", file=sys.stderr)
    if not good:
        raise ConfigError(f"{files[0].parent}: no readable {what} file")
    return good


class NoiseFolder:
    """Noise recordings from a folder, read on demand: a random segment as long as asked (looped if short).

    A file that turns out unreadable when used is reported once and never drawn again.
    """

    def __init__(self, folder: str | Path, sr: int = 16000):
        self.sr = sr
        self.files = _readable(audio_files(folder), "noise")
        self.durations = [audio_info(p).duration for p in self.files]

    def sample(self, num_samples: int, rng: np.random.Generator) -> np.ndarray | None:
        """A noise segment (num_samples,), or None when every file has turned out unreadable."""
        while self.files:
            k = int(rng.integers(len(self.files)))
            seconds = num_samples / self.sr
            offset = float(rng.uniform(0.0, max(0.0, self.durations[k] - seconds)))
            try:
                noise = load_audio(self.files[k], offset=offset, duration=seconds, sample_rate=self.sr)
                return fit_length(noise, num_samples)
            except AudioError as e:
                print(f"skipped noise: {e}", file=sys.stderr)
                del self.files[k], self.durations[k]
        return None


def load_rirs(folder: str | Path, sr: int = 16000) -> list[np.ndarray]:
    """Every readable impulse response under ``folder`` (each bad file reported and skipped)."""
    rirs = []
    for path in _readable(audio_files(folder), "rir"):
        try:
            rirs.append(load_audio(path, sample_rate=sr))
        except AudioError as e:
            print(f"skipped rir: {e}", file=sys.stderr)
    if not rirs:
        raise ConfigError(f"{folder}: no readable rir file")
    return rirs


def split_kinds(value: str) -> list[str]:
    """``"white, pink,,babble"`` -> ``["white", "pink", "babble"]`` (a config's comma-separated kinds)."""
    return [v.strip() for v in value.split(",") if v.strip()]


class Augmenter:
    """Applies an :class:`AugmentConfig` to one wave: speed, reverberation, noise, gain, in that order.

    Each step happens with its probability and draws its parameters uniformly from its range, all from the
    ``rng`` given to :meth:`__call__`. ``babble_sources`` (other utterances' waves) feed the ``babble`` noise.
    """

    def __init__(self, cfg: AugmentConfig, babble_sources: list[np.ndarray] | None = None, sr: int = 16000):
        self.cfg, self.sr = cfg, sr
        self.sources = babble_sources or []
        self.kinds = split_kinds(cfg.noise_kinds)
        known = [*NOISE_COLORS, "babble", "folder"]
        for kind in self.kinds:
            if kind not in known:
                raise ConfigError(f"augment.noise_kinds: unknown {kind!r}; known: {', '.join(known)}")
        if "babble" in self.kinds and not self.sources:
            self.kinds.remove("babble")
        self.noise_folder = NoiseFolder(cfg.noise_dir, sr) if cfg.noise_dir else None
        if self.noise_folder is not None and "folder" not in self.kinds:
            self.kinds.append("folder")
        if self.noise_folder is None and "folder" in self.kinds:
            raise ConfigError("augment.noise_kinds: 'folder' needs augment.noise_dir")
        self.rirs = load_rirs(cfg.rir_dir, sr) if cfg.rir_dir else None

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """``(augmented wave, whether anything was done)``; draws the same numbers whatever the outcome."""
        c = self.cfg
        # Every draw happens unconditionally so one augmentation's outcome does not shift the others'.
        u = rng.random(4)
        speed, rt60, snr, gain = (rng.uniform(*r) for r in (c.speed, c.rt60, c.snr_db, c.gain_db))
        sub = np.random.default_rng(rng.integers(2**63))  # for draws whose count depends on the wave
        steps: list[Callable[[np.ndarray], np.ndarray]] = []
        if u[0] < c.speed_prob:
            steps.append(lambda w: speed_perturb(w, speed, self.sr))
        if u[1] < c.reverb_prob:
            steps.append(lambda w: reverberate(w, self._rir(rt60, sub)))
        if u[2] < c.noise_prob and self.kinds:
            steps.append(lambda w: self._add_noise(w, snr, sub))
        if u[3] < c.gain_prob:
            steps.append(lambda w: apply_gain(w, gain))
        for step in steps:
            wave = step(wave)
        return np.asarray(wave, dtype=np.float32), bool(steps)

    def _rir(self, rt60: float, rng: np.random.Generator) -> np.ndarray:
        if self.rirs:
            return self.rirs[int(rng.integers(len(self.rirs)))]
        return synthetic_rir(rt60, rng, self.sr, drr_db=float(rng.uniform(*self.cfg.drr_db)))

    def _add_noise(self, wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        noise = make_noise(kind, len(wave), rng, self.sources, self.noise_folder, self.cfg.babble_talkers)
        return wave if noise is None else mix_at_snr(wave, noise, snr_db)


def make_noise(kind: str, num_samples: int, rng: np.random.Generator, sources: list[np.ndarray] = (),
               folder: NoiseFolder | None = None, talkers: tuple[int, int] = (3, 7)) -> np.ndarray | None:
    """Noise of ``kind`` (a colour, ``babble`` from ``sources``, or ``folder``); None if none can be had."""
    if kind in NOISE_COLORS:
        return colored_noise(kind, num_samples, rng)
    if kind == "babble":
        return babble(list(sources), num_samples, rng, int(rng.integers(talkers[0], talkers[1] + 1)))
    return folder.sample(num_samples, rng) if folder is not None else None
