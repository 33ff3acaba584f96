"""Decoding: one entry point, :func:`decode`, that encodes a batch once and runs the configured search.

Methods live in the plain-dict registry :data:`DECODERS`; each takes ``(model, enc, enc_lens, cfg, scorers)``
and returns the n-best :class:`Hypothesis` lists per utterance (best first; a single hypothesis when the
search keeps no more). ``scorers`` (:class:`Scorers`: a language model and hotwords, or None) is fused into
the search (``cfg.lm_mode == "fusion"``) or rescores its n-best lists afterwards (``"rescore"``).

A bilingual model with a language-ID head first says which languages each utterance speaks; the tokens of the
others get a CTC log-probability of :data:`MASKED_LOG_PROB` (``cfg.lid_threshold``, :func:`language_bias`), so
that every search, all of which score with CTC, keeps to the languages heard (the attention-only search with
``ctc_weight`` 0 excepted).
"""

from __future__ import annotations

import math

import torch

from ceasr.config import DecodeConfig
from ceasr.decode.beam import attention_beam_search, attention_nbest
from ceasr.decode.ctc import CTCPrefixScorer, ctc_greedy, ctc_prefix_beam_search, ctc_prefix_beam_search_batch
from ceasr.decode.fusion import Fusion, Scorers
from ceasr.decode.result import Hypothesis
from ceasr.decode.score import joint_scores
from ceasr.errors import ConfigError

# Tokens below this probability in a frame are not tried by prefix beam search: they cannot carry a prefix
# into the beam, and skipping them keeps the per-frame Python work to a handful of extensions.
PRUNE_LOG_PROB = math.log(1e-4)
MASKED_LOG_PROB = -1e4  # the CTC log-probability of a token the language constraint rules out (finite: no NaNs)


def _ctc_greedy(model, enc, enc_lens, cfg: DecodeConfig, fusion: Fusion | None) -> list[list[Hypothesis]]:
    return [[h] for h in ctc_greedy(model.ctc_log_probs(enc), enc_lens)]


def _ctc_prefix_beam(model, enc, enc_lens, cfg: DecodeConfig, fusion: Fusion | None) -> list[list[Hypothesis]]:
    return ctc_prefix_beam_search_batch(
        model.ctc_log_probs(enc), enc_lens, cfg.beam_size, top_k=cfg.beam_size, min_log_prob=PRUNE_LOG_PROB,
        fusion=fusion,
    )


def _attention(model, enc, enc_lens, cfg: DecodeConfig, fusion: Fusion | None) -> list[list[Hypothesis]]:
    return attention_nbest(
        model, enc, enc_lens, cfg.beam_size, cfg.ctc_weight, cfg.length_penalty, cfg.max_len_ratio, fusion=fusion
    ) if cfg.lm_mode == "rescore" else [[h] for h in attention_beam_search(
        model, enc, enc_lens, cfg.beam_size, cfg.ctc_weight, cfg.length_penalty, cfg.max_len_ratio, fusion=fusion
    )]


def _attention_rescoring(model, enc, enc_lens, cfg: DecodeConfig, fusion: Fusion | None):
    """WeNet's attention rescoring: CTC prefix beam search (with the fusion, if any) gives an n-best list
    (``beam_size``), one teacher-forced decoder call per utterance scores all of it, and hypotheses are ranked
    by ``w * CTC + (1 - w) * attention + fusion``: the exact CTC log-likelihood of each whole hypothesis, its
    attention log-probability (eos included), and the fusion's sentence score (lambda * LM, hotwords,
    beta * length)."""
    if model.decoder is None:
        raise ConfigError("decode.method=attention_rescoring needs a model with an attention decoder; this model "
                          "is CTC-only (use ctc_greedy or ctc_prefix_beam)")
    log_probs = model.ctc_log_probs(enc)
    nbest = ctc_prefix_beam_search_batch(log_probs, enc_lens, cfg.beam_size, top_k=cfg.beam_size,
                                         min_log_prob=PRUNE_LOG_PROB, fusion=fusion)
    w, out = cfg.ctc_weight, []
    for b, hyps in enumerate(nbest):
        n = int(enc_lens[b])
        if n == 0 or w >= 1.0:
            out.append(hyps)
            continue
        seqs = [tuple(h.tokens) for h in hyps]
        joint = joint_scores(model, enc[b : b + 1, :n], log_probs[b, :n], seqs, w).tolist()
        added = fusion.sentence_scores(seqs) if fusion is not None else [0.0] * len(hyps)
        totals = [j + f for j, f in zip(joint, added)]
        order = sorted(range(len(hyps)), key=lambda i: -totals[i])
        out.append([Hypothesis(hyps[i].tokens, totals[i], hyps[i].token_scores) for i in order])
    return out


DECODERS = {
    "ctc_greedy": _ctc_greedy,
    "ctc_prefix_beam": _ctc_prefix_beam,
    "attention": _attention,
    "attention_rescoring": _attention_rescoring,
}
# Methods whose searches apply beta (length_penalty) themselves; the others get it through the Fusion.
_OWN_LENGTH_TERM = {"attention"}
LM_MODES = ("fusion", "rescore")


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
    if not 0.0 <= cfg.lid_threshold <= 1.0:
        raise ConfigError(f"decode.lid_threshold={cfg.lid_threshold}: must be between 0 and 1")
    if cfg.lm_mode not in LM_MODES:
        raise ConfigError(f"decode.lm_mode={cfg.lm_mode!r}: unknown; known: {', '.join(LM_MODES)}")


def decode(
    model, feats: torch.Tensor, feat_lens: torch.Tensor, cfg: DecodeConfig, scorers: Scorers | None = None
) -> list[Hypothesis]:
    """Encode ``feats`` (B, T, F) with lengths (B,) once and decode with ``cfg.method``: the best hypothesis
    per utterance, in batch order. ``scorers`` adds a language model and hotwords (see the module doc)."""
    _check(cfg)
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, feat_lens)
        return decode_encoded(model, enc, enc_lens, cfg, scorers)


def decode_encoded(model, enc: torch.Tensor, enc_lens: torch.Tensor, cfg: DecodeConfig, scorers=None):
    """:func:`decode` from encoder outputs (B, T', D) (e.g. cached while tuning decode parameters)."""
    beta = 0.0 if cfg.method in _OWN_LENGTH_TERM else cfg.length_penalty
    bias = language_bias(model, enc, enc_lens, cfg.lid_threshold)
    if bias is not None:
        model = _LanguageConstrained(model, bias)
    if scorers is not None:
        fusion = scorers.fusion(cfg.lm_weight, beta, cfg.lm_oov_penalty, cfg.lm_lookahead)
    else:
        fusion = Fusion((), length_bonus=beta)
    if cfg.lm_mode == "rescore":
        nbest = DECODERS[cfg.method](model, enc, enc_lens, cfg, Fusion((), length_bonus=beta))
        return [rescore(hyps, fusion, beta) for hyps in nbest]
    return [hyps[0] for hyps in DECODERS[cfg.method](model, enc, enc_lens, cfg, fusion)]


def language_bias(model, enc: torch.Tensor, enc_lens: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """(B, V) additive CTC log-probability bias: 0 for the tokens of each language the model's language-ID head
    hears in the utterance (probability >= ``threshold``, and always the likeliest language) and for tokens
    without a language (blank, specials), :data:`MASKED_LOG_PROB` for the other languages' tokens. None when the
    model has no head or ``threshold`` is 0."""
    if getattr(model, "lid", None) is None or threshold <= 0.0:
        return None
    probs = torch.sigmoid(model.language_logits(enc, enc_lens))  # (B, L)
    heard = (probs >= threshold) | (probs == probs.amax(dim=1, keepdim=True))
    heard = torch.cat([torch.ones_like(heard[:, :1]), heard], dim=1)  # column 0: tokens without a language
    allowed = heard[:, model.token_language]  # (B, V)
    return torch.where(allowed, 0.0, MASKED_LOG_PROB).to(enc.dtype)


class _LanguageConstrained:
    """``model`` with ``bias`` (B, V) added to its CTC log-probabilities of a B-utterance batch; every other
    attribute is the model's."""

    def __init__(self, model, bias: torch.Tensor):
        self.model, self.bias = model, bias

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        if enc.size(0) != self.bias.size(0):
            raise ValueError(f"a language bias of {self.bias.size(0)} utterances for a batch of {enc.size(0)}")
        return self.model.ctc_log_probs(enc) + self.bias.unsqueeze(1)


def rescore(hyps: list[Hypothesis], fusion: Fusion, beta: float) -> Hypothesis:
    """The best of an n-best list by search score + lambda * LM + hotwords (N-best rescoring). The search
    score already holds ``beta`` per token, so the fusion's own length bonus is not added twice."""
    if not fusion.active or len(hyps) == 1:
        return hyps[0]
    added = fusion.sentence_scores([h.tokens for h in hyps])
    totals = [h.score + a - fusion.length_bonus * len(h.tokens) for h, a in zip(hyps, added)]
    best = max(range(len(hyps)), key=totals.__getitem__)
    return Hypothesis(hyps[best].tokens, totals[best], hyps[best].token_scores)


__all__ = [
    "DECODERS",
    "CTCPrefixScorer",
    "Fusion",
    "Scorers",
    "Hypothesis",
    "attention_beam_search",
    "attention_nbest",
    "ctc_greedy",
    "ctc_prefix_beam_search",
    "ctc_prefix_beam_search_batch",
    "decode",
    "decode_encoded",
    "language_bias",
    "rescore",
]
