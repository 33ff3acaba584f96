"""Figures and tables of the studies: ``losses.png/md`` and ``optimizers.png/md``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ceasr.io import atomic_path, atomic_write_text

EARLY_STEPS = 20  # "early in training": the output-layer gradient is averaged over these first steps
HALF = 0.5  # "learns faster": the first evaluation at which dev accuracy reaches this


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _ema(values: list[float], beta: float = 0.9) -> np.ndarray:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else beta * acc + (1 - beta) * v
        out.append(acc)
    return np.asarray(out)


def plot_losses(variants, path: Path, num_classes: int) -> None:
    """Dev accuracy vs step, training loss / initial loss vs step, output-layer gradient norm early on, and
    the closed-form per-example logit gradient against a wrong class's probability."""
    from ceasr.tune.loss_study import wrong_confidence_grad

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    (acc_ax, loss_ax), (grad_ax, form_ax) = axes
    for i, v in enumerate(variants):
        run, label = v.runs[0], f"{v.name} (lr {v.best_lr:g})"
        acc_ax.plot([p.step for p in run.dev], [p.metric for p in run.dev], marker="o", ms=3, color=f"C{i}",
                    label=label)
        if run.train_loss:
            loss_ax.plot(np.arange(1, len(run.train_loss) + 1), _ema(run.train_loss) / run.train_loss[0],
                         color=f"C{i}", label=label)
        grad_ax.plot(np.arange(1, len(v.grad_norms) + 1), v.grad_norms, color=f"C{i}", lw=0.9, label=label)
    q = np.linspace(0.01, 0.99, 99)
    for i, v in enumerate(variants):
        form_ax.plot(q, [wrong_confidence_grad(v.name, float(x), num_classes) for x in q], color=f"C{i}", label=v.name)
    acc_ax.set(xlabel="step", ylabel="dev accuracy", title="dev accuracy")
    loss_ax.set(xlabel="step", ylabel="training loss / its first value (EMA)", title="training loss")
    grad_ax.set(xlabel="step", ylabel="||dL/dW_out||", yscale="log", title="output-layer gradient")
    form_ax.set(xlabel="probability of one wrong class", ylabel="||dL/dz|| per example", yscale="log",
                title=f"closed form, {num_classes} classes")
    for ax in axes.flat:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def write_losses_md(variants, path: Path, command: str, opts, n_train: int, n_dev: int) -> None:
    lines = [
        "# ceasr study losses", "", f"`{command}`", "",
        f"{n_train} training and {n_dev} dev utterances of the command phrases; optimizer {opts.optimizer}, "
        f"{opts.steps} steps, seed {opts.seed}.", "",
        f"| loss | best lr | final dev acc | mean dev acc over the run | first step with dev acc ≥ {HALF:g} "
        f"| output-layer grad norm, steps 1-{EARLY_STEPS} | sweep: lr → final dev acc |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for v in variants:
        run = v.runs[0]
        final = run.dev[-1].metric if run.dev and not run.diverged else math.nan
        mean = float(np.mean([p.metric for p in run.dev])) if run.dev else math.nan
        early = float(np.mean(v.grad_norms[:EARLY_STEPS])) if v.grad_norms else math.nan
        reached = next((str(p.step) for p in run.dev if p.metric >= HALF), "never")
        sweep = ", ".join(
            f"{lr:g} → {r.dev[-1].metric:.3f}" if r.dev and not r.diverged else f"{lr:g} → diverged"
            for lr, r in v.sweep.items()
        )
        lines.append(f"| {v.name} | {v.best_lr:g} | {final:.3f} | {mean:.3f} | {reached} | {early:.3g} | {sweep} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _band(runs, x_of, y_of):
    """Mean and min/max over seeds on the common evaluation points (runs cut to the shortest)."""
    n = min(len(r.dev) for r in runs)
    if n == 0:
        return None
    xs = np.array([[x_of(p) for p in r.dev[:n]] for r in runs], dtype=float)
    ys = np.array([[y_of(p) for p in r.dev[:n]] for r in runs], dtype=float)
    return xs.mean(axis=0), ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def plot_optimizers(variants, path: Path) -> None:
    """Dev loss and WER against step and against training wall time; mean over seeds with the min-max band."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = (
        (axes[0, 0], lambda p: p.step, lambda p: p.loss, "step", "dev loss per utterance"),
        (axes[0, 1], lambda p: p.seconds, lambda p: p.loss, "training seconds", "dev loss per utterance"),
        (axes[1, 0], lambda p: p.step, lambda p: 100 * p.metric, "step", "dev WER %"),
        (axes[1, 1], lambda p: p.seconds, lambda p: 100 * p.metric, "training seconds", "dev WER %"),
    )
    for ax, x_of, y_of, xlabel, ylabel in panels:
        for i, v in enumerate(variants):
            band = _band([r for r in v.runs if not r.diverged] or v.runs, x_of, y_of)
            if band is None:
                continue
            x, mean, lo, hi = band
            ax.plot(x, mean, color=f"C{i}", label=f"{v.name} (lr {v.best_lr:g})")
            ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if xlabel == "training seconds":
            ax.set_xscale("log")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"optimizers: mean over {len(variants[0].runs)} seeds, band = min..max")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _stat(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    finite = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "diverged"
    return f"{np.mean(finite):.{digits}f} ± {np.std(finite):.{digits}f}" + (
        f" ({len(values) - len(finite)} diverged)" if len(finite) < len(values) else ""
    )


def write_optimizers_md(variants, path: Path, command: str, opts, epoch_batches: int) -> None:
    lines = [
        "# ceasr study optimizers", "", f"`{command}`", "",
        f"{opts.steps} steps, seeds {opts.seed}..{opts.seed + opts.seeds - 1}; LR chosen by final dev loss with "
        f"seed {opts.seed}; gd = full batch ({epoch_batches} batches accumulated per step).", "",
        "| optimizer | lr | final dev loss (mean ± std) | final dev WER % | training s per run | sweep: lr → dev loss |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for v in variants:
        losses = [r.last.loss if r.last and not r.diverged else math.nan for r in v.runs]
        wers = [r.last.metric if r.last and not r.diverged else math.nan for r in v.runs]
        secs = float(np.mean([r.seconds for r in v.runs]))
        sweep = ", ".join(
            f"{lr:g} → {r.last.loss:.2f}" if r.last and not r.diverged else f"{lr:g} → diverged"
            for lr, r in v.sweep.items()
        )
        lines.append(f"| {v.name} | {v.best_lr:g} | {_stat(losses, digits=2)} | {_stat(wers, 100, 1)} | {secs:.0f} "
                     f"| {sweep} |")
    atomic_write_text(path, "\n".join(lines) + "\n")
