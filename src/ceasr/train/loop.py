"""The training loop: one function, :func:`train`, that reads top to bottom (no callbacks).

Steps and batches: a *step* is one optimizer update over ``accum_steps`` consecutive batches of the
duration-bucketed sampler (fewer at an epoch's end). Every loss is a sum over utterances divided by the
number of utterances in the whole step, over all processes, so one step's gradient is the mean over its
global batch whatever the accumulation and the number of processes (DDP averages gradients over ranks,
hence ``norm = global count / world size``).

Exact resume: checkpoints are written between steps and hold the sampler position, the RNG states, the
optimizer and scheduler. Each step reseeds the global RNG (dropout) from ``(seed, step, rank)``, and SpecAugment
and BPE-dropout draw from generators seeded by ``(seed, step, rank, batch)``, so what a step draws depends on
nothing but its number, on every rank.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ceasr.config import ExperimentConfig
from ceasr.data.dataset import AsrDataset, AugmentedDataset, Batch
from ceasr.data.feat_augment import FeatAugment
from ceasr.data.manifest import Utterance
from ceasr.data.sampler import DurationBucketSampler
from ceasr.errors import CeasrError
from ceasr.text.bpe_dropout import TargetSampler
from ceasr.train import checkpoint as ckpt
from ceasr.train import distributed
from ceasr.train.feed import batches, groups
from ceasr.train.monitor import Monitor
from ceasr.train.optim import autocast, build_optimizer, build_scheduler, resolve_precision
from ceasr.train.prepare import build_dataset, check_train_config, fill_cmvn, prepare_run
from ceasr.train.saving import Progress, export, path_of, resume, save
from ceasr.train.validate import evaluate_dev

STAT_NAMES = ("loss", "ctc", "att", "att_acc")
TARGETS_KEY = 2  # the last part of the seed key of a batch's BPE-dropout draw (the augmentations' key has none)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did. The best values are the dev loss and WER of the best checkpoint by
    ``train.best_by`` (WER only when ``best_by == "wer"``); None without a dev set, and on ranks other than 0."""

    steps: int
    epochs: int  # completed epochs
    best_dev_loss: float | None
    best_dev_wer: float | None
    model_dir: Path
    bad_steps: int  # steps skipped for a non-finite loss or gradient
    skipped_utterances: int  # training utterances unreadable or too short, reported when read
    seconds: float


@dataclass
class Run:
    """Everything the loop works on, built once by :func:`_setup`."""

    cfg: ExperimentConfig
    out_dir: Path
    d: distributed.Dist
    tokenizer: object
    model: torch.nn.Module  # the bare module: checkpoints, CMVN, export
    net: torch.nn.Module  # what runs forward: DDP-wrapped under torchrun, else the model itself
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: DurationBucketSampler
    train_set: AsrDataset
    augmented: AugmentedDataset | None  # train_set's items augmented on the fly (augment.enabled)
    dev_set: AsrDataset | None  # rank 0 only
    spec: torch.nn.Module | None
    feat_aug: FeatAugment | None  # feat_augment.enabled: warp, noise, gain on the batch's log-mels
    targets: TargetSampler | None  # train.bpe_dropout > 0: each batch's targets segmented at random
    state: Progress
    total_steps: int
    skipped: int


def train(
    cfg: ExperimentConfig,
    train_rows: list[Utterance],
    dev_rows: list[Utterance],
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a model on ``train_rows``, evaluate on ``dev_rows`` at epoch ends, export ``out_dir/model/``.

    With ``resume`` it continues from the latest checkpoint in ``out_dir`` exactly where it stopped. Under
    ``torchrun`` (``WORLD_SIZE > 1``) every process calls this; rank 0 alone writes files.
    """
    start = time.perf_counter()
    d = distributed.setup()
    try:
        run = _setup(cfg, train_rows, dev_rows, Path(out_dir), resume, d, progress)
        monitor = Monitor(run.out_dir, d.is_main, progress, run.total_steps, run.state.step)
        if cfg.train.precision == "auto":
            monitor.note(f"train.precision=auto: {resolve_precision('auto', d.device)} on this {d.device.type}")
        try:
            _fit(run, monitor, start)
        finally:
            monitor.close()
        model_dir = export(run)
        s = run.state
        return TrainResult(
            steps=s.step, epochs=s.epoch, best_dev_loss=s.best_dev_loss, best_dev_wer=s.best_dev_wer,
            model_dir=model_dir, bad_steps=s.bad_total, skipped_utterances=run.skipped,
            seconds=time.perf_counter() - start,
        )
    finally:
        distributed.teardown(d)


def _setup(cfg, train_rows, dev_rows, out_dir: Path, resume: bool, d, progress: bool) -> Run:
    """Config and tokenizer, datasets, then :func:`build_run`; resume state from the latest checkpoint."""
    from ceasr.models.asr import build_model
    from ceasr.text.tokenizer import token_languages

    check_train_config(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, tokenizer, latest = prepare_run(cfg, train_rows, out_dir, resume, d)
    _seed_everything(cfg.train.seed)
    model = build_model(cfg.model, cfg.features.n_mels, tokenizer.vocab_size,
                        token_languages=token_languages(tokenizer))
    min_frames = getattr(model.embed, "min_frames", 1)
    show = progress and d.is_main
    train_set, skipped = build_dataset(train_rows, tokenizer, cfg, min_frames, show, keep_waves=cfg.augment.enabled)
    dev_set = build_dataset(dev_rows, tokenizer, cfg, min_frames, show)[0] if d.is_main and dev_rows else None
    return build_run(cfg, tokenizer, train_set, dev_set, out_dir, d, model, latest, skipped)


def build_run(
    cfg: ExperimentConfig,
    tokenizer,
    train_set: AsrDataset,
    dev_set: AsrDataset | None,
    out_dir: Path,
    d: distributed.Dist,
    model: torch.nn.Module | None = None,
    latest: Path | None = None,
    skipped: int = 0,
) -> Run:
    """A :class:`Run` over datasets that are already built: model, optimizer, scheduler, sampler, state.

    ``model`` defaults to the ASR model of ``cfg`` (seeded from ``train.seed``); any module with the ASR
    model's ``forward(feats, feat_lens, ys, ys_lens, norm) -> (loss, stats)`` and a ``normalize`` CMVN
    works. Its CMVN is set from ``train_set`` unless ``latest`` (a checkpoint to resume from) is given.
    Nothing is written: in-process trials (``ceasr tune``) build runs this way and call :func:`run_steps`.
    """
    from ceasr.features import SpecAugment
    from ceasr.models.asr import build_model
    from ceasr.text.tokenizer import token_languages

    check_train_config(cfg)
    tc = cfg.train
    if model is None:
        _seed_everything(tc.seed)
        model = build_model(cfg.model, cfg.features.n_mels, tokenizer.vocab_size,
                            token_languages=token_languages(tokenizer))
    if len(train_set) == 0:
        raise CeasrError("no usable training utterances (every one was unreadable or too short)")
    if latest is None:
        fill_cmvn(model, train_set.feats)
    model.to(d.device)
    sampler = DurationBucketSampler(
        train_set.durations, tc.batch_seconds, tc.num_buckets, True, tc.seed, d.world_size, d.rank
    )
    if len(sampler) == 0:
        raise CeasrError(f"no batch of train.batch_seconds={tc.batch_seconds} holds one utterance per process")
    total_steps = tc.max_steps if tc.max_steps > 0 else math.ceil(len(sampler) / tc.accum_steps) * tc.max_epochs
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    state = resume(latest, model, optimizer, scheduler) if latest is not None else Progress()
    sampler.load_state_dict({"epoch": state.epoch, "position": state.position})
    net = model
    if d.enabled:
        # A performance note (grad layout of the depthwise convolution), not a problem; once per run is noise.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # A loss term switched off by ctc_weight leaves its head without gradients.
        unused = cfg.model.ctc_weight in (0.0, 1.0)
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=unused)
    spec = SpecAugment(freq_width=tc.spec_freq_width, time_width_ratio=tc.spec_time_ratio) if tc.spec_augment else None
    min_frames = getattr(getattr(model, "embed", None), "min_frames", 1)
    feat_aug = FeatAugment(cfg.feat_augment, cfg.features, tc.seed, min_frames) if cfg.feat_augment.enabled else None
    targets = TargetSampler(tokenizer, tc.bpe_dropout) if tc.bpe_dropout > 0 else None
    augmented = None
    if cfg.augment.enabled:
        from ceasr.data.augment import Augmenter

        augmenter = Augmenter(cfg.augment, babble_sources=train_set.waves, sr=cfg.features.sample_rate)
        augmented = AugmentedDataset(train_set, augmenter, seed=tc.seed, min_frames=min_frames)
    return Run(
        cfg, out_dir, d, tokenizer, model, net, optimizer, scheduler, sampler, train_set, augmented, dev_set,
        spec, feat_aug, targets, state, total_steps, skipped,
    )


def _fit(run: Run, monitor: Monitor, start: float) -> None:
    """Steps until max_steps (or max_epochs), or until ``max_minutes`` have passed since ``start`` (plus the
    time of earlier runs resumed from); checkpoints every ``checkpoint_every``, at epoch ends and at the end."""
    tc, state = run.cfg.train, run.state
    before = state.seconds

    def spent() -> float:  # training seconds so far, earlier runs included
        return before + time.perf_counter() - start

    for event, _ in run_steps(run, monitor):
        state.seconds = spent()  # what the checkpoints below store
        if event == "epoch":
            improved = _end_of_epoch(run, monitor)
            save(run, best=improved)
        elif event == "step" and tc.checkpoint_every > 0 and state.step % tc.checkpoint_every == 0:
            save(run)
        if event != "bad" and _out_of_time(run, spent()):  # dev evaluation and saving count too
            monitor.note(
                f"train.max_minutes={tc.max_minutes:g} reached after step {state.step} of {run.total_steps} "
                f"(epoch {state.epoch}): stopping there"
            )
            break
    if run.d.is_main and ckpt.latest_checkpoint(run.out_dir) != path_of(run.out_dir, state.step):
        save(run)  # the last step, unless a checkpoint of it exists already


def _out_of_time(run: Run, seconds: float) -> bool:
    """Whether the wall-clock budget is spent; under torchrun all ranks stop when any one's clock says so."""
    if run.cfg.train.max_minutes <= 0:
        return False
    over = torch.tensor([float(seconds >= 60.0 * run.cfg.train.max_minutes)], dtype=torch.float64)
    return distributed.all_reduce_sum(run.d, over).item() > 0


def run_steps(run: Run, monitor: Monitor):
    """Optimizer steps until max_steps (or max_epochs), as a stream of ``(event, stats)`` pairs.

    Events: ``("step", stats)`` after each update (``run.state.step`` already counts it), ``("bad", None)``
    after a step skipped for a non-finite loss or gradient (raises after ``max_bad_steps`` in a row), and
    ``("epoch", None)`` when an epoch has run to its end (``run.state.epoch`` counts it). The consumer
    decides what to do between steps (checkpoint, evaluate, stop early); this function writes nothing.
    """
    tc, state = run.cfg.train, run.state

    def finished() -> bool:
        return state.step >= run.total_steps if tc.max_steps > 0 else state.epoch >= tc.max_epochs

    while not finished():
        feed = batches(run.sampler, run.train_set, run.augmented, tc.num_workers)
        for group in groups(feed, tc.accum_steps):
            if finished():  # checked before a step, so an epoch whose last step ends training still ends
                break
            state.position += len(group)
            t0 = time.perf_counter()
            stats = train_step(run, group, state.step + 1)
            if stats is None:  # non-finite: no update, the same step number next time
                _bad_step(state, tc.max_bad_steps, monitor)
                yield "bad", None
                continue
            state.step += 1
            state.bad_run = 0
            stats["utt_per_sec"] = stats.pop("utterances") / max(time.perf_counter() - t0, 1e-9)
            stats["bad_steps"] = state.bad_total
            monitor.step(state.step, stats, log=state.step % max(tc.log_every, 1) == 0)
            yield "step", stats
        else:  # the epoch ran to its end
            state.epoch += 1
            state.position = 0
            run.sampler.set_epoch(state.epoch)
            yield "epoch", None


def train_step(run: Run, group: list[Batch], step: int) -> dict | None:
    """One optimizer step over ``group`` (this rank's batches); returns global stats, or None if skipped.

    A non-finite loss on any rank skips the step on every rank (they agree by an all-reduce), as does a
    non-finite gradient norm. Stats are means over the global batch.
    """
    d, model, optimizer = run.d, run.model, run.optimizer
    # Dropout draws from the global RNG; seeding it per (seed, step, rank) makes each step's masks
    # independent of history (exact resume on every rank) and different across ranks.
    torch.manual_seed(_seed_of(run.cfg.train.seed, step, d.rank))
    local = sum(len(b) for b in group)
    total = distributed.all_reduce_sum(d, torch.tensor([float(local)], dtype=torch.float64)).item()
    norm = total / d.world_size
    sums = torch.zeros(len(STAT_NAMES), dtype=torch.float64)  # loss, ctc, att (each / norm); att_acc × B
    for i, batch in enumerate(group):
        last = i == len(group) - 1
        with contextlib.nullcontext() if (last or not d.enabled) else run.net.no_sync():
            loss, stats = _forward(run, batch.to(d.device), step, i, norm)
            if not _all_finite(d, loss):
                optimizer.zero_grad(set_to_none=True)
                return None
            loss.backward()
        sums += torch.tensor([stats["loss"], stats["ctc"], stats["att"], stats["att_acc"] * len(batch)])
    clip = run.cfg.train.grad_clip if run.cfg.train.grad_clip > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    if not math.isfinite(grad_norm):  # the same on every rank: gradients are already all-reduced
        optimizer.zero_grad(set_to_none=True)
        return None
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    glob = distributed.all_reduce_sum(d, sums)
    loss, ctc, att = (glob[:3] / d.world_size).tolist()  # sum over ranks of (local sum / norm) = W × mean
    return {
        "loss": loss, "ctc": ctc, "att": att, "att_acc": glob[3].item() / total,
        "lr": lr, "grad_norm": grad_norm, "utterances": total,
    }


def _forward(run: Run, batch: Batch, step: int, index: int, norm: float):
    """Loss and stats of one batch, with feature augmentation and SpecAugment drawn from a generator seeded by
    (seed, step, index, rank), and BPE-dropout targets from one of their own."""
    feats, lens = batch.feats, batch.feat_lens
    ys, ys_lens = batch.ys, batch.ys_lens
    if run.targets is not None:
        key = (run.cfg.train.seed, step, run.d.rank, index + 1, TARGETS_KEY)
        ys, ys_lens = run.targets.batch(batch.texts, torch.Generator().manual_seed(_seed_of(*key)))
    generator = torch.Generator().manual_seed(_seed_of(run.cfg.train.seed, step, run.d.rank, index + 1))
    if run.feat_aug is not None:
        feats, lens = run.feat_aug.tempo(feats, lens, generator=generator)
        feats = run.feat_aug(feats, lens, generator=generator)
    if run.spec is not None:
        # Masked cells become the value the model's normalization maps to 0 (SpecAugment's intent);
        # padding stays exactly 0 since (0 - m) + m == 0.
        shift = run.model.normalize.shift(feats, lens)
        feats = run.spec(feats - shift, lens, generator=generator) + shift
    with autocast(run.cfg.train.precision, run.d.device):
        return run.net(feats, lens, ys, ys_lens, norm=norm)


def _seed_of(*key: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence hashing: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence(list(key)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _all_finite(d, loss: torch.Tensor) -> bool:
    bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], dtype=torch.float64)
    return distributed.all_reduce_sum(d, bad).item() == 0.0


def _bad_step(state: Progress, max_bad: int, monitor: Monitor) -> None:
    state.bad_total += 1
    state.bad_run += 1
    monitor.note(f"step {state.step + 1}: non-finite loss or gradient, batch skipped ({state.bad_run} in a row)")
    if state.bad_run >= max_bad:
        raise CeasrError(
            f"training stopped at step {state.step}: {state.bad_run} consecutive non-finite losses "
            f"(train.max_bad_steps={max_bad}); lower train.lr or check the data"
        )


def _end_of_epoch(run: Run, monitor: Monitor) -> bool:
    """Evaluate on dev (rank 0) and update the best values; True if this is the best so far."""
    state, tc = run.state, run.cfg.train
    if not run.d.is_main or run.dev_set is None:
        return False
    with_wer = tc.best_by == "wer"
    dev = evaluate_dev(run.model, run.dev_set, run.tokenizer, tc.batch_seconds, run.d.device, with_wer)
    if dev is None:
        return False
    monitor.scalars("dev", {"loss": dev.loss, "wer": dev.wer}, state.step)
    wer = "" if dev.wer is None else f" WER={dev.wer:.4f}"
    monitor.note(f"epoch {state.epoch}: step {state.step} dev loss={dev.loss:.4f}{wer}")
    value = dev.wer if with_wer else dev.loss
    if state.best_value is not None and value >= state.best_value:
        return False
    state.best_value, state.best_dev_loss, state.best_dev_wer = value, dev.loss, dev.wer
    return True


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
