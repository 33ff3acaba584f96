"""Frozen-encoder outputs kept on disk, so fine-tuning runs, benchmarks and LR tests encode each utterance once.

On a CPU the 30 s window encoder pass (about 2 s per utterance for Whisper base on one thread) costs more
than several decoder epochs, and it is the same in every run that keeps the encoder frozen. An entry is
one utterance's encoder output (T, D) in float16, stored as ``.npy`` under a name that hashes what the output
depends on: the encoder's weights (so a fine-tuned model whose encoder was frozen shares the base model's
entries), the number of mel bins, the window length, and the audio (resolved path, offset, duration, file size and
modification time — a rewritten file misses). Entries are written atomically; a damaged one is recomputed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from ceasr.data.manifest import Utterance
from ceasr.io import atomic_write_bytes
from ceasr.whisper.audio import N_FRAMES


def encoder_digest(model, stop: int | None = None, frames: int = N_FRAMES) -> str:
    """A hash of the encoder's parameters and buffers (names, shapes, dtypes and values); with ``stop``, of
    what the hidden states after its first ``stop`` blocks depend on (the stem and those blocks), for caches
    of :meth:`AudioEncoder.lower` outputs; and of the window length ``frames`` (mel frames) when it is
    shorter than 30 s (so the 30 s entries kept their names when shorter windows came)."""
    h = hashlib.sha1()
    below = ("conv1.", "conv2.", "positional_embedding", *(f"blocks.{i}." for i in range(stop or 0)))
    for name, t in sorted(model.encoder.state_dict().items()):
        if stop is not None and not name.startswith(below):
            continue
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    h.update(f"n_mels={model.cfg.n_mels}".encode() + (b"" if stop is None else f"|stop={stop}".encode()))
    if frames != N_FRAMES:
        h.update(f"|frames={frames}".encode())
    return h.hexdigest()


class EncoderCache:
    """Encoder outputs of one encoder (``digest``, see :func:`encoder_digest`) under ``root``."""

    def __init__(self, root: str | Path, digest: str):
        self.root = Path(root)
        self.digest = digest

    def _path(self, utt: Utterance, tag: str = "") -> Path:
        audio = Path(utt.audio).resolve()
        st = audio.stat()
        key = f"{self.digest}|{audio}|{utt.offset}|{utt.duration}|{st.st_size}|{st.st_mtime_ns}"
        if tag:  # a version of the audio (e.g. "speed=0.9"); the plain audio keeps the names it always had
            key += f"|{tag}"
        name = hashlib.sha1(key.encode()).hexdigest()
        return self.root / self.digest[:16] / name[:2] / f"{name}.npy"

    def get(self, utt: Utterance, tag: str = "") -> torch.Tensor | None:
        """The stored output (T, D) float16 (of the version ``tag`` of the audio), or None when absent or
        unreadable."""
        path = self._path(utt, tag)
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            return None

    def put(self, utt: Utterance, enc: torch.Tensor, tag: str = "") -> None:
        buf = io.BytesIO()
        np.save(buf, enc.detach().cpu().half().numpy(), allow_pickle=False)
        atomic_write_bytes(self._path(utt, tag), buf.getvalue())
