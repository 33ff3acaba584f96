"""Helpers shared by the benchmark scripts: thread pinning, a quiet-machine wait, the header line, tables.

Not part of the package: ``bench/*.py`` import it as a sibling module (``python bench/x.py`` puts ``bench/``
on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ceasr.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def pin_threads(threads: int) -> dict[str, str]:
    """Pin torch to ``threads`` intra-op threads; return an environment that pins a subprocess the same way."""
    torch.set_num_threads(threads)
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 30.0) -> bool:
    """Wait until the 1-minute load average is at most ``max_load`` (or ``max_wait_s`` passes).

    Returns whether the machine was quiet when we stopped waiting. Other jobs on a 2-core machine make
    multi-threaded runs wait on descheduled threads, which inflates every small op several times over.
    """
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > max_load:
        if time.monotonic() >= deadline:
            print(f"# still busy after {max_wait_s:.0f} s (load average {load_average()}); measuring anyway",
                  file=sys.stderr)
            return False
        print(f"# load average {load_average()} > {max_load}; waiting {poll_s:.0f} s", file=sys.stderr)
        time.sleep(poll_s)
    return True


def header(threads: int, load: str, extra: str = "") -> str:
    """The first output line: date, machine, ``load`` (the load average taken before measuring: during the
    run it counts the benchmark itself), torch version and thread count."""
    cpu = platform.processor() or platform.machine()
    line = (f"# {time.strftime('%Y-%m-%d %H:%M')}  {cpu}, {os.cpu_count()} CPUs, load average before {load}, "
            f"torch {torch.__version__}, {threads} torch thread(s)")
    return f"{line}, {extra}" if extra else line


def median(values) -> float:
    return float(statistics.median(values))


def p90(values) -> float:
    """90th percentile with linear interpolation between order statistics (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), 90))


def format_table(headers: list[str], rows: list[list]) -> str:
    """Left-aligned first column, right-aligned others; floats are already formatted by the caller."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        first = r[0].ljust(widths[0])
        lines.append("  ".join([first, *(c.rjust(w) for c, w in zip(r[1:], widths[1:]))]))
    return "\n".join(lines)


def write_json(path: str | Path, data) -> Path:
    """Write a result as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return Path(path)
