"""`ceasr <verb>`: thin shells over library calls. A user's mistake is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ceasr.errors import CeasrError, ConfigError


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
        domains=tuple(_split(args.domain)) or None,
        text_file=args.text_file,
        engines=_split(args.engines) or None,
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
        recognizer = load_model(model, decode=_decode_overrides(args))
        # Beside the model directory, never inside it: a model directory holds the model and nothing else.
        out = args.out or Path(model).resolve().parent / f"results-{Path(args.manifest).stem}.jsonl"
        report = evaluate_manifest(recognizer, args.manifest, out=out)
        print(f"{model}:\n{report.summary_lines()}" if len(args.model) > 1 else report.summary_lines())


def _cmd_robustness(args) -> None:
    from ceasr.api import load_model
    from ceasr.data.manifest import load_rows
    from ceasr.errors import ConfigError
    from ceasr.robustness import condition_grid, format_table, robustness_report

    try:
        gains = [float(g) for g in _split(args.gain)]
    except ValueError:
        raise ConfigError(f"--gain: expected comma-separated dB values, got {args.gain!r}") from None
    conditions = condition_grid(_split(args.noise), _split(args.snr), gains, args.rir)
    labels = _model_labels(args.model)
    models = {label: load_model(m, decode=_decode_overrides(args)) for label, m in zip(labels, args.model)}
    out = Path(args.out_dir or Path(args.model[0]).resolve().parent / f"robustness-{Path(args.manifest).stem}")
    scores = robustness_report(models, load_rows(args.manifest), conditions, out, seed=args.seed)
    print(format_table(scores))
    print(f"wrote {out / 'robustness.json'}, {out / 'robustness.csv'}, {out / 'robustness.png'}")


def _model_labels(paths: list[str]) -> list[str]:
    """Short distinct names for the models: the directory name, with its parent's when names clash."""
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(p).resolve().parent.name}/{Path(p).resolve().name}" for p in paths]


def _attach_lists(argv: list[str]) -> list[str]:
    """``--gain -30,6`` as ``--gain=-30,6``: argparse would take a value starting with '-' for a flag."""
    out = []
    for arg in argv:
        if out and out[-1] in ("--gain", "--snr") and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


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

    recognizer = load_model(args.model, decode=_decode_overrides(args))
    failed = transcribe_files(recognizer, args.files, fmt=args.format)
    if failed == len(args.files):
        raise SystemExit(1)


def _cmd_demo(args) -> None:
    from ceasr.demo import run_demo

    run_demo(args.out, hours=args.hours, seed=args.seed, overrides=args.overrides, lang=args.lang)


def _cmd_train_lm(args) -> None:
    from ceasr.lm import read_texts, train_lm

    cfg = _lm_config(args)
    tokenizer = _lm_tokenizer(args.tokenizer) if args.tokenizer else None
    heldout = read_texts(args.heldout) if args.heldout else None
    ppl = train_lm(cfg, read_texts(args.text), args.out, tokenizer=tokenizer, heldout=heldout)
    print(f"wrote {args.out} ({cfg.type}, {cfg.units}); held-out {ppl}" if ppl else f"wrote {args.out}")


def _lm_config(args):
    """LMConfig from --type/--units/--order and ``--set field=value`` (``train.field=value`` for training)."""
    from ceasr.config import LMConfig, from_dict, to_dict

    units = args.units or ("tokens" if args.type == "transformer" else "words")
    data = to_dict(LMConfig(type=args.type, units=units, order=args.order))
    for item in args.set:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        target = data["train"] if len(parts) == 2 and parts[0] == "train" else data if len(parts) == 1 else None
        if not sep or target is None or parts[-1] not in target:
            raise ConfigError(f"bad --set {item!r}: expected field=value or train.field=value with a known field")
        target[parts[-1]] = value
    return from_dict(LMConfig, data, "lm")


def _lm_tokenizer(path: str):
    """The tokenizer of a model directory, or a tokenizer directory itself."""
    from ceasr.text.tokenizer import load_tokenizer

    p = Path(path)
    return load_tokenizer(p / "tokenizer" if (p / "tokenizer").is_dir() else p)


def _cmd_tune_decode(args) -> None:
    from ceasr.api import load_model
    from ceasr.data.manifest import read_reported
    from ceasr.tune_decode import tune_decode, write_decode_config

    recognizer = load_model(args.model, decode=_decode_overrides(args))
    if recognizer.cfg.decode.method == "ctc_greedy":  # greedy decoding has no beam to fuse an LM into
        recognizer = recognizer.with_decode(method="ctc_prefix_beam")
    rows, bad = read_reported(args.manifest)
    result = tune_decode(recognizer, rows, trials=args.trials, seed=args.seed)
    out = args.out or Path(args.model).resolve().parent / f"decode-{Path(args.manifest).stem}.json"
    write_decode_config(result.best, out)
    b = result.best
    print(f"trials={len(result.trials)} skipped_rows={bad}\nstarting config: WER={result.start_wer:.4f}\n"
          f"best: lm_weight={b.lm_weight:.3f} length_penalty={b.length_penalty:.3f} beam_size={b.beam_size} "
          f"WER={result.best_wer:.4f}\nwrote {out} (use it with --decode-config)")


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


def _cmd_command(args) -> None:
    from ceasr.commands.recognize import load_command_recognizer, recognize_files

    crec = load_command_recognizer(args.model, args.commands, args.threshold)
    if recognize_files(crec, args.files, fmt=args.format) == len(args.files):
        raise SystemExit(1)


def _cmd_listen(args) -> None:
    from ceasr.commands.recognize import load_command_recognizer
    from ceasr.commands.stream import CommandSpotter, file_chunks, listen, pcm_chunks

    crec = load_command_recognizer(args.model, args.commands, args.threshold)
    chunk = round(crec.sample_rate * args.chunk_ms / 1000)
    if args.input == "-":
        chunks = pcm_chunks(sys.stdin.buffer, chunk)
    else:
        chunks = file_chunks(args.input, chunk, crec.sample_rate)
    listen(CommandSpotter(crec), chunks, fmt=args.format)


def _cmd_evaluate_commands(args) -> None:
    from ceasr.commands.evaluate import evaluate_commands
    from ceasr.commands.recognize import load_command_recognizer

    crec = load_command_recognizer(args.model, args.commands, args.threshold)
    out = args.out or Path(args.model).resolve().parent / "commands-eval"
    report = evaluate_commands(crec, args.in_grammar, args.out_of_grammar, args.noise_only, out, args.target_far)
    print(report.summary_lines())


def _add_command_verbs(verbs) -> None:
    """The voice-command verbs: command, listen, evaluate-commands."""
    def common(p):
        p.add_argument("--model", required=True)
        p.add_argument("--commands", default="default", help="a built-in set (default) or a command-set file")
        p.add_argument("--threshold", type=float, help="accept when confidence >= this (default: the config's)")

    p = verbs.add_parser("command", help="recognize one command per audio file (or reject it)")
    common(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_command)

    p = verbs.add_parser("listen", help="spot commands in a long recording or a 16 kHz s16le PCM stream")
    common(p)
    p.add_argument("--input", default="-", help="raw PCM file, audio file, or - for stdin (default)")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="read size")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_cmd_listen)

    p = verbs.add_parser("evaluate-commands", help="accuracy, FRR, FAR, DET curve and RTF of a command set")
    common(p)
    p.add_argument("--in-grammar", required=True, help="manifest of utterances whose text is in the set")
    p.add_argument("--out-of-grammar", required=True, help="manifest of other speech")
    p.add_argument("--noise-only", help="manifest of noise or silence")
    p.add_argument("--target-far", type=float, default=0.02, help="false-accept rate to calibrate for")
    p.add_argument("--out", help="folder for results and commands_det.png (default: commands-eval beside MODEL)")
    p.set_defaults(func=_cmd_evaluate_commands)


def _cmd_convert(args) -> None:
    from ceasr.whisper.convert import convert_whisper

    out = convert_whisper(args.src, args.out, tokenizer=args.tokenizer, language=args.language or "")
    print(f"wrote {out}")


def _cmd_finetune(args) -> None:
    import dataclasses

    from ceasr.config import WhisperFinetuneConfig
    from ceasr.data.manifest import load_rows
    from ceasr.errors import ConfigError
    from ceasr.whisper.finetune import finetune

    base = WhisperFinetuneConfig()
    auto_lr = args.lr == "auto"
    lr = None if args.lr is None or auto_lr else _floats(args.lr, "--lr")[0]
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr: expected a positive number or 'auto', got {args.lr!r}")
    train_fields = {k: v for k, v in {"lr": lr, "max_epochs": args.epochs, "optimizer": args.optimizer,
                                      "scheduler": args.scheduler, "seed": args.seed}.items() if v is not None}
    cfg = dataclasses.replace(
        base, train=dataclasses.replace(base.train, **train_fields), freeze_encoder=not args.train_encoder,
        layer_decay=args.layer_decay, batch_size=args.batch_size, label_smoothing=args.label_smoothing,
        patience=args.patience, max_forgetting=args.max_forgetting, language=args.language,
        max_train_utterances=args.max_train, max_minutes=args.max_minutes, encoder_cache=args.encoder_cache or "",
        lr_find_steps=args.lr_find_steps if auto_lr else 0,
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
    p.add_argument("--lr", help="learning rate, or 'auto': the LR range test's suggestion (OUT/lr_find.png)")
    p.add_argument("--lr-find-steps", type=int, default=100, help="steps of the range test for --lr auto")
    p.add_argument("--encoder-cache", help="folder keeping frozen-encoder outputs across runs")
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
    """``--decode-config FILE``, then ``--method``/``--beam-size``/``--lm``/... and ``--decode k=v`` flags,
    as ``decode.k=v`` config overrides (later ones win)."""
    items = []
    if args.decode_config:
        from ceasr.tune_decode import read_decode_config

        items += read_decode_config(args.decode_config)
    for flag, field in (("lm", "lm"), ("lm_weight", "lm_weight"), ("hotwords", "hotwords")):
        if getattr(args, flag) is not None:
            items.append(f"decode.{field}={getattr(args, flag)}")
    items += [f"decode.{kv}" for kv in _split(args.decode)]
    if args.method:
        items.append(f"decode.method={args.method}")
    if args.beam_size:
        items.append(f"decode.beam_size={args.beam_size}")
    return items


def _add_decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", help="ctc_greedy | ctc_prefix_beam | attention")
    p.add_argument("--beam-size", type=int)
    p.add_argument("--decode", help="decode config fields, e.g. ctc_weight=0.5,length_penalty=0.2")
    p.add_argument("--decode-config", help="a decode config file written by ceasr tune-decode")
    p.add_argument("--lm", help="language model directory (ceasr train-lm) or ARPA file of words")
    p.add_argument("--lm-weight", type=float, help="lambda: score = acoustic + lambda * LM + beta * tokens")
    p.add_argument("--hotwords", help="phrases to boost, one a line: 'phrase' or 'phrase<TAB>boost'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ceasr", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = verbs.add_parser("synth", help="synthesize a corpus offline with text-to-speech")
    p.add_argument("--out", required=True)
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domain", help="comma-separated: digits, commands, zh_digits, zh_commands, mixed_commands "
                                    "(default: the language's)")
    p.add_argument("--lang", default="en", choices=["en", "zh", "zh-en"],
                   help="English (default), Mandarin, or both with mixed Chinese-English utterances")
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

    p = verbs.add_parser("evaluate", help="WER/CER of a model on a manifest; a robustness report with --noise")
    p.add_argument("--model", required=True, action="append", help="a model directory (repeat to compare)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", help="per-utterance results (JSONL); default: results-<manifest>.jsonl beside MODEL")
    _add_decode_flags(p)
    _add_robustness_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = verbs.add_parser("transcribe", help="print path<TAB>text for each audio file")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("files", nargs="+")
    _add_decode_flags(p)
    p.set_defaults(func=_cmd_transcribe)

    p = verbs.add_parser("train-lm", help="train an n-gram or Transformer language model for --lm")
    p.add_argument("--type", choices=["ngram", "transformer"], default="ngram")
    p.add_argument("--text", nargs="+", required=True, help="text files (one sentence a line) or manifests")
    p.add_argument("--out", required=True)
    p.add_argument("--units", choices=["words", "tokens"], help="default: words (ngram), tokens (transformer)")
    p.add_argument("--order", type=int, default=3, help="n-gram order")
    p.add_argument("--tokenizer", help="model directory (or tokenizer directory) whose tokens the LM predicts")
    p.add_argument("--heldout", nargs="+", help="held-out text for perplexity (default: 5%% of --text)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="LM config, e.g. d_model=256 or train.max_steps=2000")
    p.set_defaults(func=_cmd_train_lm)

    p = verbs.add_parser("tune-decode", help="search lambda, beta and the beam size on a dev set (Optuna)")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="dev manifest")
    p.add_argument("--out", help="decode config to write; default: decode-<manifest>.json beside MODEL")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    _add_decode_flags(p)
    p.set_defaults(func=_cmd_tune_decode)

    p = verbs.add_parser("demo", help="synthesize the default corpus, train, evaluate, transcribe")
    p.add_argument("--out", default=None, help="default: runs/demo (en), runs/demo-zh-en (zh-en)")
    p.add_argument("--lang", default="en", choices=["en", "zh-en"],
                   help="the English demo (default) or the bilingual Chinese-English one")
    p.add_argument("--hours", type=float, default=None, help="corpus size (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_demo)
    _add_tune_verbs(verbs)
    _add_command_verbs(verbs)
    _add_whisper_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(_attach_lists(sys.argv[1:] if argv is None else list(argv)))
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
