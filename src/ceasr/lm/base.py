"""The scoring interface every language model offers, so that decoding treats them alike.

A language model predicts the next symbol of a sentence from a *state* (a hashable summary of the symbols so
far): :meth:`LanguageModel.log_probs` maps N states to (N, V) natural-log probabilities over its vocabulary,
where column ``eos`` is the end-of-sentence score; :meth:`LanguageModel.advance` moves a state on by one
symbol. Symbols are words (``units == "words"``) or the recognizer's tokens (``units == "tokens"``); a
model's ``vocab`` names them, so a decoder maps its own token ids to the model's ids by name once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNITS = ("words", "tokens")


class LanguageModel(ABC):
    """What decoding, rescoring and perplexity need from a language model."""

    units: str  # "words" | "tokens"
    vocab: tuple[str, ...]  # the symbol of each id
    eos: int  # id whose log-prob is the end-of-sentence score
    unk: int  # id of symbols outside the vocabulary

    @abstractmethod
    def start(self) -> Hashable:
        """The state before the first symbol (after ``<s>``)."""

    @abstractmethod
    def log_probs(self, states: Sequence[Hashable]) -> np.ndarray:
        """(N, V) float64 log P(next symbol | state) for N states; each row sums to 1 in probability
        over the symbols that may follow (``<s>`` never does)."""

    @abstractmethod
    def advance(self, state: Hashable, symbol: int) -> Hashable:
        """The state after ``symbol`` follows ``state``."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """A normalized sentence as symbol ids (out-of-vocabulary words or pieces become ``unk``)."""

    def unigram_log_probs(self) -> np.ndarray:
        """(V,) log P(symbol) without context, for look-ahead; by default the first-symbol distribution
        (models that have a null context, like n-grams, use it)."""
        return self.log_probs([self.start()])[0]

    def index(self) -> dict[str, int]:
        """Symbol -> id."""
        return {s: i for i, s in enumerate(self.vocab)}

    def sentence_log_probs(self, sentences: Sequence[Sequence[int]]) -> list[float]:
        """log P(sentence, then end of sentence) of each id sequence (natural log)."""
        totals = []
        for ids in sentences:
            state, total = self.start(), 0.0
            for i in ids:
                total += float(self.log_probs([state])[0, i])
                state = self.advance(state, i)
            totals.append(total + float(self.log_probs([state])[0, self.eos]))
        return totals


@dataclass(frozen=True)
class Perplexity:
    """Perplexity over held-out sentences; ``predicted`` counts every scored symbol, end of sentence included."""

    value: float
    log_prob: float  # natural log, summed
    predicted: int
    sentences: int
    oov: int  # symbols mapped to unk

    def __str__(self) -> str:
        return (f"perplexity={self.value:.3f} sentences={self.sentences} predicted={self.predicted} "
                f"oov={self.oov} logprob={self.log_prob:.2f}")


def perplexity(lm: LanguageModel, texts: Sequence[str]) -> Perplexity:
    """exp(-(sum of log-probs) / (symbols + sentences)) of normalized ``texts`` under ``lm``."""
    sentences = [lm.encode(t) for t in texts if t.strip()]
    if not sentences:
        from ceasr.errors import ConfigError

        raise ConfigError("perplexity: no held-out sentences")
    total = sum(lm.sentence_log_probs(sentences))
    predicted = sum(len(s) + 1 for s in sentences)
    oov = sum(1 for s in sentences for i in s if i == lm.unk)
    return Perplexity(math.exp(-total / predicted), total, predicted, len(sentences), oov)
