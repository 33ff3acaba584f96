"""LR range test: train from the config's initial weights while the learning rate rises exponentially.

Step ``s`` of ``n`` (0-based) uses ``lr = lo * (hi / lo) ** (s / (n - 1))``. The run stops early when the loss
diverges: a non-finite loss, or the running (EMA) loss above ``DIVERGE_FACTOR`` times its minimum so far.
Nothing is saved into any experiment: the weights are thrown away, only the curve is kept.

The suggestion (:func:`suggest_lr`): smooth the curve with a centered moving average over ``n / 10 + 1``
points (no lag, unlike an EMA) and find its minimum. Then take the steepest point of the *last descent into the
minimum* ("valley"): walking back from the minimum, the first point whose slope (of the smoothed loss against
log LR) is negative and the most negative within ``n / 20`` points on either side. Bound it by the minimum's
LR / 10: ``suggested = min(lr_valley, lr_at_minimum / 10)``, clamped into the tested range.

Why not the globally steepest point: from fresh weights the loss often falls from the very first step, at any
learning rate, because the first updates fix the output layer's gross miscalibration (training progress, not
a learning-rate effect). That initial transient is the steepest part of the curve, far below any useful LR;
on the demo corpus it put the steepest point at 5e-5 while the minimum was at 1.2e-2.
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
# A descent counts for the valley when the smoothed loss falls at least this much in ln per decade of LR (~18%).
VALLEY_FALL = 0.2


@dataclass(frozen=True)
class LrFindResult:
    lrs: list[float]
    losses: list[float]  # raw training loss of each step's batch
    smoothed: list[float]  # centered moving average of ``losses``
    suggested: float
    steepest: float  # LR of the steepest point of the last descent into the minimum
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


def window_slopes(smoothed: np.ndarray, x: np.ndarray, half: int) -> np.ndarray:
    """Relative slope ``d ln(loss) / d log10(lr)`` of the smoothed curve over ``[i - half, i + half]`` (NaN where
    that window does not fit): a wide difference, since neighbouring smoothed points share almost all data."""
    n = len(smoothed)
    out = np.full(n, np.nan)
    if n > 2 * half:
        i = np.arange(half, n - half)
        fall = np.log(np.maximum(smoothed[i + half], 1e-12)) - np.log(np.maximum(smoothed[i - half], 1e-12))
        out[i] = fall / (x[i + half] - x[i - half])
    return out


def valley_steepest(rel_slope: np.ndarray, i_min: int, half: int) -> int | None:
    """Index of the steepest point of the last descent into the minimum at ``i_min``: walking back from
    ``i_min``, the first point where the loss falls by at least ``VALLEY_FALL`` per decade and falls fastest
    within ``half`` points on either side. None when no point qualifies (no real descent before the minimum)."""
    for i in range(min(i_min, len(rel_slope) - 1), -1, -1):
        if not rel_slope[i] <= -VALLEY_FALL:  # also skips NaN (window does not fit)
            continue
        near = rel_slope[max(0, i - half) : i + half + 1]
        if rel_slope[i] <= np.nanmin(near):
            return i
    return None


def suggest_lr(lrs, losses) -> tuple[float, float, float, np.ndarray]:
    """``(suggested, lr_valley, lr_at_minimum, smoothed)`` for a loss-vs-LR curve (see the module doc)."""
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if len(lrs) < 3:
        raise ConfigError(f"lr-find: only {len(lrs)} finite steps before divergence; lower --min")
    half = max(1, len(losses) // 20)
    smoothed = centered_smooth(losses, half)
    i_min = int(np.argmin(smoothed))
    i_steep = valley_steepest(window_slopes(smoothed, np.log10(lrs), half), i_min, half)
    at_min = float(lrs[i_min])
    steepest = at_min if i_steep is None else float(lrs[i_steep])
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
    ax.axvline(result.steepest, color="C2", ls="-.", label=f"valley's steepest {result.steepest:.2g}")
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
