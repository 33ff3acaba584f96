"""Whisper verbs: convert, finetune, merge."""

from __future__ import annotations

from ceasr.cli.common import floats
from ceasr.errors import ConfigError


def _cmd_convert(args) -> None:
    from ceasr.whisper.convert import convert_whisper

    out = convert_whisper(args.src, args.out, tokenizer=args.tokenizer, language=args.language or "")
    print(f"wrote {out}")


def _cmd_finetune(args) -> None:
    import dataclasses

    from ceasr.data.manifest import load_rows
    from ceasr.whisper.config import WhisperFinetuneConfig
    from ceasr.whisper.finetune import finetune

    base = WhisperFinetuneConfig()
    auto_lr = args.lr == "auto"
    lr = None if args.lr is None or auto_lr else floats(args.lr, "--lr")[0]
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr: expected a positive number or 'auto', got {args.lr!r}")
    train_fields = {k: v for k, v in {"lr": lr, "max_epochs": args.epochs, "optimizer": args.optimizer,
                                      "scheduler": args.scheduler, "seed": args.seed,
                                      "average_last": args.average_last}.items() if v is not None}
    cfg = dataclasses.replace(
        base, train=dataclasses.replace(base.train, **train_fields), freeze_encoder=not args.train_encoder,
        layer_decay=args.layer_decay, batch_size=args.batch_size, label_smoothing=args.label_smoothing,
        patience=args.patience, max_forgetting=args.max_forgetting, language=args.language,
        max_train_utterances=args.max_train, max_minutes=args.max_minutes, encoder_cache=args.encoder_cache or "",
        lr_find_steps=args.lr_find_steps if auto_lr else 0,
        merge_ratios=base.merge_ratios if args.merge_ratios is None else _ratios(args.merge_ratios),
        train_encoder_layers=args.train_encoder_layers, audio_ctx=args.audio_ctx,
        speeds=tuple(floats(args.speeds, "--speeds")) if args.speeds else (), runs=args.runs,
    )
    general = load_rows(args.general_dev) if args.general_dev else None
    result = finetune(args.model, load_rows(args.train), load_rows(args.dev), args.out, cfg, general)
    print(result.table())


def _cmd_merge(args) -> None:
    from ceasr.modeldir import merge_model_dirs

    print(f"wrote {merge_model_dirs(args.base, args.tuned, args.ratio, args.out)}")


def _ratios(text: str) -> tuple[float, ...]:
    """``--merge-ratios``: comma-separated floats, or ``none``."""
    return () if text.strip().lower() == "none" else tuple(floats(text, "--merge-ratios"))


def add_verbs(verbs) -> None:
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
    p.add_argument("--merge-ratios", help="WiSE-FT candidates: r * final weights (the last epoch, or the mean of "
                   "--average-last) + (1 - r) * pretrained, comma-separated (default 0.5,0.7), or none")
    p.add_argument("--average-last", type=int, metavar="K",
                   help="K > 1: the mean of the last K epochs' weights is one more candidate, and the merges are "
                        "of it (default 1: the merges are of the last epoch)")
    p.add_argument("--runs", type=int, default=1, metavar="N",
                   help="N > 1: a model soup: N runs with batch orders seeded seed, seed + 1, ...; the mean of their "
                        "final weights is one more candidate, and the merges are of it")
    p.add_argument("--train-encoder", action="store_true", help="train everything (default: frozen encoder)")
    p.add_argument("--train-encoder-layers", type=int, default=0, metavar="N",
                   help="with the encoder frozen, still train its top N blocks (on cached states below them)")
    p.add_argument("--layer-decay", type=float, default=1.0, help="per-layer LR factor from the top down")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", help="learning rate, or 'auto': the LR range test's suggestion (OUT/lr_find.png)")
    p.add_argument("--lr-find-steps", type=int, default=100, help="steps of the range test for --lr auto")
    p.add_argument("--encoder-cache", help="folder keeping frozen-encoder outputs across runs")
    p.add_argument("--audio-ctx", type=int, default=0, metavar="T",
                   help="train on windows of T encoder frames, 50 a second (saved as decode.audio_ctx; "
                        "0: the model's own, 30 s unless set); longer utterances are skipped")
    p.add_argument("--speeds", metavar="S,S",
                   help="speed perturbation: also train on each utterance played at these speeds (e.g. 0.9,1.1), "
                        "one version of each per epoch drawn at random")
    p.add_argument("--optimizer")
    p.add_argument("--scheduler")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--language", default="en")
    p.add_argument("--max-train", type=int, default=0, help="use this many training utterances (0: all)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="start no epoch after this many minutes of a run's training (0: no limit)")
    p.set_defaults(func=_cmd_finetune)

    p = verbs.add_parser("merge", help="WiSE-FT: interpolate a fine-tuned model's weights with its base model's")
    p.add_argument("--base", required=True, help="the model directory fine-tuning started from")
    p.add_argument("--tuned", required=True, help="the fine-tuned model directory (its config and tokenizer are kept)")
    p.add_argument("--ratio", type=float, required=True, help="share of the tuned weights: 0 = base, 1 = tuned")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_merge)
