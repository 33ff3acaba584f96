"""The utterances fine-tuning learns from and is scored on, ready for the model: each read once into one
Whisper log-mel window, tokenized, and with a frozen encoder encoded once before training (through an
:class:`EncoderCache` when given), so that an epoch costs decoder passes only, plus the top encoder blocks'
with ``train_encoder_layers`` (see :mod:`ceasr.whisper.finetune`).

Speed perturbation (Kaldi's, ``speeds``): each training utterance is also prepared played faster or slower
(pitch, formants and tempo together), encoded once like the recorded version and cached under its own name;
training draws one version of each utterance per epoch, so an epoch costs what it did without.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ceasr.audio import load as load_audio
from ceasr.data.augment import speed_perturb
from ceasr.data.manifest import Utterance
from ceasr.errors import AudioError, ConfigError
from ceasr.models.whisper import Whisper
from ceasr.text.normalize import normalize
from ceasr.whisper.audio import HOP, N_FRAMES, SAMPLE_RATE, windows
from ceasr.whisper.config import WhisperFinetuneConfig
from ceasr.whisper.encoder_cache import EncoderCache
from ceasr.whisper.tokenizer import WhisperTokenizer


@dataclass
class Examples:
    """Utterances ready for the model: ``inputs`` are encoder outputs (N, T, D) when the encoder is frozen
    (the hidden states below the trained top blocks with ``train_encoder_layers``), else log-mel windows
    (N, M, 2T; 3000 for 30 s); float16 to halve the memory."""

    inputs: torch.Tensor
    targets: list[list[int]]  # text ids, with the leading space Whisper writes
    refs: list[str]  # normalized references
    skipped: int
    # (N, V, ...) like ``inputs``: version v + 1 of each utterance is it at speed ``speeds[v]`` (training only)
    versions: torch.Tensor | None = None

    def pick(self, idx: list[int], version: list[int] | None = None) -> torch.Tensor:
        """The inputs of utterances ``idx`` in float32, each in its ``version`` (0: as recorded; v > 0:
        ``versions[:, v - 1]``); the recorded ones when ``version`` is None."""
        if version is None or self.versions is None:
            return self.inputs[idx].float()
        return torch.stack([self.inputs[i] if v == 0 else self.versions[i, v - 1]
                            for i, v in zip(idx, version)]).float()


def _read(utt: Utterance, model: Whisper, frames: int, speed: float = 1.0) -> torch.Tensor:
    """The utterance's log-mel window (M, frames) in float16, played ``speed`` times faster."""
    dur = utt.duration if utt.offset or utt.duration else None
    wave = load_audio(utt.audio, offset=utt.offset, duration=dur, sample_rate=SAMPLE_RATE)
    if speed != 1.0:
        wave = speed_perturb(wave, speed, SAMPLE_RATE)
    if len(wave) > frames * HOP:
        raise AudioError(utt.audio, f"longer than the {frames * HOP / SAMPLE_RATE:g} s window; fine-tuning takes "
                                    "one Whisper window per utterance")
    return windows(wave, model.cfg.n_mels, frames=frames)[0].half()


def prepare(rows: list[Utterance], model: Whisper, tok: WhisperTokenizer, cfg: WhisperFinetuneConfig,
             name: str, progress: bool, cache: EncoderCache | None = None, frames: int = N_FRAMES,
             speeds: tuple[float, ...] = ()) -> Examples:
    """Read audio, make log-mel windows of ``frames`` (and encoder outputs when frozen, from ``cache`` where
    it has them), also at each of ``speeds``; bad rows are reported."""
    inputs, targets, refs, skipped, todo, kept = [], [], [], 0, [], []
    for utt in tqdm(rows, desc=f"read {name}", disable=not progress, leave=False):
        hit = cache.get(utt) if cache is not None and cfg.freeze_encoder else None
        if hit is None:
            try:
                hit = _read(utt, model, frames)
            except AudioError as e:
                print(f"skipped: {e}", file=sys.stderr)
                skipped += 1
                continue
            todo.append((len(inputs), utt))
        inputs.append(hit)
        kept.append(utt)
        targets.append(tok.encode(" " + utt.text.strip()))
        refs.append(normalize(utt.text, utt.lang))
    if not inputs:
        raise ConfigError(f"{name}: no usable utterance")
    if cfg.freeze_encoder and todo:
        _encode_into(model, inputs, todo, cache, name, progress, encoder_split(model, cfg))
    versions = [_at_speed(kept, inputs, speed, model, cfg, name, progress, cache, frames) for speed in speeds]
    stacked = torch.stack([torch.stack(v) for v in versions], 1) if versions else None
    return Examples(torch.stack(inputs), targets, refs, skipped, stacked)


def _at_speed(rows: list[Utterance], recorded: list[torch.Tensor], speed: float, model: Whisper,
              cfg: WhisperFinetuneConfig, name: str, progress: bool, cache: EncoderCache | None,
              frames: int) -> list[torch.Tensor]:
    """The inputs of ``rows`` played ``speed`` times faster; an utterance slowed past the window keeps its
    ``recorded`` input in this version."""
    tag, out, todo = f"speed={speed:g}", [], []
    for i, utt in enumerate(rows):
        hit = cache.get(utt, tag) if cache is not None and cfg.freeze_encoder else None
        if hit is None:
            try:
                hit = _read(utt, model, frames, speed)
                todo.append((i, utt))
            except AudioError:  # it was read before, so only too long now
                hit = recorded[i]
        out.append(hit)
    if cfg.freeze_encoder and todo:
        _encode_into(model, out, todo, cache, f"{name} x{speed:g}", progress, encoder_split(model, cfg), tag=tag)
    return out


@torch.no_grad()
def _encode_into(model: Whisper, inputs: list, todo: list[tuple[int, Utterance]], cache: EncoderCache | None,
                 name: str, progress: bool, split: int | None = None, batch: int = 4, tag: str = "") -> None:
    """Replace ``inputs[i]`` (log-mel) by its encoder output (by the hidden state after block ``split``
    when given) for each ``(i, utt)`` of ``todo``, storing each batch in ``cache`` (under ``tag``) as soon as
    it is done (an interrupted run keeps what it encoded)."""
    model.eval()
    for start in tqdm(range(0, len(todo), batch), desc=f"encode {name}", disable=not progress, leave=False):
        chunk = todo[start : start + batch]
        mels = torch.stack([inputs[i] for i, _ in chunk]).float()
        encoded = (model.encode(mels) if split is None else model.encoder.lower(mels, split)).half()
        for (i, utt), enc in zip(chunk, encoded):
            inputs[i] = enc
            if cache is not None:
                cache.put(utt, enc, tag)


def encoder_split(model: Whisper, cfg: WhisperFinetuneConfig) -> int | None:
    """The first trained encoder block when only the top ``train_encoder_layers`` train, else None."""
    k = cfg.train_encoder_layers
    return len(model.encoder.blocks) - k if cfg.freeze_encoder and k > 0 else None


def encoded(model: Whisper, x: torch.Tensor, cfg: WhisperFinetuneConfig) -> torch.Tensor:
    """The encoder output (B, T, D) for a batch of :class:`Examples` inputs."""
    if not cfg.freeze_encoder:
        return model.encode(x)
    split = encoder_split(model, cfg)
    return x if split is None else model.encoder.finish(x, split)


def subset(rows: list, limit: int) -> list:
    """``limit`` rows evenly spread over ``rows`` (all when ``limit`` is 0 or more than there are)."""
    if limit <= 0 or limit >= len(rows):
        return rows
    return [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit)]
