"""Decoding: one entry point, :func:`decode`, that encodes a batch once and runs the configured search.

Methods live in the plain-dict registry :data:`DECODERS`; each takes ``(model, enc, enc_lens, cfg)`` and
returns the best :class:`Hypothesis` per utterance.
"""

from __future__ import annotations

import math

import torch

from ceasr.config import DecodeConfig
from ceasr.decode.beam import attention_beam_search, attention_nbest
from ceasr.decode.ctc import CTCPrefixScorer, ctc_greedy, ctc_prefix_beam_search, ctc_prefix_beam_search_batch
from ceasr.decode.result import Hypothesis
from ceasr.errors import ConfigError

# Tokens below this probability in a frame are not tried by prefix beam search: they cannot carry a prefix
# into the beam, and skipping them keeps the per-frame Python work to a handful of extensions.
PRUNE_LOG_PROB = math.log(1e-4)


def _ctc_greedy(model, enc: torch.Tensor, enc_lens: torch.Tensor, cfg: DecodeConfig) -> list[Hypothesis]:
    return ctc_greedy(model.ctc_log_probs(enc), enc_lens)


def _ctc_prefix_beam(model, enc: torch.Tensor, enc_lens: torch.Tensor, cfg: DecodeConfig) -> list[Hypothesis]:
    nbest = ctc_prefix_beam_search_batch(
        model.ctc_log_probs(enc), enc_lens, cfg.beam_size, top_k=cfg.beam_size, min_log_prob=PRUNE_LOG_PROB
    )
    return [hyps[0] for hyps in nbest]


def _attention(model, enc: torch.Tensor, enc_lens: torch.Tensor, cfg: DecodeConfig) -> list[Hypothesis]:
    return attention_beam_search(
        model, enc, enc_lens, cfg.beam_size, cfg.ctc_weight, cfg.length_penalty, cfg.max_len_ratio
    )


DECODERS = {
    "ctc_greedy": _ctc_greedy,
    "ctc_prefix_beam": _ctc_prefix_beam,
    "attention": _attention,
}


def _check(cfg: DecodeConfig) -> None:
    """Reject a decode config that cannot run, naming the field."""
    if cfg.method not in DECODERS:
        raise ConfigError(f"decode.method={cfg.method!r}: unknown method; known: {', '.join(DECODERS)}")
    if cfg.beam_size < 1:
        raise ConfigError(f"decode.beam_size={cfg.beam_size}: must be at least 1")
    if not 0.0 <= cfg.ctc_weight <= 1.0:
        raise ConfigError(f"decode.ctc_weight={cfg.ctc_weight}: must be between 0 and 1")
    if cfg.max_len_ratio <= 0:
        raise ConfigError(f"decode.max_len_ratio={cfg.max_len_ratio}: must be positive")


def decode(model, feats: torch.Tensor, feat_lens: torch.Tensor, cfg: DecodeConfig) -> list[Hypothesis]:
    """Encode ``feats`` (B, T, F) with lengths (B,) once and decode with ``cfg.method``: the best hypothesis
    per utterance, in batch order."""
    _check(cfg)
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, feat_lens)
        return DECODERS[cfg.method](model, enc, enc_lens, cfg)


__all__ = [
    "DECODERS",
    "CTCPrefixScorer",
    "Hypothesis",
    "attention_beam_search",
    "attention_nbest",
    "ctc_greedy",
    "ctc_prefix_beam_search",
    "ctc_prefix_beam_search_batch",
    "decode",
]
