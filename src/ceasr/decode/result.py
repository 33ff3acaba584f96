"""The result every decoder returns: a token sequence with its total and per-token log scores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hypothesis:
    """One decoded token sequence.

    ``tokens`` are output ids (no blank, sos or eos). ``score`` is the total log score the search ranked by
    (for CTC greedy the best path's log-probability, for prefix beam search the log-probability of the label
    sequence summed over its alignments, for attention the joint score including the length penalty).
    ``token_scores`` holds one log-probability-like confidence per token (see each decoder).
    """

    tokens: tuple[int, ...]
    score: float
    token_scores: tuple[float, ...]
