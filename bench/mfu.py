"""Training model-FLOPs utilization (MFU) of a ceasr model on CPU.

Run: ``.venv/bin/python bench/mfu.py [--config demo.yaml] [--batch-seconds S] [--steps 20] [--threads 2]
[section.field=value ...]`` (config overrides, e.g. ``model.subsampling_channels=32``).

One run measures, alternating so that drifts in machine load hit both: (a) training steps of the model built
from the config (forward + backward + gradient clipping + optimizer and scheduler step, in train mode with
dropout, exactly what ``ceasr train`` does per batch minus SpecAugment and data loading) and (b) an fp32
square matmul (``--matmul-size``), the machine's practical peak. Batches have the demo corpus's shapes:
utterance durations drawn uniformly from ``--min-seconds``..``--max-seconds`` (or read from ``--manifest``),
packed by ceasr's duration-bucket sampler under ``batch_seconds`` of padded audio, with synthetic features of
the right shapes and ``--tokens-per-second`` target tokens (3.1 is the demo corpus's BPE-128 rate).
Warm-up steps and products are excluded.

MFU = FLOPs of the step counted from its padded shapes (``ceasr.models.asr.count_flops``, backward = 2x
forward) / step time / matmul rate; the median over steps is the headline (the table's last line).
``--profile`` adds torch.profiler's top operators over a few more steps.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO, format_table, header, load_average, median, p90, pin_threads, wait_for_quiet, write_json,
)

from ceasr.config import load_config  # noqa: E402
from ceasr.data.manifest import read_manifest  # noqa: E402
from ceasr.data.sampler import DurationBucketSampler  # noqa: E402
from ceasr.errors import CeasrError  # noqa: E402
from ceasr.features import Fbank  # noqa: E402
from ceasr.models.asr import build_model, count_flops  # noqa: E402
from ceasr.train.optim import autocast, build_optimizer, build_scheduler  # noqa: E402

DEFAULT_CONFIG = REPO / "src/ceasr/configs/demo.yaml"


@dataclass(frozen=True)
class Batch:
    feats: torch.Tensor  # (B, T, F), zero past each length
    feat_lens: torch.Tensor  # (B,)
    ys: torch.Tensor  # (B, L) ids >= 3, padded with -1
    ys_lens: torch.Tensor  # (B,)
    audio_seconds: float

    def flops(self, cfg, vocab_size: int) -> int:
        b, t, f = self.feats.shape
        return count_flops(cfg.model, f, vocab_size, t, self.ys.shape[1], b, backward=True)


def durations(args) -> np.ndarray:
    """Utterance durations (s): the manifest's, or uniform in [min, max] (enough for any number of steps)."""
    if args.manifest:
        rows, _ = read_manifest(args.manifest)
        return np.array([r.duration for r in rows if r.duration], dtype=np.float64)
    budget = args.batch_seconds or 120.0
    n = int(2 * (args.steps + args.warmup + 8) * budget / args.min_seconds) + 64
    return np.random.default_rng(args.seed).uniform(args.min_seconds, args.max_seconds, n)


def make_batch(secs: np.ndarray, fbank: Fbank, n_mels: int, vocab: int, tps: float, gen) -> Batch:
    """Synthetic features and targets with the shapes a real batch of these durations would have."""
    samples = np.round(secs * fbank.cfg.sample_rate).astype(np.int64)
    feat_lens = torch.tensor([int(fbank.num_frames(int(n))) for n in samples])
    ys_lens = torch.tensor([max(1, round(tps * s)) for s in secs])
    b, t, length = len(secs), int(feat_lens.max()), int(ys_lens.max())
    valid = torch.arange(t)[None, :] < feat_lens[:, None]  # (B, T)
    feats = torch.randn(b, t, n_mels, generator=gen) * valid[..., None]
    ys = torch.randint(3, vocab, (b, length), generator=gen)
    ys[torch.arange(length)[None, :] >= ys_lens[:, None]] = -1
    return Batch(feats, feat_lens, ys, ys_lens, float(secs.sum()))


def make_batches(cfg, args, vocab: int, count: int) -> list[Batch]:
    """The first ``count`` batches of an epoch of the duration-bucket sampler (buckets mixed, as in training)."""
    secs = durations(args)
    budget = args.batch_seconds or cfg.train.batch_seconds
    sampler = DurationBucketSampler(secs.tolist(), budget, cfg.train.num_buckets, seed=args.seed)
    fbank, gen = Fbank(cfg.features), torch.Generator().manual_seed(args.seed)
    picked = []
    for epoch in range(1000):  # a short manifest may need several epochs for `count` batches
        picked.extend(sampler.global_batches(epoch))
        if len(picked) >= count:
            break
    return [make_batch(secs[idx], fbank, cfg.features.n_mels, vocab, args.tokens_per_second, gen)
            for idx in picked[:count]]


def trainer(cfg, vocab: int):
    """A closure doing one training step on a batch, as ``ceasr.train.loop.train_step`` does."""
    model = build_model(cfg.model, cfg.features.n_mels, vocab).train()
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, total_steps=10_000)
    clip = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf

    def step(batch: Batch) -> None:
        with autocast(cfg.train.precision):
            loss, _ = model(batch.feats, batch.feat_lens, batch.ys, batch.ys_lens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step, model


def matmul_runner(n: int):
    """A closure timing one fp32 (n, n) @ (n, n) product into a preallocated output; returns seconds."""
    gen = torch.Generator().manual_seed(0)
    a, b, out = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen), torch.empty(n, n)

    def run() -> float:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        return time.perf_counter() - start

    return run


def measure(step, matmul, batches: list[Batch], warmup: int, matmuls_per_step: int):
    """Step seconds per measured batch and matmul seconds, alternating; the first ``warmup`` batches and
    ``matmuls_per_step`` products only warm up (allocator, oneDNN primitives, optimizer state)."""
    for batch in batches[:warmup]:
        step(batch)
    for _ in range(matmuls_per_step):
        matmul()
    step_s, mm_s = [], []
    for batch in batches[warmup:]:
        start = time.perf_counter()
        step(batch)
        step_s.append(time.perf_counter() - start)
        mm_s.extend(matmul() for _ in range(matmuls_per_step))
    return step_s, mm_s


def profile_ops(step, batches: list[Batch], top: int) -> str:
    """torch.profiler's operators by self CPU time over ``batches`` (after the measured steps)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [[e.key, f"{e.self_cpu_time_total / 1e3 / len(batches):.1f}",
             f"{100 * e.self_cpu_time_total / total:.1f}", f"{e.count // len(batches)}"] for e in events[:top]]
    table = format_table(["operator (self CPU time)", "ms/step", "%", "calls/step"], rows)
    return f"# profile over {len(batches)} steps (warm)\n{table}\n"


def report(cfg, args, vocab: int, batches: list[Batch], step_s: list[float], mm_s: list[float]) -> dict:
    """Print the table (last line: MFU) and return its figures."""
    measured = batches[args.warmup:]
    flops = [b.flops(cfg, vocab) for b in measured]
    rates = [f / t for f, t in zip(flops, step_s)]  # achieved FLOP/s per step
    peak = 2 * args.matmul_size**3 / median(mm_s)
    mfu = median(rates) / peak
    audio = sum(b.audio_seconds for b in measured) / sum(step_s)
    shapes = [tuple(b.feats.shape[:2]) for b in measured]
    rows = [
        ["measured steps (after warm-up)", f"{len(measured)} (+{args.warmup})"],
        ["utterances x padded frames per batch (median)",
         f"{median([s[0] for s in shapes]):.0f} x {median([s[1] for s in shapes]):.0f}"],
        ["GFLOP per step (median; fwd + bwd)", f"{median(flops) / 1e9:.2f}"],
        ["step time (median / p90), s", f"{median(step_s):.3f} / {p90(step_s):.3f}"],
        ["training speed, audio s per wall s", f"{audio:.1f}"],
        ["achieved GFLOP/s (median over steps)", f"{median(rates) / 1e9:.1f}"],
        [f"peak: fp32 {args.matmul_size}^2 matmul GFLOP/s (median of {len(mm_s)})", f"{peak / 1e9:.1f}"],
        ["MFU (achieved / peak)", f"{100 * mfu:.1f} %"],
    ]
    print(format_table(["", "value"], rows))
    return {
        "threads": args.threads, "config": str(args.config), "overrides": args.overrides, "steps": len(measured),
        "gflop_per_step_median": median(flops) / 1e9, "step_seconds_median": median(step_s),
        "step_seconds_p90": p90(step_s), "achieved_gflops_median": median(rates) / 1e9,
        "peak_gflops": peak / 1e9, "mfu": mfu, "audio_seconds_per_second": audio,
        "step_seconds": step_s, "matmul_seconds": mm_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--batch-seconds", type=float, default=None, help="default: the config's train.batch_seconds")
    parser.add_argument("--steps", type=int, default=20, help="measured training steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmuls-per-step", type=int, default=2)
    parser.add_argument("--manifest", help="take utterance durations from this manifest instead")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    parser.add_argument("--tokens-per-second", type=float, default=3.1)
    parser.add_argument("--vocab-size", type=int, default=None, help="default: the config's tokenizer.vocab_size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS", help="profile this many more steps")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES",
                        help="first wait up to this long for the 1-min load average to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.subsampling_channels=32")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    vocab = args.vocab_size or cfg.tokenizer.vocab_size
    pin_threads(args.threads)
    torch.manual_seed(args.seed)
    batches = make_batches(cfg, args, vocab, args.warmup + args.steps + args.profile)
    step, _ = trainer(cfg, vocab)
    if args.wait_quiet > 0:
        wait_for_quiet(args.max_load, 60 * args.wait_quiet)
    load = load_average()
    step_s, mm_s = measure(step, matmul_runner(args.matmul_size), batches[: args.warmup + args.steps],
                           args.warmup, args.matmuls_per_step)
    if args.profile:
        print(profile_ops(step, batches[args.warmup + args.steps:], top=15))
    m = cfg.model
    print(header(args.threads, load, f"model {m.encoder} d={m.d_model} x{m.encoder_layers} "
                               f"(decoder {m.decoder_layers}), vocab {vocab}, batch_seconds "
                               f"{args.batch_seconds or cfg.train.batch_seconds:g}"))
    figures = report(cfg, args, vocab, batches[: args.warmup + args.steps], step_s, mm_s)
    if args.out:
        write_json(args.out, figures)


if __name__ == "__main__":
    try:
        main()
    except CeasrError as e:  # a bad model, manifest, config or peer: one line, no traceback
        sys.exit(f"error: {e}")
