"""Rejection thresholds: calibration for a target false-accept rate, and the DET curve over all thresholds.

A phrase is accepted when its confidence is at least the threshold. On out-of-grammar confidences
``oog`` the false-accept rate at threshold t is ``mean(oog >= t)``; on in-grammar confidences the
false-rejection rate is ``mean(in < t)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ceasr.errors import CeasrError


def threshold_for_far(oog: Sequence[float], target_far: float) -> float:
    """The lowest threshold whose false-accept rate on ``oog`` is at most ``target_far``.

    With n scores, at most k = floor(target_far * n) may be accepted, so the threshold sits just above the
    (k+1)-th highest score (0.0 when every score may be accepted). Lowest, because every higher threshold
    rejects more in-grammar speech too.
    """
    if not 0.0 <= target_far <= 1.0:
        raise CeasrError(f"target false-accept rate {target_far}: must be between 0 and 1")
    scores = np.sort(np.asarray(oog, dtype=np.float64))[::-1]  # highest first
    if scores.size == 0:
        raise CeasrError("cannot calibrate a threshold without out-of-grammar scores")
    k = math.floor(target_far * scores.size + 1e-9)
    if k >= scores.size:
        return 0.0
    return float(np.nextafter(scores[k], np.inf))


def det_curve(in_grammar: Sequence[float], oog: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-rejection rates, false-accept rates), one point per distinct score (and one above
    all of them), thresholds ascending: FRR rises and FAR falls along the arrays."""
    ins = np.asarray(in_grammar, dtype=np.float64)
    out = np.asarray(oog, dtype=np.float64)
    thresholds = np.unique(np.concatenate([ins, out, [np.inf]]))
    frr = (ins[None, :] < thresholds[:, None]).mean(axis=1) if ins.size else np.zeros(len(thresholds))
    far = (out[None, :] >= thresholds[:, None]).mean(axis=1) if out.size else np.zeros(len(thresholds))
    return thresholds, frr, far


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], points: dict[str, tuple[float, float]], path,
             title: str = "Command rejection: DET curve") -> None:
    """Plot FRR against FAR (percent, log axes; zeros drawn at the floor) for each named curve and point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ceasr.io import atomic_path

    floor = 0.05  # percent: where a rate of zero is drawn on the log axes
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, (frr, far) in curves.items():
        ax.step(np.maximum(100 * far, floor), np.maximum(100 * frr, floor), where="post", label=name)
    for name, (frr, far) in points.items():
        ax.plot(max(100 * far, floor), max(100 * frr, floor), "o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="false accepts (% of out-of-grammar)",
           ylabel="false rejections (% of in-grammar)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
