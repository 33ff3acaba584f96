"""Which language a piece of text is in, for Chinese–English mixed speech, decided by its script.

A *unit* is what the mixed error rate counts: each Chinese character is one unit, and each run of other
non-space characters (an English word) is one. A Chinese character is a CJK unified ideograph (any block) or
the ideographic zero 〇. Every other letter counts as English: ceasr's bilingual models know these two
languages only, so Latin-script text is English and Han text is Mandarin.
"""

from __future__ import annotations

import re

HAN_CLASS = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U00030000-\U0003134f"
_HAN = re.compile(f"[{HAN_CLASS}]")
_UNIT = re.compile(f"[{HAN_CLASS}]|[^\\s{HAN_CLASS}]+")

ZH, EN, MIXED = "zh", "en", "mixed"


def is_han(char: str) -> bool:
    """True for one Chinese character (see the module docstring)."""
    return _HAN.fullmatch(char) is not None


def units(text: str) -> list[str]:
    """The scoring units of ``text``: each Chinese character alone, each other whitespace-free run (an English
    word; split where it touches a Chinese character). ``"打开lights 吧"`` -> ``["打", "开", "lights", "吧"]``."""
    return _UNIT.findall(text)


def unit_language(unit: str) -> str:
    """``"zh"`` for a Chinese character, ``"en"`` for anything else."""
    return ZH if is_han(unit[:1]) else EN


def piece_language(piece: str) -> str:
    """The language of a token piece: ``"zh"`` if it holds a Chinese character, ``"en"`` if it holds another
    letter or digit, ``""`` for a piece without either (a bare word-start mark, a special token)."""
    if _HAN.search(piece):
        return ZH
    return EN if any(c.isalnum() for c in piece) else ""


def languages_to_label(langs) -> str:
    """``"zh"``, ``"en"``, ``"mixed"`` (both occur) or ``""`` (neither) for a collection of unit languages."""
    found = {lang for lang in langs if lang}
    if len(found) > 1:
        return MIXED
    return found.pop() if found else ""


def text_language(text: str) -> str:
    """The language of an utterance's text: ``"zh"``, ``"en"``, ``"mixed"``, or ``""`` when it is empty."""
    return languages_to_label(unit_language(u) for u in units(text))


def runs(text: str) -> list[tuple[str, str]]:
    """Maximal stretches of one language, in order, as ``(lang, text)``: Chinese stretches without spaces,
    English ones with single spaces.

    ``"把 volume 调高"`` -> ``[("zh", "把"), ("en", "volume"), ("zh", "调高")]``.
    """
    out: list[tuple[str, list[str]]] = []
    for unit in units(text):
        lang = unit_language(unit)
        if out and out[-1][0] == lang:
            out[-1][1].append(unit)
        else:
            out.append((lang, [unit]))
    return [(lang, ("" if lang == ZH else " ").join(items)) for lang, items in out]
