"""CTC decoding: greedy (best path), prefix beam search, and the prefix scorer used by joint attention decoding.

All three work on log-probabilities ``(T, V)`` (or ``(B, T, V)`` with lengths) where id ``blank`` (0 in ceasr)
is the CTC blank. Prefix probabilities are kept in log space as a (blank-ending, non-blank-ending) pair.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch

from ceasr.decode.result import Hypothesis

NEG_INF = float("-inf")
# Log-probs are clamped here before cumulative sums: -inf would turn differences of cumulative sums into nan,
# and exp(-1e5) is zero in float64 anyway.
_LOG_FLOOR = -1e5


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for Python floats (math is ~10x faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def ctc_greedy(log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> list[Hypothesis]:
    """Best-path decoding of a batch: argmax per frame, collapse repeats, drop blanks.

    ``log_probs`` is (B, T, V), ``lens`` (B,) valid frames. ``score`` is the best path's log-probability;
    a token's score is the highest frame log-prob over the run of frames that emitted it.
    """
    best, ids = log_probs.detach().max(dim=-1)  # (B, T) each
    B, T = ids.shape
    valid = torch.arange(T, device=ids.device)[None, :] < lens.to(ids.device)[:, None]  # (B, T)
    # Padding gets an id no real token has, so runs stop at the utterance end.
    ids = torch.where(valid, ids, torch.full_like(ids, -2))
    best = torch.where(valid, best, torch.full_like(best, NEG_INF))
    prev = torch.cat([torch.full_like(ids[:, :1], -1), ids[:, :-1]], dim=1)
    starts = ids != prev  # (B, T): a new run of one id begins here
    run = starts.long().cumsum(dim=1) - 1  # (B, T): index of the run each frame belongs to
    peak = torch.full_like(best, NEG_INF).scatter_reduce(1, run, best, reduce="amax")  # (B, runs)
    emit = starts & valid & (ids != blank)
    totals = torch.where(valid, best, torch.zeros_like(best)).sum(dim=1).tolist()
    hyps = []
    for b in range(B):
        tokens = ids[b][emit[b]].tolist()
        scores = peak[b][run[b][emit[b]]].tolist()
        hyps.append(Hypothesis(tuple(tokens), float(totals[b]), tuple(scores)))
    return hyps


def greedy_tokens(log_probs: torch.Tensor, blank: int = 0) -> tuple[int, ...]:
    """The best path's tokens of one utterance, ``log_probs`` (T, V): :func:`ctc_greedy`'s tokens without its
    scores, for callers that decide per utterance and need only the words (a tenth of its time)."""
    ids = log_probs.argmax(dim=-1).tolist()
    return tuple(t for i, t in enumerate(ids) if t != blank and (i == 0 or t != ids[i - 1]))


def _frame_candidates(
    lp: torch.Tensor, blank: int, top_k: int | None, min_log_prob: float | None
) -> list[list[tuple[int, float]]]:
    """Per frame, the non-blank (token, log-prob) pairs a prefix may be extended with.

    With no pruning every token is a candidate (exact search); ``top_k`` keeps the k best per frame and
    ``min_log_prob`` of those only the ones above it.
    """
    T, V = lp.shape
    mask = torch.ones_like(lp, dtype=torch.bool)  # (T, V)
    if top_k is not None and top_k < V:
        mask = torch.zeros_like(mask).scatter_(1, lp.topk(top_k, dim=-1).indices, True)
    if min_log_prob is not None:
        mask &= lp > min_log_prob
    mask[:, blank] = False
    t_idx, c_idx = mask.nonzero(as_tuple=True)
    values = lp[t_idx, c_idx].tolist()
    frames: list[list[tuple[int, float]]] = [[] for _ in range(T)]
    for t, c, v in zip(t_idx.tolist(), c_idx.tolist(), values):
        frames[t].append((c, v))
    return frames


def _offer(scores: dict, prefix: tuple, token_scores: tuple) -> None:
    """Keep, per prefix, the token scores whose last token was emitted at the highest log-prob."""
    old = scores.get(prefix)
    if old is None or (token_scores and token_scores[-1] > old[-1]):
        scores[prefix] = token_scores


def _prefix_step(beam: list, row, cands: list, x_blank: float) -> tuple[dict, dict, dict]:
    """One frame of prefix beam search: every way each prefix can continue (stay or grow by one token).

    ``beam`` holds (prefix, log p_blank, log p_nonblank, token_scores); returns the new p_blank, p_nonblank
    and token-score dicts keyed by prefix.
    """
    new_b: dict = {}
    new_nb: dict = {}
    new_ts: dict = {}
    for prefix, pb, pnb, ts in beam:
        total = _logaddexp(pb, pnb)
        new_b[prefix] = _logaddexp(new_b.get(prefix, NEG_INF), total + x_blank)
        _offer(new_ts, prefix, ts)
        last = prefix[-1] if prefix else -1
        if pnb > NEG_INF:  # the last token's run goes on: "a" + "a" stays "a"
            x_last = float(row[last])
            new_nb[prefix] = _logaddexp(new_nb.get(prefix, NEG_INF), pnb + x_last)
            if x_last > ts[-1]:
                _offer(new_ts, prefix, ts[:-1] + (x_last,))
        for c, xc in cands:
            # A repeated token starts a new one only after a blank.
            s = (pb if c == last else total) + xc
            if s == NEG_INF:
                continue
            grown = prefix + (c,)
            new_nb[grown] = _logaddexp(new_nb.get(grown, NEG_INF), s)
            _offer(new_ts, grown, ts + (xc,))
    return new_b, new_nb, new_ts


def ctc_prefix_beam_search(
    log_probs: torch.Tensor,
    beam_size: int,
    blank: int = 0,
    top_k: int | None = None,
    min_log_prob: float | None = None,
    blank_skip: float | None = None,
    fusion=None,
) -> list[Hypothesis]:
    """CTC prefix beam search over one utterance's (T, V) log-probs; the n-best, best first.

    ``score`` is log P(label sequence | x) summed over all alignments (exact while no contributing prefix was
    pruned). A token's score is the highest frame log-prob at which it was emitted. Pruning is off by default:
    ``top_k``/``min_log_prob`` limit the tokens tried per frame, and a frame whose blank log-prob exceeds
    ``blank_skip`` is treated as blank only (every prefix just moves to its blank-ending state).

    With a :class:`~ceasr.decode.fusion.Fusion` (shallow fusion), prefixes are ranked by the acoustic score
    plus what it adds (lambda * LM + beta * tokens + hotwords), and ``score`` is that total, end included.
    """
    lp = log_probs.detach().to("cpu", torch.float64)  # (T, V)
    frames = _frame_candidates(lp, blank, top_k, min_log_prob)
    rows = lp.numpy()
    fuse = fusion is not None and fusion.active
    if fuse:
        fusion.reset()
        extra = {(): (0.0, fusion.start())}  # prefix -> (fused score so far, fusion state), for the beam
    beam = [((), 0.0, NEG_INF, ())]  # (prefix, log p_blank, log p_nonblank, token_scores)
    for t in range(lp.shape[0]):
        x_blank = float(rows[t, blank])
        if blank_skip is not None and x_blank > blank_skip:
            beam = [(p, _logaddexp(pb, pnb) + x_blank, NEG_INF, ts) for p, pb, pnb, ts in beam]
            continue
        if fuse:
            fusion.prepare([extra[p][1] for p, *_ in beam])
        new_b, new_nb, new_ts = _prefix_step(beam, rows[t], frames[t], x_blank)
        totals = {p: _logaddexp(new_b.get(p, NEG_INF), new_nb.get(p, NEG_INF)) for p in new_ts}
        if fuse:
            extra = _extend_extra(extra, totals, fusion)
            totals = {p: v + extra[p][0] for p, v in totals.items()}
        kept = heapq.nlargest(beam_size, totals, key=totals.__getitem__)
        beam = [(p, new_b.get(p, NEG_INF), new_nb.get(p, NEG_INF), new_ts[p]) for p in kept]
        if fuse:
            extra = {p: extra[p] for p in kept}
    if not fuse:
        hyps = [Hypothesis(p, _logaddexp(pb, pnb), ts) for p, pb, pnb, ts in beam]
    else:
        fusion.prepare([extra[p][1] for p, *_ in beam])
        hyps = [
            Hypothesis(p, _logaddexp(pb, pnb) + extra[p][0] + fusion.final(extra[p][1]), ts)
            for p, pb, pnb, ts in beam
        ]
    return sorted(hyps, key=lambda h: -h.score)


def _extend_extra(extra: dict, prefixes, fusion) -> dict:
    """``extra`` plus an entry for every new prefix (one token longer than a prefix already in it)."""
    out = dict(extra)
    for p in prefixes:
        if p not in out:
            score, state = extra[p[:-1]]
            delta, state = fusion.extend(state, p[-1])
            out[p] = (score + delta, state)
    return out


def ctc_prefix_beam_search_batch(
    log_probs: torch.Tensor, lens: torch.Tensor, beam_size: int, **options
) -> list[list[Hypothesis]]:
    """:func:`ctc_prefix_beam_search` on each utterance of a (B, T, V) batch with lengths (B,)."""
    return [
        ctc_prefix_beam_search(log_probs[b, : int(n)], beam_size, **options) for b, n in enumerate(lens.tolist())
    ]


@dataclass(frozen=True)
class CTCState:
    """CTC forward variables of N hypotheses: ``r`` (N, 2, T) log r^n_t / r^b_t (prefix ends at frame t
    in a non-blank / blank), ``psi`` (N,) log prefix score, ``last`` (N,) last token (-1 for none)."""

    r: torch.Tensor
    psi: torch.Tensor
    last: torch.Tensor


def _log_linear_recursion(inputs: torch.Tensor, log_gain: torch.Tensor) -> torch.Tensor:
    """Solve r_t = logaddexp(r_{t-1}, inputs_t) + log_gain_t, r_{-1} = -inf, for every t at once.

    In probability space r_t = G_t * sum_{s<=t} in_s / G_{s-1} with G the running product of gains, so one
    cumulative sum and one log-cumsum-exp replace a Python loop over frames. In float64 the subtraction of
    cumulative log sums loses ~1e-16 * |log G_T|, far below anything that matters. Shapes (..., T).
    """
    cum = log_gain.cumsum(dim=-1)  # (..., T) log G_t
    cum_prev = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)  # log G_{t-1}
    return cum + torch.logcumsumexp(inputs - cum_prev, dim=-1)


def _shift_right(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T): ``first`` (...,) at t=0, then x_{t-1}."""
    return torch.cat([first.unsqueeze(-1), x[..., :-1]], dim=-1)


class CTCPrefixScorer:
    """CTC prefix scores for joint CTC/attention decoding (Watanabe et al. 2017; ESPnet's CTCPrefixScore).

    For a hypothesis h and token c the prefix score psi(h+c) is the log-probability that the label sequence
    starts with h+c; the end-of-sentence score is log P(h | x) exactly. Each hypothesis carries its forward
    variables over all frames (a :class:`CTCState`), so extending it by K candidates costs O(K*T) tensor work
    and no Python loop over frames.
    """

    def __init__(self, log_probs: torch.Tensor, blank: int = 0):
        """``log_probs``: (T, V) CTC log-softmax of one utterance (its valid frames only)."""
        x = log_probs.detach().to(torch.float64).clamp_min(_LOG_FLOOR)
        self.T = x.shape[0]
        self.x_t = x.t().contiguous()  # (V, T): one row per token, gathered per candidate
        self.log_blank = x[:, blank]  # (T,)

    def initial_state(self) -> CTCState:
        """The empty hypothesis: only blanks so far (r^b_t = sum of blank log-probs), psi = log 1."""
        rn = torch.full((1, self.T), NEG_INF, dtype=torch.float64)
        rb = self.log_blank.cumsum(dim=0).unsqueeze(0)
        return CTCState(torch.stack([rn, rb], dim=1), torch.zeros(1, dtype=torch.float64), torch.tensor([-1]))

    def score(self, state: CTCState, cands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix scores of extending each of N hypotheses by each of its K candidate tokens.

        ``cands`` (N, K) token ids (not blank). Returns psi (N, K) and the new forward variables
        r (N, K, 2, T) for :meth:`select`.
        """
        N, K = cands.shape
        if self.T == 0:
            return torch.full((N, K), NEG_INF, dtype=torch.float64), state.r.new_zeros(N, K, 2, 0)
        x_c = self.x_t[cands]  # (N, K, T)
        rn, rb = state.r[:, 0], state.r[:, 1]  # (N, T) each
        # phi_t: probability mass that may emit c at t+1; a repeated token needs a blank in between.
        same = (cands == state.last[:, None]).unsqueeze(-1)  # (N, K, 1)
        phi = torch.where(same, rb[:, None], torch.logaddexp(rn, rb)[:, None])  # (N, K, T)
        phi0 = torch.where(state.last == -1, 0.0, NEG_INF).to(torch.float64)  # (N,): phi_{-1}
        phi_prev = _shift_right(phi, phi0[:, None].expand(N, K))  # (N, K, T): phi_{t-1}
        # (N, K): c emitted first at some frame t. (logcumsumexp, not logsumexp: torch.exp may go to a
        # multithreaded MKL kernel that costs milliseconds on tiny tensors when the cores are busy.)
        psi = torch.logcumsumexp(phi_prev + x_c, dim=-1)[..., -1]
        rn_new = _log_linear_recursion(phi_prev, x_c)  # (N, K, T)
        rn_prev = _shift_right(rn_new, torch.full((N, K), NEG_INF, dtype=torch.float64))
        rb_new = _log_linear_recursion(rn_prev, self.log_blank.expand(N, K, self.T))
        return psi, torch.stack([rn_new, rb_new], dim=2)

    def eos_score(self, state: CTCState) -> torch.Tensor:
        """(N,) log P(h | x): the hypothesis is complete at the last frame."""
        if self.T == 0:
            return torch.where(state.last == -1, 0.0, NEG_INF).to(torch.float64)
        return torch.logaddexp(state.r[:, 0, -1], state.r[:, 1, -1])

    @staticmethod
    def select(
        psi: torch.Tensor, r: torch.Tensor, hyp_idx: torch.Tensor, cand_idx: torch.Tensor, tokens: torch.Tensor
    ) -> CTCState:
        """The state of the chosen extensions: hypothesis ``hyp_idx[i]`` grown by its candidate ``cand_idx[i]``
        (``tokens[i]``); ``psi`` and ``r`` as returned by :meth:`score`."""
        return CTCState(r[hyp_idx, cand_idx], psi[hyp_idx, cand_idx], tokens.to(torch.long))

    def sequence_score(self, tokens: list[int]) -> float:
        """log P(tokens | x) computed incrementally, token by token (what joint decoding accumulates)."""
        state = self.initial_state()
        for tok in tokens:
            cand = torch.tensor([[tok]])
            psi, r = self.score(state, cand)
            state = self.select(psi, r, torch.tensor([0]), torch.tensor([0]), cand[0])
        return float(self.eos_score(state)[0])
