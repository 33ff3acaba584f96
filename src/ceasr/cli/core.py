"""The core verbs: synth, prepare, train, evaluate (and its robustness report), transcribe, demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ceasr.cli.common import add_decode_flags, add_speed_flags, decode_overrides, model_labels, split_list
from ceasr.errors import CeasrError, ConfigError


def _cmd_synth(args) -> None:
    from ceasr.data.synth import synthesize

    summary = synthesize(
        args.out,
        hours=args.hours,
        seed=args.seed,
        domains=tuple(split_list(args.domain)) or None,
        text_file=args.text_file,
        engines=split_list(args.engines) or None,
        holdout_engine=args.holdout_engine,
        jobs=args.jobs,
        lang=args.lang,
    )
    print(summary)


def _cmd_prepare(args) -> None:
    from ceasr.data.importers import prepare

    options = {"split": args.split} if args.kind == "commonvoice" else {}
    count, errors = prepare(args.kind, args.src, args.out, **options)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    print(f"wrote {count} rows to {args.out} ({len(errors)} skipped)")


def _cmd_train(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.train.loop import train

    cfg = load_config(args.config, [*args.set, *args.overrides])
    result = train(cfg, load_rows(args.train), load_rows(args.dev), args.out, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank returns; one report is enough
        print(result)


def _cmd_evaluate(args) -> None:
    from ceasr.api import load_model
    from ceasr.evaluate import evaluate_manifest

    if args.noise or args.gain or args.rir:
        return _cmd_robustness(args)
    for model in args.model:
        recognizer = load_model(model, decode=decode_overrides(args), jit=args.jit, int8=args.int8)
        # Beside the model directory, never inside it: a model directory holds the model and nothing else.
        out = args.out or Path(model).resolve().parent / f"results-{Path(args.manifest).stem}.jsonl"
        report = evaluate_manifest(recognizer, args.manifest, out=out)
        if report.utterances == 0:  # a WER of 0 over nothing would read as a perfect model
            raise CeasrError(f"{args.manifest}: no utterance could be evaluated ({report.skipped} skipped)")
        lines = report.summary_lines(by_speaker=args.by_speaker)
        print(f"{model}:\n{lines}" if len(args.model) > 1 else lines)


def _cmd_robustness(args) -> None:
    from ceasr.api import load_model
    from ceasr.data.manifest import load_rows
    from ceasr.robustness import condition_grid, format_table, robustness_report

    try:
        gains = [float(g) for g in split_list(args.gain)]
    except ValueError:
        raise ConfigError(f"--gain: expected comma-separated dB values, got {args.gain!r}") from None
    conditions = condition_grid(split_list(args.noise), split_list(args.snr), gains, args.rir)
    labels = model_labels(args.model)
    models = {label: load_model(m, decode=decode_overrides(args), jit=args.jit, int8=args.int8)
              for label, m in zip(labels, args.model)}
    out = Path(args.out_dir or Path(args.model[0]).resolve().parent / f"robustness-{Path(args.manifest).stem}")
    scores = robustness_report(models, load_rows(args.manifest), conditions, out, seed=args.seed)
    print(format_table(scores))
    print(f"wrote {out / 'robustness.json'}, {out / 'robustness.csv'}, {out / 'robustness.png'}")


def _add_robustness_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noise", help="robustness report: comma-separated white, pink, brown, babble, or noise folders")
    p.add_argument("--snr", default="clean,20,10,5,0", help="SNRs in dB for --noise (and 'clean')")
    p.add_argument("--gain", help="robustness report: comma-separated gains in dB, e.g. -30,-20,0,6")
    p.add_argument("--rir", help="robustness report: 'synthetic' (RT60 0.3-0.8 s) or a folder of impulse responses")
    p.add_argument("--seed", type=int, default=0, help="seed of the corrupted audio")
    p.add_argument("--out-dir", help="robustness report folder; default: robustness-<manifest> beside MODEL")


def _cmd_transcribe(args) -> None:
    from ceasr.api import load_model
    from ceasr.transcribe import transcribe_files

    recognizer = load_model(args.model, decode=decode_overrides(args), jit=args.jit, int8=args.int8)
    failed = transcribe_files(recognizer, args.files, fmt=args.format)
    if failed == len(args.files):
        raise SystemExit(1)


def _cmd_demo(args) -> None:
    from ceasr.demo import run_demo

    run_demo(args.out, hours=args.hours, seed=args.seed, overrides=args.overrides, lang=args.lang)


def add_verbs(verbs) -> None:

    p = verbs.add_parser("synth", help="synthesize a corpus offline with text-to-speech")
    p.add_argument("--out", required=True)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domain", help="comma-separated, a name twice is drawn twice as often: digits, commands, "
                                    "general, zh_digits, zh_commands, mixed_commands (default: the language's)")
    p.add_argument("--lang", default="en", choices=["en", "zh", "zh-en"],
                   help="English (default), Mandarin, or both with mixed Chinese-English utterances")
    p.add_argument("--text-file", help="sentences to speak, one a line (replaces --domain)")
    p.add_argument("--engines", help="comma-separated TTS engines (default: espeak-ng, flite, festival, those "
                                     "installed; 'all' adds mbrola, rhvoice and pico where installed: make voices)")
    p.add_argument("--holdout-engine", help="put every voice of this engine in the test split only")
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(func=_cmd_synth)

    p = verbs.add_parser("prepare", help="make a manifest from a corpus layout")
    p.add_argument("kind", choices=["librispeech", "commonvoice", "kaldi", "folder"])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--split", default="train", help="Common Voice split: train, dev, test, ...")
    p.set_defaults(func=_cmd_prepare)

    p = verbs.add_parser("train", help="train a recognizer")
    p.add_argument("--config", help="YAML config (missing fields keep their defaults)")
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE", help="e.g. train.lr=1e-3")
    p.set_defaults(func=_cmd_train)

    p = verbs.add_parser("evaluate", help="WER/CER of a model on a manifest; a robustness report with --noise")
    p.add_argument("--model", required=True, action="append", help="a model directory (repeat to compare)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", help="per-utterance results (JSONL); default: results-<manifest>.jsonl beside MODEL")
    p.add_argument("--by-speaker", action="store_true", help="also print the WER of each speaker, worst first")
    add_speed_flags(p)
    add_decode_flags(p)
    _add_robustness_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = verbs.add_parser("transcribe", help="print path<TAB>text for each audio file")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["text", "json"], default="text")
    add_speed_flags(p)
    p.add_argument("files", nargs="+")
    add_decode_flags(p)
    p.set_defaults(func=_cmd_transcribe)

    p = verbs.add_parser("demo", help="synthesize the default corpus, train, evaluate, transcribe")
    p.add_argument("--out", default=None, help="default: runs/demo (en), runs/demo-zh-en (zh-en)")
    p.add_argument("--lang", default="en", choices=["en", "zh-en"],
                   help="the English demo (default) or the bilingual Chinese-English one")
    p.add_argument("--hours", type=float, default=None, help="corpus size (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_demo)
