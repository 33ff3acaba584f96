"""Streaming command spotting over a long recording or a live stream, in bounded memory.

Audio arrives in chunks of any size; it is processed every ``hop`` seconds of stream time, always at the
same sample positions whatever the chunking, so the detections do not depend on it. At each hop the
buffered audio (at most ``max_window`` seconds) is encoded and its CTC greedy labels split into speech
(non-blank frames) and pauses (blank frames):

* the first stretch of speech whose following pause reaches ``min_pause`` is tried as a command: the audio
  around it (``pad`` seconds either side) is recognized with the command set and, if accepted, the command
  is printed and the buffer is consumed up to the end of that speech;
* a stretch followed by a pause of ``max_pause`` is finished whether or not it was a command, and consumed;
* leading silence is dropped, and a stretch that outgrows ``max_window`` loses its oldest audio.

The detection latency after a command's last sound is about ``min_pause`` + half a hop + the compute time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ceasr.commands.grammar import Command


@dataclass(frozen=True)
class Detection:
    """A command found in the stream: times in seconds from the stream's start."""

    command: Command
    start: float
    end: float
    confidence: float
    emitted: float  # stream time (end of the audio seen so far) when it was decided

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "phrase": self.command.text,
                "confidence": round(self.confidence, 4), "emitted": round(self.emitted, 3),
                **self.command.as_dict()}


class CommandSpotter:
    """Finds commands in a stream. ``recognizer`` provides ``sample_rate``, ``frame_period`` (seconds per
    encoder frame), ``frame_tokens(wave) -> (T',) int ids`` (0 = blank) and ``recognize(wave)`` (a
    :class:`~ceasr.commands.recognize.CommandResult`), as :class:`CommandRecognizer` does."""

    def __init__(self, recognizer, hop: float = 0.1, min_pause: float = 0.16, max_pause: float = 0.5,
                 pad: float = 0.25, max_window: float = 5.0):
        self.rec = recognizer
        sr = recognizer.sample_rate
        self.hop, self.pad, self.max_window = round(hop * sr), round(pad * sr), round(max_window * sr)
        self.min_pause = max(1, round(min_pause / recognizer.frame_period))  # in encoder frames
        self.max_pause = max(self.min_pause, round(max_pause / recognizer.frame_period))
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # stream sample index of buf[0]
        self.pending: list[np.ndarray] = []  # arrived, not yet moved into buf (less than a hop)
        self.pending_len = 0
        self.tried: tuple[int, int] | None = None  # the last (start, end) sample span recognized and rejected

    @property
    def position(self) -> int:
        """Stream samples processed so far."""
        return self.buf_start + len(self.buf)

    def feed(self, samples: np.ndarray) -> list[Detection]:
        """Add float32 samples in [-1, 1]; returns the commands decided within them."""
        self.pending.append(np.asarray(samples, dtype=np.float32))
        self.pending_len += len(samples)
        found = []
        while self.pending_len >= self.hop:
            found += self._advance(self._take(self.hop), final=False)
        return found

    def flush(self) -> list[Detection]:
        """End of stream: process what is left, with every stretch of speech finished."""
        return self._advance(self._take(self.pending_len), final=True)

    def _take(self, n: int) -> np.ndarray:
        data = np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32)
        rest = data[n:]
        self.pending, self.pending_len = ([rest] if len(rest) else []), len(rest)
        return data[:n]

    def _advance(self, samples: np.ndarray, final: bool) -> list[Detection]:
        self.buf = np.concatenate([self.buf, samples])
        found = []
        while (step := self._step(final)) is not None:
            if isinstance(step, Detection):
                found.append(step)
        if len(self.buf) > self.max_window:  # one stretch of speech longer than any command: forget its start
            self._drop(len(self.buf) - self.max_window)
        return found

    def _drop(self, n: int) -> None:
        self.buf, self.buf_start = self.buf[n:], self.buf_start + n

    def _step(self, final: bool):
        """One decision on the buffer: a Detection, True (something consumed, look again) or None (wait)."""
        if len(self.buf) < self.rec.sample_rate // 10:
            return None
        tokens = np.asarray(self.rec.frame_tokens(self.buf))  # (T',)
        speech, frames = np.flatnonzero(tokens != 0), len(tokens)
        period = self.rec.frame_period * self.rec.sample_rate  # samples per encoder frame
        if speech.size == 0:
            self._drop(max(0, len(self.buf) - self.pad))
            return None
        if speech[0] * period > 2 * self.pad:  # leading silence: keep only ``pad`` of it
            self._drop(int(speech[0] * period) - self.pad)
            return True
        gaps = np.flatnonzero(np.diff(speech) > self.max_pause)
        last = speech[gaps[0]] if gaps.size else speech[-1]  # the first stretch's last speech frame
        pause = (speech[gaps[0] + 1] if gaps.size else frames) - last - 1
        if pause < self.min_pause and not final:
            return None
        start, end = self._span(speech[0], last, period)
        closed = pause >= self.max_pause or final or bool(gaps.size)
        detection = None
        if self.tried != (self.buf_start + start, self.buf_start + end):
            detection = self._recognize(start, end, speech[0], last, period)
        if detection is None and not closed:
            return None
        self.tried = None
        self._drop(min(len(self.buf), int((last + 1) * period)))
        return detection or True

    def _span(self, first: int, last: int, period: float) -> tuple[int, int]:
        """The buffer samples handed to the recognizer for speech frames first..last: ``pad`` either side."""
        return max(0, int(first * period) - self.pad), min(len(self.buf), int((last + 2) * period) + self.pad)

    def _recognize(self, start: int, end: int, first: int, last: int, period: float) -> Detection | None:
        result = self.rec.recognize(self.buf[start:end])
        if not result.accepted:
            self.tried = (self.buf_start + start, self.buf_start + end)
            return None
        sr = self.rec.sample_rate
        t0 = (self.buf_start + first * period) / sr
        t1 = (self.buf_start + (last + 2) * period) / sr
        return Detection(result.command, t0, t1, result.confidence, self.position / sr)


def pcm_chunks(stream, chunk_samples: int) -> Iterator[np.ndarray]:
    """Read raw 16-bit little-endian mono PCM from a binary stream as float32 chunks of ``chunk_samples``."""
    carry = b""
    while True:
        data = stream.read(2 * chunk_samples)
        if not data:
            break
        data = carry + data
        usable = len(data) - len(data) % 2
        carry = data[usable:]
        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0


def listen(spotter: CommandSpotter, chunks, fmt: str = "text", out=None) -> int:
    """Feed ``chunks`` (float32 arrays) to ``spotter`` and print each detection as it is decided:
    ``start<TAB>end<TAB>phrase<TAB>confidence`` (seconds) or a JSON line. Returns the number found."""
    import json
    import sys

    out = out or sys.stdout
    count = 0

    def show(found: list[Detection]) -> None:
        for d in found:
            if fmt == "json":
                print(json.dumps(d.as_dict(), ensure_ascii=False), file=out, flush=True)
            else:
                print(f"{d.start:.2f}\t{d.end:.2f}\t{d.command.text}\t{d.confidence:.4f}", file=out, flush=True)

    for chunk in chunks:
        found = spotter.feed(chunk)
        show(found)
        count += len(found)
    found = spotter.flush()
    show(found)
    return count + len(found)


def file_chunks(path, chunk_samples: int, sample_rate: int) -> Iterator[np.ndarray]:
    """Chunks of an audio file (wav, flac, ...) read block by block, or of raw s16le PCM (any other suffix)."""
    from pathlib import Path

    import soundfile as sf

    from ceasr.errors import AudioError

    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    if path.suffix.lower() not in (".wav", ".flac", ".ogg", ".mp3"):
        with open(path, "rb") as f:
            yield from pcm_chunks(f, chunk_samples)
        return
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate != sample_rate:
                raise AudioError(path, f"{f.samplerate} Hz audio; listen needs {sample_rate} Hz")
            for block in f.blocks(chunk_samples, dtype="float32", always_2d=True):
                yield block.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"not a readable audio file ({e})") from None
