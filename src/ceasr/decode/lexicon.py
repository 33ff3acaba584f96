"""The words a word LM knows, as a prefix table, so that a search can score the word it is still spelling.

Fusion with a word LM can only ask the LM about whole words. Without a look at the partial word the beam fills
with spellings no known word starts with, which the LM rejects only when the word ends. A
:class:`WordPrefixes` answers, for a partial word: can it still become a known word, and if so, what is the
best unigram log-probability among its completions (the look-ahead; flashlight's "smearing" takes the same
maximum). pyctcdecode does the first with a character trie and a fixed out-of-vocabulary offset.

Every prefix of every word is a key of one dict, which is the trie flattened: a lookup costs one hash of the
partial word, whatever the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterable

from ceasr.lm.base import BOS, EOS, UNK

_SPECIAL = (BOS, EOS, UNK)


class WordPrefixes:
    """Prefixes of ``words`` with the best log-probability (from ``log_probs``, one per word) among the words
    that start with each."""

    def __init__(self, words: Iterable[str], log_probs: Iterable[float]):
        self.words: set[str] = set()
        self._best: dict[str, float] = {}
        for word, lp in zip(words, log_probs):
            if word in _SPECIAL or not word:
                continue
            self.words.add(word)
            lp = float(lp)
            for end in range(1, len(word) + 1):
                prefix = word[:end]
                if lp > self._best.get(prefix, float("-inf")):
                    self._best[prefix] = lp

    @classmethod
    def of_lm(cls, lm, extra_words: Iterable[str] = ()) -> WordPrefixes:
        """The vocabulary of a word LM with its unigram log-probabilities; ``extra_words`` (e.g. hotwords the
        LM has never seen) count as known, with the LM's unigram log-probability of ``<unk>``."""
        unigram = lm.unigram_log_probs()
        known = lm.index()
        extra = [w for w in dict.fromkeys(extra_words) if w not in known]
        return cls([*lm.vocab, *extra], [*unigram, *([unigram[lm.unk]] * len(extra))])

    def __contains__(self, word: str) -> bool:
        return word in self.words

    def best(self, partial: str) -> float | None:
        """Best log-probability of a word that starts with ``partial``; None when no known word does."""
        return self._best.get(partial)
