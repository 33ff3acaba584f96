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


# Measurement verbs (lr-find, tune, study): one block, registered by _add_tune_verbs.
def _cmd_lr_find(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.lr_find import exp_lrs, lr_find, write_lr_find
    from ceasr.tune.session import limit_rows, prepare

    cfg = load_config(args.config, args.set)
    exp_lrs(args.min, args.max, args.steps)  # bad flags fail before the data is read
    prepared = prepare(cfg, limit_rows(load_rows(args.train), args.limit))
    result = lr_find(cfg, prepared, args.min, args.max, args.steps)
    write_lr_find(result, Path(args.out))
    stop = "diverged" if result.diverged else "ran all steps"
    print(f"{len(result.lrs)} steps ({stop}); smoothed minimum at lr={result.at_minimum:.3g}, "
          f"steepest descent at lr={result.steepest:.3g}; rule: min(steepest, minimum / 10)")
    print(f"suggested_lr={result.suggested:.3g}")


def _cmd_tune(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.search import TuneOptions, tune

    cfg = load_config(args.config, args.set)
    opts = TuneOptions(
        optimizers=tuple(_split(args.optimizers)), lrs=tuple(_floats(args.lrs, "--lrs")), steps=args.steps,
        eval_every=args.eval_every, sampler=args.sampler, trials=args.trials, jobs=args.jobs,
        prune=not args.no_prune, seed=args.seed, study_name=args.study_name, storage=args.storage,
    )
    dev = load_rows(args.dev) if args.dev else []
    command = "ceasr " + " ".join(sys.argv[1:])
    result = tune(cfg, load_rows(args.train), dev, args.folds, opts, args.out, command=command)
    print(f"{result.trials} trials in the study ({result.new_trials} run now); results in {args.out}")
    print(f"best optimizer={result.optimizer} lr={result.lr:.3g} dev_loss={result.dev_loss:.4f}")


def _cmd_study(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.studies import STUDIES, StudyOptions

    cfg = load_config(args.config, args.set)
    opts = StudyOptions(
        steps=args.steps, lrs=tuple(_floats(args.lrs, "--lrs")) if args.lrs else (), seeds=args.seeds,
        eval_every=args.eval_every, limit_train=args.limit_train, limit_dev=args.limit_dev,
        optimizer=args.optimizer, seed=args.seed,
    )
    command = "ceasr " + " ".join(sys.argv[1:])
    line = STUDIES[args.kind](cfg, load_rows(args.train), load_rows(args.dev), opts, Path(args.out), command)
    print(line)


def _floats(value: str, flag: str) -> list[float]:
    from ceasr.errors import ConfigError

    try:
        return [float(v) for v in _split(value)]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated numbers, got {value!r}") from None


def _add_tune_verbs(verbs) -> None:
    p = verbs.add_parser("lr-find", help="LR range test: loss while the learning rate rises exponentially")
    p.add_argument("--config", help="YAML config (its initial weights and batches; the schedule is replaced)")
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min", type=float, default=1e-6)
    p.add_argument("--max", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--limit", type=int, default=0, help="use the first N training rows (0: all)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_lr_find)

    p = verbs.add_parser("tune", help="search optimizer and learning rate (Optuna; dev set or speaker folds)")
    p.add_argument("--config")
    p.add_argument("--train", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dev")
    where.add_argument("--folds", type=int, default=0, help="K speaker-disjoint cross-validation folds")
    p.add_argument("--optimizers", default="sgd,momentum,adam,rmsprop")
    p.add_argument("--lrs", default="1e-4,3e-4,1e-3,3e-3")
    p.add_argument("--steps", type=int, default=200, help="training steps per trial and fold")
    p.add_argument("--eval-every", type=int, default=0, help="dev evaluations for pruning (0: steps / 4)")
    p.add_argument("--out", required=True)
    p.add_argument("--sampler", choices=["grid", "tpe"], default="grid")
    p.add_argument("--trials", type=int, default=0, help="trials wanted in the study (0: grid size, or 20)")
    p.add_argument("--jobs", type=int, default=1, help="trials in parallel (threads)")
    p.add_argument("--no-prune", action="store_true", help="switch off median pruning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite file OUT/tune.db)")
    p.add_argument("--study-name", default="ceasr-tune")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_tune)

    p = verbs.add_parser("study", help="measure: loss functions on a command classifier, or optimizers")
    p.add_argument("kind", choices=["losses", "optimizers"])
    p.add_argument("--config")
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lrs", help="LR sweep (default: the study's own grid)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (optimizers study)")
    p.add_argument("--eval-every", type=int, default=0, help="dev evaluations (0: steps / 10)")
    p.add_argument("--limit-train", type=int, default=0, help="use the first N training rows (0: all)")
    p.add_argument("--limit-dev", type=int, default=0, help="use the first N dev rows (0: all)")
    p.add_argument("--optimizer", default="momentum", help="optimizer of the losses study")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_study)


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
    _add_tune_verbs(verbs)
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
