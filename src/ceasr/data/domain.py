"""Text for the synthetic corpus: seeded generators per domain, and a user's text file as an alternative.

A domain is a function ``(rng) -> str`` giving one normalized sentence (lowercase words separated by single
spaces); :data:`DOMAINS` names them. :func:`command_phrases` lists every command the ``commands`` domain can
say, for features (keyword spotting, command grammars) that need the closed set.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ceasr.data.domain_general import general
from ceasr.data.domain_zh import ZH_DOMAINS
from ceasr.errors import CeasrError
from ceasr.text.normalize import normalize

DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
MAX_DIGITS = 7

# Each template is a tuple of slots; a slot is a tuple of alternatives. "{n}" is filled from NUMBER_WORDS and
# its noun made singular after "one", so every phrase is plain English a speaker would say.
_N = ("{n}",)
COMMAND_TEMPLATES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("go",), ("forward", "backward"), _N, ("meters",)),
    (("turn",), ("left", "right", "around")),
    (("stop", "start", "cancel", "yes", "no"),),
    (("turn",), ("on", "off"), ("the",), ("lights", "fan", "heater", "radio", "television")),
    (("volume",), ("up", "down")),
    (("play music", "pause music", "next song", "previous song"),),
    (("open", "close"), ("the",), ("door", "window", "garage")),
    (("set a timer for",), _N, ("minutes",)),
    (("what time is it",),),
)


def _fill(words: tuple[str, ...], n: str) -> str:
    text = " ".join(words).replace("{n}", n)
    if n == "one":
        text = text.replace("one meters", "one meter").replace("one minutes", "one minute")
    return text


def command_phrases() -> list[str]:
    """Every phrase the ``commands`` domain can produce, in a fixed order, without duplicates."""
    phrases: dict[str, None] = {}
    for template in COMMAND_TEMPLATES:
        numbers = NUMBER_WORDS if _N in template else ("",)
        for words in itertools.product(*template):
            for n in numbers:
                phrases[_fill(words, n)] = None
    return list(phrases)


def digits(rng: np.random.Generator) -> str:
    """A digit string of 1..MAX_DIGITS words, e.g. ``"four oh seven"``."""
    count = int(rng.integers(1, MAX_DIGITS + 1))
    return " ".join(DIGIT_WORDS[i] for i in rng.integers(0, len(DIGIT_WORDS), size=count))


def commands(rng: np.random.Generator) -> str:
    """A voice command: a template chosen uniformly, then each slot's alternative uniformly."""
    template = COMMAND_TEMPLATES[int(rng.integers(len(COMMAND_TEMPLATES)))]
    words = tuple(slot[int(rng.integers(len(slot)))] for slot in template)
    return _fill(words, NUMBER_WORDS[int(rng.integers(len(NUMBER_WORDS)))])


# General English (ceasr.data.domain_general) and the Chinese and mixed domains (ceasr.data.domain_zh) are
# listed here too, so --domain can name any of them.
DOMAINS = {"digits": digits, "commands": commands, "general": general, **ZH_DOMAINS}


class TextSource:
    """Picks one sentence per call with the caller's RNG: from named domains, or from a list of lines."""

    def __init__(self, domains: tuple[str, ...] = ("digits", "commands"), lines: list[str] | None = None):
        if lines is None:
            unknown = [d for d in domains if d not in DOMAINS]
            if unknown or not domains:
                raise CeasrError(f"unknown text domain(s) {', '.join(unknown) or '(none given)'}; known: "
                                 f"{', '.join(DOMAINS)}")
        self.domains = tuple(domains)
        self.lines = lines

    def __call__(self, rng: np.random.Generator) -> str:
        if self.lines is not None:
            return self.lines[int(rng.integers(len(self.lines)))]
        return DOMAINS[self.domains[int(rng.integers(len(self.domains)))]](rng)


def read_text_file(path: str | Path, lang: str | None = None) -> list[str]:
    """Lines of a UTF-8 text file, normalized as training targets are (:func:`ceasr.text.normalize.normalize`
    for ``lang``, English by default: numbers become words, punctuation goes), empty ones skipped. The TTS
    engine says the normalized line, so audio and transcript agree. A missing, unreadable or empty file raises
    CeasrError naming it."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CeasrError(f"{path}: no such text file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CeasrError(f"{path}: cannot read text file ({e})") from None
    lines = [text for text in (normalize(line, lang) for line in raw.splitlines()) if text]
    if not lines:
        raise CeasrError(f"{path}: text file has no sentences (every line is empty after normalization)")
    return lines
