"""Back-off n-gram queries in pure Python/numpy, over words or over a recognizer's tokens.

A state is the context tuple of ids, cut to the longest suffix that is a context in the model (what KenLM
calls state minimization: a shorter state scores every continuation the same and caches better). The next-
symbol distribution of a context is one (V,) vector built from its suffix's vector plus the back-off weight,
overwritten where the context has listed continuations; vectors are kept in a bounded cache.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ceasr.errors import ConfigError
from ceasr.lm.base import BOS, EOS, UNK, LanguageModel
from ceasr.lm.kneser_ney import NgramTables

LN10 = math.log(10.0)
CACHE_CONTEXTS = 4096  # cached (V,) vectors; beyond it the least recently used go


def text_units(text: str, units: str, tokenizer=None) -> list[str]:
    """A normalized sentence as the LM's symbols: its words, or the tokenizer's pieces."""
    if units == "words":
        return text.split()
    return [tokenizer.id_to_piece(i) for i in tokenizer.encode(text)]


class NgramLM(LanguageModel):
    """A back-off n-gram model (e.g. from :func:`~ceasr.lm.kneser_ney.estimate` or an ARPA file)."""

    def __init__(self, tables: NgramTables, units: str = "words", tokenizer=None):
        if units == "tokens" and tokenizer is None:
            raise ConfigError("a token n-gram needs the recognizer's tokenizer")
        self.tables, self.units, self.tokenizer, self.order = tables, units, tokenizer, tables.order
        words = {g[0] for g in tables.probs[0]} - {UNK, BOS, EOS}
        self.vocab = (UNK, BOS, EOS, *sorted(words))
        self._ids = self.index()
        self.unk, self.bos, self.eos = 0, 1, 2
        # Per context (tuple of ids): listed continuations as (ids, natural-log probs), and ln back-off.
        self._next: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._backoff: dict[tuple[int, ...], float] = {}
        for level in tables.probs:
            by_context: dict[tuple[int, ...], list] = {}
            for g, lp in level.items():
                ids = tuple(self._ids[w] for w in g)
                by_context.setdefault(ids[:-1], []).append((ids[-1], lp * LN10))
            for h, pairs in by_context.items():
                self._next[h] = (np.array([i for i, _ in pairs]), np.array([p for _, p in pairs]))
        for level in tables.backoffs:
            for g, b in level.items():
                self._backoff[tuple(self._ids[w] for w in g)] = b * LN10
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def start(self) -> tuple[int, ...]:
        return self._minimize((self.bos,))

    def advance(self, state: tuple[int, ...], symbol: int) -> tuple[int, ...]:
        return self._minimize((*state, symbol)[-(self.order - 1) :] if self.order > 1 else ())

    def _minimize(self, h: tuple[int, ...]) -> tuple[int, ...]:
        while h and h not in self._next:
            h = h[1:]
        return h

    def log_probs(self, states: Sequence[tuple[int, ...]]) -> np.ndarray:
        return np.stack([self._vector(tuple(s)) for s in states])

    def unigram_log_probs(self) -> np.ndarray:
        return self._vector(())

    def _vector(self, h: tuple[int, ...]) -> np.ndarray:
        """(V,) ln p(w | h) for every w: listed where h + w is listed, else back-off(h) + ln p(w | h[1:])."""
        vec = self._cache.get(h)
        if vec is not None:
            self._cache.move_to_end(h)
            return vec
        if h:
            vec = self._vector(h[1:]) + self._backoff.get(h, 0.0)
        else:
            vec = np.full(len(self.vocab), -np.inf)
        ids, lps = self._next.get(h, (np.zeros(0, dtype=int), np.zeros(0)))
        vec[ids] = lps
        vec[self.bos] = -np.inf  # never predicted (ARPA gives it the placeholder -99)
        self._cache[h] = vec
        if len(self._cache) > CACHE_CONTEXTS:
            self._cache.popitem(last=False)
        return vec

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(s, self.unk) for s in text_units(text, self.units, self.tokenizer)]
