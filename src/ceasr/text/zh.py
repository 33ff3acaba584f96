"""Chinese (Mandarin, with English words mixed in) text normalization: :func:`normalize_zh`.

Policy, applied in this order:

1. Unicode NFKC: full-width forms become half-width (``ＡＢＣ１２３`` -> ``ABC123``, ``，`` -> ``,``).
2. Traditional characters become simplified ones with OpenCC's ``t2s`` conversion (``開門`` -> ``开门``).
3. Numerals. Chinese numerals (零 一 二 两 十 百 千 万 幺 ...) are kept as written. Arabic digits are in
   Chinese context and are spelled as Chinese numerals: thousands separators go; a run of digits without a
   leading zero and at most 99,999,999 is read as a cardinal (``25`` -> 二十五, ``105`` -> 一百零五,
   ``10050`` -> 一万零五十; ``二``, never ``两``; 10-19 start with 十); a four-digit run before 年 is a year
   read digit by digit (``2024年`` -> 二零二四年), as is any other run (a leading zero, longer numbers:
   ``007`` -> 零零七). Decimals read the point as 点 and the fraction digit by digit (``3.5`` -> 三点五);
   ``N%`` is 百分之N. Digits glued to Latin letters belong to an English word and are read in English digit
   by digit (``mp3`` -> ``mp three``).
4. Lowercase; punctuation and symbols (Chinese and ASCII) are removed, apostrophes inside words kept.
5. Spacing: none between Chinese characters, one space between an English word and anything next to it
   (``打开 灯 lights`` -> ``打开灯 lights``, ``打开lights`` -> ``打开 lights``), so spaces between Chinese
   characters never count in scoring.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from ceasr.text.script import runs

ZH_DIGITS = "零一二三四五六七八九"
_ZH_POWERS = ("千", "百", "十", "")
EN_DIGITS = "zero one two three four five six seven eight nine".split()
MAX_ZH_CARDINAL = 99_999_999

_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,]*\d)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_DECIMAL = re.compile(r"(?<![A-Za-z0-9.])(\d+)\.(\d+)(?![A-Za-z0-9.]*\d)")
_YEAR = re.compile(r"(?<![A-Za-z0-9])(\d{4})(?=\s*年)")
_GLUED = re.compile(r"(?<=[A-Za-z])\d+|\d+(?=[A-Za-z])")
_DIGITS = re.compile(r"\d+")
_APOSTROPHE_OUTSIDE_WORD = re.compile(r"(?<!\w)'|'(?!\w)")


@cache
def _t2s():
    import opencc  # imported on first use: only Chinese text needs it

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional to simplified characters (OpenCC ``t2s``); other text passes through."""
    return _t2s().convert(text)


def zh_digits(s: str) -> str:
    """Digit-by-digit reading: ``"007"`` -> ``"零零七"``."""
    return "".join(ZH_DIGITS[int(c)] for c in s)


def _section(n: int) -> str:
    """``0 < n < 10000`` in Chinese; one 零 stands for each gap of zeros between non-zero digits."""
    out, gap = [], False
    for digit, power in zip(f"{n:04d}", _ZH_POWERS):
        if digit == "0":
            gap = gap or bool(out)
            continue
        if gap:
            out.append("零")
            gap = False
        out.append(ZH_DIGITS[int(digit)] + power)
    return "".join(out)


def zh_cardinal(n: int) -> str:
    """Chinese numerals for ``0 <= n <= 99,999,999`` (``10050`` -> ``"一万零五十"``, ``12`` -> ``"十二"``)."""
    if not 0 <= n <= MAX_ZH_CARDINAL:
        raise ValueError(f"zh_cardinal() covers 0..{MAX_ZH_CARDINAL}, got {n}")
    if n == 0:
        return "零"
    high, low = divmod(n, 10_000)
    text = _section(high) + "万" if high else ""
    if low:
        text += ("零" if high and low < 1000 else "") + _section(low)
    return text[1:] if text.startswith("一十") else text


def _zh_integer(s: str) -> str:
    if (s == "0" or not s.startswith("0")) and int(s) <= MAX_ZH_CARDINAL:
        return zh_cardinal(int(s))
    return zh_digits(s)


def _zh_number(s: str) -> str:
    """A digit run, maybe with a decimal part, in Chinese."""
    whole, _, frac = s.partition(".")
    return _zh_integer(whole) + ("点" + zh_digits(frac) if frac else "")


def _numbers_to_chinese(text: str) -> str:
    """Step 3 of the policy: every ASCII digit becomes Chinese numerals (or English words when glued to Latin)."""
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _PERCENT.sub(lambda m: "百分之" + _zh_number(m.group(1)), text)
    text = _DECIMAL.sub(lambda m: _zh_number(m.group(0)), text)
    text = _YEAR.sub(lambda m: zh_digits(m.group(1)), text)
    text = _GLUED.sub(lambda m: " " + " ".join(EN_DIGITS[int(c)] for c in m.group(0)) + " ", text)
    return _DIGITS.sub(lambda m: _zh_integer(m.group(0)), text)


def _strip_punctuation(text: str) -> str:
    """Keep letters, marks, digits, whitespace and apostrophes inside words; anything else becomes a space."""
    kept = [c if c == "'" or c.isspace() or unicodedata.category(c)[0] in "LMN" else " " for c in text]
    return _APOSTROPHE_OUTSIDE_WORD.sub(" ", "".join(kept))


def normalize_zh(text: str) -> str:
    """Normalize Chinese or Chinese–English text for ASR targets and scoring (policy in the module docstring)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    text = _numbers_to_chinese(to_simplified(text)).lower()
    return " ".join(stretch for _, stretch in runs(_strip_punctuation(text)))


__all__ = ["normalize_zh", "to_simplified", "zh_cardinal", "zh_digits"]
