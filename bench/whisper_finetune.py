"""Fine-tune Whisper base (frozen encoder) on the default synthetic corpus and measure what it gains and forgets.

Run after bench/whisper.py (which converts the model and prepares the real recordings):
``.venv/bin/python bench/whisper_finetune.py [--train-utts 400] [--epochs 3] [--minutes 12] [--lr 2e-5]``

Training: ``ceasr.whisper.finetune.finetune`` (what ``ceasr finetune`` runs) on an evenly spread subset of
the demo corpus's train split, dev = a subset of its dev split, general-speech dev = the 12 transcribed real
recordings of bench/whisper.py (keep rule: lowest dev WER among checkpoints that lose at most 1 WER point
there). Test: the demo corpus's test split (voices never heard in training), greedy, English, before and
after. The encoder is frozen, so the test set is encoded once and both decoders read the same encoder output.
The table also shows the last epoch when the guard rejected it (what training reached). The last line is
the headline: test WER zero-shot -> the best fine-tuned checkpoint, and which epoch the guard kept.
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

from ceasr.config import WhisperFinetuneConfig  # noqa: E402
from ceasr.data.manifest import load_rows  # noqa: E402
from ceasr.train import checkpoint as ckpt  # noqa: E402
from ceasr.whisper.finetune import EpochReport, _prepare, _subset, dev_wer, finetune  # noqa: E402
from ceasr.whisper.recognizer import load_whisper_dir  # noqa: E402


def _with_checkpoint(base_dir: Path, path: Path):
    """The base model with a fine-tuning checkpoint's weights, and that epoch's report."""
    model, _, _ = load_whisper_dir(base_dir)
    state = ckpt.load_checkpoint(path, model, restore_rng=False)
    return model, state["extra"]["report"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "runs/whisper-bench"))
    ap.add_argument("--data", default="/work/main/runs/demo/data")
    ap.add_argument("--train-utts", type=int, default=400)
    ap.add_argument("--dev-utts", type=int, default=60)
    ap.add_argument("--test-utts", type=int, default=0, help="0: the whole test split")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--out", default="finetune", help="folder under --work for checkpoints and the model")
    ap.add_argument("--minutes", type=float, default=12.0, help="no new epoch after this much training time")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pin_threads(args.threads)
    load = load_average()
    work, data = Path(args.work), Path(args.data)
    base_dir = work / "ceasr-base"
    cfg = WhisperFinetuneConfig()
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, lr=args.lr, max_epochs=args.epochs, warmup_steps=10),
        max_train_utterances=args.train_utts, max_minutes=args.minutes, batch_size=8, patience=2,
        label_smoothing=args.label_smoothing)
    start = time.perf_counter()
    result = finetune(base_dir, load_rows(data / "train.jsonl"), _subset(load_rows(data / "dev.jsonl"), args.dev_utts),
                      work / args.out, cfg, general_rows=load_rows(work / "real" / "real.jsonl"))
    train_seconds = time.perf_counter() - start

    base, _, tok = load_whisper_dir(base_dir)
    models = {"zero-shot (converted base)": (base, result.epochs[0])}
    kept = result.epochs[result.kept_epoch]
    models[f"fine-tuned, kept (epoch {result.kept_epoch})"] = (load_whisper_dir(result.model_dir)[0], kept)
    last = ckpt.latest_checkpoint(work / args.out)
    last_model, last_report = _with_checkpoint(base_dir, last)
    if last_report["epoch"] != result.kept_epoch:  # what training reached, even if the guard rejected it
        models[f"fine-tuned, last (epoch {last_report['epoch']}, not kept)"] = (last_model, EpochReport(**last_report))
    test = _prepare(_subset(load_rows(data / "test.jsonl"), args.test_utts), base, tok, cfg, "test", True)
    rows, wers = [], {}
    with torch.inference_mode():
        for name, (model, rep) in models.items():
            wers[name] = dev_wer(model, test, tok, cfg)
            rows.append([name, f"{wers[name]:.2f}", f"{rep.dev_wer:.2f}", f"{rep.general_wer:.2f}"])
    print(header(args.threads, load, f"fine-tuning {train_seconds / 60:.1f} min, {len(test.refs)} test utterances"))
    print(result.table())
    print(format_table(["model", "test WER % (held-out voices)", "dev WER %", "real speech WER %"], rows))
    best = min(wers, key=wers.get)
    print(f"headline: synthetic test WER {wers[next(iter(wers))]:.2f}% zero-shot -> {wers[best]:.2f}% ({best}); "
          f"kept by the forgetting guard: epoch {result.kept_epoch}")
    write_json(work / f"{args.out}-results.json", {"test_wer": wers, "epochs": [dataclasses.asdict(e) for e in result.epochs],
                                                   "kept_epoch": result.kept_epoch, "train_seconds": train_seconds})


if __name__ == "__main__":
    main()
