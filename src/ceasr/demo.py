"""The main job on the embedded default: synthesize the corpus, train, evaluate on held-out voices, transcribe.

Two demos, in :data:`DEMOS`: English (the default) and Chinese–English (``lang="zh-en"``: Mandarin, English
and code-switched commands, a bilingual tokenizer, MER as the headline).
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from ceasr.config import load_config
from ceasr.errors import CeasrError
from ceasr.io import atomic_write_text

# language -> (config file in ceasr/configs, default output folder, hours of corpus). The bilingual corpus is
# larger and its config trains fewer epochs over it, so both demos take about the same number of steps.
DEMOS = {"en": ("demo.yaml", "runs/demo", 1.0), "zh-en": ("demo-zh-en.yaml", "runs/demo-zh-en", 1.5)}


def demo_config_path(lang: str = "en") -> Path:
    return Path(str(resources.files("ceasr") / "configs" / DEMOS[lang][0]))


def ensure_corpus(
    data_dir: Path, hours: float, seed: int, lang: str = "en", holdout_engine: str | None = None
) -> None:
    """Synthesize the corpus unless the same one (hours, seed, language, held-out engine, corpus version and the
    installed voices) is already there, as its ``synth.json`` stamp says (synthesis is deterministic for these,
    so the files are the same). An unreadable stamp counts as none."""
    from ceasr.data.synth import CORPUS_VERSION, synthesize, voice_digest

    stamp = data_dir / "synth.json"
    wanted = ({"hours": hours, "seed": seed} | ({"lang": lang} if lang != "en" else {})
              | ({"holdout_engine": holdout_engine} if holdout_engine else {})
              | {"version": CORPUS_VERSION, "voices": voice_digest(lang)})
    if _read_stamp(stamp) == wanted and (data_dir / "test.jsonl").exists():
        print(f"corpus: reusing {data_dir}")
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    print(synthesize(data_dir, hours=hours, seed=seed, lang=lang, holdout_engine=holdout_engine))
    atomic_write_text(stamp, json.dumps(wanted))


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def run_demo(out: str | Path | None = None, hours: float | None = None, seed: int = 0, overrides=(),
             lang: str = "en") -> None:
    """Synthesize the ``lang`` demo corpus (reused when already there), train, evaluate the test split, and
    transcribe three of its files; the model is left in ``out/model``."""
    from ceasr.api import load_model
    from ceasr.data.manifest import load_rows
    from ceasr.evaluate import evaluate_manifest
    from ceasr.train.loop import train
    from ceasr.transcribe import transcribe_files

    if lang not in DEMOS:
        raise CeasrError(f"no demo for language {lang!r}; known: {', '.join(DEMOS)}")
    out = Path(out or DEMOS[lang][1])
    cfg = load_config(demo_config_path(lang), list(overrides))
    data = out / "data"
    ensure_corpus(data, hours or DEMOS[lang][2], seed, lang)
    for stale in ("checkpoints", "tensorboard", "model"):
        shutil.rmtree(out / stale, ignore_errors=True)
    result = train(cfg, load_rows(data / "train.jsonl"), load_rows(data / "dev.jsonl"), out)
    print(result)

    recognizer = load_model(out / "model")
    test_rows = load_rows(data / "test.jsonl")
    print("\ntranscribing three held-out files:")
    transcribe_files(recognizer, [r.audio for r in test_rows[:3]], fmt="json" if lang != "en" else "text")
    report = evaluate_manifest(recognizer, data / "test.jsonl", out=out / "results-test.jsonl")
    print(f"\nmodel: {out / 'model'}")
    print("held-out voices (test split):")
    print(report.summary_lines())
