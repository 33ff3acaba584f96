"""Prefix-trie constrained joint CTC/attention beam search, for command sets too large to score one by one.

Every hypothesis sits at a node of the trie of the allowed token sequences; it may only grow by one of the
node's children, or end (eos) where an allowed sequence ends. A token's increment is
``(1 - w) * log p_att(token) + w * (CTC prefix score gain)`` with the attention softmax over the whole
vocabulary, so a finished hypothesis's score is exactly its :func:`ceasr.commands.score.joint_scores` value:
with a beam at least as wide as the set the search returns the exhaustive ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ceasr.decode.ctc import NEG_INF, CTCPrefixScorer


class TokenTrie:
    """The prefix trie of token sequences; node 0 is the root. ``ends[node]`` is the index of the sequence
    ending there (or -1)."""

    def __init__(self, seqs: list[tuple[int, ...]]):
        self.children: list[dict[int, int]] = [{}]
        self.ends: list[int] = [-1]
        for index, seq in enumerate(seqs):
            node = 0
            for tok in seq:
                nxt = self.children[node].get(tok)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][tok] = nxt
                    self.children.append({})
                    self.ends.append(-1)
                node = nxt
            if self.ends[node] == -1:  # the first of equal sequences keeps the node
                self.ends[node] = index

    def __len__(self) -> int:
        return len(self.children)


@dataclass
class _Beam:
    nodes: list[int]  # (N,) trie node of each live hypothesis
    tokens: torch.Tensor  # (N,) last token fed (sos first)
    scores: torch.Tensor  # (N,) float64 joint score so far
    ctc: object  # CTCState of the N hypotheses, or None
    dec: object  # decoder state, or None


def _candidates(trie: TokenTrie, nodes: list[int], eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) allowed next tokens per hypothesis (eos where a sequence ends) and a (N, K) validity mask."""
    rows = [list(trie.children[n]) + ([eos] if trie.ends[n] >= 0 else []) for n in nodes]
    K = max(1, max(len(r) for r in rows))
    cands = torch.full((len(rows), K), eos, dtype=torch.long)
    valid = torch.zeros((len(rows), K), dtype=torch.bool)
    for i, r in enumerate(rows):
        cands[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        valid[i, : len(r)] = True
    return cands, valid


def _increments(model, beam: _Beam, scorer, cands, valid, w: float):
    """Joint score increments (N, K) of each candidate, the CTC prefix scores and forward variables, and the
    decoder state after each hypothesis's prefix."""
    N, K = cands.shape
    eos = model.eos_id
    inc = torch.zeros((N, K), dtype=torch.float64)
    dec = None
    if w < 1:
        logits, dec = model.decoder.step(beam.dec, beam.tokens.to(next(model.parameters()).device))  # (N, V)
        att = logits.to("cpu", torch.float64).log_softmax(dim=-1)
        inc = inc + (1 - w) * att.gather(1, cands)
    psi = r = None
    if scorer is not None:
        is_eos = cands == eos
        psi, r = scorer.score(beam.ctc, torch.where(is_eos, model.blank_id + 3, cands))  # eos: any real token
        psi = torch.where(is_eos, scorer.eos_score(beam.ctc)[:, None], psi)
        inc = inc + w * (psi - beam.ctc.psi[:, None])
    return torch.where(valid, inc, NEG_INF), psi, r, dec


def constrained_beam_search(
    model, memory: torch.Tensor, log_probs: torch.Tensor, trie: TokenTrie, beam_size: int, ctc_weight: float
) -> list[tuple[int, float]]:
    """The n-best allowed sequences of one utterance as (sequence index, joint score), best first.

    ``memory`` (1, T', D) encoder output, ``log_probs`` (T', V) its CTC log-probabilities. At most
    ``beam_size`` hypotheses live at each step; the search stops once ``beam_size`` finished ones score at
    least the best live one (scores never rise), or nothing is left alive.
    """
    w = ctc_weight if model.decoder is not None else 1.0
    scorer = CTCPrefixScorer(log_probs, model.blank_id) if w > 0 else None
    dec = model.decoder.start(memory, torch.tensor([memory.shape[1]], device=memory.device)) if w < 1 else None
    beam = _Beam([0], torch.tensor([model.sos_id]), torch.zeros(1, dtype=torch.float64),
                 scorer.initial_state() if scorer is not None else None, dec)
    finished: list[tuple[int, float]] = []
    while beam is not None:
        cands, valid = _candidates(trie, beam.nodes, model.eos_id)
        inc, psi, r, dec = _increments(model, beam, scorer, cands, valid, w)
        joint = beam.scores[:, None] + inc  # (N, K)
        top = joint.flatten().topk(min(beam_size, joint.numel()))
        keep = top.values > NEG_INF
        values, flat = top.values[keep], top.indices[keep]
        h, c = flat // cands.shape[1], flat % cands.shape[1]
        toks = cands[h, c]
        ends = toks == model.eos_id
        finished += [(trie.ends[beam.nodes[i]], float(v)) for i, v in zip(h[ends].tolist(), values[ends].tolist())]
        beam = _advance(trie, beam, h[~ends], c[~ends], toks[~ends], values[~ends], scorer, psi, r, dec)
        if beam is not None and len(finished) >= beam_size:
            kth = sorted((s for _, s in finished), reverse=True)[beam_size - 1]
            if kth >= float(beam.scores.max()):
                break
    return sorted(finished, key=lambda pair: -pair[1])[:beam_size]


def _advance(trie: TokenTrie, beam: _Beam, h, c, toks, values, scorer, psi, r, dec) -> _Beam | None:
    """The live hypotheses after the step: hypothesis ``h[i]`` grown by its candidate ``c[i]`` (``toks[i]``)."""
    if len(h) == 0:
        return None
    nodes = [trie.children[beam.nodes[i]][t] for i, t in zip(h.tolist(), toks.tolist())]
    ctc = scorer.select(psi, r, h, c, toks) if scorer is not None else None
    return _Beam(nodes, toks, values, ctc, dec.select(h.to(dec.memory_mask.device)) if dec is not None else None)
