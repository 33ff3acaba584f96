"""Queries through the ``kenlm`` module (optional): the same interface as :class:`~ceasr.lm.ngram.NgramLM`.

KenLM reads ARPA and its own binary format (``build_binary``) and answers one word at a time in C++; it is
used when installed (``pip install kenlm``) unless a caller asks for the Python back end. Its states are
rebuilt from our context tuples (ids of the last ``order - 1`` symbols), cached per context.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ceasr.errors import CeasrError
from ceasr.lm.base import BOS, EOS, UNK, LanguageModel
from ceasr.lm.ngram import CACHE_CONTEXTS, text_units

LN10 = math.log(10.0)


def available() -> bool:
    try:
        import kenlm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class KenlmLM(LanguageModel):
    """An ARPA or KenLM-binary model queried by ``kenlm.Model``; ``words`` is its vocabulary."""

    def __init__(self, path: str | Path, words: Sequence[str], units: str = "words", tokenizer=None):
        import kenlm

        try:
            with _quiet_stderr():  # kenlm draws a loading progress bar on fd 2
                self.model = kenlm.Model(str(path))
        except (OSError, RuntimeError) as e:
            raise CeasrError(f"{path}: kenlm cannot load it ({e})") from None
        self.units, self.tokenizer, self.order = units, tokenizer, self.model.order
        self.vocab = (UNK, BOS, EOS, *sorted(set(words) - {UNK, BOS, EOS}))
        self.unk, self.bos, self.eos = 0, 1, 2
        self._ids = self.index()
        self._states: dict[tuple[int, ...], object] = {}
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def start(self) -> tuple[int, ...]:
        return (self.bos,)

    def advance(self, state: tuple[int, ...], symbol: int) -> tuple[int, ...]:
        return (*state, symbol)[-(self.order - 1) :] if self.order > 1 else ()

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(s, self.unk) for s in text_units(text, self.units, self.tokenizer)]

    def unigram_log_probs(self) -> np.ndarray:
        return self.log_probs([()])[0]  # the empty context is kenlm's null context

    def _kenlm_state(self, h: tuple[int, ...]):
        import kenlm

        state = self._states.get(h)
        if state is None:
            state = kenlm.State()
            if h and h[0] == self.bos:
                self.model.BeginSentenceWrite(state)
                words = h[1:]
            else:
                self.model.NullContextWrite(state)
                words = h
            for w in words:
                out = kenlm.State()
                self.model.BaseScore(state, self.vocab[w], out)
                state = out
            self._states[h] = state
        return state

    def log_probs(self, states: Sequence[tuple[int, ...]]) -> np.ndarray:
        import kenlm

        rows = []
        for h in states:
            h = tuple(h)
            row = self._cache.get(h)
            if row is None:
                state, out = self._kenlm_state(h), kenlm.State()
                row = np.array([self.model.BaseScore(state, w, out) * LN10 for w in self.vocab])
                row[self.bos] = -np.inf
                self._cache[h] = row
                if len(self._cache) > CACHE_CONTEXTS:
                    self._cache.popitem(last=False)
            rows.append(row)
        return np.stack(rows)
