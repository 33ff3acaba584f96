"""What a training run shows and records: a tqdm bar and TensorBoard scalars, on the main process only."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm


class Monitor:
    """Progress bar (loss, lr, utterances/s, ETA) and ``out_dir/tensorboard`` scalars; inert when disabled."""

    def __init__(self, out_dir: Path, enabled: bool, progress: bool, total_steps: int, initial_step: int):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))
        self.bar = tqdm(
            total=total_steps, initial=initial_step, desc="train", unit="step", disable=not progress,
            dynamic_ncols=True,
        )

    def step(self, step: int, stats: dict[str, float], log: bool) -> None:
        """After an optimizer step: advance the bar; with ``log``, write every stat as ``train/<name>``."""
        if not self.enabled:
            return
        self.bar.set_postfix(
            loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.2e}", utt_s=f"{stats['utt_per_sec']:.1f}",
            refresh=False,
        )
        self.bar.update(1)
        if log:
            for name, value in stats.items():
                self.writer.add_scalar(f"train/{name}", value, step)

    def scalars(self, prefix: str, values: dict[str, float | None], step: int) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def note(self, message: str) -> None:
        """One line on stderr that does not break the bar."""
        if self.enabled:
            tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
