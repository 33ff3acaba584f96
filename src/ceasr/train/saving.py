"""What the training loop keeps between steps: its counters (:class:`Progress`), the run's checkpoints
(rank 0 writes, every rank resumes), and the exported model averaged over the last checkpoints.

The checkpoint files themselves (layout, atomic writes, pruning, averaging) are :mod:`ceasr.train.checkpoint`;
this module decides what goes into them and when a run is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ceasr.train import checkpoint as ckpt
from ceasr.train import distributed

if TYPE_CHECKING:
    from ceasr.train.loop import Run


@dataclass
class Progress:
    """The loop's counters; all of it goes into every checkpoint's ``extra``."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already consumed
    bad_total: int = 0
    bad_run: int = 0  # consecutive non-finite steps
    best_dev_loss: float | None = None
    best_dev_wer: float | None = None
    best_value: float | None = None  # of cfg.train.best_by
    seconds: float = 0.0  # wall-clock time spent training, over resumes (train.max_minutes)


def path_of(out_dir: Path, step: int) -> Path:
    return ckpt.checkpoint_dir(out_dir) / f"step-{step:08d}"


def save(run: Run, best: bool = False) -> None:
    """Checkpoint (rank 0), mark it best if so, prune to the last ``max(keep_last, average_last)``."""
    if not run.d.is_main:
        return
    state, tc = run.state, run.cfg.train
    extra = {k: v for k, v in vars(state).items() if k not in ("step", "epoch", "position")}
    sampler_state = {"epoch": state.epoch, "position": state.position}
    path = ckpt.save_checkpoint(
        run.out_dir, state.step, state.epoch, run.model, run.optimizer, run.scheduler, sampler_state, extra
    )
    if best:
        ckpt.mark_best(run.out_dir, path, tc.best_by, state.best_value)
    ckpt.prune(run.out_dir, max(tc.keep_last, tc.average_last))


def resume(path: Path, model, optimizer, scheduler) -> Progress:
    """Load the checkpoint at ``path`` into the model, optimizer and scheduler; its counters."""
    saved = ckpt.load_checkpoint(path, model, optimizer, scheduler)
    return Progress(
        step=saved["step"], epoch=saved["epoch"], position=saved["sampler"]["position"], **saved["extra"]
    )


def export(run: Run) -> Path:
    """Average the last checkpoints into the model and write ``out_dir/model`` (rank 0); all ranks wait."""
    from ceasr.modeldir import export_model

    model_dir = run.out_dir / "model"
    if run.d.is_main:
        paths = ckpt.list_checkpoints(run.out_dir)[-max(run.cfg.train.average_last, 1) :]
        run.model.load_state_dict(ckpt.average_checkpoints(paths))
        export_model(run.model, run.cfg, run.tokenizer, model_dir)
    distributed.barrier(run.d)
    return model_dir
