"""Features: Kaldi-compatible log-mel filterbank in torch (batched), global CMVN and SpecAugment.

Scale: :class:`Fbank` takes waveforms in [-1, 1] (what ``ceasr.audio.load`` returns) and computes the
filterbank as Kaldi does on int16-scaled samples, i.e. on ``wave * 32768``. Its output therefore equals
``kaldi-native-fbank`` (and ``compute-fbank-feats``) fed the same audio as int16 values, so statistics and
models from Kaldi-style recipes carry over. (Fed [-1, 1] floats, Kaldi's log energies would be
``2 * ln(32768) ≈ 20.79`` lower wherever the energy floor is not reached.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ceasr.config import FeatureConfig
from ceasr.errors import ConfigError

INT16_SCALE = 32768.0
_EPS = torch.finfo(torch.float32).eps  # Kaldi's floor on mel energies before the log


def _symmetric_cos(n: int) -> Tensor:
    """cos(2 pi i / (n - 1)) for i in [0, n): the symmetric-window phase Kaldi uses."""
    a = 2 * math.pi / max(n - 1, 1)
    return torch.cos(a * torch.arange(n, dtype=torch.float64))


WINDOWS = {
    "povey": lambda n: (0.5 - 0.5 * _symmetric_cos(n)).pow(0.85),
    "hanning": lambda n: 0.5 - 0.5 * _symmetric_cos(n),  # Kaldi's symmetric Hann
    "hann": lambda n: torch.hann_window(n, periodic=True, dtype=torch.float64),  # knf's "hann"
    "hamming": lambda n: 0.54 - 0.46 * _symmetric_cos(n),
    "rectangular": lambda n: torch.ones(n, dtype=torch.float64),
}


def mel_scale(freq: Tensor | float) -> Tensor:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * torch.log1p(torch.as_tensor(freq, dtype=torch.float64) / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> Tensor:
    """Triangular mel filters as Kaldi builds them: (n_fft // 2 + 1, n_mels), float64.

    Filters are triangles in the mel domain, equally spaced between ``mel(low_freq)`` and
    ``mel(high_freq)``; FFT bin ``i`` sits at ``i * sample_rate / n_fft``. The Nyquist bin (last row)
    gets no weight, as in Kaldi.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0:
        high_freq = nyquist + high_freq
    if not 0 <= low_freq < high_freq <= nyquist:
        raise ConfigError(f"features: need 0 <= low_freq < high_freq <= {nyquist:g}, "
                          f"got low_freq={low_freq:g}, high_freq={high_freq:g}")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (n_mels + 1)
    edges = mel_low + delta * torch.arange(n_mels + 2, dtype=torch.float64)  # (n_mels + 2,)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]  # (n_mels,) each
    mel = mel_scale(torch.arange(n_fft // 2, dtype=torch.float64) * (sample_rate / n_fft))[:, None]  # (K, 1)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    weights = torch.where(mel <= center, up, down)
    weights = torch.where((mel > left) & (mel < right), weights, torch.zeros((), dtype=torch.float64))
    return torch.cat([weights, torch.zeros(1, n_mels, dtype=torch.float64)])  # (K + 1, n_mels)


def fft_size(cfg: FeatureConfig) -> int:
    """The FFT length of :class:`Fbank`: the frame length in samples rounded up to a power of two."""
    return 1 << (int(cfg.sample_rate * cfg.frame_length_ms * 0.001) - 1).bit_length()


class Fbank(nn.Module):
    """Kaldi-compatible log-mel filterbank, batched, on any device, free of numpy.

    Per frame, as Kaldi: extract (``snip_edges`` or reflected edges), dither (only if ``cfg.dither > 0``
    and the module is in training mode; ``dither`` is in int16 units, Kaldi's 1.0 convention), remove the
    DC offset, preemphasize (``x[i] -= p * x[i-1]``, ``x[0] -= p * x[0]``), window, zero-pad to a power
    of two, power spectrum, mel filters, ``log(max(energy, float32 eps))``. See the module docstring for
    the int16 scale.

    Frames go through in chunks of about ``chunk_rows`` (batch x time) so the intermediate spectra stay in
    cache: on CPU that is ~3x faster than one pass over the whole batch. Set ``chunk_rows = 0`` for one pass
    (before ``torch.export``, which then takes dynamic batch and length, or on a CPU shared with other busy
    processes: many short multi-threaded ops wait on each other when a thread is descheduled).
    """

    chunk_rows = 512

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        if cfg.window not in WINDOWS:
            raise ConfigError(f"features.window: unknown {cfg.window!r}; known: {', '.join(WINDOWS)}")
        self.cfg = cfg
        self.frame_length = int(cfg.sample_rate * cfg.frame_length_ms * 0.001)
        self.frame_shift = int(cfg.sample_rate * cfg.frame_shift_ms * 0.001)
        if self.frame_length < 2 or self.frame_shift < 1:
            raise ConfigError(f"features: frame length {self.frame_length} / shift {self.frame_shift} too short")
        self.n_fft = fft_size(cfg)
        # Zero-padding the window to n_fft pads the frame in the same multiply.
        window = F.pad(WINDOWS[cfg.window](self.frame_length), (0, self.n_fft - self.frame_length))
        mel = kaldi_mel_banks(cfg.n_mels, self.n_fft, cfg.sample_rate, cfg.low_freq, cfg.high_freq)
        # The filters act on interleaved (re^2, im^2) pairs, so power needs no separate sum; the int16
        # scale (2^30 in power, exact in float) is folded in. Both buffers follow from the config: not saved.
        self.register_buffer("window", window.float(), persistent=False)  # (n_fft,)
        self.register_buffer("mel_banks", (mel.repeat_interleave(2, dim=0) * INT16_SCALE**2).float(),
                             persistent=False)  # (2 * (n_fft // 2 + 1), n_mels)

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames Kaldi makes from ``num_samples`` samples (an int, or an int64 tensor elementwise)."""
        length, shift = self.frame_length, self.frame_shift
        if not self.cfg.snip_edges:
            return (num_samples + shift // 2) // shift
        if isinstance(num_samples, Tensor):
            return torch.where(num_samples >= length, 1 + (num_samples - length) // shift, 0)
        return 1 + (num_samples - length) // shift if num_samples >= length else 0

    def forward(self, wave: Tensor, wave_lens: Tensor, generator: torch.Generator | None = None):
        """``wave`` (B, S) float in [-1, 1], ``wave_lens`` (B,) int64 -> (feats (B, T, n_mels), feat_lens (B,)).

        ``T = num_frames(S)``; frames at or beyond an item's ``feat_lens`` are zero. ``generator`` drives
        the dither (the global RNG when None).
        """
        if wave.dim() != 2:
            raise ValueError(f"Fbank expects wave (B, S), got shape {tuple(wave.shape)}")
        wave_lens = wave_lens.long()
        feat_lens = self.num_frames(wave_lens)
        frames = self._frames(wave.float(), wave_lens)  # (B, T, L)
        if frames.shape[1] == 0:  # shorter than one frame (MKL's FFT rejects empty batches)
            return wave.new_zeros(wave.shape[0], 0, self.cfg.n_mels), feat_lens
        if self.cfg.dither > 0 and self.training:
            where = generator.device if generator is not None else frames.device
            noise = torch.randn(frames.shape, generator=generator, device=where).to(frames.device)
            frames = frames + noise * (self.cfg.dither / INT16_SCALE)
        if self.chunk_rows > 0:
            step = max(1, self.chunk_rows // wave.shape[0])  # frames per chunk
            feats = torch.cat([self._log_mel(chunk) for chunk in frames.split(step, dim=1)], dim=1)
        else:
            feats = self._log_mel(frames)
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < feat_lens[:, None]  # (B, T)
        return feats * valid[..., None], feat_lens

    def _log_mel(self, frames: Tensor) -> Tensor:
        """Raw frames (B, t, L) -> log-mel energies (B, t, n_mels)."""
        if self.cfg.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        p, pad = self.cfg.preemphasis, self.n_fft - self.frame_length
        first = frames[..., :1] * (1.0 - p)
        rest = torch.sub(frames[..., 1:], frames[..., :-1], alpha=p)
        padded = torch.cat([first, rest, frames.new_zeros(frames.shape[:-1] + (pad,))], dim=-1)  # (B, t, n_fft)
        spec = torch.fft.rfft(padded * self.window)  # (B, t, n_fft // 2 + 1) complex
        power_parts = torch.view_as_real(spec).flatten(-2).square()  # (B, t, 2 * (n_fft // 2 + 1))
        return torch.matmul(power_parts, self.mel_banks).clamp_min(_EPS).log()

    def _frames(self, wave: Tensor, wave_lens: Tensor) -> Tensor:
        """Overlapping frames (B, T, frame_length), T = num_frames(S)."""
        length, shift = self.frame_length, self.frame_shift
        if self.cfg.snip_edges:
            if wave.shape[1] < length:  # no complete frame anywhere: keep unfold's shape valid
                return wave.new_zeros(wave.shape[0], 0, length)
            return wave.unfold(1, length, shift)
        # Reflected edges depend on each item's own length, so index per item: reflection about both
        # ends is periodic with period 2n (Kaldi's while-loop, closed form).
        n_frames = int(self.num_frames(wave.shape[1]))
        starts = torch.arange(n_frames, device=wave.device) * shift + shift // 2 - length // 2  # (T,)
        idx = starts[:, None] + torch.arange(length, device=wave.device)  # (T, L)
        n = wave_lens.clamp_min(1)[:, None, None]  # (B, 1, 1)
        idx = torch.remainder(idx[None], 2 * n)  # (B, T, L)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        return torch.gather(wave, 1, idx.reshape(wave.shape[0], -1)).reshape(wave.shape[0], n_frames, length)


UTTERANCE_NORMS = ("none", "level", "mean")


def utterance_offset(x: Tensor, x_lens: Tensor | None, mode: str) -> Tensor:
    """What ``mode`` subtracts from each utterance of ``x`` (B, T, F): (B, 1, 1) for ``level``, (B, 1, F) for
    ``mean``, a zero (1, 1, 1) for ``none``. Means are over the valid frames (all frames without ``x_lens``).

    ``level``: the mean log-mel over frames and bins. A gain of g dB adds g·ln(10)/10 to every log-mel cell
    (with dither 0), so subtracting this makes a model exactly gain-invariant. ``mean``: the per-bin mean
    over frames (cepstral mean normalization in the log-mel domain), which also removes a fixed channel or
    spectral tilt.
    """
    if _check_mode(mode) == "none":
        return x.new_zeros(1, 1, 1)
    if x_lens is None:
        x_lens = torch.full((x.shape[0],), x.shape[1], device=x.device)
    valid = _valid_frames(x, x_lens).to(x.dtype)  # (B, T)
    per_bin = (x * valid[..., None]).sum(dim=1, keepdim=True) / x_lens.clamp_min(1)[:, None, None]  # (B, 1, F)
    return per_bin if mode == "mean" else per_bin.mean(dim=2, keepdim=True)


def _check_mode(mode: str) -> str:
    if mode not in UTTERANCE_NORMS:
        raise ConfigError(f"model.utterance_norm: unknown {mode!r}; known: {', '.join(UTTERANCE_NORMS)}")
    return mode


def _valid_frames(x: Tensor, x_lens: Tensor) -> Tensor:
    """(B, T) True where frame t of item b is within its length."""
    return torch.arange(x.shape[1], device=x.device)[None, :] < x_lens[:, None]


class GlobalCMVN(nn.Module):
    """Global mean and variance normalization: ``(x - offset - mean) * istd`` per feature bin.

    ``offset`` is :func:`utterance_offset` of ``utterance`` (``none``: 0). ``mean`` and ``istd`` are
    persistent buffers, so they travel with the model weights; they are statistics of training frames
    after the offset is removed (:meth:`CmvnStats.update` with the same ``utterance``).
    """

    def __init__(self, n_mels: int, utterance: str = "none"):
        super().__init__()
        self.utterance = _check_mode(utterance)
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("istd", torch.ones(n_mels))

    def shift(self, x: Tensor, x_lens: Tensor | None = None) -> Tensor:
        """The raw-feature value that normalizes to 0 in each cell: ``offset + mean``, broadcastable to x."""
        return utterance_offset(x, x_lens, self.utterance) + self.mean

    def forward(self, x: Tensor, x_lens: Tensor | None = None) -> Tensor:
        """``x`` (B, T, F) -> (B, T, F). With ``x_lens`` (B,), frames beyond each length stay zero."""
        y = (x - self.shift(x, x_lens)) * self.istd
        if x_lens is not None:
            y = y * _valid_frames(x, x_lens)[..., None]
        return y


class CmvnStats:
    """Accumulates per-bin frame statistics (in float64) for :class:`GlobalCMVN`."""

    def __init__(self, n_mels: int | None = None, std_floor: float = 1e-5, utterance: str = "none"):
        self.utterance = utterance
        self.count = 0
        self.sum = None if n_mels is None else torch.zeros(n_mels, dtype=torch.float64)
        self.sum_sq = None if n_mels is None else torch.zeros(n_mels, dtype=torch.float64)
        self.std_floor = std_floor

    def update(self, feats: Tensor) -> None:
        """Add the frames of one utterance, ``feats`` (T, F) (padding already removed)."""
        feats = torch.as_tensor(feats).detach().to("cpu", torch.float64)
        if feats.dim() != 2:
            raise ValueError(f"CmvnStats.update expects (T, F), got shape {tuple(feats.shape)}")
        feats = feats - utterance_offset(feats[None], None, self.utterance)[0]
        if self.sum is None:
            self.sum = torch.zeros(feats.shape[1], dtype=torch.float64)
            self.sum_sq = torch.zeros(feats.shape[1], dtype=torch.float64)
        self.count += feats.shape[0]
        self.sum += feats.sum(dim=0)
        self.sum_sq += feats.square().sum(dim=0)

    @property
    def mean(self) -> Tensor:
        """Per-bin mean (F,), float64."""
        if not self.count:
            raise ValueError("CmvnStats: no frames accumulated")
        return self.sum / self.count

    @property
    def std(self) -> Tensor:
        """Per-bin population standard deviation (F,), floored at ``std_floor``, float64."""
        var = (self.sum_sq / self.count - self.mean.square()).clamp_min(0.0)
        return var.sqrt().clamp_min(self.std_floor)

    def to_module(self) -> GlobalCMVN:
        """A :class:`GlobalCMVN` holding these statistics."""
        mean = self.mean  # raises when nothing was accumulated
        cmvn = GlobalCMVN(mean.shape[0], self.utterance)
        cmvn.mean.copy_(mean.float())
        cmvn.istd.copy_((1.0 / self.std).float())
        return cmvn


def compute_cmvn(feature_iterable: Iterable[Tensor], utterance: str = "none") -> GlobalCMVN:
    """Global CMVN (after removing each utterance's ``utterance`` offset) from per-utterance features (T, F)."""
    stats = CmvnStats(utterance=utterance)
    for feats in feature_iterable:
        stats.update(feats)
    return stats.to_module()


class SpecAugment(nn.Module):
    """SpecAugment frequency and time masking (Park et al. 2019), without time warping.

    It masks whenever called (the caller applies it during training only). Masked cells are set to 0,
    which is the mean once features went through :class:`GlobalCMVN` (apply it after CMVN). Each item
    gets ``freq_masks`` bands of width uniform in [0, freq_width] and ``time_masks`` spans of width
    uniform in [0, min(max_time_width, time_width_ratio * length)]; both lie inside the item's valid
    frames, so padding is never touched.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2,
                 time_width_ratio: float = 0.05, max_time_width: int = 40):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width_ratio, self.max_time_width = time_masks, time_width_ratio, max_time_width

    def forward(self, x: Tensor, x_lens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x`` (B, T, F), ``x_lens`` (B,) -> masked copy of ``x``; deterministic for a given generator."""
        B, T, n_bins = x.shape
        lens = x_lens.detach().to("cpu", torch.int64)
        # Random draws happen on the CPU so a CPU generator gives the same masks on any device.
        max_fw = torch.full((B,), min(self.freq_width, n_bins), dtype=torch.int64)
        f_lo, f_hi = _spans(max_fw, torch.full((B,), n_bins), self.freq_masks, generator)  # (B, M) each
        max_tw = (lens.double() * self.time_width_ratio).floor().long().clamp(max=self.max_time_width)
        t_lo, t_hi = _spans(max_tw, lens, self.time_masks, generator)
        f = torch.arange(n_bins)[None, None, :]  # (1, 1, F)
        t = torch.arange(T)[None, None, :]  # (1, 1, T)
        f_mask = ((f >= f_lo[..., None]) & (f < f_hi[..., None])).any(dim=1)  # (B, F)
        t_mask = ((t >= t_lo[..., None]) & (t < t_hi[..., None])).any(dim=1)  # (B, T)
        valid = torch.arange(T)[None, :] < lens[:, None]  # (B, T)
        mask = (t_mask[:, :, None] | f_mask[:, None, :]) & valid[:, :, None]  # (B, T, F)
        return x.masked_fill(mask.to(x.device), 0.0)


def _spans(max_width: Tensor, size: Tensor, n: int, generator: torch.Generator | None):
    """``n`` random spans per row: width uniform in [0, max_width], start uniform in [0, size - width].

    ``max_width`` and ``size`` are (B,) int64; returns (lo, hi) each (B, n), with 0 <= lo <= hi <= size.
    """
    B = max_width.shape[0]
    u = torch.rand(B, n, 2, generator=generator, dtype=torch.float64)
    max_width = torch.minimum(max_width, size).clamp_min(0)[:, None]  # (B, 1)
    width = (u[..., 0] * (max_width + 1)).floor().long().clamp(max=max_width)  # (B, n)
    room = size[:, None].clamp_min(0) - width  # (B, n)
    lo = (u[..., 1] * (room + 1)).floor().long().clamp(max=room)
    return lo, lo + width
