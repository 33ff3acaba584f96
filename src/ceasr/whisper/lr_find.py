"""LR range test for Whisper fine-tuning, on the prepared training examples (cached encoder outputs when the
encoder is frozen, so a step costs one decoder pass).

The same test as ``ceasr lr-find`` (:mod:`ceasr.tune.lr_find`): step ``s`` of ``n`` trains with
``lr = lo * (hi / lo) ** (s / (n - 1))`` (each layer-decay group keeps its ratio to the top), batches drawn
at random from the training set; it stops when the loss is not finite or its running mean exceeds
``DIVERGE_FACTOR`` times its minimum; the suggestion is :func:`ceasr.tune.lr_find.suggest_lr`'s. The model's
weights are put back afterwards: only the curve is kept.
"""

from __future__ import annotations

import copy
import math

import torch
from tqdm import tqdm

from ceasr.tune.lr_find import (
    DIVERGE_FACTOR,
    EMA_BETA,
    LrFindResult,
    exp_lrs,
    suggest_lr,
)


def whisper_lr_find(model, steps_fn, n_train: int, batch_size: int, optimizer, lo: float, hi: float, steps: int,
                    seed: int = 0, progress: bool = True) -> LrFindResult:
    """Run the range test with ``optimizer`` (built at lr 1 per unit of group scale, see below) and
    ``steps_fn(idx) -> loss`` (one optimizer step on the examples ``idx``, returning the batch loss).

    ``optimizer``'s groups hold their layer-decay scale in ``lr`` (the top group 1.0); step ``s`` sets each
    group's lr to ``scale * lrs[s]``.
    """
    lrs = exp_lrs(lo, hi, steps)
    saved = copy.deepcopy(model.state_dict())
    scales = [g["lr"] for g in optimizer.param_groups]
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    seen_lrs, losses, ema, best, diverged = [], [], None, math.inf, False
    for s in tqdm(range(steps), desc="lr-find", disable=not progress, leave=False):
        if len(order) < batch_size:
            order += torch.randperm(n_train, generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        for group, scale in zip(optimizer.param_groups, scales):
            group["lr"] = scale * float(lrs[s])
        loss = steps_fn(idx)
        if not math.isfinite(loss):
            diverged = True
            break
        seen_lrs.append(float(lrs[s]))
        losses.append(loss)
        ema = loss if ema is None else EMA_BETA * ema + (1 - EMA_BETA) * loss
        best = min(best, ema)
        if len(losses) > 10 and ema > DIVERGE_FACTOR * best:
            diverged = True
            break
    model.load_state_dict(saved)
    suggested, steepest, at_min, smoothed = suggest_lr(seen_lrs, losses)
    return LrFindResult(seen_lrs, losses, smoothed.tolist(), suggested, steepest, at_min, diverged)
