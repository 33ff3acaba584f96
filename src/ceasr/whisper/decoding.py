"""Decoding Whisper without timestamps: greedy (batched) or beam search, language detection, temperature
fallback, over 30 s windows.

Each window's decoder starts from ``sot [language] task no_timestamps``. Control tokens (every id above
``<|endoftext|>``) and the checkpoint's non-speech symbols are never emitted; with ``suppress_blank`` neither
is a space or the end as the first token. Beam search ranks finished hypotheses by total log-probability /
length (OpenAI's and CTranslate2's default), or, with a language model or hotwords fused in (ceasr's
:class:`~ceasr.decode.fusion.Fusion`, as for its own models), by log-probability + lambda * LM + beta * tokens +
hotword bonus. With ``temperature_fallback``, a window whose result looks
degenerate (gzip compression ratio above the threshold, or mean log-probability below one) is decoded again
by sampling at rising temperatures, the first acceptable result kept (else the last).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ceasr.decode.fusion import Fusion, FusionState, Scorers
from ceasr.errors import ConfigError
from ceasr.models.whisper import KVCache, Whisper
from ceasr.whisper.config import WhisperDecodeConfig
from ceasr.whisper.tokenizer import WhisperTokenizer


@dataclass(frozen=True)
class WindowResult:
    """One 30 s window's text tokens (no control tokens) with per-token log-probabilities."""

    tokens: tuple[int, ...]
    token_scores: tuple[float, ...]
    language: str | None
    avg_logprob: float  # over the tokens and the end token, as OpenAI's
    compression_ratio: float
    temperature: float


def compression_ratio(text: str) -> float:
    """UTF-8 bytes / zlib-compressed bytes: high for repetitive (looping) output."""
    raw = text.encode("utf-8")
    return len(raw) / max(len(zlib.compress(raw)), 1)


class _Masks:
    """Additive masks (V,) of ``-inf`` at ids never emitted (``always``) and not emitted first (``begin``)."""

    def __init__(self, tok: WhisperTokenizer, n_vocab: int, device: torch.device, suppress_blank: bool):
        self.always = torch.zeros(n_vocab, device=device)
        self.always[tok.eot + 1 :] = float("-inf")
        self.always[list(tok.suppress_ids)] = float("-inf")
        self.begin = self.always.clone()
        if suppress_blank:
            self.begin[list(tok.suppress_ids_begin)] = float("-inf")


@torch.inference_mode()
def detect_language(model: Whisper, enc: torch.Tensor, tok: WhisperTokenizer) -> list[str]:
    """The most likely language token after ``sot`` for each encoder output (B, T, D)."""
    codes = list(tok.languages)
    ids = torch.tensor([tok.languages[c] for c in codes], device=enc.device)
    sot = torch.full((enc.size(0), 1), tok.sot, device=enc.device)
    logits, _ = model.decoder(sot, enc)
    return [codes[i] for i in logits[:, 0, ids].argmax(-1).tolist()]


def _max_new(model: Whisper, prompt_len: int, cfg: WhisperDecodeConfig) -> int:
    """``max_new_tokens``, but never past the decoder's text context."""
    return min(cfg.max_new_tokens, model.cfg.n_text_ctx - prompt_len)


def _step(model: Whisper, tokens: torch.Tensor, cache: KVCache, masks: _Masks, first: bool):
    """Masked log-probabilities (B, V) of the next token after ``tokens`` (B, l), and the new cache."""
    logits, cache = model.decoder(tokens, cache=cache)
    logits = logits[:, -1] + (masks.begin if first else masks.always)
    return F.log_softmax(logits, dim=-1), cache


@torch.inference_mode()
def greedy(model: Whisper, enc: torch.Tensor, prompts: torch.Tensor, tok: WhisperTokenizer,
           cfg: WhisperDecodeConfig, temperature: float = 0.0, generator: torch.Generator | None = None,
           cross: KVCache | None = None):
    """Greedy (``temperature`` 0) or sampled decoding of a batch: ``enc`` (B, T, D), ``prompts`` (B, P);
    ``cross``: ``model.decoder.init_cache(enc)`` when the caller already has it.

    Returns per row ``(tokens, token_logprobs, sum_logprob)``, the end token excluded from the tokens but
    counted in the sum.
    """
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    b = enc.size(0)
    cache, step_in = cross if cross is not None else model.decoder.init_cache(enc), prompts
    out = [[] for _ in range(b)]
    scores = [[] for _ in range(b)]
    total = torch.zeros(b, device=enc.device)
    done = torch.zeros(b, dtype=torch.bool, device=enc.device)
    for i in range(_max_new(model, prompts.size(1), cfg)):
        logprobs, cache = _step(model, step_in, cache, masks, first=i == 0)
        if temperature > 0:
            probs = F.softmax((logprobs / temperature).masked_fill(logprobs.isinf(), float("-inf")), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            nxt = logprobs.argmax(-1)
        nxt = nxt.masked_fill(done, tok.eot)
        lp = logprobs.gather(1, nxt[:, None]).squeeze(1).masked_fill(done, 0.0)
        total += lp
        for r in (~done & (nxt != tok.eot)).nonzero().flatten().tolist():
            out[r].append(int(nxt[r]))
            scores[r].append(float(lp[r]))
        done |= nxt == tok.eot
        if bool(done.all()):
            break
        step_in = nxt[:, None]
    return [(out[r], scores[r], float(total[r])) for r in range(b)]


class _Beam(NamedTuple):
    tokens: tuple[int, ...]
    scores: tuple[float, ...]  # per-token acoustic log-probabilities
    acoustic: float  # their sum
    added: float  # what the fusion added so far
    state: FusionState | None


@torch.inference_mode()
def beam_search(model: Whisper, enc: torch.Tensor, prompt: list[int], tok: WhisperTokenizer,
                cfg: WhisperDecodeConfig, fusion: Fusion | None = None):
    """Beam search for one utterance, ``enc`` (1, T, D): ``(tokens, token_logprobs, sum_logprob)`` of the best
    finished hypothesis (unfinished beams compete when too few finish).

    Without ``fusion`` each beam tries its ``beam_size + 1`` best next tokens and finished hypotheses are
    ranked by log-probability / length (OpenAI's and CTranslate2's rule). With a :class:`Fusion` (a language
    model, hotwords, a length bonus) each beam's ``fusion_candidates`` best next tokens are rescored by
    log-probability + what the fusion adds, and finished hypotheses are ranked by that sum, the end scored
    by the LM too (ESPnet's rule: the length bonus beta, not a division, balances short and long).
    """
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    k = cfg.beam_size
    width = k + 1 if fusion is None else max(k + 1, cfg.fusion_candidates)
    width = min(width, model.cfg.n_vocab)
    if fusion is not None:
        fusion.reset()
    cache = model.decoder.init_cache(enc)
    beams = [_Beam((), (), 0.0, 0.0, fusion.start() if fusion is not None else None)]
    step_in = torch.tensor([prompt], device=enc.device)
    finished: list[_Beam] = []
    for i in range(_max_new(model, len(prompt), cfg)):
        logprobs, cache = _step(model, step_in, cache, masks, first=i == 0)
        top_lp, top_id = logprobs.topk(width, dim=-1)  # (beams, width)
        if fusion is not None:
            fusion.prepare([b.state for b in beams])
        candidates = []
        for b, beam in enumerate(beams):
            for lp, t in zip(top_lp[b].tolist(), top_id[b].tolist()):
                added, state = 0.0, beam.state
                if fusion is not None:
                    added, state = (fusion.final(state), state) if t == tok.eot else fusion.extend(state, t)
                candidates.append((beam.acoustic + lp + beam.added + added, b, t, lp, added, state))
        candidates.sort(key=lambda c: -c[0])
        nxt, sources = [], []
        for _, b, t, lp, added, state in candidates:  # best first, until k live beams (OpenAI's rule)
            beam = beams[b]
            if t == tok.eot:
                if len(finished) < k:
                    finished.append(beam._replace(acoustic=beam.acoustic + lp, added=beam.added + added))
                continue
            nxt.append(_Beam(beam.tokens + (t,), beam.scores + (lp,), beam.acoustic + lp, beam.added + added, state))
            sources.append(b)
            if len(nxt) == k:
                break
        if len(finished) >= k or not nxt:
            break
        beams = nxt
        cache = cache.select(torch.tensor(sources, device=enc.device))
        step_in = torch.tensor([[beam.tokens[-1]] for beam in beams], device=enc.device)
    live = beams if len(finished) < k else []
    if fusion is None:
        best = max(finished + live, key=lambda h: h.acoustic / max(len(h.tokens), 1))
    else:
        live = [h._replace(added=h.added + fusion.final(h.state)) for h in live]
        best = max(finished + live, key=lambda h: h.acoustic + h.added)
    return list(best.tokens), list(best.scores), best.acoustic


def _check(cfg: WhisperDecodeConfig, scorers: Scorers | None) -> None:
    if cfg.method not in SEARCHES:
        raise ConfigError(f"decode.method={cfg.method!r}: unknown for Whisper; known: {', '.join(SEARCHES)}")
    if scorers is not None and cfg.method != "beam":
        raise ConfigError("decode.lm and decode.hotwords work in beam search: add --decode method=beam")
    if cfg.fusion_candidates < 1:
        raise ConfigError(f"decode.fusion_candidates={cfg.fusion_candidates}: must be at least 1")
    if cfg.beam_size < 1 or cfg.max_new_tokens < 1:
        raise ConfigError("decode.beam_size and decode.max_new_tokens must be at least 1")
    if cfg.temperature_fallback and not 0 < cfg.temperature_step <= 1:
        raise ConfigError(f"decode.temperature_step={cfg.temperature_step}: must be in (0, 1]")


def _search_greedy(model, enc, prompts, tok, cfg, fusion):
    return greedy(model, enc, torch.tensor(prompts, device=enc.device), tok, cfg)


def _search_beam(model, enc, prompts, tok, cfg, fusion):
    return [beam_search(model, enc[i : i + 1], p, tok, cfg, fusion) for i, p in enumerate(prompts)]


SEARCHES = {"greedy": _search_greedy, "beam": _search_beam}


def _result(tok, found, language, temperature) -> WindowResult:
    tokens, scores, total = found
    return WindowResult(tuple(tokens), tuple(scores), language, total / (len(tokens) + 1),
                        compression_ratio(tok.decode(tokens)), temperature)


def _degenerate(r: WindowResult, cfg: WhisperDecodeConfig) -> bool:
    return r.compression_ratio > cfg.compression_ratio_threshold or r.avg_logprob < cfg.logprob_threshold


@torch.inference_mode()
def decode_windows(model: Whisper, mels: torch.Tensor, tok: WhisperTokenizer, cfg: WhisperDecodeConfig,
                   scorers: Scorers | None = None) -> list[WindowResult]:
    """Decode log-mel windows ``mels`` (W, M, 3000) independently: one :class:`WindowResult` each.
    ``scorers`` (a language model and/or hotwords over ``tok.word_pieces``) are fused into beam search."""
    _check(cfg, scorers)
    return decode_encoded(model, model.encode(mels), tok, cfg, scorers)


@torch.inference_mode()
def decode_encoded(model: Whisper, enc: torch.Tensor, tok: WhisperTokenizer, cfg: WhisperDecodeConfig,
                   scorers: Scorers | None = None) -> list[WindowResult]:
    """:func:`decode_windows` from the encoder's outputs (W, T, D) (e.g. cached while tuning the decoding)."""
    _check(cfg, scorers)
    fusion = None
    if scorers is not None:
        fusion = scorers.fusion(cfg.lm_weight, cfg.length_penalty, cfg.lm_oov_penalty, cfg.lm_lookahead)
        fusion = fusion if fusion.active else None  # lambda 0, no bonus, no hotwords: plain beam search
    languages = [cfg.language or None] * len(enc)
    if tok.multilingual and not cfg.language:
        languages = detect_language(model, enc, tok)
    prompts = [tok.prompt(lang, cfg.task) for lang in languages]
    results = [_result(tok, f, lang, 0.0) for f, lang in
               zip(SEARCHES[cfg.method](model, enc, prompts, tok, cfg, fusion), languages)]
    if cfg.temperature_fallback:
        results = _fall_back(model, enc, prompts, tok, cfg, results)
    return results


def _fall_back(model, enc, prompts, tok, cfg, results: list[WindowResult]) -> list[WindowResult]:
    generator = torch.Generator(device=enc.device).manual_seed(cfg.seed)
    t = cfg.temperature_step
    while t <= 1.0 + 1e-6:
        todo = [i for i, r in enumerate(results) if _degenerate(r, cfg)]
        if not todo:
            break
        todo_prompts = torch.tensor([prompts[i] for i in todo], device=enc.device)
        found = greedy(model, enc[todo], todo_prompts, tok, cfg, t, generator)
        for i, f in zip(todo, found):
            results[i] = _result(tok, f, results[i].language, t)
        t += cfg.temperature_step
    return results
