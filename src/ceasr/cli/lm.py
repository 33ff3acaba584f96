"""Language-model verbs: train-lm and tune-decode."""

from __future__ import annotations

from pathlib import Path

from ceasr.cli.common import add_decode_flags, decode_overrides
from ceasr.errors import ConfigError


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

    recognizer = load_model(args.model, decode=decode_overrides(args))
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


def add_verbs(verbs) -> None:
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
    add_decode_flags(p)
    p.set_defaults(func=_cmd_tune_decode)
