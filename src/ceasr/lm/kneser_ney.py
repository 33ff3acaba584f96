"""Interpolated modified Kneser-Ney estimation (Chen & Goodman 1998, as KenLM's lmplz and SRILM do it).

Sentences are padded as ``<s> w1 .. wn </s>``. The highest order uses raw counts; a lower order uses
*continuation* counts (how many distinct words precede the n-gram), except n-grams that start with ``<s>``,
which nothing can precede, and keep raw counts. With ``a`` these adjusted counts and ``D`` three discounts
per order (for a = 1, 2, >= 3):

    p(w | h) = max(a(hw) - D(a(hw)), 0) / S(h) + gamma(h) * p(w | h')       h' = h without its first word
    S(h) = sum_x a(hx),  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / S(h)

and the unigram distribution is interpolated with the uniform one over the vocabulary (``<unk>`` and
``</s>`` included, ``<s>`` excluded since it is never predicted). An unseen ``hw`` gets gamma(h) p(w | h'),
so gamma(h) is exactly the ARPA back-off weight of h and the model is written in back-off form losslessly.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ceasr.errors import ConfigError
from ceasr.lm.base import BOS, EOS, UNK

# Used for an order whose counts-of-counts leave the closed-form discounts undefined (tiny corpora).
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class NgramTables:
    """A back-off n-gram model as ARPA holds it: per order, n-gram -> log10 prob and context -> log10 back-off."""

    order: int
    probs: tuple[dict[tuple[str, ...], float], ...]  # probs[n - 1]: n-grams of order n
    backoffs: tuple[dict[tuple[str, ...], float], ...]  # backoffs[n - 1]: n-grams of order n that are contexts


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Raw counts of every n-gram, n = 1..order, of the padded sentences (index n - 1)."""
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                counts[n - 1][padded[i : i + n]] += 1
    return counts


def adjust_counts(raw: list[Counter]) -> list[Counter]:
    """Kneser-Ney adjusted counts: raw at the highest order and for n-grams starting with <s>, else the
    number of distinct words seen before the n-gram."""
    order = len(raw)
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(raw[-1])
    for n in range(order - 1, 0, -1):  # order n (index n - 1) from the n-grams of order n + 1
        left = Counter(g[1:] for g in raw[n])
        for g, c in raw[n - 1].items():
            adjusted[n - 1][g] = c if g[0] == BOS else left[g]
    return adjusted


def discounts(adjusted: Counter) -> tuple[float, float, float]:
    """D1, D2, D3+ from the counts-of-counts t_k of one order: Y = t1 / (t1 + 2 t2), D_k = k - (k+1) Y t_{k+1}/t_k.

    Falls back to :data:`FALLBACK_DISCOUNTS` when a t_k is zero or a discount leaves (0, k].
    """
    t = Counter(min(c, 5) for c in adjusted.values())
    t1, t2, t3, t4 = (t[k] for k in (1, 2, 3, 4))
    if min(t1, t2, t3) == 0:
        return FALLBACK_DISCOUNTS
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dk <= k for k, dk in enumerate(d, start=1)):
        return FALLBACK_DISCOUNTS
    return d


def estimate(
    sentences: Iterable[Sequence[str]],
    order: int,
    fixed_discounts: Sequence[tuple[float, float, float]] | None = None,
) -> NgramTables:
    """Train an interpolated modified Kneser-Ney model of ``order`` on tokenized ``sentences``.

    ``fixed_discounts`` (one (D1, D2, D3+) per order, lowest first) replaces the estimated ones.
    """
    if order < 1:
        raise ConfigError(f"n-gram order must be at least 1, got {order}")
    raw = count_ngrams(sentences, order)
    if not raw[0]:
        raise ConfigError("n-gram: no training text")
    adjusted = adjust_counts(raw)
    ds = list(fixed_discounts) if fixed_discounts is not None else [discounts(a) for a in adjusted]
    if len(ds) != order:
        raise ConfigError(f"n-gram: {len(ds)} discount triples for order {order}")
    vocab = {w for (w,) in raw[0]} | {UNK, EOS}
    vocab.discard(BOS)
    probs: list[dict] = []
    backoffs: list[dict] = []
    lower: dict[tuple[str, ...], float] = {}  # p of the order below, in probability space
    for n in range(1, order + 1):
        a, d = adjusted[n - 1], ds[n - 1]
        if n == 1:
            a = Counter({g: c for g, c in a.items() if g[0] != BOS})
        totals, gammas = _context_stats(a, d)
        p: dict[tuple[str, ...], float] = {}
        for g, c in a.items():
            h = g[:-1]
            below = 1.0 / len(vocab) if n == 1 else lower[g[1:]]
            p[g] = max(c - d[min(c, 3) - 1], 0.0) / totals[h] + gammas[h] * below
        if n == 1:
            for w in vocab - {g[0] for g in a}:  # <unk> (and any word never predicted): the uniform share
                p[(w,)] = gammas[()] / len(vocab)
        probs.append(p)
        backoffs.append(gammas)
        lower = p
    return _to_arpa_tables(order, probs, backoffs)


def _context_stats(a: Counter, d: tuple[float, float, float]) -> tuple[dict, dict]:
    """Per context h: S(h) = sum of a(hx), and gamma(h), the mass the discounts free for the lower order."""
    totals: dict = defaultdict(float)
    freed: dict = defaultdict(float)
    for g, c in a.items():
        totals[g[:-1]] += c
        freed[g[:-1]] += d[min(c, 3) - 1]
    return dict(totals), {h: freed[h] / totals[h] for h in totals}


def _to_arpa_tables(order: int, probs: list[dict], gammas: list[dict]) -> NgramTables:
    """log10 probabilities; ``<s>`` as a unigram with the conventional -99; back-off weights on contexts."""
    log_probs = tuple({g: math.log10(p) for g, p in level.items()} for level in probs)
    log_probs[0][(BOS,)] = -99.0
    backoffs: list[dict] = [{} for _ in range(order)]
    for n in range(1, order):  # contexts of order n + 1 are n-grams of order n
        for h, gamma in gammas[n].items():
            backoffs[n - 1][h] = math.log10(gamma) if gamma > 0 else -99.0
    return NgramTables(order, log_probs, tuple(backoffs))
