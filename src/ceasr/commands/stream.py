"""Streaming command spotting over a long recording or a live stream, in bounded memory.

Audio arrives in chunks of any size; it is processed every ``hop`` seconds of stream time, always at the
same sample positions whatever the chunking, so the detections do not depend on it. An energy endpointer
splits the buffered audio (at most ``max_window`` seconds) into sound and pauses, per 10 ms frame: a frame
is sound when it is ``rel_db`` above the noise floor (a low percentile of the last seconds' frames) and
above ``abs_db`` dBFS. The model only runs on stretches of sound, so silence costs almost nothing:

* the first stretch of sound whose following pause reaches ``min_pause`` is tried as a command: its audio
  (``pad`` seconds either side) is recognized with the command set and, if accepted, the command is printed
  and the buffer consumed up to its end;
* a stretch followed by a pause of ``max_pause`` is finished whether or not it was a command, and consumed;
* leading silence is dropped, and a stretch that outgrows ``max_window`` loses its oldest audio.

The detection latency after a command's last sound is about ``min_pause`` + half a hop + the compute time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ceasr.audio import frame_db
from ceasr.commands.grammar import Command

FRAME = 0.01  # seconds per endpointer frame


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
    """Finds commands in a stream. ``recognizer`` provides ``sample_rate`` and ``recognize(wave)`` (a
    :class:`~ceasr.commands.recognize.CommandResult`), as :class:`CommandRecognizer` does."""

    def __init__(self, recognizer, hop: float = 0.05, min_pause: float = 0.15, max_pause: float = 0.4,
                 pad: float = 0.15, max_window: float = 5.0, min_sound: float = 0.08, rel_db: float = 12.0,
                 abs_db: float = -50.0, floor_seconds: float = 5.0):
        self.rec = recognizer
        sr = recognizer.sample_rate
        self.n = round(FRAME * sr)  # samples per endpointer frame
        self.hop = max(1, round(hop / FRAME)) * self.n  # whole frames, so frames line up with the stream
        self.pad, self.max_window = round(pad * sr), round(max_window * sr)
        self.min_pause, self.max_pause = round(min_pause / FRAME), round(max_pause / FRAME)
        self.min_sound, self.rel_db, self.abs_db = round(min_sound / FRAME), rel_db, abs_db
        self.levels: deque[float] = deque(maxlen=round(floor_seconds / FRAME))  # recent frame levels
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # stream sample index of buf[0], always a whole number of frames
        self.pending: list[np.ndarray] = []  # arrived, not yet moved into buf (less than a hop)
        self.pending_len = 0
        self.tried: tuple[int, int] | None = None  # the last (start, end) stream frames recognized and rejected

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
        """End of stream: process what is left, with every stretch of sound finished."""
        return self._advance(self._take(self.pending_len), final=True)

    def _take(self, n: int) -> np.ndarray:
        data = np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32)
        rest = data[n:]
        self.pending, self.pending_len = ([rest] if len(rest) else []), len(rest)
        return data[:n]

    def _advance(self, samples: np.ndarray, final: bool) -> list[Detection]:
        self.levels.extend(frame_db(samples, self.n).tolist())
        self.buf = np.concatenate([self.buf, samples])
        floor = float(np.percentile(np.asarray(self.levels), 5)) if self.levels else -120.0
        threshold = max(self.abs_db, floor + self.rel_db)
        found = []
        while (step := self._step(threshold, final)) is not None:
            if isinstance(step, Detection):
                found.append(step)
        if len(self.buf) > self.max_window:  # one stretch of sound longer than any command: forget its start
            self._drop(len(self.buf) - self.max_window)
        return found

    def _drop(self, n: int) -> None:
        n = n // self.n * self.n
        self.buf, self.buf_start = self.buf[n:], self.buf_start + n

    def _step(self, threshold: float, final: bool):
        """One decision on the buffer: a Detection, True (something consumed, look again) or None (wait)."""
        sound = np.flatnonzero(frame_db(self.buf, self.n) >= threshold)
        frames = len(self.buf) // self.n
        if sound.size == 0:
            self._drop(max(0, len(self.buf) - self.pad))
            return None
        if sound[0] * self.n > 2 * self.pad:  # leading silence: keep only ``pad`` of it
            self._drop(sound[0] * self.n - self.pad)
            return True
        gaps = np.flatnonzero(np.diff(sound) > self.max_pause)
        last = sound[gaps[0]] if gaps.size else sound[-1]  # the first stretch's last frame of sound
        pause = (sound[gaps[0] + 1] if gaps.size else frames) - last - 1
        if pause < self.min_pause and not final:
            return None
        closed = pause >= self.max_pause or final or bool(gaps.size)
        span = (self.buf_start // self.n + sound[0], self.buf_start // self.n + last)
        detection = None
        if span != self.tried and np.count_nonzero(sound <= last) >= self.min_sound:
            detection = self._recognize(sound[0], last, span)
        if detection is None and not closed:
            return None
        self.tried = None
        self._drop((last + 1) * self.n)
        return detection or True

    def _recognize(self, first: int, last: int, span: tuple[int, int]) -> Detection | None:
        """Recognize frames first..last with ``pad`` of audio either side (as far as the buffer reaches)."""
        start, end = max(0, first * self.n - self.pad), min(len(self.buf), (last + 1) * self.n + self.pad)
        result = self.rec.recognize(self.buf[start:end])
        if not result.accepted:
            self.tried = span
            return None
        sr = self.rec.sample_rate
        t0, t1 = (self.buf_start + first * self.n) / sr, (self.buf_start + (last + 1) * self.n) / sr
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
