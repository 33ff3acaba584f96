"""Fine-tune Whisper base (frozen encoder) on the default synthetic corpus and measure what it gains and forgets.

Run after bench/whisper.py (which converts the model and prepares the real recordings):
``.venv/bin/python bench/whisper_finetune.py [--train-utts 400] [--epochs 3] [--minutes 12] [--lr 2e-5|auto]``

Training: ``ceasr.whisper.finetune.finetune`` (what ``ceasr finetune`` runs) on an evenly spread subset of
the demo corpus's train split, dev = a subset of its dev split, general-speech dev = the 12 transcribed real
recordings of bench/whisper.py (keep rule: lowest dev WER among checkpoints that lose at most 1 WER point
there). ``--lr auto`` takes the LR range test's suggestion (``OUT/lr_find.png``). Test: the demo corpus's
test split (voices never heard in training), greedy, English, before and after. The encoder is frozen: every
utterance's encoder output is kept in ``WORK/encoder-cache`` and reused by later runs (the first run encodes,
about 2 s per utterance on one thread). Printed: the epochs, the best model's test errors by voice with its
first wrong transcripts, and the test table; it also shows the last epoch when the guard rejected it (what
training reached). The last line is the headline: test WER zero-shot -> the best fine-tuned checkpoint, and
which epoch the guard kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, pin_threads, write_json  # noqa: E402

from ceasr.data.manifest import load_rows  # noqa: E402
from ceasr.train import checkpoint as ckpt  # noqa: E402
from ceasr.metrics import corpus_errors  # noqa: E402
from ceasr.whisper.audio import window_frames  # noqa: E402
from ceasr.whisper.config import WhisperFinetuneConfig  # noqa: E402
from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest  # noqa: E402
from ceasr.whisper.examples import encoder_split, prepare, subset  # noqa: E402
from ceasr.whisper.finetune import finetune, greedy_texts  # noqa: E402
from ceasr.whisper.selection import EpochReport  # noqa: E402
from ceasr.whisper.recognizer import load_whisper_dir  # noqa: E402


def _with_checkpoint(base_dir: Path, path: Path):
    """The base model with a fine-tuning checkpoint's weights, and that epoch's report."""
    model, _, _ = load_whisper_dir(base_dir)
    state = ckpt.load_checkpoint(path, model, restore_rng=False)
    return model, state["extra"]["report"]


def errors_by_voice(rows, refs: list[str], hyps: list[str], name: str, examples: int = 12) -> str:
    """Test WER per voice (engine:voice; espeak-ng's +variants pooled) of one model, worst first, and its first
    wrong transcripts."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.speaker or "?").split("+")[0], []).append(i)
    table = []
    for voice, idx in groups.items():
        e = corpus_errors([refs[i] for i in idx], [hyps[i] for i in idx])
        table.append([voice, str(len(idx)), f"{100 * e.rate:.2f}", f"{e.S}/{e.D}/{e.I}/{e.N}"])
    table.sort(key=lambda r: -float(r[2]))
    wrong = [f"#   {rows[i].speaker}: ref {refs[i]!r} | hyp {hyps[i]!r}" for i in range(len(refs)) if refs[i] != hyps[i]]
    return "\n".join([f"# test errors of {name} by voice ({len(wrong)} utterances wrong)",
                      format_table(["voice", "utts", "WER %", "S/D/I/N"], table), *wrong[:examples]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "runs/whisper-bench"))
    ap.add_argument("--data", default="/work/main/runs/demo/data")
    ap.add_argument("--train-utts", type=int, default=400)
    ap.add_argument("--dev-utts", type=int, default=0, help="0: the whole dev split (60 cannot rank models a point apart)")
    ap.add_argument("--test-utts", type=int, default=0, help="0: the whole test split")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", default="2e-5", help="a learning rate, or 'auto': the LR range test's suggestion")
    ap.add_argument("--lr-find-steps", type=int, default=100)
    ap.add_argument("--encoder-cache", default=None, help="default: WORK/encoder-cache")
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--out", default="finetune", help="folder under --work for checkpoints and the model")
    ap.add_argument("--minutes", type=float, default=12.0, help="no new epoch after this much training time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-encoder-layers", type=int, default=0, help="also train the top N encoder blocks")
    ap.add_argument("--merge-ratios", default="0.5,0.7", help="WiSE-FT merges with the final weights (comma-separated)")
    ap.add_argument("--audio-ctx", type=int, default=0, help="train and decode on windows of this many encoder "
                    "frames (50 a second; 0: 30 s)")
    ap.add_argument("--runs", type=int, default=1, help="N > 1: a model soup of N runs (seeds seed .. seed + N - 1)")
    ap.add_argument("--speeds", default="", help="speed perturbation: also these speeds, e.g. 0.9,1.1")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch order (train.seed)")
    ap.add_argument("--average-last", type=int, default=1, help="k > 1: the mean of the last k epochs is one more "
                    "candidate, and the merges are of it (train.average_last)")
    args = ap.parse_args()
    pin_threads(args.threads)
    load = load_average()
    work, data = Path(args.work), Path(args.data)
    base_dir = work / "ceasr-base"
    cfg = WhisperFinetuneConfig()
    auto = args.lr == "auto"
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr if auto else float(args.lr), max_epochs=args.epochs,
                                       warmup_steps=10, seed=args.seed,
                                       average_last=args.average_last),
        max_train_utterances=args.train_utts, max_minutes=args.minutes, batch_size=8, patience=2,
        label_smoothing=args.label_smoothing, lr_find_steps=args.lr_find_steps if auto else 0,
        encoder_cache=args.encoder_cache or str(work / "encoder-cache"),
        merge_ratios=tuple(float(r) for r in args.merge_ratios.split(",") if r),
        train_encoder_layers=args.train_encoder_layers, audio_ctx=args.audio_ctx,
        speeds=tuple(float(s) for s in args.speeds.split(",") if s), runs=args.runs)
    start = time.perf_counter()
    result = finetune(base_dir, load_rows(data / "train.jsonl"), subset(load_rows(data / "dev.jsonl"), args.dev_utts),
                      work / args.out, cfg, general_rows=load_rows(work / "real" / "real.jsonl"))
    train_seconds = time.perf_counter() - start

    base, _, tok = load_whisper_dir(base_dir)
    models = {"zero-shot (converted base)": (base, result.epochs[0])}
    kept = result.kept_report
    kept_model, kept_cfg, _ = load_whisper_dir(result.model_dir)
    models[f"fine-tuned, kept (epoch {kept.name})"] = (kept_model, kept)
    last = ckpt.latest_checkpoint(work / args.out / (f"run{args.runs}" if args.runs > 1 else ""))
    last_model, last_report = _with_checkpoint(base_dir, last)
    if (last_report["epoch"], 1.0, 1) != (kept.epoch, kept.merge, kept.averaged):  # what training reached
        models[f"fine-tuned, last (epoch {last_report['epoch']}, not kept)"] = (last_model, EpochReport(**last_report))
    test_rows = subset(load_rows(data / "test.jsonl"), args.test_utts)
    frames = window_frames(kept_cfg.decode.audio_ctx, base.cfg.n_audio_ctx)  # the window fine-tuning used
    cache = EncoderCache(cfg.encoder_cache, encoder_digest(base, encoder_split(base, cfg), frames))
    test = prepare(test_rows, base, tok, cfg, "test", True, cache, frames)
    assert not test.skipped, "every test utterance is readable"
    rows, wers, hyps = [], {}, {}
    with torch.inference_mode():
        for name, (model, rep) in models.items():
            hyps[name] = greedy_texts(model, test, tok, cfg)
            wers[name] = 100 * corpus_errors(test.refs, hyps[name]).rate
            rows.append([name, f"{wers[name]:.2f}", f"{rep.dev_wer:.2f}", f"{rep.general_wer:.2f}"])
    print(header(args.threads, load, f"fine-tuning {train_seconds / 60:.1f} min, {len(test.refs)} test utterances"))
    print(result.table())
    best = min(wers, key=wers.get)
    print(errors_by_voice(test_rows, test.refs, hyps[best], best))
    print(format_table(["model", "test WER % (held-out voices)", "dev WER %", "real speech WER %"], rows))
    print(f"headline: synthetic test WER {wers[next(iter(wers))]:.2f}% zero-shot -> {wers[best]:.2f}% ({best}); "
          f"kept by the forgetting guard: epoch {kept.name}")
    write_json(work / f"{args.out}-results.json", {"test_wer": wers, "lr": result.lr, "test_hyps": hyps, "epochs": [dataclasses.asdict(e) for e in result.epochs],
                                                   "kept": kept.name, "train_seconds": train_seconds})


if __name__ == "__main__":
    main()
