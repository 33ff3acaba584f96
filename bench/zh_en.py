"""The bilingual demo model on held-out voices, by utterance language, beside the English-only demo model.

Scores a trained Chinese–English model (``ceasr demo --lang zh-en``) on its corpus's test split: MER on mixed
utterances, CER on Mandarin-only, WER on English-only, and utterance language-tag accuracy; then scores the
English-only demo model (``ceasr demo``) on the same English-only utterances. Both decode as their saved
configs say (the demos' default since 2026-12-01: attention rescoring of the CTC prefix beam's 8-best).
The last line is the MER on mixed utterances.

    python bench/zh_en.py [--model runs/demo-zh-en/model] [--english-model runs/demo/model]
        [--decode decode.lid_threshold=0] [--out zh_en.json]
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from common import format_table, header, load_average, pin_threads, write_json

from ceasr.api import load_model
from ceasr.data.manifest import read_manifest
from ceasr.evaluate import evaluate_rows
from ceasr.text.script import text_language


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/demo-zh-en/model")
    parser.add_argument("--manifest", default=None, help="default: data/test.jsonl beside the model")
    parser.add_argument("--english-model", default="runs/demo/model", help="the English-only demo model")
    parser.add_argument("--decode", nargs="*", default=[], metavar="KEY=VALUE",
                        help="decode overrides for the bilingual model, e.g. decode.lid_threshold=0")
    parser.add_argument("--out", default=None, help="results JSON (default: zh_en.json beside the model)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    pin_threads(args.threads)
    manifest = Path(args.manifest or Path(args.model).parent / "data/test.jsonl")
    rows, _ = read_manifest(manifest)
    report, _ = evaluate_rows(load_model(args.model, decode=args.decode), rows)
    mixed = report.mixed
    table, results = [], {}
    for lang, unit in (("mixed", "MER"), ("zh", "CER"), ("en", "WER")):
        c = mixed.by_language[lang]
        utts = sum(1 for r in rows if text_language(r.text) == lang)
        table.append(["bilingual", f"{lang}-only" if lang != "mixed" else "mixed", utts, unit, f"{c.rate:.4f}",
                      c.S, c.D, c.I, c.N])
        results[lang] = {unit: c.rate, "S": c.S, "D": c.D, "I": c.I, "N": c.N}
    english_rows = [r for r in rows if text_language(r.text) == "en"]
    if Path(args.english_model).exists():
        en_report, _ = evaluate_rows(load_model(args.english_model), english_rows)
        w = en_report.words
        table.append(["English-only demo", "en-only", len(english_rows), "WER", f"{w.rate:.4f}", w.S, w.D, w.I, w.N])
        results["english_model_en"] = {"WER": w.rate, "S": w.S, "D": w.D, "I": w.I, "N": w.N}
    print(header(args.threads, load_average(), f"manifest={manifest}" + "".join(f" {d}" for d in args.decode)))
    print(format_table(["model", "test utterances", "utts", "unit", "rate", "S", "D", "I", "N"], table))
    print(f"language tag accuracy={mixed.language_accuracy:.4f} ({mixed.language_correct}/{mixed.utterances})")
    results["language_accuracy"] = mixed.language_accuracy
    out = Path(args.out) if args.out else Path(args.model).parent / "zh_en.json"
    write_json(out, {"date": str(date.today()), "decode": args.decode, **results})
    print(f"mixed-utterance MER={results['mixed']['MER']:.4f} (Mandarin CER {results['zh']['CER']:.4f}, "
          f"English WER {results['en']['WER']:.4f})")


if __name__ == "__main__":
    main()
