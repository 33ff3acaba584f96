"""Training checkpoints: ``exp_dir/checkpoints/step-XXXXXXXX/`` with ``model.safetensors`` and ``state.pt``.

``state.pt`` holds all that exact resume needs beyond the weights: optimizer and scheduler states, the
sampler position, the python/numpy/torch RNG states, step, epoch and the loop's counters. A checkpoint is
written into a hidden temporary folder and renamed into place, so a crash never leaves a half-written one
visible. ``checkpoints/best.json`` names the best checkpoint so far; pruning never removes it.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from ceasr.errors import CeasrError
from ceasr.io import atomic_write_text

WEIGHTS, STATE, BEST = "model.safetensors", "state.pt", "best.json"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / "checkpoints"


def rng_state() -> dict:
    """Python, numpy (global) and torch RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    n = state["numpy"]
    key = n["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Cloned so tied (shared) tensors become separate entries, which safetensors requires.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(
    exp_dir: str | Path,
    step: int,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    sampler_state: dict,
    extra: dict | None = None,
) -> Path:
    """Write ``checkpoints/step-{step:08d}/`` atomically and return it. ``model`` is the unwrapped module.

    A checkpoint of the same step is replaced (e.g. the epoch-end one after a ``checkpoint_every`` one).
    """
    root = checkpoint_dir(exp_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        _write(tmp / WEIGHTS, safetensors_bytes(_weights(model)))
        state = {
            "step": step,
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "sampler": dict(sampler_state),
            "rng": rng_state(),
            "extra": dict(extra or {}),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        _write(tmp / STATE, buf.getvalue())
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _swap_into_place(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(exp_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest step first (temporary folders are hidden and never listed)."""
    root = checkpoint_dir(exp_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = list_checkpoints(exp_dir)
    return found[-1] if found else None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    restore_rng: bool = True,
) -> dict:
    """Load weights (strict) and, if given, optimizer and scheduler states; restore RNGs; return the state.

    The returned dict has ``step``, ``epoch``, ``sampler`` (for ``sampler.load_state_dict``) and ``extra``.
    """
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / STATE).is_file():
        raise CeasrError(f"{path}: not a checkpoint (needs {WEIGHTS} and {STATE})")
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return state


def mark_best(exp_dir: str | Path, path: str | Path, metric: str, value: float) -> None:
    """Record ``path`` as the best checkpoint by ``metric``; :func:`prune` keeps it."""
    record = {"checkpoint": Path(path).name, "metric": metric, "value": value}
    atomic_write_text(checkpoint_dir(exp_dir) / BEST, json.dumps(record) + "\n")


def best_checkpoint(exp_dir: str | Path) -> tuple[Path, dict] | None:
    """``(path, record)`` of the best checkpoint, or None when none is marked (or it is gone)."""
    best = checkpoint_dir(exp_dir) / BEST
    if not best.is_file():
        return None
    record = json.loads(best.read_text())
    path = checkpoint_dir(exp_dir) / record["checkpoint"]
    return (path, record) if path.is_dir() else None


def prune(exp_dir: str | Path, keep_last: int) -> list[Path]:
    """Remove all but the newest ``keep_last`` checkpoints, never the best; returns what was removed."""
    found = list_checkpoints(exp_dir)
    best = best_checkpoint(exp_dir)
    keep = set(found[-keep_last:] if keep_last > 0 else [])
    if best is not None:
        keep.add(best[0])
    removed = [p for p in found if p not in keep]
    for p in removed:
        shutil.rmtree(p)
    return removed


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """The mean of the checkpoints' weights; integer buffers (counters) are taken from the last one."""
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    return average_states([load_file(str(Path(p) / WEIGHTS)) for p in paths])


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of state dicts with the same names, in float64 then each tensor's dtype; integer buffers
    (counters) are taken from the last one."""
    out = {}
    for name, last in states[-1].items():
        if last.is_floating_point():
            total = sum(s[name].to(torch.float64) for s in states)
            out[name] = (total / len(states)).to(last.dtype)
        else:
            out[name] = last.clone()
    return out
