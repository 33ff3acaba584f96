"""Shared test fixtures. Tests synthesize all their audio; nothing is downloaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

_SUBTYPES = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS", ".mp3": "MPEG_LAYER_III"}


def write_tone(
    path: str | Path,
    seconds: float = 0.5,
    sr: int = 16000,
    channels: int = 1,
    freq: float = 440.0,
    amp: float = 0.5,
) -> np.ndarray:
    """Write a sine of ``freq`` Hz straight through soundfile (not ceasr) and return it as (T,) or (T, C).

    Channel c is scaled by 1/(c+1) so a mono mix is a known multiple of the first channel. The format follows
    the suffix (.wav/.flac 16-bit, .ogg Vorbis, .mp3).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * sr)
    wave = amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    if channels > 1:
        wave = np.stack([wave / (c + 1) for c in range(channels)], axis=1)  # (T, C)
    sf.write(path, wave, sr, subtype=_SUBTYPES[path.suffix.lower()])
    return wave


@pytest.fixture
def tone():
    """``tone(path, seconds=0.5, sr=16000, channels=1, freq=440.0, amp=0.5)`` writes a sine; see write_tone."""
    return write_tone


def ceasr_cli(*args, check: bool = True, cwd=None, stdin: bytes | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m ceasr.cli ARGS`` (this interpreter, so the tree under test) in ``cwd`` with ``stdin``
    bytes; stdout and stderr come back as text. With ``check``, a non-zero exit fails the test with the
    command's stderr."""
    r = subprocess.run([sys.executable, "-m", "ceasr.cli", *map(str, args)], capture_output=True, cwd=cwd,
                       input=stdin, timeout=timeout)
    r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if check and r.returncode != 0:
        raise AssertionError(f"ceasr {args[0]} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r
