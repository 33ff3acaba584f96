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
from dataclasses import dataclass

import torch

from ceasr.decode.score import attention_scores, ctc_scores, joint_scores, pad_sequences, teacher_forcing

__all__ = ["Phrases", "attention_scores", "best_joint_scores", "ctc_scores", "joint_scores", "pad_sequences"]


@dataclass(frozen=True)
class Phrases:
    """A fixed set of token sequences made ready once for :func:`best_joint_scores`: padded with eos (N, L) and
    their lengths (N,), and the decoder's audio-independent states of each (``TransformerDecoder.text_states``
    of their teacher-forced inputs; None without a decoder)."""

    padded: torch.Tensor
    lens: torch.Tensor
    text: tuple[torch.Tensor, torch.Tensor] | None

    @classmethod
    def of(cls, model, seqs) -> "Phrases":
        padded, lens = pad_sequences(list(seqs), model.eos_id)
        text = None
        if model.decoder is not None:
            ys_in, _ = teacher_forcing(padded, lens, model.sos_id, model.eos_id)
            with torch.inference_mode():
                text = model.decoder.text_states(ys_in.to(next(model.decoder.parameters()).device))
        return cls(padded, lens, text)


def best_joint_scores(
    model, memory: torch.Tensor, log_probs: torch.Tensor, seqs: list[tuple[int, ...]] | Phrases,
    ctc_weight: float, first: int = 8,
) -> list[tuple[int, float]]:
    """``(index, joint score)`` of the phrases the decoder had to score, best first; the first is the best of
    all ``seqs`` (as :func:`joint_scores` would rank them) and every phrase left out scores at most the last
    bound checked. The decoder scores the ``first`` best phrases by CTC, then twice as many until the bound
    holds. ``seqs`` made into :class:`Phrases` once give the same result with less work per utterance."""
    phrases = seqs if isinstance(seqs, Phrases) else Phrases(*pad_sequences(seqs, model.eos_id), None)
    padded, lens, text = phrases.padded, phrases.lens, phrases.text
    ctc = ctc_scores(log_probs, padded, lens, model.blank_id)
    order = torch.argsort(ctc, descending=True, stable=True)
    if ctc_weight >= 1.0 or model.decoder is None:
        return [(int(i), float(ctc[i])) for i in order]
    ctc_part = ctc_weight * ctc if ctc_weight > 0 else torch.zeros_like(ctc)  # (0 * -inf would be nan)
    joint = torch.full_like(ctc, -math.inf)
    done, k = 0, max(1, first)
    while True:
        k = min(k, len(padded))
        todo = order[done:k]
        rows = None if text is None else (text[0][todo], text[1][todo])
        att = attention_scores(model.decoder, memory, padded[todo], lens[todo], model.sos_id, model.eos_id, rows)
        joint[todo] = ctc_part[todo] + (1 - ctc_weight) * att
        done = k
        if k == len(padded) or float(joint[order[:k]].max()) >= float(ctc_part[order[k]]):
            break
        k *= 2
    scored = order[:done]
    ranked = scored[torch.argsort(joint[scored], descending=True, stable=True)]
    return [(int(i), float(joint[i])) for i in ranked]
