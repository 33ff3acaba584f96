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

from ceasr.decode.score import attention_scores, ctc_scores, joint_scores, pad_sequences, teacher_forcing

__all__ = ["attention_scores", "best_joint_scores", "ctc_scores", "joint_scores", "pad_sequences",
           "phrase_text_states"]


def phrase_text_states(model, seqs: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's audio-independent states of every phrase (``TransformerDecoder.text_states`` of their
    teacher-forced inputs), for :func:`best_joint_scores`'s ``text``."""
    padded, lens = pad_sequences(seqs, model.eos_id)
    ys_in, _ = teacher_forcing(padded, lens, model.sos_id, model.eos_id)
    return model.decoder.text_states(ys_in.to(next(model.decoder.parameters()).device))


def best_joint_scores(
    model, memory: torch.Tensor, log_probs: torch.Tensor, seqs: list[tuple[int, ...]], ctc_weight: float,
    first: int = 8, text: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[tuple[int, float]]:
    """``(index, joint score)`` of the phrases the decoder had to score, best first; the first is the best of
    all ``seqs`` (as :func:`joint_scores` would rank them) and every phrase left out scores at most the last
    bound checked. The decoder scores the ``first`` best phrases by CTC, then twice as many until the bound
    holds. ``text``: :func:`phrase_text_states` of ``seqs`` (the same result, less decoder work)."""
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
        rows = None if text is None else (text[0][todo], text[1][todo])
        att = attention_scores(model.decoder, memory, padded[todo], lens[todo], model.sos_id, model.eos_id, rows)
        joint[todo] = ctc_part[todo] + (1 - ctc_weight) * att
        done = k
        if k == len(seqs) or float(joint[order[:k]].max()) >= float(ctc_part[order[k]]):
            break
        k *= 2
    scored = order[:done]
    ranked = scored[torch.argsort(joint[scored], descending=True, stable=True)]
    return [(int(i), float(joint[i])) for i in ranked]
