"""The main job on the embedded default: synthesize the corpus, train, evaluate on held-out voices, transcribe."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from ceasr.config import load_config

DEMO_HOURS = 1.0


def demo_config_path() -> Path:
    return Path(str(resources.files("ceasr") / "configs" / "demo.yaml"))


def _corpus(data_dir: Path, hours: float, seed: int) -> None:
    """Synthesize the corpus unless the same one (hours, seed) is already there."""
    from ceasr.data.synth import synthesize

    stamp = data_dir / "synth.json"
    wanted = {"hours": hours, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and (data_dir / "test.jsonl").exists():
        print(f"corpus: reusing {data_dir}")
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    print(synthesize(data_dir, hours=hours, seed=seed))
    stamp.write_text(json.dumps(wanted))


def run_demo(out: str | Path = "runs/demo", hours: float | None = None, seed: int = 0, overrides=()) -> None:
    from ceasr.api import load_model
    from ceasr.data.manifest import load_rows
    from ceasr.evaluate import evaluate_manifest
    from ceasr.train.loop import train
    from ceasr.transcribe import transcribe_files

    out = Path(out)
    cfg = load_config(demo_config_path(), list(overrides))
    data = out / "data"
    _corpus(data, hours or DEMO_HOURS, seed)
    for stale in ("checkpoints", "tensorboard", "model"):
        shutil.rmtree(out / stale, ignore_errors=True)
    result = train(cfg, load_rows(data / "train.jsonl"), load_rows(data / "dev.jsonl"), out)
    print(result)

    recognizer = load_model(out / "model")
    test_rows = load_rows(data / "test.jsonl")
    print("\ntranscribing three held-out files:")
    transcribe_files(recognizer, [r.audio for r in test_rows[:3]])
    report = evaluate_manifest(recognizer, data / "test.jsonl", out=out / "results-test.jsonl")
    print(f"\nmodel: {out / 'model'}")
    print("held-out voices (test split):")
    print(report.summary_lines())
