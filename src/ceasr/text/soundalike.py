"""Words that sound almost like a given word: one phone apart in a pronouncing dictionary.

"turn on the light" is not "turn on the lights", and "go backward ten meters" is not "go backward tan meters". A
commands model that never heard the near word bends it into the command word; :mod:`ceasr.commands.negatives`
teaches it the difference with such minimal pairs. Pronunciations come from festival's CMU dictionary (Debian's
``festlex-cmu``, which every festival voice here depends on); when Debian's ``festlex-oald`` (the Oxford Advanced
Learner's Dictionary) is installed too, only words it lists are kept, so the near words are everyday English
rather than the surnames that fill a third of CMU. Homophones (zero phones apart: "right", "write") are never a
sound-alike: their audio is the same.

Lookup: every pronunciation is indexed under itself and under each of its one-phone deletions; two
pronunciations one substitution, insertion or deletion apart share a key (the symmetric-deletion trick), and the
candidates sharing one are checked with an exact edit distance.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from ceasr.errors import CeasrError
from ceasr.metrics import align_items

CMU = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
OALD = Path("/usr/share/festival/dicts/oald/oald-0.4.out")
_ENTRY = re.compile(r'^\("(?P<word>[^"]+)" \S+ \((?P<syllables>.*?)\)\)')  # ("word" pos (((ph ph) stress) ...))


def parse_festival_lexicon(lines: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``word -> phones`` (stress dropped) from festival's compiled lexicon lines; the first pronunciation of a
    word wins, and words that are not purely alphabetic (``'em``, ``tween-decks``) are left out."""
    out: dict[str, tuple[str, ...]] = {}
    for line in lines:
        m = _ENTRY.match(line)
        if m and m["word"].isalpha() and m["word"] not in out:
            out[m["word"]] = tuple(re.sub(r"[()\d]", " ", m["syllables"]).split())
    return out


def phone_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance between two phone sequences (the edits of :func:`ceasr.metrics.align_items`)."""
    return align_items(list(a), list(b))[0].errors


def _keys(phones: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [phones] + [phones[:i] + phones[i + 1 :] for i in range(len(phones))]


class SoundAlikes:
    """``alikes(word)``: the lexicon's words exactly one phone from ``word``, sorted ([] for an unknown word)."""

    def __init__(self, lexicon: dict[str, tuple[str, ...]], common: set[str] | None = None):
        self.lexicon = {w: p for w, p in lexicon.items() if len(w) > 1 and (common is None or w in common)}
        self._index: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for word, phones in self.lexicon.items():
            for key in _keys(phones):
                self._index[key].add(word)

    def __call__(self, word: str) -> list[str]:
        phones = self.lexicon.get(word)
        if phones is None:
            return []
        near = set().union(*(self._index.get(k, ()) for k in _keys(phones)))
        return sorted(w for w in near if phone_distance(phones, self.lexicon[w]) == 1)

    @classmethod
    def from_festival(cls, cmu: Path = CMU, oald: Path = OALD) -> SoundAlikes:
        """From festival's dictionaries (module docstring); a missing CMU file raises CeasrError."""
        try:
            lexicon = parse_festival_lexicon(cmu.read_text(encoding="latin-1").splitlines())
        except OSError:
            raise CeasrError(f"{cmu}: no pronouncing dictionary (apt-get install festlex-cmu)") from None
        common = set(parse_festival_lexicon(oald.read_text(encoding="latin-1").splitlines())) if oald.exists() else None
        return cls(lexicon, common)
