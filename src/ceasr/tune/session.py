"""Short in-process training runs for the LR finder, the search and the studies.

The data is prepared once (tokenizer trained, features computed and cached); each trial then builds a fresh
:class:`ceasr.train.loop.Run` over subsets of it and drives the one training loop through
:func:`ceasr.train.loop.run_steps`, evaluating on its dev subset every few steps. Nothing is written to disk.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ceasr.config import ExperimentConfig
from ceasr.data.dataset import AsrDataset
from ceasr.data.manifest import Utterance
from ceasr.errors import CeasrError
from ceasr.train import distributed
from ceasr.train.loop import Run, build_run, run_steps
from ceasr.train.monitor import Monitor

# Consecutive non-finite steps after which a trial counts as diverged (the loop raises; we catch it).
TRIAL_MAX_BAD_STEPS = 3


@dataclass
class Prepared:
    """A tokenizer trained on the rows' texts and the cached features of every usable row."""

    cfg: ExperimentConfig
    tokenizer: object
    dataset: AsrDataset
    skipped: int  # rows left out: unreadable audio or too short for the model


def prepare(cfg: ExperimentConfig, rows: list[Utterance], progress: bool = True) -> Prepared:
    """Train the tokenizer on ``rows`` (normalized texts) and featurize them once for all trials."""
    from ceasr.models.subsampling import min_frames
    from ceasr.text.normalize import normalize
    from ceasr.text.tokenizer import train_tokenizer
    from ceasr.train.prepare import build_dataset

    tokenizer = train_tokenizer(cfg.tokenizer, [normalize(u.text, u.lang) for u in rows])
    dataset, skipped = build_dataset(rows, tokenizer, cfg, min_frames(cfg.model.subsampling), progress)
    if len(dataset) == 0:
        raise CeasrError("no usable utterances (every one was unreadable or too short)")
    return Prepared(cfg, tokenizer, dataset, skipped)


def subset(dataset: AsrDataset, indices: list[int]) -> AsrDataset:
    """A view of ``dataset`` holding only ``indices`` (features shared, not copied)."""
    part = copy.copy(dataset)
    part.keep(list(indices))
    return part


def limit_rows(rows: list[Utterance], limit: int) -> list[Utterance]:
    """The first ``limit`` rows (all when ``limit`` <= 0): a fixed, reproducible subset."""
    return rows[:limit] if limit > 0 else rows


@dataclass(frozen=True)
class Point:
    """One dev evaluation: after ``step`` updates and ``seconds`` of training (evaluation time excluded)."""

    step: int
    seconds: float
    loss: float
    metric: float | None  # WER for the ASR model, accuracy for the classifier; None when not computed


@dataclass
class ShortRun:
    train_loss: list[float] = field(default_factory=list)  # per optimizer step
    dev: list[Point] = field(default_factory=list)
    seconds: float = 0.0  # training time, evaluations excluded
    diverged: bool = False  # stopped by repeated non-finite losses

    @property
    def last(self) -> Point | None:
        return self.dev[-1] if self.dev else None


Evaluate = Callable[[Run], tuple[float, float | None]]


WER_WHEN = ("never", "end", "always")


def asr_evaluate(wer: str = "end") -> Evaluate:
    """Dev loss of the run's ASR model, and greedy WER ``never``, at the run's ``end`` only, or ``always``."""
    from ceasr.train.validate import evaluate_dev

    def evaluate(run: Run) -> tuple[float, float | None]:
        with_wer = wer == "always" or (wer == "end" and run.state.step >= run.total_steps)
        tc = run.cfg.train
        dev = evaluate_dev(run.model, run.dev_set, run.tokenizer, tc.batch_seconds, run.d.device, with_wer)
        return dev.loss, dev.wer

    return evaluate


def featurize(prepared: Prepared, rows: list[Utterance], progress: bool = True) -> AsrDataset:
    """Cached features of more rows (e.g. a dev set) with the prepared tokenizer."""
    from ceasr.models.subsampling import min_frames
    from ceasr.train.prepare import build_dataset

    return build_dataset(rows, prepared.tokenizer, prepared.cfg, min_frames(prepared.cfg.model.subsampling), progress)[0]


def short_run(
    cfg: ExperimentConfig,
    prepared: Prepared,
    train_set: AsrDataset,
    dev_set: AsrDataset,
    eval_every: int,
    evaluate: Evaluate,
    on_eval: Callable[[Point], None] | None = None,
    model: torch.nn.Module | None = None,
) -> ShortRun:
    """Train ``cfg.train.max_steps`` steps from fresh weights; evaluate every ``eval_every`` steps and at the end.

    ``on_eval`` sees each :class:`Point` as it comes (a pruner raises from there to stop the trial).
    A run whose loss stays non-finite is marked ``diverged`` and returns what it had.
    """
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, max_bad_steps=TRIAL_MAX_BAD_STEPS, checkpoint_every=0)
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = distributed.Dist(device=device)  # one process: trials never run under torchrun
    run = build_run(cfg, prepared.tokenizer, train_set, dev_set, Path("."), d, model=model)
    monitor = Monitor(Path("."), enabled=False, progress=False, total_steps=0, initial_step=0)
    result = ShortRun()
    t0 = time.perf_counter()
    try:
        for event, stats in run_steps(run, monitor):
            if event != "step":
                continue
            result.train_loss.append(stats["loss"])
            step = run.state.step
            if step % max(eval_every, 1) == 0 or step == run.total_steps:
                result.seconds += time.perf_counter() - t0
                point = Point(step, result.seconds, *evaluate(run))
                result.dev.append(point)
                if on_eval is not None:
                    on_eval(point)
                t0 = time.perf_counter()
    except CeasrError as e:
        if "non-finite" not in str(e):
            raise
        result.diverged = True
    return result
