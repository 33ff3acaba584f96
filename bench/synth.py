"""Synthetic corpus throughput: how fast ``ceasr synth`` makes audio with the installed TTS engines.

Run: ``.venv/bin/python bench/synth.py [--hours 0.2] [--jobs 2] [--seed 0]``

Synthesizes ``--hours`` of the default corpus (digits + commands, every installed engine) into a temporary
folder, then prints the audio produced, the wall time, the projected wall time for one hour of audio, and,
last, the headline: seconds of audio per wall-clock second. The folder is deleted afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile

from ceasr.data.synth import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ceasr-bench-synth-") as tmp:
        summary = synthesize(tmp, hours=args.hours, seed=args.seed, jobs=args.jobs, progress=False)
    utterances = sum(s.utterances for s in summary.splits.values())
    speed = summary.seconds / summary.wall_seconds
    print(f"# {datetime.date.today()}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jobs={args.jobs}, engines: {', '.join(summary.engines)}")
    rows = [
        ("utterances", f"{utterances}"),
        ("failed TTS calls", f"{len(summary.failures)}"),
        ("audio seconds produced", f"{summary.seconds:.1f}"),
        ("wall seconds", f"{summary.wall_seconds:.1f}"),
        ("projected wall time for 1 h of audio", f"{3600 / speed / 60:.1f} min"),
        ("seconds of audio per wall second", f"{speed:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")


if __name__ == "__main__":
    main()
