"""Streaming spotting: chunk boundaries, timing, one detection per command, bounded memory.

The spotter is driven by an oracle "model" whose tokens are tones (token k is a sine of 400 k Hz; silence is
blank), so where each command lies in the stream is known exactly, and its recognizer is exact.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from ceasr.commands import parse_command_set
from ceasr.commands.recognize import CommandResult
from ceasr.commands.stream import CommandSpotter, listen, pcm_chunks

SR, PERIOD = 16000, 0.04
SET = parse_command_set("go: go (left | right){direction}\nstop")
TOKENS = {"go left": (1, 2), "go right": (1, 3), "stop": (4,)}


class ToneOracle:
    """recognize: per 40 ms frame, blank if quiet, else the token whose tone is strongest; the collapsed
    tokens looked up in the set (accepted iff they spell a phrase)."""

    sample_rate = SR

    def __init__(self):
        self.calls = 0

    def frame_tokens(self, wave: np.ndarray) -> np.ndarray:
        n = int(PERIOD * SR)
        frames = wave[: len(wave) // n * n].reshape(-1, n)
        t = np.arange(n) / SR
        probes = np.stack([np.exp(-2j * np.pi * 400 * k * t) for k in range(1, 6)])  # (5, n)
        power = np.abs(frames @ probes.T)  # (F, 5)
        quiet = np.sqrt((frames ** 2).mean(axis=1)) < 0.05
        return np.where(quiet, 0, power.argmax(axis=1) + 1)

    def recognize(self, wave: np.ndarray) -> CommandResult:
        self.calls += 1
        toks = self.frame_tokens(wave)
        seq = tuple(int(k) for i, k in enumerate(toks) if k and (i == 0 or toks[i - 1] != k))
        text = next((p for p, s in TOKENS.items() if s == seq), None)
        command = SET.lookup(text) if text else SET.commands[0]
        return CommandResult(command, text is not None, 1.0 if text else 0.0, 0.0, 0.0, 0.0, "", len(toks))


def tone(k: int, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * 400 * k * t)).astype(np.float32)


def silence(seconds: float, rng) -> np.ndarray:
    return (0.001 * rng.standard_normal(round(seconds * SR))).astype(np.float32)


def make_stream(rng):
    """Silence, "go left" (two 0.24 s tones, 0.08 s apart), silence, "stop", a non-command tone, "go right"."""
    parts, truth, pos = [], [], 0.0
    plan = [("sil", 1.03), ("go left", None), ("sil", 1.37), ("stop", None), ("sil", 0.9),
            ("noise", None), ("sil", 1.1), ("go right", None), ("sil", 0.7)]
    for what, seconds in plan:
        if what == "sil":
            piece = silence(seconds, rng)
        elif what == "noise":
            piece = tone(5, 0.3)  # a sound that is no command
        else:
            toks = TOKENS[what]
            chunks = [tone(toks[0], 0.24)] + [np.concatenate([silence(0.08, rng), tone(k, 0.24)]) for k in toks[1:]]
            piece = np.concatenate(chunks)
            truth.append((what, pos, pos + len(piece) / SR))
        parts.append(piece)
        pos += len(piece) / SR
    return np.concatenate(parts), truth


def run(spotter, wave, chunk):
    found = []
    for i in range(0, len(wave), chunk):
        found += spotter.feed(wave[i : i + chunk])
    return found + spotter.flush()


@pytest.mark.parametrize("chunk", [997, 1600, 4099, 16000, 10**6])
def test_each_command_found_once_with_its_times_whatever_the_chunks(chunk):
    wave, truth = make_stream(np.random.default_rng(0))
    found = run(CommandSpotter(ToneOracle()), wave, chunk)
    assert [d.command.text for d in found] == [t[0] for t in truth]
    for d, (_, start, end) in zip(found, truth):
        assert abs(d.start - start) <= 0.01 + 1e-9 and abs(d.end - end) <= 0.01 + 1e-9  # 10 ms frames
        assert d.end <= d.emitted <= end + 0.15 + 0.05 + 0.01 + 1e-9  # min_pause + hop + a frame
    reference = run(CommandSpotter(ToneOracle()), wave, 1600)
    assert [(d.command, d.start, d.end, d.emitted) for d in found] == \
           [(d.command, d.start, d.end, d.emitted) for d in reference]


def test_command_cut_by_the_end_of_the_stream_is_found_by_flush():
    rng = np.random.default_rng(1)
    wave = np.concatenate([silence(0.5, rng), tone(4, 0.3)])
    spotter = CommandSpotter(ToneOracle())
    assert spotter.feed(wave) == []  # no pause after it yet
    found = spotter.flush()
    assert [d.command.text for d in found] == ["stop"]


def test_memory_stays_bounded_on_endless_sound():
    spotter = CommandSpotter(ToneOracle(), max_window=2.0)
    for _ in range(30):  # 30 s of one unbroken tone: never a command, never a pause
        assert spotter.feed(tone(5, 1.0)) == []
        assert len(spotter.buf) <= 2.0 * SR and spotter.pending_len < spotter.hop
    assert spotter.position == 30 * SR


def test_listen_reads_pcm_from_a_stream_and_prints_detections():
    wave, truth = make_stream(np.random.default_rng(2))
    pcm = io.BytesIO((np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes() + b"\x01")  # odd trailing byte
    out = io.StringIO()
    count = listen(CommandSpotter(ToneOracle()), pcm_chunks(pcm, 1234), out=out)
    lines = out.getvalue().splitlines()
    assert count == len(truth) == len(lines)
    assert [line.split("\t")[2] for line in lines] == [t[0] for t in truth]
