"""Attention beam search, optionally scored jointly with CTC prefix scores (Watanabe et al. 2017).

Each step feeds every live hypothesis of one utterance to the decoder as one batch, takes the top candidates
per hypothesis by attention score, adds their CTC prefix scores, and keeps the ``beam_size`` best expansions.
A hypothesis ends when it picks eos; at ``max_len`` tokens eos is forced.

A decoder with ``start(memory, memory_lens)`` and ``step(state, tokens)`` (ceasr's TransformerDecoder) is run
incrementally: each step feeds only the newest token and reuses cached keys/values, instead of recomputing
every prefix and the encoder's key/value projections for every hypothesis. Any other decoder (a callable
``decoder(memory, memory_lens, ys_in, ys_in_lens) -> logits``) is rerun on the whole prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ceasr.decode.ctc import NEG_INF, CTCPrefixScorer, CTCState
from ceasr.decode.result import Hypothesis
from ceasr.errors import ConfigError


@dataclass(frozen=True)
class _Options:
    beam_size: int
    ctc_weight: float
    length_penalty: float
    blank: int
    sos: int
    eos: int
    wanted: int  # how many of the best finished hypotheses must be final before the search may stop
    fusion: object = None  # a ceasr.decode.fusion.Fusion adding LM and hotword scores, or None


@dataclass(frozen=True)
class _Live:
    """Unfinished hypotheses of one utterance as parallel tensors (N of them, L-1 tokens each)."""

    tokens: torch.Tensor  # (N, L) long, sos first
    scores: torch.Tensor  # (N,) float64 joint log score
    token_scores: torch.Tensor  # (N, L-1) float64 per-token score increments
    ctc: CTCState | None
    dec: object  # the decoder's state after tokens[:, :-1] (the last token is fed by the next step)
    fus: tuple = ()  # per hypothesis, its FusionState (empty without fusion)


@dataclass(frozen=True)
class _Prefixes:
    """State of a decoder without incremental decoding: the prefixes fed so far, (N, L) long."""

    memory: torch.Tensor  # (1, T', D)
    ys: torch.Tensor

    def select(self, index: torch.Tensor) -> "_Prefixes":
        return replace(self, ys=self.ys[index])


class _WholePrefix:
    """``start``/``step`` over a decoder that only scores whole prefixes: each step reruns it on all of them."""

    def __init__(self, decoder):
        self.decoder = decoder

    def start(self, memory: torch.Tensor, memory_lens: torch.Tensor) -> _Prefixes:
        return _Prefixes(memory, torch.zeros(1, 0, dtype=torch.long, device=memory.device))

    def step(self, state: _Prefixes, tokens: torch.Tensor) -> tuple[torch.Tensor, _Prefixes]:
        ys = torch.cat([state.ys, tokens[:, None]], dim=1)  # (N, L)
        (N, L), T = ys.shape, state.memory.shape[1]
        mem_lens = torch.full((N,), T, dtype=torch.long, device=ys.device)
        ys_lens = torch.full((N,), L, dtype=torch.long, device=ys.device)
        logits = self.decoder(state.memory.expand(N, -1, -1), mem_lens, ys, ys_lens)  # (N, L, V)
        return logits[:, -1], replace(state, ys=ys)


def _stepper(decoder):
    return decoder if hasattr(decoder, "step") and hasattr(decoder, "start") else _WholePrefix(decoder)


def attention_beam_search(
    model,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    beam_size: int = 4,
    ctc_weight: float = 0.3,
    length_penalty: float = 0.0,
    max_len_ratio: float = 1.0,
    blank: int = 0,
    fusion=None,
) -> list[Hypothesis]:
    """The best hypothesis per utterance of ``enc`` (B, T', D) with lengths ``enc_lens`` (B,).

    Candidates are scored by (1 - ctc_weight) * log p_att + ctc_weight * (CTC prefix score increment);
    ``ctc_weight=0`` is pure attention. A finished hypothesis gets ``length_penalty`` per output token
    (positive favours longer outputs). At most ``max_len_ratio * T'`` tokens are produced. ``token_scores``
    are the per-token joint score increments. See :func:`attention_nbest` for the n-best lists.

    A :class:`~ceasr.decode.fusion.Fusion` adds lambda * LM and hotword bonuses to the increments of the
    candidates the decoder proposes (shallow fusion); its own length bonus should be 0 (``length_penalty``
    is beta here).
    """
    searches = _run(model, enc, enc_lens, beam_size, ctc_weight, length_penalty, max_len_ratio, blank, 1, fusion)
    return [hyps[0] for hyps in searches]


def attention_nbest(
    model,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    beam_size: int = 4,
    ctc_weight: float = 0.3,
    length_penalty: float = 0.0,
    max_len_ratio: float = 1.0,
    blank: int = 0,
    fusion=None,
) -> list[list[Hypothesis]]:
    """Like :func:`attention_beam_search`, but up to ``beam_size`` hypotheses per utterance, best first.

    Utterances are searched one after another; within one, the beam is one decoder batch.
    """
    return _run(
        model, enc, enc_lens, beam_size, ctc_weight, length_penalty, max_len_ratio, blank, beam_size, fusion
    )


def _run(model, enc, enc_lens, beam_size, ctc_weight, length_penalty, max_len_ratio, blank, wanted, fusion=None):
    """Search each utterance; a search may stop once its ``wanted`` best finished hypotheses are final."""
    if model.decoder is None:
        raise ConfigError(
            "decode.method=attention needs a model with an attention decoder; this model is CTC-only "
            "(use ctc_greedy or ctc_prefix_beam)"
        )
    if not 0.0 <= ctc_weight <= 1.0:
        raise ConfigError(f"decode.ctc_weight={ctc_weight}: must be between 0 and 1")
    if beam_size < 1:
        raise ConfigError(f"decode.beam_size={beam_size}: must be at least 1")
    fusion = fusion if fusion is not None and fusion.active else None
    opts = _Options(beam_size, ctc_weight, length_penalty, blank, model.sos_id, model.eos_id, wanted, fusion)
    ctc_lp = model.ctc_log_probs(enc) if ctc_weight > 0 else None  # (B, T', V)
    results = []
    for b, n in enumerate(enc_lens.tolist()):
        if n == 0:  # nothing to attend to: the empty output is the only one
            results.append([Hypothesis((), 0.0, ())])
            continue
        scorer = CTCPrefixScorer(ctc_lp[b, :n], blank) if ctc_lp is not None else None
        max_len = max(0, int(max_len_ratio * n))
        results.append(_search(_stepper(model.decoder), enc[b : b + 1, :n], scorer, max_len, opts))
    return results


def _search(decoder, memory: torch.Tensor, scorer: CTCPrefixScorer | None, max_len: int, opts: _Options):
    """Beam search for one utterance; ``memory`` (1, T', D). Returns its n-best list."""
    lens = torch.full((1,), memory.shape[1], dtype=torch.long, device=memory.device)
    live = _Live(
        tokens=torch.full((1, 1), opts.sos, dtype=torch.long, device=memory.device),
        scores=torch.zeros(1, dtype=torch.float64),
        token_scores=torch.zeros(1, 0, dtype=torch.float64),
        ctc=scorer.initial_state() if scorer is not None else None,
        dec=decoder.start(memory, lens),
        fus=(opts.fusion.start(),) if opts.fusion is not None else (),
    )
    if opts.fusion is not None:
        opts.fusion.reset()
    finished: list[Hypothesis] = []
    for step in range(max_len + 1):
        cands, inc, psi, r, dec = _expand(decoder, live, scorer, opts, force_eos=step == max_len)
        fus_next = None
        if opts.fusion is not None:
            inc, fus_next = _fuse(opts.fusion, live.fus, cands, inc, opts.eos)
        # Every finished hypothesis has `step` tokens; the penalty only ranks outputs of different lengths.
        joint = live.scores[:, None] + inc + torch.where(cands == opts.eos, opts.length_penalty * step, 0.0)
        live, done = _select(replace(live, dec=dec), cands, inc, joint, psi, r, scorer, opts, fus_next)
        finished.extend(done)
        if live is None:
            break
        # Scores never rise (log-probs <= 0, prefix scores shrink), so once the wanted best finished
        # hypotheses score at least the best live one, nothing live can overtake them. (Hotword bonuses
        # may raise scores, so with them the search runs on.)
        rising = opts.fusion is not None and opts.fusion.hotwords is not None
        if opts.length_penalty <= 0 and not rising and len(finished) >= opts.wanted:
            kth = sorted((h.score for h in finished), reverse=True)[opts.wanted - 1]
            if kth >= float(live.scores.max()):
                break
    if not finished:  # every path had probability zero (e.g. more tokens than CTC frames allow)
        return [Hypothesis((), NEG_INF, ())]
    return sorted(finished, key=lambda h: -h.score)[: opts.beam_size]


def _expand(decoder, live: _Live, scorer, opts: _Options, force_eos: bool):
    """Candidate tokens (N, K) per live hypothesis and their score increments (N, K).

    Also returns the candidates' CTC prefix scores and forward variables (None without CTC), and the decoder
    state after every live hypothesis's whole prefix.
    """
    logits, dec = decoder.step(live.dec, live.tokens[:, -1])  # (N, V)
    att = logits.to("cpu", torch.float64).log_softmax(dim=-1)  # (N, V)
    att[:, opts.blank] = NEG_INF
    if opts.sos != opts.eos:
        att[:, opts.sos] = NEG_INF
    if force_eos:
        att = torch.full_like(att, NEG_INF).index_copy_(1, torch.tensor([opts.eos]), att[:, [opts.eos]])
    V = att.shape[1]
    w = opts.ctc_weight
    # Pure attention needs only the beam's best per hypothesis; joint scoring looks a bit wider (as ESPnet),
    # and pure CTC cannot let the attention scores choose, so it scores every token.
    k = opts.beam_size if w == 0 else V if w == 1 else int(1.5 * opts.beam_size)
    if opts.fusion is not None:  # the LM and hotwords rerank a wider set of the decoder's candidates
        k = max(k, 2 * opts.beam_size)
    att_top, cands = att.topk(min(k, V), dim=-1)  # (N, K)
    if scorer is None:
        return cands, att_top, None, None, dec
    psi, r = scorer.score(live.ctc, cands)
    psi = torch.where(cands == opts.eos, scorer.eos_score(live.ctc)[:, None], psi)
    ctc_inc = psi - live.ctc.psi[:, None]  # (N, K)
    if w == 1:  # -inf * 0 would be nan; masked tokens stay impossible
        inc = torch.where(att_top == NEG_INF, NEG_INF, ctc_inc)
    else:
        inc = (1 - w) * att_top + w * ctc_inc
    return cands, inc, psi, r, dec


def _fuse(fusion, states: tuple, cands: torch.Tensor, inc: torch.Tensor, eos: int):
    """Add the fusion's score changes to the increments (N, K); the candidates' fusion states, per (n, k)."""
    fusion.prepare(states)
    add = torch.zeros_like(inc)
    nxt = []
    for n, row in enumerate(cands.tolist()):
        out = []
        for k, c in enumerate(row):
            if c == eos:
                d, st = fusion.final(states[n]), states[n]
            else:
                d, st = fusion.extend(states[n], c)
            add[n, k] = d
            out.append(st)
        nxt.append(out)
    return inc + add, nxt


def _select(live: _Live, cands, inc, joint, psi, r, scorer, opts: _Options, fus_next=None):
    """Keep the ``beam_size`` best expansions: eos ones become finished hypotheses, the rest stay live.

    Returns (live or None, finished list).
    """
    K = cands.shape[1]
    top = joint.flatten().topk(min(opts.beam_size, joint.numel()))
    keep = top.values > NEG_INF
    values, flat = top.values[keep], top.indices[keep]
    hyp_idx, cand_idx = flat // K, flat % K
    tokens = cands[hyp_idx, cand_idx]
    ends = tokens == opts.eos
    done = [
        Hypothesis(tuple(live.tokens[h, 1:].tolist()), float(v), tuple(live.token_scores[h].tolist()))
        for h, v in zip(hyp_idx[ends].tolist(), values[ends].tolist())
    ]
    go = ~ends
    if not bool(go.any()):
        return None, done
    h, c, t = hyp_idx[go], cand_idx[go], tokens[go]
    nxt = _Live(
        tokens=torch.cat([live.tokens[h], t[:, None].to(live.tokens.device)], dim=1),
        scores=values[go],
        token_scores=torch.cat([live.token_scores[h], inc[h, c][:, None]], dim=1),
        ctc=scorer.select(psi, r, h, c, t) if scorer is not None else None,
        dec=live.dec.select(h.to(live.tokens.device)),
        fus=tuple(fus_next[i][j] for i, j in zip(h.tolist(), c.tolist())) if fus_next is not None else (),
    )
    return nxt, done
