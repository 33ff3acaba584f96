"""Augmentation of log-mel features inside the training step: whispering, vocal tract length warping, band
limiting, reverberation, noise, gain.

Waveform augmentation (:mod:`ceasr.data.augment`) is exact but needs each item's audio and a new filterbank
pass, in DataLoader workers that take cores from training on a small CPU. The same effects, exactly or in
expectation, act on the cached log-mel energies ``x = log E`` of a padded batch at the cost of a few
elementwise ops and one small matrix product:

- **gain** of g dB scales every energy by ``10**(g/10)``: ``x + g ln(10) / 10``, floored at the filterbank's
  log floor. Exact for a wave scaled without clipping.
- **additive noise**: energies of uncorrelated signals add in expectation, so the mixture is
  ``logaddexp(x, n + log a)`` (lhotse mixes precomputed features the same way). ``n`` is the log-mel of
  unit-RMS white, pink or brown noise computed once per :class:`FeatAugment`, or babble: the summed energies
  of other utterances of the batch. ``a`` sets the SNR measured on the energies with the filterbank's
  preemphasis undone (each bin divided by the preemphasis power gain averaged over its filter),
  ``mean_t sum_f E_speech / h_f`` over ``mean_t sum_f E_noise / h_f``: within ~1 dB of the waveform SNR of
  :func:`ceasr.data.augment.mix_at_snr` (and of ``ceasr evaluate --snr``) for white and pink noise. On the
  preemphasized energies themselves white noise at 10 dB waveform SNR would measure about -2 dB.
- **reverberation** in the energy domain: each bin's energies convolved along time with the energy envelope
  of :func:`ceasr.data.augment.synthetic_rir` (a direct path of 1, then a tail whose energy falls 60 dB in
  RT60 and sums to ``10**(-drr/10)``), frame by frame, then rescaled to the input's mean energy as
  :func:`~ceasr.data.augment.reverberate` does; the direct path stays in place, so labels do too.
- **vocal tract length perturbation** (VTLP, Jaitly & Hinton 2013): the spectrum stretched along frequency
  by ``alpha`` (``f -> alpha f`` up to a boundary, then linear to the top of the filterbank, Kaldi's VTLN
  warp), i.e. each mel bin resampled at the source frequency of its centre, linearly between neighbouring
  bins' log energies. Formants move as if the vocal tract were ``1/alpha`` as long: new timbres, which a
  corpus with few natural speakers lacks.
- **band limiting**: audio sampled at 8 kHz (a telephone line, a narrowband TTS voice) and resampled to
  16 kHz has nothing above ~4 kHz. A low-pass at ``c`` Hz passes the fraction ``p_m`` of mel bin ``m``'s
  filter weight that lies below ``c`` and attenuates the rest by ``s`` dB: ``x + log(p_m + 10**(-s/10))``
  (exact for a spectrum flat within each filter and an ideal filter).

- **whispering**: a whisper is the same vocal tract excited by breath noise instead of the voice's pulses.
  Noise of the pulses' power has a flat spectrum at their mean level, so the whispered energy in a bin is the
  voiced energy averaged over a harmonic spacing: each frame's energies are averaged along frequency over
  :data:`WHISPER_SMOOTH_HZ` either side (triangular weights; the harmonics go, the formants stay), tilted down
  below :data:`WHISPER_KNEE_HZ` (breath has little energy where the voice's first formant is strongest;
  espeak-ng's whisper variants weaken F1 the same way), and multiplied by a noise source's frame-to-frame
  fluctuation: white noise's mel energies over their mean per bin (unit mean), raised to a power drawn from
  [0, 1] (espeak-ng's breath is far smoother than a real one; a smaller power is a source averaged over longer
  stretches) and renormalized to unit mean. Cells at the log floor (digital silence) stay there.

- **tempo** (:meth:`FeatAugment.tempo`, before the rest, since it changes lengths): the item played ``r``
  times as fast without a change of pitch, its frames resampled along time (linear interpolation between
  neighbouring frames) to ``round(n / r)``: new speaking rates, what the time axis of Kaldi's 3-way speed
  perturbation gives, at the cost of one interpolation per item (the pitch and formant side is VTLP's).

Order per item: whisper (the source), warp (the voice), band limit (the channel), reverberation (the room),
noise, gain (the microphone). Padding frames stay 0. Each item's draws come from the caller's
``torch.Generator``, so a step's augmentation is fixed by its seed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from ceasr.config import FeatAugmentConfig, FeatureConfig
from ceasr.data.augment import NOISE_COLORS, colored_noise, split_kinds
from ceasr.errors import ConfigError
from ceasr.features import _EPS, Fbank, fft_size, kaldi_mel_banks, mel_scale

LOG_FLOOR = math.log(_EPS)
NOISE_SECONDS = 10.0  # of each colour in the bank; items longer than that loop it
WARP_BOUNDARY = 0.85  # the linear warp bends at this fraction of the filterbank's top frequency
PAD_MULTIPLE = 16  # frames: the batch length after a tempo change is rounded up to a multiple of this
WHISPER_SMOOTH_HZ = 150.0  # the whisper's smoothing: energies averaged over this many Hz either side
WHISPER_KNEE_HZ = 1500.0  # the whisper's tilt: so many dB per octave below this frequency


def top_freq(cfg: FeatureConfig) -> float:
    """The filterbank's top frequency in Hz (``high_freq <= 0`` counts down from Nyquist, Kaldi's convention)."""
    return cfg.high_freq if cfg.high_freq > 0 else 0.5 * cfg.sample_rate + cfg.high_freq


def mel_centers(cfg: FeatureConfig) -> Tensor:
    """Centre frequencies (Hz) of the filterbank's mel bins, (n_mels,) float64."""
    lo, hi = mel_scale(cfg.low_freq), mel_scale(top_freq(cfg))
    mels = lo + (hi - lo) / (cfg.n_mels + 1) * torch.arange(1, cfg.n_mels + 1, dtype=torch.float64)
    return 700.0 * torch.expm1(mels / 1127.0)


def warp_matrix(centers: Tensor, alpha: float, top: float) -> Tensor:
    """(F, F) matrix ``W`` with ``warped = x @ W.T``: output bin ``k`` reads the log energy at the source
    frequency ``s`` whose warp ``f(s)`` is bin ``k``'s centre. ``f(s) = alpha s`` below the boundary
    ``b = WARP_BOUNDARY * top * min(1, 1 / alpha)``, then a line to ``f(top) = top``."""
    b = WARP_BOUNDARY * top * min(1.0, 1.0 / alpha)
    c = centers
    # Inverse of the piecewise-linear warp: below alpha*b, s = c/alpha; above, the line from (alpha b, b) to (top, top).
    source = torch.where(c <= alpha * b, c / alpha, b + (c - alpha * b) * (top - b) / (top - alpha * b))
    pos = torch.from_numpy(np.interp(source.numpy(), c.numpy(), np.arange(len(c), dtype=np.float64)))
    lo = pos.floor().long().clamp(0, len(c) - 1)
    hi = (lo + 1).clamp(max=len(c) - 1)
    frac = pos - lo
    w = torch.zeros(len(c), len(c), dtype=torch.float64)
    rows = torch.arange(len(c))
    w.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    w.index_put_((rows, hi), frac, accumulate=True)
    return w.float()


@functools.lru_cache(maxsize=8)
def mel_filters(cfg: FeatureConfig) -> tuple[Tensor, Tensor]:
    """The filterbank's mel filters over its FFT bins, (K, n_mels) float64, and each bin's frequency in Hz
    (K,). Cached per config: callers must not modify them."""
    n_fft = fft_size(cfg)
    weights = kaldi_mel_banks(cfg.n_mels, n_fft, cfg.sample_rate, cfg.low_freq, cfg.high_freq)
    return weights, torch.arange(weights.shape[0], dtype=torch.float64) * (cfg.sample_rate / n_fft)


def passband_fraction(cfg: FeatureConfig, cutoff_hz: float) -> Tensor:
    """(n_mels,) float64: the fraction of each mel filter's weight on FFT bins below ``cutoff_hz``."""
    weights, freqs = mel_filters(cfg)
    return weights[freqs < cutoff_hz].sum(0) / weights.sum(0).clamp_min(1e-12)


def deemphasis_weights(cfg: FeatureConfig) -> Tensor:
    """(n_mels,) float64: ``1 / h_m``, ``h_m`` the preemphasis power gain ``|1 - p e^{-jw}|^2`` averaged over
    mel filter ``m``'s weights. Energies times these weights add up to (about) the power of the wave before
    preemphasis."""
    weights, freqs = mel_filters(cfg)
    p, omega = cfg.preemphasis, 2 * math.pi * freqs / cfg.sample_rate
    gain = 1 + p * p - 2 * p * torch.cos(omega)  # (K,)
    return weights.sum(0) / (gain @ weights).clamp_min(1e-12)


def smoothing_kernel(centers: Tensor, width_hz: float = WHISPER_SMOOTH_HZ) -> Tensor:
    """(F, F) with rows summing to 1: row ``m`` weights bin ``m'`` by ``max(0, 1 - |c_m - c_m'| / width_hz)``
    (``c`` the bins' centre frequencies); ``E @ K.T`` averages each frame's energies along frequency."""
    w = (1.0 - (centers[:, None] - centers[None, :]).abs() / width_hz).clamp_min(0.0)
    return (w / w.sum(1, keepdim=True)).float()


def whisper_tilt(centers: Tensor, knee_hz: float = WHISPER_KNEE_HZ) -> Tensor:
    """(F,) log-energy change per 1 dB/octave of whisper tilt: ``-log2(knee / f)`` octaves below the knee (0 above)
    times ``ln(10) / 10``."""
    octaves = torch.log2(knee_hz / centers.clamp_min(1.0)).clamp_min(0.0)
    return (-octaves * math.log(10) / 10).float()


def breath_fluctuation(noise: Tensor, power: float) -> Tensor:
    """(T, F) log of a noise source's energy fluctuation: ``power`` times the log-mel ``noise`` (T, F), minus
    the log of the mean energy that leaves per bin (so that its energies have mean 1 over the T frames)."""
    scaled = power * noise.double()
    return (scaled - torch.logsumexp(scaled, 0) + math.log(noise.shape[0])).to(noise.dtype)


def whisper(feats: Tensor, kernel: Tensor, tilt: Tensor, breath: Tensor) -> Tensor:
    """Log-mel (T, F) of the same speech whispered: the energies averaged along frequency by ``kernel``
    (:func:`smoothing_kernel`), plus ``tilt`` (F,) and ``breath`` (T, F) (:func:`breath_fluctuation`), floored
    where the filterbank floors; cells of ``feats`` at the floor stay there."""
    envelope = torch.log((feats.exp() @ kernel.T.to(feats)).clamp_min(_EPS))
    out = (envelope + tilt.to(feats) + breath.to(feats)).clamp_min(LOG_FLOOR)
    return torch.where(feats <= LOG_FLOOR, feats, out)


def band_limit(feats: Tensor, passed: Tensor, stop_db: float) -> Tensor:
    """Log-mel (T, F) of the wave low-passed: bin ``m`` keeps ``passed[m]`` of its energy, the rest falls by
    ``stop_db`` dB; floored where the filterbank floors."""
    gain = torch.log(passed + 10 ** (-stop_db / 10)).to(feats)
    return (feats + gain).clamp_min(LOG_FLOOR)


class FeatAugment:
    """Applies a :class:`~ceasr.config.FeatAugmentConfig` to raw (un-normalized) log-mel batches."""

    def __init__(self, cfg: FeatAugmentConfig, features: FeatureConfig, seed: int = 0, min_frames: int = 1):
        """``min_frames``: the shortest input the model takes; :meth:`tempo` never shortens an item below it."""
        kinds = split_kinds(cfg.noise_kinds)
        unknown = [k for k in kinds if k not in (*NOISE_COLORS, "babble")]
        if unknown or (cfg.noise_prob > 0 and not kinds):
            raise ConfigError(f"feat_augment.noise_kinds: unknown {', '.join(unknown) or '(none given)'}; "
                              f"known: {', '.join((*NOISE_COLORS, 'babble'))}")
        for name in ("warp", "rt60", "drr_db", "snr_db", "gain_db", "bandlimit_hz", "bandlimit_stop_db", "tempo",
                     "whisper_tilt_db"):
            low, high = getattr(cfg, name)
            if low > high:
                raise ConfigError(f"feat_augment.{name}: low {low} > high {high}")
        for name in ("warp", "rt60", "tempo"):
            if getattr(cfg, name)[0] <= 0:
                raise ConfigError(f"feat_augment.{name}: must be > 0, got {getattr(cfg, name)[0]}")
        self.cfg, self.kinds, self.features, self.min_frames = cfg, kinds, features, min_frames
        self.snr_weights = deemphasis_weights(features)
        self.centers = mel_centers(features)
        self.hop = features.frame_shift_ms / 1000
        self.top = top_freq(features)
        fbank = Fbank(features).eval()
        rng = np.random.default_rng(seed)
        n = int(NOISE_SECONDS * features.sample_rate)
        self.noise = {}  # colour -> (T, F) log-mel of unit-RMS noise
        colors = [k for k in kinds if k in NOISE_COLORS] + (["white"] if cfg.whisper_prob > 0 else [])
        for color in dict.fromkeys(colors):
            wave = torch.from_numpy(colored_noise(color, n, rng))[None]
            with torch.no_grad():
                self.noise[color] = fbank(wave, torch.tensor([n]))[0][0]
        if cfg.whisper_prob > 0:
            self.kernel = smoothing_kernel(self.centers)
            self.tilt = whisper_tilt(self.centers)

    def __call__(self, x: Tensor, lens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (B, T, F) raw log-mel, ``lens`` (B,) -> augmented copy; frames at or past ``lens`` stay 0."""
        cfg = self.cfg
        B, T, _ = x.shape
        lens = lens.detach().to("cpu", torch.int64)
        u = torch.rand(B, 13, generator=generator, dtype=torch.float64)  # fixed draws per item, in order
        # Drawn only when used, so that configs without whispering keep their random stream.
        v = torch.rand(B, 4, generator=generator, dtype=torch.float64) if cfg.whisper_prob > 0 else None
        out = x.clone()
        for b in range(B):
            n = int(lens[b])
            if n == 0:
                continue
            item = x[b, :n]
            if v is not None and v[b, 0] < cfg.whisper_prob:
                white = loop_frames(self.noise["white"], int(v[b, 2] * len(self.noise["white"])), n)
                tilt = _between(cfg.whisper_tilt_db, v[b, 1]) * self.tilt
                item = whisper(item, self.kernel, tilt, breath_fluctuation(white, float(v[b, 3])))
            if u[b, 0] < cfg.warp_prob:
                alpha = _between(cfg.warp, u[b, 1])
                item = item @ warp_matrix(self.centers, alpha, self.top).to(item)
            if u[b, 10] < cfg.bandlimit_prob:
                passed = passband_fraction(self.features, _between(cfg.bandlimit_hz, u[b, 11]))
                item = band_limit(item, passed, _between(cfg.bandlimit_stop_db, u[b, 12]))
            if u[b, 7] < cfg.reverb_prob:
                item = reverberate(item, _between(cfg.rt60, u[b, 8]), _between(cfg.drr_db, u[b, 9]), self.hop)
            if u[b, 2] < cfg.noise_prob:
                kind = self.kinds[min(int(u[b, 3] * len(self.kinds)), len(self.kinds) - 1)]
                noise = self._noise(kind, x, lens, b, n, generator)
                if noise is not None:
                    item = add_noise(item, noise, _between(cfg.snr_db, u[b, 4]), self.snr_weights)
            if u[b, 5] < cfg.gain_prob:
                item = apply_gain(item, _between(cfg.gain_db, u[b, 6]))
            out[b, :n] = item
        return out

    def tempo(self, x: Tensor, lens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """With ``tempo_prob``, each item of ``x`` (B, T, F) played at a rate drawn from ``tempo``:
        :func:`stretch_time`; items never shrink below ``min_frames`` (or their own length, if shorter).
        Returns the new zero-padded batch and lengths; draws nothing when ``tempo_prob`` is 0."""
        if self.cfg.tempo_prob <= 0:
            return x, lens
        u = torch.rand(x.shape[0], 2, generator=generator, dtype=torch.float64)
        items, new_lens = [], []
        for b, n in enumerate(lens.tolist()):
            item = x[b, :n]
            if n > 0 and u[b, 0] < self.cfg.tempo_prob:
                target = max(round(n / _between(self.cfg.tempo, u[b, 1])), min(n, self.min_frames))
                item = stretch_time(item, target)
            items.append(item)
            new_lens.append(len(item))
        # Padded to a multiple of PAD_MULTIPLE frames: stretched batches come in a few lengths, so the kernels
        # chosen (and cached) for one batch shape serve the next ones.
        out = x.new_zeros(len(items), -(-max(new_lens) // PAD_MULTIPLE) * PAD_MULTIPLE, x.shape[2])
        for b, item in enumerate(items):
            out[b, : len(item)] = item
        return out, torch.tensor(new_lens, dtype=lens.dtype, device=lens.device)

    def _noise(self, kind: str, x: Tensor, lens: Tensor, b: int, n: int, generator) -> Tensor | None:
        """(n, F) log-mel noise for item ``b``: a random stretch of the colour's bank, or babble of 1-3 other
        items of the batch (None when the batch has no other item)."""
        if kind != "babble":
            bank = self.noise[kind].to(x)
            start = int(torch.randint(len(bank), (1,), generator=generator))
            return loop_frames(bank, start, n)
        others = [i for i in range(x.shape[0]) if i != b and int(lens[i]) > 0]
        if not others:
            return None
        talkers = torch.randperm(len(others), generator=generator)[: min(3, len(others))]
        energy = sum(loop_frames(x[others[i], : int(lens[others[i]])], 0, n).exp() for i in talkers.tolist())
        return energy.clamp_min(_EPS).log()


def _between(bounds: tuple[float, float], u: Tensor) -> float:
    low, high = bounds
    return float(low + (high - low) * u)


def stretch_time(feats: Tensor, n: int) -> Tensor:
    """``feats`` (T, F) resampled along time to ``n`` frames: output frame ``j`` is read at input position
    ``j (T - 1) / (n - 1)`` (first and last frames kept), linearly between the two nearest frames."""
    t = feats.shape[0]
    if n == t:
        return feats
    if t == 1 or n == 1:
        return feats[:1].expand(n, -1).clone()
    pos = torch.arange(n, dtype=torch.float64) * ((t - 1) / (n - 1))
    lo = pos.floor().long().clamp(max=t - 2)
    frac = (pos - lo).to(feats.dtype)[:, None]
    return feats[lo] * (1 - frac) + feats[lo + 1] * frac


def loop_frames(feats: Tensor, start: int, n: int) -> Tensor:
    """``n`` frames of ``feats`` from ``start``, wrapping around."""
    idx = (start + torch.arange(n)) % feats.shape[0]
    return feats[idx]


def add_noise(speech: Tensor, noise: Tensor, snr_db: float, weights: Tensor | None = None) -> Tensor:
    """Log-mel of speech + noise at ``snr_db`` measured on the filterbank energies (both (T, F), same T), each
    bin weighted by ``weights`` (F,) when given (:func:`deemphasis_weights`: the SNR of the waves)."""
    w = 1.0 if weights is None else weights.to(torch.float64)
    ps = (speech.double().exp() * w).sum(-1).mean()
    pn = (noise.double().exp() * w).sum(-1).mean()
    if ps <= 0 or pn <= 0:
        return speech
    log_scale = float(torch.log(ps / pn)) - snr_db * math.log(10) / 10
    return torch.logaddexp(speech, noise + log_scale)


def reverberate(feats: Tensor, rt60: float, drr_db: float, hop: float = 0.01) -> Tensor:
    """Log-mel (T, F) heard in a room: energies convolved along time with the frame-wise energy envelope of a
    direct path plus an exponential tail (60 dB down after ``rt60`` s, ``drr_db`` below the direct path in
    total), rescaled to the input's mean energy."""
    d = 10 ** (-6 * hop / rt60)  # energy decay per frame
    k = torch.arange(max(1, math.ceil(rt60 / hop)), dtype=torch.float64)
    kernel = 10 ** (-drr_db / 10) * (1 - d) * d**k  # the tail's energy falling in frame t + k
    kernel[0] += 1.0  # the direct path
    energy = feats.double().exp()  # (T, F)
    # Causal linear convolution along time by FFT (frame t hears frames <= t): zero-padded to a power of two
    # at least T + K - 1 long, so nothing wraps around. 10-20x faster than float64 conv1d on a CPU.
    n_time = energy.shape[0]
    n = 1 << (n_time + len(k) - 2).bit_length()
    spectrum = torch.fft.rfft(energy, n, dim=0) * torch.fft.rfft(kernel, n)[:, None]
    out = torch.fft.irfft(spectrum, n, dim=0)[:n_time]
    out = out * (energy.sum() / out.sum())
    return out.clamp_min(_EPS).log().to(feats.dtype)


def apply_gain(feats: Tensor, gain_db: float) -> Tensor:
    """Log-mel of the wave scaled by ``gain_db`` dB (no clipping): a shift of ``gain_db ln(10) / 10``,
    floored where the filterbank floors."""
    return (feats + gain_db * math.log(10) / 10).clamp_min(LOG_FLOOR)
