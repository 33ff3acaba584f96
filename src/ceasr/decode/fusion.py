"""What a search adds to the acoustic score: lambda * LM + beta * tokens + hotword bonus, token by token.

A :class:`Fusion` turns a language model (over words or over the recognizer's tokens), the weights and the
hotwords into one incremental score over output token sequences. For a token LM each token is scored as it
is appended. For a word LM a word gets its LM score when the next word starts (a token whose piece begins
with "▁") or the utterance ends; until then the partial word gets a provisional score that is replaced by
the real one when the word ends (what pyctcdecode and flashlight do):

    partial word that no known word starts with:  oov_penalty
    partial word some known word starts with:     0, or with ``lookahead`` the best unigram log-probability
                                                  of the words it may become
    complete word:  log p(word | history), plus oov_penalty when the LM does not know the word

all times lambda, so lambda 0 is no LM at all. Hotword phrases' words count as known (their LM score is the
LM's ``<unk>`` score). With ``oov_penalty=0`` and no look-ahead, partial words are not scored.

A state is a small frozen record per hypothesis. Searches call :meth:`Fusion.prepare` with the states of the
live hypotheses once per step, so that a neural LM scores them in one batch; :meth:`Fusion.extend` and
:meth:`Fusion.final` then only look rows up.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ceasr.decode.hotwords import Hotwords
from ceasr.decode.lexicon import WordPrefixes
from ceasr.text.tokenizer import WORD_START

# Natural-log penalty (times lambda) for a word, or partial word, outside the LM's vocabulary.
# pyctcdecode's unk_score_offset is -10 too, though it does not scale it by its LM weight.
OOV_PENALTY = -10.0


class FusionState(NamedTuple):
    """A named tuple, not a dataclass: states are hashed and built in the search's innermost loop."""

    lm: Hashable | None  # the LM's state (None without an LM)
    word: tuple[int, ...]  # word LM: tokens of the word not scored yet
    hot: int  # hotword automaton state


class Fusion:
    """``lm`` (a :class:`~ceasr.lm.base.LanguageModel` or None), ``lm_weight`` (lambda), ``length_bonus``
    (beta, per output token) and ``hotwords``, over a recognizer whose token ``i`` is ``pieces[i]``.

    Word LMs only: ``oov_penalty`` and ``lookahead`` score partial words (see the module doc);
    ``prefixes`` is the LM's :class:`WordPrefixes` when the caller has built it already.
    """

    def __init__(self, pieces: Sequence[str], lm=None, lm_weight: float = 0.0, length_bonus: float = 0.0,
                 hotwords: Hotwords | None = None, oov_penalty: float = OOV_PENALTY, lookahead: bool = False,
                 prefixes: WordPrefixes | None = None):
        self.pieces, self.lm, self.lm_weight = list(pieces), lm, float(lm_weight)
        self.length_bonus, self.hotwords = float(length_bonus), hotwords
        self.oov_penalty, self.lookahead = float(oov_penalty), bool(lookahead)
        self.words = lm is not None and lm.units == "words"
        if lm is not None:
            index = lm.index()
            self._lm_id = index.get
            self._tok2lm = [index.get(p, lm.unk) for p in self.pieces]
        if self.words and self.lm_weight != 0.0 and prefixes is None:
            prefixes = WordPrefixes.of_lm(lm, hotword_words(hotwords, self.pieces))
        self.prefixes = prefixes
        self._rows: dict = {}
        self._steps: dict[tuple[FusionState, int], tuple[float, FusionState]] = {}
        self._partials: dict[tuple[int, ...], float] = {}

    @property
    def active(self) -> bool:
        """False when fusion cannot change any score (no LM or weight 0, no bonus, no hotwords)."""
        return (self.lm is not None and self.lm_weight != 0.0) or self.length_bonus != 0.0 or self.hotwords is not None

    def reset(self) -> None:
        """Forget cached LM rows and steps (between utterances: a neural LM's states are whole prefixes)."""
        self._rows = {}
        self._steps = {}

    def start(self) -> FusionState:
        return FusionState(self.lm.start() if self.lm is not None else None, (), 0)

    def prepare(self, states: Sequence[FusionState]) -> None:
        """Score the LM states of ``states`` that have no cached row yet, in one batch."""
        if self.lm is None or self.lm_weight == 0.0:
            return
        missing = list(dict.fromkeys(s.lm for s in states if s.lm not in self._rows))
        if missing:
            for key, row in zip(missing, self.lm.log_probs(missing)):
                self._rows[key] = row

    def _row(self, lm_state) -> np.ndarray:
        row = self._rows.get(lm_state)
        if row is None:
            self.prepare([FusionState(lm_state, (), 0)])
            row = self._rows[lm_state]
        return row

    def extend(self, state: FusionState, token: int) -> tuple[float, FusionState]:
        """(score change, new state) when ``token`` is appended."""
        # Hypotheses that differ only before the LM's context share states: each step is worked out once.
        step = self._steps.get((state, token))
        if step is None:
            step = self._steps[(state, token)] = self._extend(state, token)
        return step

    def _extend(self, state: FusionState, token: int) -> tuple[float, FusionState]:
        delta = self.length_bonus
        hot = state.hot
        if self.hotwords is not None:
            d, hot = self.hotwords.step(hot, token)
            delta += d
        lm_state, word = state.lm, state.word
        if self.lm is not None and self.lm_weight != 0.0:
            if not self.words:
                sym = self._tok2lm[token]
                delta += self.lm_weight * float(self._row(lm_state)[sym])
                lm_state = self.lm.advance(lm_state, sym)
            else:
                delta -= self._partial(word)  # the provisional score is replaced ...
                if self.pieces[token].startswith(WORD_START) and word:
                    d, lm_state = self._word(lm_state, word)  # ... by the whole word's
                    delta += d
                    word = (token,)
                else:
                    word = (*word, token)
                delta += self._partial(word)  # ... by the longer partial word's
        return delta, FusionState(lm_state, word, hot)

    def _text(self, tokens: tuple[int, ...]) -> str:
        return "".join(self.pieces[t] for t in tokens).replace(WORD_START, "")

    def _partial(self, tokens: tuple[int, ...]) -> float:
        """lambda * the provisional score of the partial word ``tokens`` spell (0 for no letters yet)."""
        score = self._partials.get(tokens)
        if score is None:
            text = self._text(tokens)
            best = self.prefixes.best(text) if text else 0.0
            if best is None:
                score = self.lm_weight * self.oov_penalty
            else:
                score = self.lm_weight * best if self.lookahead and text else 0.0
            self._partials[tokens] = score
        return score

    def _word(self, lm_state, tokens: tuple[int, ...]) -> tuple[float, Hashable]:
        """lambda * (log p(word | state), plus the penalty for an unknown word) for the word ``tokens``
        spell, and the state after it."""
        text = self._text(tokens)
        if not text:  # a lone "▁" token (char tokenizers): no word yet
            return 0.0, lm_state
        sym = self._lm_id(text, self.lm.unk)
        score = float(self._row(lm_state)[sym]) + (0.0 if text in self.prefixes else self.oov_penalty)
        return self.lm_weight * score, self.lm.advance(lm_state, sym)

    def final(self, state: FusionState) -> float:
        """Score change at the end of the utterance: the open word, end of sentence, open hotword match."""
        delta = self.hotwords.final(state.hot) if self.hotwords is not None else 0.0
        if self.lm is not None and self.lm_weight != 0.0:
            lm_state = state.lm
            if self.words and state.word:
                d, lm_state = self._word(lm_state, state.word)
                delta += d - self._partial(state.word)
            delta += self.lm_weight * float(self._row(lm_state)[self.lm.eos])
        return delta

    def sequence_score(self, tokens: Sequence[int]) -> float:
        """The total a search adds for a complete hypothesis ``tokens`` (the sum of its changes)."""
        state, total = self.start(), 0.0
        for t in tokens:
            d, state = self.extend(state, t)
            total += d
        return total + self.final(state)

    def sentence_scores(self, hyps: Sequence[Sequence[int]]) -> list[float]:
        """:meth:`sequence_score` of many hypotheses, with the LM scoring whole sentences in batches."""
        if self.lm is None or self.lm_weight == 0.0 or self.words:
            return [self.sequence_score(h) for h in hyps]
        lm_scores = self.lm.sentence_log_probs([[self._tok2lm[t] for t in h] for h in hyps])
        hot = [self.hotwords.score(h) if self.hotwords is not None else 0.0 for h in hyps]
        return [self.lm_weight * s + self.length_bonus * len(h) + b for s, h, b in zip(lm_scores, hyps, hot)]


def hotword_words(hotwords: Hotwords | None, pieces: Sequence[str]) -> list[str]:
    """The words the hotword phrases spell (pieces joined, split at "▁")."""
    if hotwords is None:
        return []
    return [w for phrase in hotwords.phrases for w in "".join(pieces[t] for t in phrase).split(WORD_START) if w]


@dataclass(frozen=True)
class Scorers:
    """What a recognizer loads once and every search may use: its token pieces, a language model, hotwords."""

    pieces: tuple[str, ...]
    lm: object = None
    hotwords: Hotwords | None = None

    @cached_property
    def prefixes(self) -> WordPrefixes | None:
        """A word LM's prefix table, built once (the searches of every batch share it)."""
        if self.lm is None or self.lm.units != "words":
            return None
        return WordPrefixes.of_lm(self.lm, hotword_words(self.hotwords, self.pieces))

    def fusion(self, lm_weight: float, length_bonus: float, oov_penalty: float = OOV_PENALTY,
               lookahead: bool = False) -> Fusion:
        return Fusion(self.pieces, self.lm, lm_weight, length_bonus, self.hotwords, oov_penalty, lookahead,
                      prefixes=self.prefixes)
