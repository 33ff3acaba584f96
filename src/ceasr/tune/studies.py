"""``ceasr study losses|optimizers``: measured comparisons, each run through the one training loop.

Every run is a :func:`ceasr.tune.session.short_run` from fresh weights seeded by ``seed`` (+ the seed index),
so a study repeats from its printed command. LR choice: each variant trains at every LR of its own sweep with
the first seed; while the best (losses: final dev accuracy; optimizers: final dev loss) is at an edge of the
sweep, the sweep is extended a factor 3 beyond that edge (at most ``MAX_EXTEND`` times), so each variant's LR is
bracketed by worse ones rather than cut off by the grid. The best is then run with the other seeds
(optimizers study) and reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceasr.config import ExperimentConfig
from ceasr.data.manifest import Utterance
from ceasr.errors import CeasrError, ConfigError
from ceasr.tune.session import (
    Prepared,
    ShortRun,
    asr_evaluate,
    featurize,
    limit_rows,
    prepare,
    short_run,
)

# Full-batch gradient descent is plain SGD whose step accumulates every batch of the epoch (exact gradient).
OPTIMIZER_STUDY = {
    "gd": ("sgd", True),
    "sgd": ("sgd", False),
    "momentum": ("momentum", False),
    "nesterov": ("nesterov", False),
    "adam": ("adam", False),
    "rmsprop": ("rmsprop", False),
}
_SGD_LRS, _ADAPTIVE_LRS = (0.03, 0.1, 0.3), (1e-3, 3e-3, 1e-2)
DEFAULT_OPTIMIZER_LRS = {
    "gd": _SGD_LRS, "sgd": _SGD_LRS, "momentum": _SGD_LRS, "nesterov": _SGD_LRS,
    "adam": _ADAPTIVE_LRS, "rmsprop": _ADAPTIVE_LRS,
}
# For Adam, the losses study's default optimizer: the winners of a 300-step sweep from 3e-5 to 1e-2 (2026-11-30).
DEFAULT_LOSS_LRS = (1e-4, 3e-4, 1e-3)
# The classifier needs ~1000 Adam steps to separate the losses on the demo corpus (300 left all near chance).
DEFAULT_STEPS = {"losses": 1000, "optimizers": 300}
MAX_EXTEND = 2  # LRs added beyond an edge of a sweep whose best is at that edge


@dataclass(frozen=True)
class StudyOptions:
    steps: int = 300
    lrs: tuple[float, ...] = ()  # the sweep for every variant; empty: the study's defaults
    seeds: int = 3  # optimizers study
    eval_every: int = 0  # 0: steps / 10
    limit_train: int = 0  # first N rows (0: all)
    limit_dev: int = 0
    optimizer: str = "adam"  # losses study
    seed: int = 0

    def every(self) -> int:
        return self.eval_every or max(1, self.steps // 10)


@dataclass
class Variant:
    """One compared variant: the LR sweep (first seed) and the runs at its best LR (one per seed)."""

    name: str
    sweep: dict[float, ShortRun]
    best_lr: float
    runs: list[ShortRun]
    grad_norms: list[float] = dataclasses.field(default_factory=list)  # losses study: of the best run


def bracketed_sweep(lrs, run_at: Callable[[float], ShortRun], key: Callable[[ShortRun], Any]) -> dict:
    """``{lr: run_at(lr)}`` over ``lrs``, sorted; while the best (lowest ``key``) is at an edge of the sweep, the LR
    a factor 3 beyond that edge is added (at most ``MAX_EXTEND`` times), so the best is bracketed when it can be."""
    sweep = {lr: run_at(lr) for lr in sorted(set(lrs))}
    for _ in range(MAX_EXTEND):
        ordered = sorted(sweep)
        best = min(ordered, key=lambda lr: key(sweep[lr]))
        if len(ordered) < 2 or best not in (ordered[0], ordered[-1]):
            break
        beyond = best / 3.0 if best == ordered[0] else best * 3.0
        sweep[beyond] = run_at(beyond)
    return dict(sorted(sweep.items()))


def _check(opts: StudyOptions) -> None:
    if opts.steps < 1 or opts.seeds < 1:
        raise ConfigError("study: --steps and --seeds must be at least 1")
    if any(not (lr > 0 and math.isfinite(lr)) for lr in opts.lrs):
        raise ConfigError(f"--lrs: needs positive learning rates, got {opts.lrs}")


def _with(cfg: ExperimentConfig, **train) -> ExperimentConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def _final(run: ShortRun, index: int) -> float:
    """The last dev value (0: loss, 1: metric), or NaN for a diverged run."""
    if run.diverged or run.last is None:
        return math.nan
    return run.last.loss if index == 0 else run.last.metric


def study_losses(cfg, train_rows, dev_rows, opts: StudyOptions, out: Path, command: str) -> str:
    """Train the command classifier with each loss at each LR; write losses.md/png; return the summary line."""
    from ceasr.data.domain import command_phrases
    from ceasr.models.classifier import build_classifier
    from ceasr.train.optim import OPTIMIZERS
    from ceasr.tune import study_plots
    from ceasr.tune.loss_study import (
        CLASSIFIER_LOSSES,
        ClassifierObjective,
        PhraseTokenizer,
    )

    _check(opts)
    if opts.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer: unknown {opts.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    tokenizer = PhraseTokenizer(command_phrases())
    train_rows = limit_rows(_commands(train_rows, tokenizer), opts.limit_train)
    dev_rows = limit_rows(_commands(dev_rows, tokenizer), opts.limit_dev)
    prepared = _prepare_with(cfg, tokenizer, train_rows)
    dev_set = featurize(prepared, dev_rows)
    variants = []
    for name in CLASSIFIER_LOSSES:
        norms = {}

        def run(lr: float, name=name, norms=norms) -> ShortRun:
            torch.manual_seed(opts.seed)
            model = ClassifierObjective(
                build_classifier(cfg.model, cfg.features.n_mels, tokenizer.vocab_size), name
            )
            run_cfg = _with(cfg, optimizer=opts.optimizer, lr=lr, max_steps=opts.steps, seed=opts.seed)
            result = short_run(run_cfg, prepared, prepared.dataset, dev_set, opts.every(), _classifier_evaluate(name),
                               model=model)
            norms[lr] = model.grad_norms
            return result

        sweep = bracketed_sweep(opts.lrs or DEFAULT_LOSS_LRS, run, lambda r: tuple(-v for v in _accuracy_key(r)))
        best = max(sweep, key=lambda lr: _accuracy_key(sweep[lr]))
        variants.append(Variant(name, sweep, best, [sweep[best]], norms[best]))
    out.mkdir(parents=True, exist_ok=True)
    study_plots.plot_losses(variants, out / "losses.png", len(tokenizer.phrases))
    study_plots.write_losses_md(variants, out / "losses.md", command, opts, len(train_rows), len(dev_rows))
    return "best " + " ".join(f"{v.name}: lr={v.best_lr:g} acc={_final(v.runs[0], 1):.3f}" for v in variants)


def _commands(rows: list[Utterance], tokenizer) -> list[Utterance]:
    from ceasr.text.normalize import normalize

    return [r for r in rows if normalize(r.text, r.lang) in tokenizer.index]


def _prepare_with(cfg, tokenizer, rows) -> Prepared:
    from ceasr.models.subsampling import min_frames
    from ceasr.train.prepare import build_dataset

    if not rows:
        raise CeasrError("study losses: no training row says one of the command phrases of the default domain")
    dataset, skipped = build_dataset(rows, tokenizer, cfg, min_frames(cfg.model.subsampling), True)
    return Prepared(cfg, tokenizer, dataset, skipped)


def _accuracy_key(run: ShortRun) -> tuple[float, float]:
    if run.diverged or not run.dev:
        return (-1.0, -1.0)
    return (run.dev[-1].metric, float(np.mean([p.metric for p in run.dev])))


def _classifier_evaluate(loss_name: str):
    """Dev loss (the run's own objective, per utterance) and accuracy of the classifier."""
    from ceasr.data.dataset import collate
    from ceasr.data.sampler import DurationBucketSampler
    from ceasr.tune.loss_study import CLASSIFIER_LOSSES

    loss_fn = CLASSIFIER_LOSSES[loss_name]

    @torch.no_grad()
    def evaluate(run) -> tuple[float, float]:
        model = run.model.classifier
        model.eval()
        total, hits, count = 0.0, 0, 0
        try:
            for indices in DurationBucketSampler(run.dev_set.durations, run.cfg.train.batch_seconds, shuffle=False):
                batch = collate([run.dev_set[i] for i in indices]).to(run.d.device)
                logits = model(batch.feats, batch.feat_lens)
                labels = batch.ys[:, 0]
                total += float(loss_fn(logits, labels))
                hits += int((logits.argmax(dim=-1) == labels).sum())
                count += len(batch)
        finally:
            model.train()
        return total / max(count, 1), hits / max(count, 1)

    return evaluate


def study_optimizers(cfg, train_rows, dev_rows, opts: StudyOptions, out: Path, command: str) -> str:
    """Each optimizer at its best LR (sweep with the first seed), then ``seeds`` seeds; optimizers.md/png."""
    from ceasr.data.sampler import DurationBucketSampler
    from ceasr.tune import study_plots

    _check(opts)
    prepared = prepare(cfg, limit_rows(train_rows, opts.limit_train))
    dev_set = featurize(prepared, limit_rows(dev_rows, opts.limit_dev))
    tc = cfg.train
    epoch_batches = len(DurationBucketSampler(prepared.dataset.durations, tc.batch_seconds, tc.num_buckets))
    evaluate = asr_evaluate("always")
    variants = []
    for name, (optimizer, full_batch) in OPTIMIZER_STUDY.items():
        base = dict(optimizer=optimizer, max_steps=opts.steps, accum_steps=epoch_batches if full_batch else 1)

        def run(lr: float, seed: int) -> ShortRun:
            run_cfg = _with(cfg, lr=lr, seed=seed, **base)
            return short_run(run_cfg, prepared, prepared.dataset, dev_set, opts.every(), evaluate)

        sweep = bracketed_sweep(opts.lrs or DEFAULT_OPTIMIZER_LRS[name], lambda lr: run(lr, opts.seed), _loss_key)
        best = min(sweep, key=lambda lr: _loss_key(sweep[lr]))
        runs = [sweep[best]] + [run(best, opts.seed + s) for s in range(1, opts.seeds)]
        variants.append(Variant(name, sweep, best, runs))
    out.mkdir(parents=True, exist_ok=True)
    study_plots.plot_optimizers(variants, out / "optimizers.png")
    study_plots.write_optimizers_md(variants, out / "optimizers.md", command, opts, epoch_batches)
    winner = min(variants, key=lambda v: _loss_key(v.runs[0]))
    return f"best optimizer={winner.name} lr={winner.best_lr:g} dev_loss={_final(winner.runs[0], 0):.4f}"


def _loss_key(run: ShortRun) -> float:
    value = _final(run, 0)
    return value if math.isfinite(value) else math.inf


STUDIES = {"losses": study_losses, "optimizers": study_optimizers}
