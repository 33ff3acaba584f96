"""Voices the model never heard, from an engine it never heard.

Synthesizes the default corpus with every voice of one TTS engine moved to the test split
(``--holdout-engine``; reused when ``OUT/data`` already holds that corpus), trains the demo config on the
rest, and scores the test split twice: the held-out voices of the engines seen in training, and the voices
of the engine never seen. The last line is the unseen engine's WER.

    python bench/unseen_engine.py [--holdout flite] [--hours 1.0] [--out runs/bench-unseen]
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import date
from pathlib import Path

from common import format_table, header, load_average, pin_threads, write_json

from ceasr.api import load_model
from ceasr.config import load_config
from ceasr.data.manifest import read_manifest
from ceasr.demo import demo_config_path, ensure_corpus
from ceasr.evaluate import evaluate_rows
from ceasr.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", default="flite", help="the TTS engine never heard in training")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-unseen")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.max_epochs=5")
    args = parser.parse_args()
    pin_threads(args.threads)
    out = Path(args.out)
    shutil.rmtree(out / "exp", ignore_errors=True)
    ensure_corpus(out / "data", args.hours, args.seed, holdout_engine=args.holdout)  # reused when already there
    cfg = load_config(demo_config_path(), args.overrides)
    train_rows, _ = read_manifest(out / "data/train.jsonl")
    dev_rows, _ = read_manifest(out / "data/dev.jsonl")
    start = time.perf_counter()
    train(cfg, train_rows, dev_rows, out / "exp")
    train_minutes = (time.perf_counter() - start) / 60

    recognizer = load_model(out / "exp/model")
    test_rows, _ = read_manifest(out / "data/test.jsonl")
    unseen = [r for r in test_rows if r.speaker.split(":")[0] == args.holdout]
    seen = [r for r in test_rows if r.speaker.split(":")[0] != args.holdout]
    rows, results = [], {}
    for name, subset in (("held-out voices, engines seen in training", seen),
                         (f"voices of {args.holdout}, never seen in training", unseen)):
        report, _ = evaluate_rows(recognizer, subset)
        w = report.words
        engines = sorted({r.speaker.split(":")[0] for r in subset})
        voices = len({r.speaker for r in subset})
        rows.append([name, "+".join(engines), voices, report.utterances, f"{w.rate:.4f}", w.S, w.D, w.I, w.N])
        results[name] = {"wer": w.rate, "S": w.S, "D": w.D, "I": w.I, "N": w.N, "voices": voices}

    print(header(args.threads, load_average(), f"holdout={args.holdout} train_minutes={train_minutes:.1f}"))
    print(format_table(["test voices", "engines", "voices", "utts", "WER", "S", "D", "I", "N"], rows))
    write_json(out / "unseen_engine.json", {"date": str(date.today()), "holdout": args.holdout, **results})
    print(f"unseen-engine WER={results[rows[1][0]]['wer']:.4f} (in-engine {results[rows[0][0]]['wer']:.4f})")


if __name__ == "__main__":
    main()
