"""Exact scores of given token sequences for one utterance: CTC log-likelihood and attention log-probability.

Both are batched over N sequences. The CTC score is minus the CTC loss, log P(y | x) summed over every
alignment; the attention score is the teacher-forced log-probability of y followed by eos. A joint score is
``(1 - w) * attention + w * CTC``, the same quantity :mod:`ceasr.commands.beam` accumulates token by token.

:func:`best_joint_scores` finds the best joint score without running the decoder on every phrase: an attention
log-probability is at most 0, so ``w * CTC`` bounds a phrase's joint score from above. Phrases are taken in
order of CTC score, the decoder scores the first k, and once the best joint score so far reaches the bound of
the next unscored phrase no later one can beat it. The result is exact, not a beam.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_sequences(seqs: list[tuple[int, ...]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences -> (N, L) long padded with ``pad`` and lengths (N,). L is at least 1."""
    width = max([1, *(len(s) for s in seqs)])
    rows = [[*s, *[pad] * (width - len(s))] for s in seqs]  # one tensor call: this runs per utterance
    out = torch.tensor(rows, dtype=torch.long) if rows else torch.full((0, 1), pad, dtype=torch.long)
    return out, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def ctc_scores(log_probs: torch.Tensor, seqs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """log P(seq_i | x) for each of N sequences: ``log_probs`` (T, V) of one utterance, ``seqs`` (N, L) padded,
    ``lens`` (N,) -> (N,) float64; -inf for a sequence the T frames cannot hold."""
    T, N = log_probs.shape[0], seqs.shape[0]
    lp = log_probs.detach().to(torch.float64)[:, None, :].expand(T, N, -1)  # (T, N, V)
    targets = seqs.clamp_min(0)  # padding is never read (lens), but must be a valid index
    loss = F.ctc_loss(lp, targets, torch.full((N,), T, dtype=torch.long), lens, blank=blank,
                      reduction="none", zero_infinity=False)
    return -loss


def attention_scores(
    decoder, memory: torch.Tensor, seqs: torch.Tensor, lens: torch.Tensor, sos: int, eos: int
) -> torch.Tensor:
    """log p_att(seq_i + eos | x) for N sequences: ``memory`` (1, T', D) of one utterance, ``seqs`` (N, L)
    padded, ``lens`` (N,) -> (N,) float64.

    One decoder call on all N teacher-forced inputs, the memory shared (its keys and values projected once):
    on a busy CPU that is ~3x faster than stepping the cached decoder L times, whose many small ops wait on
    descheduled threads.
    """
    N, L = seqs.shape
    ys_in = torch.cat([torch.full((N, 1), sos, dtype=torch.long), seqs.clamp_min(0)], dim=1)  # (N, L + 1)
    ys_out = torch.cat([seqs.clamp_min(0), torch.full((N, 1), eos, dtype=torch.long)], dim=1)
    ys_out[torch.arange(N), lens] = eos  # each sequence's own end
    ys_in, ys_out = ys_in.to(memory.device), ys_out.to(memory.device)
    mem_lens = torch.full((1,), memory.shape[1], dtype=torch.long, device=memory.device)
    logits = decoder(memory[:1], mem_lens, ys_in, lens + 1)  # (N, L + 1, V)
    logp = logits.to(torch.float64).log_softmax(dim=-1)
    picked = logp.gather(-1, ys_out.unsqueeze(-1)).squeeze(-1)  # (N, L + 1)
    valid = torch.arange(L + 1, device=logp.device)[None, :] <= lens.to(logp.device)[:, None]  # (N, L + 1)
    return torch.where(valid, picked, 0.0).sum(dim=1).cpu()


def joint_scores(
    model, memory: torch.Tensor, log_probs: torch.Tensor, seqs: list[tuple[int, ...]], ctc_weight: float
) -> torch.Tensor:
    """(N,) float64 ``(1 - w) * attention + w * CTC`` scores of ``seqs`` for one utterance (memory (1, T', D),
    log_probs (T', V)). With ``w == 1`` (or no decoder) the attention decoder is not run."""
    padded, lens = pad_sequences(seqs, model.eos_id)
    score = ctc_weight * ctc_scores(log_probs, padded, lens, model.blank_id) if ctc_weight > 0 else 0.0
    if ctc_weight < 1:
        att = attention_scores(model.decoder, memory, padded, lens, model.sos_id, model.eos_id)
        score = score + (1 - ctc_weight) * att
    return torch.as_tensor(score, dtype=torch.float64).expand(len(seqs)).clone()


def best_joint_scores(
    model, memory: torch.Tensor, log_probs: torch.Tensor, seqs: list[tuple[int, ...]], ctc_weight: float,
    first: int = 8,
) -> list[tuple[int, float]]:
    """``(index, joint score)`` of the phrases the decoder had to score, best first; the first is the best of
    all ``seqs`` (as :func:`joint_scores` would rank them) and every phrase left out scores at most the last
    bound checked. The decoder scores the ``first`` best phrases by CTC, then twice as many until the bound
    holds."""
    padded, lens = pad_sequences(seqs, model.eos_id)
    ctc = ctc_scores(log_probs, padded, lens, model.blank_id)
    order = torch.argsort(ctc, descending=True, stable=True)
    if ctc_weight >= 1.0 or model.decoder is None:
        return [(int(i), float(ctc[i])) for i in order]
    ctc_part = ctc_weight * ctc if ctc_weight > 0 else torch.zeros_like(ctc)  # (0 * -inf would be nan)
    joint = torch.full_like(ctc, -math.inf)
    done, k = 0, max(1, first)
    while True:
        k = min(k, len(seqs))
        todo = order[done:k]
        att = attention_scores(model.decoder, memory, padded[todo], lens[todo], model.sos_id, model.eos_id)
        joint[todo] = ctc_part[todo] + (1 - ctc_weight) * att
        done = k
        if k == len(seqs) or float(joint[order[:k]].max()) >= float(ctc_part[order[k]]):
            break
        k *= 2
    scored = order[:done]
    ranked = scored[torch.argsort(joint[scored], descending=True, stable=True)]
    return [(int(i), float(joint[i])) for i in ranked]
