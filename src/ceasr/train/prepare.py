"""Everything a run needs before its first step: config, tokenizer, datasets, model with CMVN statistics.

A fresh run trains the tokenizer on the normalized training texts and saves it with the config into the
experiment folder; a resumed run reads both back from there, so it rebuilds exactly the same model.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from ceasr.config import ExperimentConfig, from_dict, save_json
from ceasr.data.dataset import AsrDataset
from ceasr.data.manifest import Utterance
from ceasr.errors import CeasrError, ConfigError
from ceasr.train.checkpoint import latest_checkpoint, list_checkpoints
from ceasr.train.distributed import Dist, barrier
from ceasr.train.optim import OPTIMIZERS, PRECISIONS, SCHEDULERS

CONFIG, TOKENIZER = "config.json", "tokenizer"


def prepare_run(
    cfg: ExperimentConfig, train_rows: list[Utterance], out_dir: Path, resume: bool, d: Dist
) -> tuple[ExperimentConfig, object, Path | None]:
    """``(cfg, tokenizer, checkpoint to resume from or None)``; writes config and tokenizer on a fresh start.

    On resume the ``features``/``tokenizer``/``model`` sections come from the saved ``config.json`` (the
    weights need them); ``train``, ``decode`` and ``augment`` come from ``cfg``, so e.g. ``max_steps`` can be raised.
    """
    from ceasr.text.tokenizer import load_tokenizer

    latest = latest_checkpoint(out_dir) if resume else None
    if resume and latest is None and d.is_main:
        print(f"resume: no checkpoint in {out_dir}; starting from scratch", file=sys.stderr)
    if latest is not None:
        cfg = _saved_config(out_dir, cfg)
    elif list_checkpoints(out_dir):
        raise CeasrError(f"{out_dir}: holds checkpoints of an earlier run; resume it or use a new --out")
    if d.is_main:
        if latest is None:
            _train_tokenizer(cfg, train_rows, out_dir / TOKENIZER)
        save_json(cfg, out_dir / CONFIG)
    barrier(d)  # the other ranks read what rank 0 wrote
    if not (out_dir / TOKENIZER).exists():
        raise CeasrError(f"{out_dir / TOKENIZER}: missing; cannot resume without the run's tokenizer")
    return cfg, load_tokenizer(out_dir / TOKENIZER), latest


def _saved_config(out_dir: Path, cfg: ExperimentConfig) -> ExperimentConfig:
    path = out_dir / CONFIG
    try:
        saved = from_dict(ExperimentConfig, json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise CeasrError(f"{path}: cannot read the run's config ({e})") from None
    return dataclasses.replace(saved, train=cfg.train, decode=cfg.decode, augment=cfg.augment)


def _train_tokenizer(cfg: ExperimentConfig, rows: list[Utterance], target: Path) -> None:
    """Train on the normalized texts and save into ``target`` atomically (a temporary sibling renamed)."""
    from ceasr.text.normalize import normalize
    from ceasr.text.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(cfg.tokenizer, [normalize(u.text, u.lang) for u in rows])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer.save(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_dataset(rows, tokenizer, cfg: ExperimentConfig, min_frames: int, progress: bool,
                  keep_waves: bool = False) -> tuple[AsrDataset, int]:
    """A cached dataset without the utterances the model cannot take; ``(dataset, how many were dropped)``.

    ``keep_waves`` keeps the waveforms too (for on-the-fly augmentation).

    Unreadable audio and utterances shorter than ``min_frames`` feature frames are each reported in one line.
    """
    dataset = AsrDataset(rows, tokenizer, cfg.features, cache_features=True, progress=progress, seed=cfg.train.seed,
                         keep_waves=keep_waves)
    keep = []
    for i, feats in enumerate(dataset.feats):
        if feats.shape[0] >= min_frames:
            keep.append(i)
        else:
            print(
                f"skipped: {dataset.rows[i].audio}: too short for the model "
                f"({feats.shape[0]} feature frames < {min_frames})",
                file=sys.stderr,
            )
    short = len(dataset) - len(keep)
    dataset.keep(keep)
    return dataset, dataset.bad_items + short


def fill_cmvn(model: torch.nn.Module, feats: list[torch.Tensor]) -> None:
    """Set ``model.normalize`` (GlobalCMVN) to the mean and inverse std of all training frames (after its
    per-utterance offset)."""
    from ceasr.features import compute_cmvn

    cmvn = compute_cmvn(feats, model.normalize.utterance)
    with torch.no_grad():
        model.normalize.mean.copy_(cmvn.mean)
        model.normalize.istd.copy_(cmvn.istd)


def check_train_config(cfg: ExperimentConfig) -> None:
    """Reject train settings that would only fail after the (slow) data preparation."""
    tc = cfg.train
    for field, name, known in (("optimizer", tc.optimizer, OPTIMIZERS), ("scheduler", tc.scheduler, SCHEDULERS),
                               ("precision", tc.precision, PRECISIONS)):
        if name not in known:
            raise ConfigError(f"train.{field}: unknown {name!r}; known: {', '.join(known)}")
    if tc.best_by not in ("dev_loss", "wer"):
        raise ConfigError(f"train.best_by: unknown {tc.best_by!r}; known: dev_loss, wer")
    if tc.accum_steps < 1:
        raise ConfigError(f"train.accum_steps: must be at least 1, got {tc.accum_steps}")
    if tc.max_steps <= 0 and tc.max_epochs <= 0:
        raise ConfigError("train: set train.max_steps or train.max_epochs above 0")
    if tc.max_minutes < 0:
        raise ConfigError(f"train.max_minutes: must be 0 (no budget) or positive, got {tc.max_minutes}")
    if not 0.0 <= tc.bpe_dropout <= 1.0:
        raise ConfigError(f"train.bpe_dropout: must be in [0, 1], got {tc.bpe_dropout}")
    if tc.bpe_dropout > 0 and cfg.tokenizer.kind == "char":
        raise ConfigError("train.bpe_dropout needs a bpe or bilingual tokenizer, got tokenizer.kind=char")
    if tc.batch_seconds <= 0:
        raise ConfigError(f"train.batch_seconds: must be positive, got {tc.batch_seconds}")
