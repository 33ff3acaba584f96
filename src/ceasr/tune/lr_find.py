"""LR range test: train from the config's initial weights while the learning rate rises exponentially.

Step ``s`` of ``n`` (0-based) uses ``lr = lo * (hi / lo) ** (s / (n - 1))``. The run stops early when the loss
diverges: a non-finite loss, or the running (EMA) loss above ``DIVERGE_FACTOR`` times its minimum so far.
Nothing is saved into any experiment: the weights are thrown away, only the curve is kept.

The suggestion (:func:`suggest_lr`): smooth the curve with a centered moving average over ``n / 10 + 1``
points (no lag, unlike an EMA), find its minimum, take the point of steepest descent (most negative slope
against log LR) at or before the minimum, among the points where the whole window fits, and bound it by the minimum's LR / 10: ``suggested = min(lr_steepest, lr_at_minimum / 10)``, clamped
into the tested range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ceasr.config import ExperimentConfig
from ceasr.errors import ConfigError
from ceasr.io import atomic_path, atomic_write_text
from ceasr.tune.session import Prepared

DIVERGE_FACTOR = 4.0
EMA_BETA = 0.9  # the running loss for the divergence test only


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # raw training loss of each step's batch
    smoothed: list[float]  # centered moving average of ``losses``
    suggested: float
    steepest: float  # LR of the steepest descent
    at_minimum: float  # LR of the smoothed minimum
    diverged: bool  # stopped before the last step


def exp_lrs(lo: float, hi: float, steps: int) -> np.ndarray:
    """The ``steps`` learning rates of the test, geometric from ``lo`` to ``hi``."""
    if not (0 < lo < hi) or steps < 2:
        raise ConfigError(f"lr-find: needs 0 < --min < --max and --steps >= 2, got {lo}, {hi}, {steps}")
    return lo * (hi / lo) ** (np.arange(steps) / (steps - 1))


def centered_smooth(values: np.ndarray, half: int) -> np.ndarray:
    """Mean over ``[i - half, i + half]``, the window shrunk symmetrically at the ends (no lag)."""
    n = len(values)
    out = np.empty(n)
    for i in range(n):
        h = min(half, i, n - 1 - i)
        out[i] = values[i - h : i + h + 1].mean()
    return out


def suggest_lr(lrs, losses) -> tuple[float, float, float, np.ndarray]:
    """``(suggested, lr_steepest, lr_at_minimum, smoothed)`` for a loss-vs-LR curve (see the module doc)."""
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if len(lrs) < 3:
        raise ConfigError(f"lr-find: only {len(lrs)} finite steps before divergence; lower --min")
    half = max(1, len(losses) // 20)
    smoothed = centered_smooth(losses, half)
    x = np.log10(lrs)
    i_min = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, x)
    # Only where the full window fits: at the ends the window shrinks and the curve is as noisy as the data.
    n = len(losses)
    lo = min(half, n - 1)
    hi = max(lo, min(i_min, n - 1 - half))
    i_steep = lo + int(np.argmin(slope[lo : hi + 1]))
    steepest, at_min = float(lrs[i_steep]), float(lrs[i_min])
    suggested = min(max(min(steepest, at_min / 10.0), float(lrs[0])), float(lrs[-1]))
    return suggested, steepest, at_min, smoothed


def lr_find(
    cfg: ExperimentConfig, prepared: Prepared, lo: float, hi: float, steps: int, progress: bool = True
) -> LrFindResult:
    """Run the range test on all of ``prepared``'s utterances.

    Batches are drawn from one bucket (``num_buckets=1``), so each is a random sample of the data and its
    loss an unbiased estimate of the mean; the config's scheduler is replaced by the exponential ramp.
    """
    from ceasr.train import distributed
    from ceasr.train.loop import build_run, run_steps
    from ceasr.train.monitor import Monitor

    lr_values = exp_lrs(lo, hi, steps)
    train_cfg = dataclasses.replace(
        cfg.train, lr=lo, max_steps=steps, scheduler="constant", warmup_steps=0, num_buckets=1,
        checkpoint_every=0, max_bad_steps=steps + 1,
    )
    cfg = dataclasses.replace(cfg, train=train_cfg)
    run = build_run(cfg, prepared.tokenizer, prepared.dataset, None, Path("."), distributed.Dist())
    ratio = hi / lo
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda done: ratio ** (min(done, steps - 1) / (steps - 1))
    )
    monitor = Monitor(Path("."), enabled=False, progress=False, total_steps=0, initial_step=0)
    lrs, losses, ema, best = [], [], None, math.inf
    diverged = False
    bar = tqdm(total=steps, desc="lr-find", unit="step", disable=not progress)
    for event, stats in run_steps(run, monitor):
        if event == "bad":  # a non-finite loss: the learning rate is past any use
            diverged = True
            break
        if event != "step":
            continue
        lrs.append(stats["lr"])
        losses.append(stats["loss"])
        ema = stats["loss"] if ema is None else EMA_BETA * ema + (1 - EMA_BETA) * stats["loss"]
        best = min(best, ema)
        bar.update(1)
        bar.set_postfix(lr=f"{stats['lr']:.2e}", loss=f"{stats['loss']:.3f}", refresh=False)
        if len(losses) > 10 and ema > DIVERGE_FACTOR * best:
            diverged = True
            break
    bar.close()
    suggested, steepest, at_min, smoothed = suggest_lr(lrs, losses)
    return LrFindResult(lrs, losses, smoothed.tolist(), suggested, steepest, at_min, diverged)


def write_lr_find(result: LrFindResult, out_dir: str | Path) -> None:
    """``lr_find.csv`` (step, lr, loss, smoothed) and ``lr_find.png`` (loss vs LR, log x, suggestion marked)."""
    out_dir = Path(out_dir)
    lines = ["step,lr,loss,smoothed"]
    for i, (lr, loss, sm) in enumerate(zip(result.lrs, result.losses, result.smoothed, strict=True), 1):
        lines.append(f"{i},{lr:.6g},{loss:.6g},{sm:.6g}")
    atomic_write_text(out_dir / "lr_find.csv", "\n".join(lines) + "\n")
    _plot(result, out_dir / "lr_find.png")


def _plot(result: LrFindResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="loss per step")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=1.8, label="smoothed")
    ax.axvline(result.suggested, color="C3", ls="--", label=f"suggested {result.suggested:.2g}")
    ax.axvline(result.at_minimum, color="0.4", ls=":", label=f"minimum {result.at_minimum:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss per utterance")
    top = np.percentile(result.losses, 95)
    ax.set_ylim(min(result.smoothed) * 0.9, max(top, result.smoothed[0]) * 1.1)
    ax.legend()
    ax.set_title("LR range test")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
