"""Helpers for the training tests: a tiny synthetic corpus, a tiny config, and the DDP worker process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ceasr.config import ExperimentConfig, FeatureConfig, ModelConfig, TokenizerConfig, TrainConfig
from ceasr.data.manifest import Utterance

WORDS = ["one", "two", "three", "four", "five", "six", "go", "stop"]


def make_corpus(folder: Path, n: int, seed: int = 0, seconds: tuple[float, float] = (0.4, 0.8)) -> list[Utterance]:
    """``n`` noise-plus-tone wavs (16 kHz) with short texts; durations uniform in ``seconds``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        dur = float(rng.uniform(*seconds))
        t = np.arange(int(dur * 16000)) / 16000
        wave = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (200 + 50 * (i % 8)) * t)
        path = folder / f"utt{i:03d}.wav"
        sf.write(path, wave.astype(np.float32), 16000, subtype="PCM_16")
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))
        rows.append(Utterance(audio=str(path), text=text.upper(), id=f"utt{i:03d}"))
    return rows


def tiny_config(**train) -> ExperimentConfig:
    """A model of a few thousand parameters; train fields override the defaults given here."""
    defaults = dict(
        optimizer="adam", lr=1e-3, scheduler="noam", warmup_steps=3, max_steps=4, max_epochs=0,
        batch_seconds=2.0, num_buckets=2, checkpoint_every=1000, keep_last=3, average_last=1,
        log_every=1, spec_augment=False, seed=0,
    )
    defaults.update(train)
    return ExperimentConfig(
        features=FeatureConfig(n_mels=40),
        tokenizer=TokenizerConfig(kind="char"),
        model=ModelConfig(
            encoder="conformer", d_model=32, n_heads=2, encoder_layers=1, ff_dim=64, conv_kernel=3,
            subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64, dropout=0.0, ctc_weight=0.3,
            label_smoothing=0.1,
        ),
        train=TrainConfig(**defaults),
    )


def ddp_worker(rank: int, world: int, port: int, cfg, rows, out_dir: str) -> None:
    """One process of a CPU DDP run: the environment torchrun would set, then the ordinary train()."""
    import torch

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    from ceasr.train.loop import train

    train(cfg, rows, rows[:2], out_dir, progress=False)
