"""Rendering one planned utterance (a :class:`Job`) into a WAV file: the TTS call, trimming, padding, levels.

Runs in worker processes; everything random about a job (voice, prosody, padding, levels, noise seed) was
drawn when it was planned (:mod:`ceasr.data.synth`), so the bytes written depend only on the job. A mixed-
language job is rendered stretch by stretch, each by its own voice, and the stretches joined with its pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ceasr import audio
from ceasr.data.voices import ENGINES, Voice
from ceasr.errors import CeasrError

SILENCE_DB = -40.0  # frames this far below the loudest frame count as silence when trimming


@dataclass(frozen=True)
class Job:
    """One utterance to render: everything a worker needs, drawn in the parent so it is deterministic."""

    id: str
    split: str
    voice: Voice
    text: str
    prosody: dict
    pad: tuple[float, float]  # seconds of silence before and after the speech
    peak_db: float  # peak level in dBFS
    noise_db: float  # RMS of the white-noise floor in dBFS
    path: str
    lang: str = "en"  # the manifest's lang (the normalizer): "en", or "zh" for Mandarin and mixed text
    stretches: tuple[tuple[str, Voice], ...] = ()  # mixed text: (text, voice) per one-language stretch
    pauses: tuple[float, ...] = ()  # seconds of silence between consecutive stretches


def loud_span(wave: np.ndarray) -> tuple[int, int]:
    """(T,) 16 kHz wave → ``(start, stop)`` samples from the first to the end of the last 10 ms frame within
    ``SILENCE_DB`` of the loudest; raises ValueError if the wave is silent."""
    hop = audio.SAMPLE_RATE // 100  # 10 ms frames
    frames = len(wave) // hop
    rms = np.sqrt(np.mean(wave[: frames * hop].reshape(frames, hop).astype(np.float64) ** 2, axis=1))  # (F,)
    if frames == 0 or rms.max() < 1e-4:
        raise ValueError("the engine produced silence")
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (SILENCE_DB / 20))
    return int(loud[0] * hop), int((loud[-1] + 1) * hop)


def _render_stretches(job: Job) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Each stretch by its own voice (same prosody), trimmed to its speech, brought to one peak level and
    joined with ``job.pauses`` of silence: ((T,) 16 kHz wave, [(start, end) seconds of each stretch])."""
    parts, spans, at = [], [], 0
    for i, (text, voice) in enumerate(job.stretches):
        wave, rate = ENGINES[voice.engine].render(voice, text, job.prosody)
        if rate != audio.SAMPLE_RATE:
            wave = audio.resample(wave, rate, audio.SAMPLE_RATE)
        start, stop = loud_span(wave)
        wave = np.asarray(wave[start:stop], dtype=np.float32)
        gap = np.zeros(round(job.pauses[i - 1] * audio.SAMPLE_RATE) if i else 0, np.float32)
        parts += [gap, wave / np.abs(wave).max()]
        at += len(gap)
        spans.append((at / audio.SAMPLE_RATE, (at + len(wave)) / audio.SAMPLE_RATE))
        at += len(wave)
    return np.concatenate(parts), spans


def postprocess(
    wave: np.ndarray, rate: int, pad: tuple[float, float], peak_db: float, noise_db: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(T,) TTS output → (T',) float32 at 16 kHz: the speech with exactly ``pad`` seconds (before, after) of
    the engine's own silence around it (zeros where it had less), peak at ``peak_db`` dBFS, plus a white
    noise floor of RMS ``noise_db`` dBFS (none when None) drawn from ``seed``.
    Raises ValueError if the wave is silent."""
    if rate != audio.SAMPLE_RATE:
        wave = audio.resample(wave, rate, audio.SAMPLE_RATE)
    wave = np.asarray(wave, dtype=np.float32)
    start, stop = loud_span(wave)
    before, after = (round(p * audio.SAMPLE_RATE) for p in pad)
    start, stop = start - before, stop + after  # may reach outside the wave
    wave = np.concatenate([np.zeros(max(0, -start), np.float32), wave[max(0, start):stop],
                           np.zeros(max(0, stop - len(wave)), np.float32)])
    wave = wave * (10 ** (peak_db / 20) / np.abs(wave).max())
    if noise_db is not None:
        wave = wave + 10 ** (noise_db / 20) * np.random.default_rng(seed).standard_normal(len(wave))
    return wave.astype(np.float32)


def render(job: Job) -> tuple[str, float | None, str | None, list[tuple[float, float]]]:
    """Synthesize and write one job; returns ``(id, seconds, None, spans)`` or ``(id, None, reason, [])``,
    never raises for a failing engine so one bad call does not stop a run. ``spans`` holds the (start, end)
    seconds of each stretch of a mixed job in the written file, else of the whole speech."""
    try:
        if job.stretches:
            wave, spans = _render_stretches(job)
            rate = audio.SAMPLE_RATE
        else:
            wave, rate = ENGINES[job.voice.engine].render(job.voice, job.text, job.prosody)
            spans = None
        seed = int.from_bytes(job.id.encode()[-8:].rjust(8, b"\0"), "little")  # per utterance, stable
        wave = postprocess(wave, rate, job.pad, job.peak_db, job.noise_db, seed)
        audio.save(job.path, wave, audio.SAMPLE_RATE)
    except (RuntimeError, ValueError, CeasrError) as e:
        return job.id, None, f"{job.id} ({job.voice.id}, {job.text!r}): {e}", []
    seconds = len(wave) / audio.SAMPLE_RATE
    spans = [(job.pad[0], seconds - job.pad[1])] if spans is None else [(a + job.pad[0], b + job.pad[0])
                                                                         for a, b in spans]
    return job.id, seconds, None, [(round(a, 3), round(b, 3)) for a, b in spans]
