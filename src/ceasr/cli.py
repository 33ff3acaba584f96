"""`ceasr <verb>`: thin shells over library calls. A user's mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ceasr.errors import CeasrError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (``ceasr <verb>: error: ...``) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _cmd_synth(args) -> None:
    from ceasr.data.synth import synthesize

    summary = synthesize(
        args.out,
        hours=args.hours,
        seed=args.seed,
        domains=tuple(_split(args.domain)),
        text_file=args.text_file,
        engines=_split(args.engines) or None,
        holdout_engine=args.holdout_engine,
        jobs=args.jobs,
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

    recognizer = load_model(args.model, decode=_decode_overrides(args))
    # Beside the model directory, never inside it: a model directory holds the model and nothing else.
    out = args.out or Path(args.model).resolve().parent / f"results-{Path(args.manifest).stem}.jsonl"
    report = evaluate_manifest(recognizer, args.manifest, out=out)
    print(report.summary_lines())


def _cmd_transcribe(args) -> None:
    from ceasr.api import load_model
    from ceasr.transcribe import transcribe_files

    recognizer = load_model(args.model, decode=_decode_overrides(args))
    failed = transcribe_files(recognizer, args.files, fmt=args.format)
    if failed == len(args.files):
        raise SystemExit(1)


def _cmd_demo(args) -> None:
    from ceasr.demo import run_demo

    run_demo(args.out, hours=args.hours, seed=args.seed, overrides=args.overrides)


def _cmd_convert(args) -> None:
    from ceasr.whisper.convert import convert_whisper

    out = convert_whisper(args.src, args.out, tokenizer=args.tokenizer, language=args.language or "")
    print(f"wrote {out}")


def _cmd_finetune(args) -> None:
    import dataclasses

    from ceasr.config import WhisperFinetuneConfig
    from ceasr.data.manifest import load_rows
    from ceasr.whisper.finetune import finetune

    base = WhisperFinetuneConfig()
    train_fields = {k: v for k, v in {"lr": args.lr, "max_epochs": args.epochs, "optimizer": args.optimizer,
                                      "scheduler": args.scheduler, "seed": args.seed}.items() if v is not None}
    cfg = dataclasses.replace(
        base, train=dataclasses.replace(base.train, **train_fields), freeze_encoder=not args.train_encoder,
        layer_decay=args.layer_decay, batch_size=args.batch_size, label_smoothing=args.label_smoothing,
        patience=args.patience, max_forgetting=args.max_forgetting, language=args.language,
        max_train_utterances=args.max_train, max_minutes=args.max_minutes,
    )
    general = load_rows(args.general_dev) if args.general_dev else None
    result = finetune(args.model, load_rows(args.train), load_rows(args.dev), args.out, cfg, general)
    print(result.table())


def _add_whisper_verbs(verbs) -> None:
    p = verbs.add_parser("convert", help="convert a pretrained checkpoint into a ceasr model directory")
    p.add_argument("kind", choices=["whisper"])
    p.add_argument("src", help="OpenAI .pt file, Hugging Face folder, or faster-whisper/CTranslate2 folder")
    p.add_argument("out")
    p.add_argument("--tokenizer", help="tokenizer.json (an OpenAI .pt holds none; default: beside SRC)")
    p.add_argument("--language", help="decode in this language by default (default: detect)")
    p.set_defaults(func=_cmd_convert)

    p = verbs.add_parser("finetune", help="fine-tune a converted Whisper model with label-smoothed cross-entropy")
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--general-dev", help="general-speech manifest to watch for forgetting (before/after)")
    p.add_argument("--max-forgetting", type=float, default=1.0, help="WER points the general set may lose")
    p.add_argument("--train-encoder", action="store_true", help="train everything (default: frozen encoder)")
    p.add_argument("--layer-decay", type=float, default=1.0, help="per-layer LR factor from the top down")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer")
    p.add_argument("--scheduler")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--language", default="en")
    p.add_argument("--max-train", type=int, default=0, help="use this many training utterances (0: all)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="start no epoch after this time (0: no limit)")
    p.set_defaults(func=_cmd_finetune)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _decode_overrides(args) -> list[str]:
    """``--method``/``--beam-size``/``--decode k=v`` flags as ``decode.k=v`` config overrides."""
    items = [f"decode.{kv}" for kv in _split(args.decode)]
    if args.method:
        items.append(f"decode.method={args.method}")
    if args.beam_size:
        items.append(f"decode.beam_size={args.beam_size}")
    return items


def _add_decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", help="ctc_greedy | ctc_prefix_beam | attention")
    p.add_argument("--beam-size", type=int)
    p.add_argument("--decode", help="decode config fields, e.g. ctc_weight=0.5,length_penalty=0.2")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ceasr", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = verbs.add_parser("synth", help="synthesize a corpus offline with text-to-speech")
    p.add_argument("--out", required=True)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domain", default="digits,commands", help="comma-separated: digits, commands")
    p.add_argument("--text-file", help="sentences to speak, one a line (replaces --domain)")
    p.add_argument("--engines", help="comma-separated TTS engines (default: every installed one)")
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

    p = verbs.add_parser("evaluate", help="WER/CER of a model on a manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", help="per-utterance results (JSONL); default: results-<manifest>.jsonl beside MODEL")
    _add_decode_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = verbs.add_parser("transcribe", help="print path<TAB>text for each audio file")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("files", nargs="+")
    _add_decode_flags(p)
    p.set_defaults(func=_cmd_transcribe)

    p = verbs.add_parser("demo", help="synthesize the default corpus, train, evaluate, transcribe")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--hours", type=float, default=None, help="corpus size (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_demo)

    _add_whisper_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CeasrError as e:
        print(f"ceasr {args.verb}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"ceasr {args.verb}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
