"""Word, character and mixed error rates with their alignments (Levenshtein alignment by kaldialign).

The mixed error rate (MER) of Chinese–English text counts each Chinese character and each English word as
one unit (:func:`ceasr.text.script.units`); its Chinese part alone gives a CER, its English part a WER.

Corpus rates are totals: sum of errors over sum of reference lengths, never an average of per-utterance rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import kaldialign

from ceasr.errors import CeasrError, ConfigError
from ceasr.text.script import EN, ZH, unit_language, units

Alignment = list[tuple[str | None, str | None]]  # (ref item or None for an insertion, hyp item or None)


@dataclass(frozen=True)
class ErrorCounts:
    """Substitutions ``S``, deletions ``D``, insertions ``I`` against ``N`` reference items."""

    S: int = 0
    D: int = 0
    I: int = 0  # noqa: E741 (the field names follow the S/D/I/N convention of every ASR report)
    N: int = 0

    @property
    def errors(self) -> int:
        return self.S + self.D + self.I

    @property
    def rate(self) -> float:
        """(S + D + I) / N; with an empty reference 0.0 if nothing was inserted, else inf."""
        if self.N == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.N

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(self.S + other.S, self.D + other.D, self.I + other.I, self.N + other.N)

    def __radd__(self, other):
        # Lets built-in sum() start from 0.
        return self if other == 0 else NotImplemented

    def summary(self, name: str = "WER") -> str:
        """One line, e.g. ``WER=0.0123 S=1 D=0 I=2 N=243``."""
        return f"{name}={self.rate:.4f} S={self.S} D={self.D} I={self.I} N={self.N}"


def align_items(ref: list[str], hyp: list[str]) -> tuple[ErrorCounts, Alignment]:
    """Minimum-edit alignment of two item sequences and its error counts."""
    # kaldialign sorts the symbols together with the epsilon, so align integer ids with -1 as epsilon:
    # any string (even "*") can then be a word.
    vocab = {item: i for i, item in enumerate(dict.fromkeys(ref + hyp))}
    items = list(vocab)
    pairs = kaldialign.align([vocab[x] for x in ref], [vocab[x] for x in hyp], -1)
    alignment = [(items[r] if r >= 0 else None, items[h] if h >= 0 else None) for r, h in pairs]
    S = sum(1 for r, h in alignment if r is not None and h is not None and r != h)
    D = sum(1 for _, h in alignment if h is None)
    I = sum(1 for r, _ in alignment if r is None)  # noqa: E741
    return ErrorCounts(S, D, I, len(ref)), alignment


def word_errors(ref: str, hyp: str) -> tuple[ErrorCounts, Alignment]:
    """Word errors of ``hyp`` against ``ref`` (both split on whitespace) and the word alignment."""
    return align_items(ref.split(), hyp.split())


def char_errors(ref: str, hyp: str) -> tuple[ErrorCounts, Alignment]:
    """Character errors (whitespace excluded) of ``hyp`` against ``ref`` and the character alignment."""
    return align_items([c for c in ref if not c.isspace()], [c for c in hyp if not c.isspace()])


def mixed_errors(ref: str, hyp: str) -> tuple[ErrorCounts, Alignment]:
    """Mixed errors: each Chinese character and each English word is one unit (spaces between Chinese
    characters do not matter)."""
    return align_items(units(ref), units(hyp))


def language_errors(ref: str, hyp: str, lang: str) -> tuple[ErrorCounts, Alignment]:
    """Errors over the units of one language (``"zh"``: Chinese characters, a CER; ``"en"``: English words, a
    WER), the other language's units removed from both sides before aligning."""
    return align_items([u for u in units(ref) if unit_language(u) == lang],
                       [u for u in units(hyp) if unit_language(u) == lang])


UNITS = {
    "word": word_errors,
    "char": char_errors,
    "mixed": mixed_errors,
    "zh": lambda ref, hyp: language_errors(ref, hyp, ZH),
    "en": lambda ref, hyp: language_errors(ref, hyp, EN),
}


def corpus_errors(refs: list[str], hyps: list[str], unit: str = "word") -> ErrorCounts:
    """Total error counts over a corpus of (reference, hypothesis) pairs, by ``unit``: "word", "char", "mixed"
    (MER), "zh" (the Chinese characters' CER) or "en" (the English words' WER)."""
    if unit not in UNITS:
        raise ConfigError(f"unit={unit!r}: unknown error unit; known: {', '.join(UNITS)}")
    if len(refs) != len(hyps):
        raise CeasrError(f"corpus_errors: {len(refs)} references but {len(hyps)} hypotheses")
    score = UNITS[unit]
    return sum((score(r, h)[0] for r, h in zip(refs, hyps)), ErrorCounts())
