"""The best allowed phrase for one utterance by the joint score ``(1 - w) * attention + w * CTC``
(:func:`ceasr.decode.score.joint_scores`), the same quantity :mod:`ceasr.commands.beam` accumulates token by
token.

:func:`best_joint_scores` finds the best joint score without running the decoder on every phrase: an attention
log-probability is at most 0, so ``w * CTC`` bounds a phrase's joint score from above. Phrases are taken in
order of CTC score, the decoder scores the first k, and once the best joint score so far reaches the bound of
the next unscored phrase no later one can beat it. The result is exact, not a beam.
"""

from __future__ import annotations

import math

import torch

from ceasr.decode.score import attention_scores, ctc_scores, joint_scores, pad_sequences

__all__ = ["attention_scores", "best_joint_scores", "ctc_scores", "joint_scores", "pad_sequences"]


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
