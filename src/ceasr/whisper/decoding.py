"""Decoding Whisper without timestamps: greedy (batched) or beam search, language detection, temperature
fallback, over 30 s windows.

Each window's decoder starts from ``sot [language] task no_timestamps``. Control tokens (every id above
``<|endoftext|>``) and the checkpoint's non-speech symbols are never emitted; with ``suppress_blank`` neither
is a space or the end as the first token. Beam search ranks finished hypotheses by total log-probability /
length (OpenAI's and CTranslate2's default). With ``temperature_fallback``, a window whose result looks
degenerate (gzip compression ratio above the threshold, or mean log-probability below one) is decoded again
by sampling at rising temperatures, the first acceptable result kept (else the last).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ceasr.config import WhisperDecodeConfig
from ceasr.errors import ConfigError
from ceasr.models.whisper import KVCache, Whisper
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
           cfg: WhisperDecodeConfig, temperature: float = 0.0, generator: torch.Generator | None = None):
    """Greedy (``temperature`` 0) or sampled decoding of a batch: ``enc`` (B, T, D), ``prompts`` (B, P).

    Returns per row ``(tokens, token_logprobs, sum_logprob)``, the end token excluded from the tokens but
    counted in the sum.
    """
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    b = enc.size(0)
    cache, step_in = model.decoder.init_cache(enc), prompts
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


@torch.inference_mode()
def beam_search(model: Whisper, enc: torch.Tensor, prompt: list[int], tok: WhisperTokenizer,
                cfg: WhisperDecodeConfig):
    """Beam search for one utterance, ``enc`` (1, T, D): ``(tokens, token_logprobs, sum_logprob)`` of the best
    finished hypothesis by sum / length (unfinished beams compete when too few finish)."""
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    k = cfg.beam_size
    cache = model.decoder.init_cache(enc)
    beams = [([], [], 0.0)]  # (tokens, token logprobs, sum)
    step_in = torch.tensor([prompt], device=enc.device)
    finished = []
    for i in range(_max_new(model, len(prompt), cfg)):
        logprobs, cache = _step(model, step_in, cache, masks, first=i == 0)
        top_lp, top_id = logprobs.topk(k + 1, dim=-1)  # (beams, k + 1)
        candidates = []
        for b, (toks, scs, total) in enumerate(beams):
            for lp, t in zip(top_lp[b].tolist(), top_id[b].tolist()):
                candidates.append((total + lp, b, t, lp))
        candidates.sort(key=lambda c: -c[0])
        nxt, sources = [], []
        for total, b, t, lp in candidates:  # best first, until k live beams (OpenAI's rule)
            if t == tok.eot:
                if len(finished) < k:
                    finished.append((beams[b][0], beams[b][1], total))
                continue
            nxt.append((beams[b][0] + [t], beams[b][1] + [lp], total))
            sources.append(b)
            if len(nxt) == k:
                break
        if len(finished) >= k or not nxt:
            break
        beams = nxt
        cache = cache.select(torch.tensor(sources, device=enc.device))
        step_in = torch.tensor([[toks[-1]] for toks, _, _ in beams], device=enc.device)
    pool = finished + (beams if len(finished) < k else [])
    return max(pool, key=lambda h: h[2] / max(len(h[0]), 1))


def _check(cfg: WhisperDecodeConfig) -> None:
    if cfg.method not in SEARCHES:
        raise ConfigError(f"decode.method={cfg.method!r}: unknown for Whisper; known: {', '.join(SEARCHES)}")
    if cfg.beam_size < 1 or cfg.max_new_tokens < 1:
        raise ConfigError("decode.beam_size and decode.max_new_tokens must be at least 1")
    if cfg.temperature_fallback and not 0 < cfg.temperature_step <= 1:
        raise ConfigError(f"decode.temperature_step={cfg.temperature_step}: must be in (0, 1]")


def _search_greedy(model, enc, prompts, tok, cfg):
    return greedy(model, enc, torch.tensor(prompts, device=enc.device), tok, cfg)


def _search_beam(model, enc, prompts, tok, cfg):
    return [beam_search(model, enc[i : i + 1], p, tok, cfg) for i, p in enumerate(prompts)]


SEARCHES = {"greedy": _search_greedy, "beam": _search_beam}


def _result(tok, found, language, temperature) -> WindowResult:
    tokens, scores, total = found
    return WindowResult(tuple(tokens), tuple(scores), language, total / (len(tokens) + 1),
                        compression_ratio(tok.decode(tokens)), temperature)


def _degenerate(r: WindowResult, cfg: WhisperDecodeConfig) -> bool:
    return r.compression_ratio > cfg.compression_ratio_threshold or r.avg_logprob < cfg.logprob_threshold


@torch.inference_mode()
def decode_windows(model: Whisper, mels: torch.Tensor, tok: WhisperTokenizer, cfg: WhisperDecodeConfig) -> list[WindowResult]:
    """Decode log-mel windows ``mels`` (W, M, 3000) independently: one :class:`WindowResult` each."""
    _check(cfg)
    enc = model.encode(mels)
    languages = [cfg.language or None] * len(mels)
    if tok.multilingual and not cfg.language:
        languages = detect_language(model, enc, tok)
    prompts = [tok.prompt(lang, cfg.task) for lang in languages]
    results = [_result(tok, f, lang, 0.0) for f, lang in
               zip(SEARCHES[cfg.method](model, enc, prompts, tok, cfg), languages)]
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
