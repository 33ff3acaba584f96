"""Whisper's log-mel front end: 16 kHz, 25 ms Hann windows every 10 ms, 80 or 128 Slaney mel bins, 30 s windows
(or shorter ones, :func:`window_frames`).

The steps are OpenAI's: a centred STFT (reflect padding), power spectrum without the last frame, mel
filterbank (Slaney's mel scale, each triangle scaled to unit area as librosa's ``norm="slaney"``),
``log10`` floored at 1e-10, every value at most 8 below the utterance's maximum, then ``(x + 4) / 4``.
Long audio is cut into windows of 3000 frames (30 s; fewer with ``decode.audio_ctx``); how the last one is
padded is a choice (:data:`WINDOW_PADDING`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ceasr.errors import ConfigError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP  # 3000 mel frames in a window


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz * 3.0 / 200.0
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0), mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters from 0 Hz to Nyquist, each of unit area (Slaney norm)."""
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # centre frequency of each FFT bin
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))  # (n_mels + 2,)
    widths = np.diff(edges)
    rising = (bins[None, :] - edges[:-2, None]) / widths[:-1, None]  # (n_mels, bins)
    falling = (edges[2:, None] - bins[None, :]) / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


_FILTERS: dict[tuple[int, str], torch.Tensor] = {}


def _filters(n_mels: int, device: torch.device) -> torch.Tensor:
    key = (n_mels, str(device))
    if key not in _FILTERS:
        _FILTERS[key] = mel_filters(n_mels).to(device)
    return _FILTERS[key]


def log_mel(audio: torch.Tensor | np.ndarray, n_mels: int = 80, pad_seconds: float = 0.0) -> torch.Tensor:
    """Log-mel spectrogram (M, frames) of one mono 16 kHz waveform (N,), after ``pad_seconds`` of zeros.

    ``frames = (N + padding) // 160 + 1``; the floor at ``max - 8`` uses the maximum over all frames.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if isinstance(audio, np.ndarray) else audio)
    x = x.float()
    if pad_seconds > 0:
        x = torch.nn.functional.pad(x, (0, int(round(pad_seconds * SAMPLE_RATE))))
    window = torch.hann_window(N_FFT, device=x.device)  # periodic, as OpenAI's
    stft = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = stft[..., :-1].abs() ** 2  # (bins, frames): the last frame is dropped, as OpenAI does
    mel = _filters(n_mels, x.device) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def _windows_silence(audio, n_mels: int, frames: int) -> list[torch.Tensor]:
    # OpenAI: the spectrogram of the audio followed by a window of zeros, cut every ``frames`` frames.
    mel = log_mel(audio, n_mels, pad_seconds=frames * HOP / SAMPLE_RATE)  # (M, content + frames)
    content = len(audio) // HOP
    return [mel[:, s : s + frames] for s in range(0, max(content, 1), frames)]


def _windows_zeros(audio, n_mels: int, frames: int) -> list[torch.Tensor]:
    # faster-whisper: the spectrogram of the audio and one hop of zeros, each window padded with 0.
    mel = log_mel(audio, n_mels, pad_seconds=HOP / SAMPLE_RATE)
    content = len(audio) // HOP
    cut = [mel[:, s : min(s + frames, content)] for s in range(0, max(content, 1), frames)]
    return [torch.nn.functional.pad(w, (0, frames - w.size(1))) for w in cut]


# How the last window is filled up: "silence" is OpenAI's (the log-mel of zero samples, i.e. the floor),
# "zeros" is faster-whisper's (0 after normalization). Both are in use; short clips decode better with
# "zeros" in our measurements, and it makes transcripts comparable with faster-whisper's.
WINDOW_PADDING = {"zeros": _windows_zeros, "silence": _windows_silence}


def window_frames(audio_ctx: int, n_audio_ctx: int = 1500) -> int:
    """Mel frames per window for ``decode.audio_ctx`` (encoder frames; 0: the model's full ``n_audio_ctx``,
    30 s). A shorter window costs the encoder proportionally less (attention: quadratically) and suits short
    clips, once the decoder has been fine-tuned at that length (``ceasr finetune --audio-ctx``)."""
    if not 0 <= audio_ctx <= n_audio_ctx:
        raise ConfigError(f"audio_ctx={audio_ctx}: must be 0 (the full window) or 1..{n_audio_ctx} encoder frames")
    return 2 * (audio_ctx or n_audio_ctx)


def windows(audio: torch.Tensor | np.ndarray, n_mels: int = 80, padding: str = "zeros",
            frames: int = N_FRAMES) -> torch.Tensor:
    """(W, M, frames) log-mel windows covering the audio, 30 s each by default (see :func:`window_frames`),
    the last one padded (see WINDOW_PADDING). A clip no longer than one window gives one window.
    """
    if padding not in WINDOW_PADDING:
        raise ConfigError(f"decode.window_padding={padding!r}: unknown; known: {', '.join(WINDOW_PADDING)}")
    return torch.stack(WINDOW_PADDING[padding](audio, n_mels, frames))
