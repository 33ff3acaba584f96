"""Compare commands-bench runs from their saved results: one row per ``bench/commands.py --out`` file.

Run: ``.venv/bin/python bench/commands_compare.py runs/nm5-cmd-s0 runs/nm5-cmd-s1 ... [--plot docs/img/x.png]``

Per file (the plain ``ceasr`` rows on the test voices): accuracy, FRR, FAR and noise accepted at the default
threshold; the equal error rate of the DET curve (where FRR and FAR cross, their mean), which compares models
whatever their confidence scale; and the FAR floor, the out-of-grammar clips accepted at confidence >= 0.999,
which no threshold below 1 rejects. ``--plot`` draws every file's DET curve in one figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table  # noqa: E402
from ceasr.commands.calibrate import det_curve, plot_det  # noqa: E402

FLOOR = 0.999


def summary(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the row's figures, FRR, FAR) of one bench output."""
    saved = json.loads(path.read_text())
    default = next(v for k, v in saved["table"].items() if k.startswith("ceasr, default threshold"))
    conf = {k: [r["confidence"] for r in rows] for k, rows in saved["rows"]["ceasr"].items()}
    _, frr, far = det_curve(conf["in"], conf["oog"])
    i = int(np.argmin(np.abs(frr - far)))
    return dict(default, eer=(frr[i] + far[i]) / 2, floor=float(np.mean(np.asarray(conf["oog"]) >= FLOOR))), frr, far


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--plot", help="a PNG with every file's DET curve")
    args = p.parse_args()
    rows, curves = [], {}
    for path in args.files:
        s, frr, far = summary(path)
        curves[path.name] = (frr, far)
        rows.append([path.name] + [f"{100 * s[k]:.2f}" for k in ("accuracy", "frr", "far", "noise", "eer", "floor")])
    print(format_table(["run", "accuracy %", "FRR %", "FAR %", "noise %", "EER %", "FAR at confidence 1 %"], rows))
    if args.plot:
        plot_det(curves, {}, args.plot, title="Command rejection on the test voices: DET curves")
        print(f"DET curves: {args.plot}")


if __name__ == "__main__":
    main()
