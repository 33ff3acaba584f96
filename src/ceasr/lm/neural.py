"""The Transformer language model behind the scoring interface, and its training.

Its symbols are the recognizer's token ids themselves (``vocab`` = the tokenizer's pieces), with the tokenizer's
sos/eos id as both start and end of sentence. A state is the tuple of ids so far: sentences are short, so
scoring reruns the model on whole prefixes (batched over states, results cached) rather than keeping key/value
caches per hypothesis.

Training reuses the recognizer's optimizers, schedules and checkpoints (:mod:`ceasr.train.optim`,
:mod:`ceasr.train.checkpoint`): shuffled batches of sentences, summed cross-entropy per token, gradient
clipping, checkpoints every ``checkpoint_every`` steps, and the last ``average_last`` averaged at the end.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ceasr.config import LMConfig
from ceasr.lm.base import LanguageModel
from ceasr.models.lm import TransformerLM
from ceasr.text.tokenizer import pieces
from ceasr.train import checkpoint as ckpt
from ceasr.train.optim import build_optimizer, build_scheduler

IGNORE = -1
CACHE_STATES = 8192


def build_lm_model(cfg: LMConfig, vocab_size: int) -> TransformerLM:
    return TransformerLM(vocab_size, cfg.d_model, cfg.n_heads, cfg.layers, cfg.ff_dim, cfg.dropout)


class NeuralLM(LanguageModel):
    """A trained :class:`TransformerLM` with the tokenizer it was trained on."""

    units = "tokens"

    def __init__(self, model: TransformerLM, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab = pieces(tokenizer)
        self.eos, self.unk, self.sos = tokenizer.eos_id, tokenizer.unk_id, tokenizer.sos_id
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def start(self) -> tuple[int, ...]:
        return (self.sos,)

    def advance(self, state: tuple[int, ...], symbol: int) -> tuple[int, ...]:
        return (*state, symbol)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    @torch.inference_mode()
    def log_probs(self, states: Sequence[tuple[int, ...]]) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in states if s not in self._cache))
        if missing:
            lens = torch.tensor([len(s) for s in missing])
            ys = torch.full((len(missing), int(lens.max())), self.eos, dtype=torch.long)  # (N, L)
            for i, s in enumerate(missing):
                ys[i, : len(s)] = torch.tensor(s)
            logits = self.model(ys)[torch.arange(len(missing)), lens - 1]  # (N, V) at each last position
            rows = self._mask(logits.double().log_softmax(dim=-1)).numpy()
            for s, row in zip(missing, rows):
                self._cache[s] = row
        for s in states:  # least recently used goes first: what this call asked for is the newest
            self._cache.move_to_end(s)
        out = np.stack([self._cache[s] for s in states])  # before evicting, which may drop some of them
        while len(self._cache) > CACHE_STATES:
            self._cache.popitem(last=False)
        return out

    def _mask(self, lp: torch.Tensor) -> torch.Tensor:
        """Renormalize without the ids a sentence never continues with (blank; sos when it differs from eos)."""
        never = [self.tokenizer.blank_id] + ([self.sos] if self.sos != self.eos else [])
        lp[..., never] = -math.inf
        return lp.log_softmax(dim=-1)

    @torch.inference_mode()
    def sentence_log_probs(self, sentences: Sequence[Sequence[int]]) -> list[float]:
        """Teacher-forced in one batch per 64 sentences (the generic version steps token by token)."""
        totals = []
        for b in range(0, len(sentences), 64):
            ys_in, ys_out = sentence_batch(sentences[b : b + 64], self.sos, self.eos)
            lp = self._mask(self.model(ys_in).double().log_softmax(dim=-1))  # (B, L, V)
            picked = lp.gather(-1, ys_out.clamp_min(0)[..., None])[..., 0]  # (B, L)
            totals += torch.where(ys_out != IGNORE, picked, 0.0).sum(dim=1).tolist()
        return totals


def sentence_batch(sentences: Sequence[Sequence[int]], sos: int, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sos w..`` (padded with eos) and ``w.. eos`` (padded with IGNORE), each (B, L + 1)."""
    length = max(len(s) for s in sentences) + 1
    ys_in = torch.full((len(sentences), length), eos, dtype=torch.long)
    ys_out = torch.full((len(sentences), length), IGNORE, dtype=torch.long)
    for i, s in enumerate(sentences):
        ys_in[i, 0] = sos
        ys_in[i, 1 : len(s) + 1] = torch.tensor(s, dtype=torch.long)
        ys_out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        ys_out[i, len(s)] = eos
    return ys_in, ys_out


def train_transformer(
    cfg: LMConfig, sentences: list[list[int]], vocab_size: int, sos: int, eos: int, work_dir: Path,
    progress: bool = True,
) -> TransformerLM:
    """Train on id sequences for ``cfg.train.max_steps`` steps; checkpoints go to ``work_dir/checkpoints``.

    Returns the model with the last ``cfg.train.average_last`` checkpoints averaged (eval mode).
    """
    tc = cfg.train
    torch.manual_seed(tc.seed)
    rng = random.Random(tc.seed)
    model = build_lm_model(cfg, vocab_size)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, tc.max_steps)
    order: list[int] = []
    bar = tqdm(total=tc.max_steps, desc="train-lm", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    for step in range(1, tc.max_steps + 1):
        if len(order) < cfg.batch_sentences:  # a fresh shuffled pass once this one runs out
            order += rng.sample(range(len(sentences)), len(sentences))
        batch, order = [sentences[i] for i in order[: cfg.batch_sentences]], order[cfg.batch_sentences :]
        ys_in, ys_out = sentence_batch(batch, sos, eos)
        total, count = model.loss(ys_in, ys_out, IGNORE)
        (total / count).backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{total.item() / count:.3f}", refresh=False)
        bar.update(1)
        if step % max(tc.checkpoint_every, 1) == 0 or step == tc.max_steps:
            ckpt.save_checkpoint(work_dir, step, 0, model, optimizer, scheduler, {"epoch": 0, "position": 0})
            ckpt.prune(work_dir, max(tc.keep_last, tc.average_last))
    bar.close()
    paths = ckpt.list_checkpoints(work_dir)[-max(tc.average_last, 1) :]
    model.load_state_dict(ckpt.average_checkpoints(paths))
    return model.eval()
