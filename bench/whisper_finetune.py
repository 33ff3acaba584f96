"""Fine-tune Whisper base (frozen encoder) on the default synthetic corpus and measure what it gains and forgets.

Run after bench/whisper.py (which converts the model and prepares the real recordings):
``.venv/bin/python bench/whisper_finetune.py [--train-utts 400] [--epochs 3] [--minutes 12]``

Training: ``ceasr.whisper.finetune.finetune`` (what ``ceasr finetune`` runs) on an evenly spread subset of
the demo corpus's train split, dev = a subset of its dev split, general-speech dev = the 12 transcribed real
recordings of bench/whisper.py (keep rule: lowest dev WER among checkpoints that lose at most 1 WER point
there). Test: the demo corpus's test split (voices never heard in training), greedy, English, before and
after. The encoder is frozen, so the test set is encoded once and both decoders read the same encoder output.
The last line is the headline: test WER zero-shot -> fine-tuned.
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
from ceasr.whisper.finetune import _prepare, _subset, dev_wer, finetune  # noqa: E402
from ceasr.whisper.recognizer import load_whisper_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "runs/whisper-bench"))
    ap.add_argument("--data", default="/work/main/runs/demo/data")
    ap.add_argument("--train-utts", type=int, default=400)
    ap.add_argument("--dev-utts", type=int, default=60)
    ap.add_argument("--test-utts", type=int, default=0, help="0: the whole test split")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
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
        max_train_utterances=args.train_utts, max_minutes=args.minutes, batch_size=8, patience=2)
    start = time.perf_counter()
    result = finetune(base_dir, load_rows(data / "train.jsonl"), _subset(load_rows(data / "dev.jsonl"), args.dev_utts),
                      work / "finetune", cfg, general_rows=load_rows(work / "real" / "real.jsonl"))
    train_seconds = time.perf_counter() - start

    base, _, tok = load_whisper_dir(base_dir)
    tuned, _, _ = load_whisper_dir(result.model_dir)
    test = _prepare(_subset(load_rows(data / "test.jsonl"), args.test_utts), base, tok, cfg, "test", True)
    with torch.inference_mode():
        zero, ft = dev_wer(base, test, tok, cfg), dev_wer(tuned, test, tok, cfg)
    e0, kept = result.epochs[0], result.epochs[result.kept_epoch]
    print(header(args.threads, load, f"fine-tuning {train_seconds / 60:.1f} min, {len(test.refs)} test utterances"))
    print(result.table())
    rows = [["zero-shot (converted base)", f"{zero:.2f}", f"{e0.dev_wer:.2f}", f"{e0.general_wer:.2f}"],
            [f"fine-tuned (epoch {result.kept_epoch} kept)", f"{ft:.2f}", f"{kept.dev_wer:.2f}", f"{kept.general_wer:.2f}"]]
    print(format_table(["model", "test WER % (held-out voices)", "dev WER %", "real speech WER %"], rows))
    print(f"headline: synthetic test WER {zero:.2f}% zero-shot -> {ft:.2f}% fine-tuned; real speech WER "
          f"{e0.general_wer:.2f}% -> {kept.general_wer:.2f}%")
    write_json(work / "finetune-results.json", {"zero_shot_test_wer": zero, "finetuned_test_wer": ft,
                                                "epochs": [dataclasses.asdict(e) for e in result.epochs],
                                                "kept_epoch": result.kept_epoch, "train_seconds": train_seconds})


if __name__ == "__main__":
    main()
