"""The search's outputs: ``tune.csv`` (one row per trial), ``tune.md`` (sorted table), ``tune.png``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ceasr.io import atomic_path, atomic_write_text


def trial_rows(study, n_folds: int) -> list[dict]:
    """One dict per finished trial (complete or pruned): params, each fold's loss/WER, mean, std, steps, s."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        row = {"trial": t.number, "state": t.state.name.lower(), "optimizer": t.params["optimizer"],
               "lr": t.params["lr"]}
        losses, wers = [], []
        for k in range(n_folds):
            loss, wer = t.user_attrs.get(f"fold{k}_loss"), t.user_attrs.get(f"fold{k}_wer")
            row[f"fold{k}_loss"], row[f"fold{k}_wer"] = loss, wer
            if loss is not None:
                losses.append(loss)
            if wer is not None:
                wers.append(wer)
        complete = t.state == TrialState.COMPLETE and len(losses) == n_folds
        row["mean_loss"] = float(np.mean(losses)) if complete else None
        row["std_loss"] = float(np.std(losses)) if complete else None
        row["mean_wer"] = float(np.mean(wers)) if complete and len(wers) == n_folds else None
        row["std_wer"] = float(np.std(wers)) if complete and len(wers) == n_folds else None
        row["last_dev_loss"] = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        row["steps"] = t.user_attrs.get("steps", "")
        row["seconds"] = t.user_attrs.get("seconds")
        rows.append(row)
    return rows


def _sort_key(row: dict) -> tuple:
    loss = row["mean_loss"]
    return (loss is None or not math.isfinite(loss), loss if loss is not None else 0.0, row["trial"])


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(rows[0]) if rows else ["trial", "state", "optimizer", "lr", "mean_loss", "std_loss"]
    lines = [",".join(keys)] + [",".join(_fmt(r[k]) for k in keys) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_md(rows: list[dict], path: Path, command: str) -> None:
    """Trials sorted by mean dev loss (pruned and diverged last)."""
    lines = [
        "# ceasr tune", "", f"`{command}`", "",
        "| rank | optimizer | lr | dev loss (mean ± std over folds) | WER (mean ± std) | state | seconds |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for rank, r in enumerate(sorted(rows, key=_sort_key), 1):
        loss = "" if r["mean_loss"] is None else f"{r['mean_loss']:.4g} ± {r['std_loss']:.2g}"
        wer = "" if r["mean_wer"] is None else f"{100 * r['mean_wer']:.1f}% ± {100 * r['std_wer']:.1f}"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {rank} | {r['optimizer']} | {r['lr']:.3g} | {loss} | {wer} | {r['state']} | {secs} |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def best_row(rows: list[dict]) -> dict | None:
    ranked = [r for r in sorted(rows, key=_sort_key) if r["mean_loss"] is not None and math.isfinite(r["mean_loss"])]
    return ranked[0] if ranked else None


def plot_tune(rows: list[dict], path: Path, n_folds: int) -> None:
    """Dev loss per optimizer against LR (log x); error bars = std over folds; pruned trials as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = sorted({r["optimizer"] for r in rows})
    for i, name in enumerate(names):
        done = sorted((r for r in rows if r["optimizer"] == name and r["mean_loss"] is not None
                       and math.isfinite(r["mean_loss"])), key=lambda r: r["lr"])
        if done:
            ax.errorbar([r["lr"] for r in done], [r["mean_loss"] for r in done],
                        yerr=[r["std_loss"] for r in done], color=f"C{i}", marker="o", capsize=3, label=name)
        pruned = [r for r in rows if r["optimizer"] == name and r["state"] == "pruned"]
        if pruned:
            ax.scatter([r["lr"] for r in pruned], [r["last_dev_loss"] for r in pruned], color=f"C{i}", marker="x")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("dev loss per utterance" + (f" (mean ± std, {n_folds} folds)" if n_folds > 1 else ""))
    ax.set_title("ceasr tune (x: pruned)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
