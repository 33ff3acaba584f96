"""Text normalization for training targets and scoring: one normalizer per language, in ``NORMALIZERS``.

English policy (:func:`normalize_en`), applied in this order:

1. Unicode NFKC (full-width forms become ASCII), curly apostrophes become ``'``.
2. Symbols: ``%`` -> "percent", ``&`` -> "and".
3. Numbers. Thousands separators go (``1,000`` -> ``1000``). A run of digits standing alone, without a
   leading zero and at most 999,999, is read as a cardinal ("42" -> "forty two", "2024" -> "two thousand
   twenty four"; no "and"). Ordinals up to 999,999 are read as such ("3rd" -> "third", "21st" -> "twenty
   first"). Decimals read the integer part as above and each fractional digit alone ("3.5" -> "three point
   five", "0.25" -> "zero point two five"). Anything else with digits (longer runs, a leading zero,
   digits glued to letters) is spelled digit by digit ("007" -> "zero zero seven", "mp3" -> "mp three").
   Signs are not read ("-5" -> "five").
4. Lowercase; every punctuation mark or symbol (hyphens and dashes included) becomes a space, except an
   apostrophe between two letters ("don't" stays, "'quoted'" loses its quotes).
5. Whitespace is collapsed and trimmed.

Letters of every script survive step 4, so CJK characters pass through unchanged while CJK punctuation
(，。！？、「」 ...) is removed. A language with other rules gets its own entry: Chinese (``zh``, also
``zh-CN``/``zh-TW``/``zh-HK``) is :func:`ceasr.text.zh.normalize_zh` (simplified characters, Chinese numerals).
"""

from __future__ import annotations

import re
import unicodedata

from ceasr.text.zh import normalize_zh


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
MAX_CARDINAL = 999_999

_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,]*\d)")
_DECIMAL = re.compile(r"(?<![\w.])(\d+)\.(\d+)(?![\w.]*\d)")
_ORDINAL = re.compile(r"(?<!\w)(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_APOSTROPHE_OUTSIDE_WORD = re.compile(r"(?<!\w)'|'(?!\w)")


def cardinal(n: int) -> str:
    """English words for ``0 <= n <= 999,999`` ("two thousand twenty four")."""
    if not 0 <= n <= MAX_CARDINAL:
        raise ValueError(f"cardinal() covers 0..{MAX_CARDINAL}, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        head = _ONES[n // 100] + " hundred"
        return head if n % 100 == 0 else f"{head} {cardinal(n % 100)}"
    head = cardinal(n // 1000) + " thousand"
    return head if n % 1000 == 0 else f"{head} {cardinal(n % 1000)}"


def ordinal(n: int) -> str:
    """English ordinal words for ``0 <= n <= 999,999`` ("twenty first")."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def digits(s: str) -> str:
    """Digit-by-digit reading: "007" -> "zero zero seven"."""
    return " ".join(_ONES[int(c)] for c in s)


def _integer(s: str) -> str:
    """A digit run read as a cardinal when the policy allows, else digit by digit."""
    if (s == "0" or not s.startswith("0")) and int(s) <= MAX_CARDINAL:
        return cardinal(int(s))
    return digits(s)


def _ordinal_match(m: re.Match) -> str:
    num = m.group(1)
    if not num.startswith("0") and int(num) <= MAX_CARDINAL:
        return f" {ordinal(int(num))} "
    return f" {digits(num)} {m.group(2)} "


def _numbers_to_words(text: str) -> str:
    """Step 3 of the English policy: every ASCII digit becomes words."""
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _DECIMAL.sub(lambda m: f" {_integer(m.group(1))} point {digits(m.group(2))} ", text)
    text = _ORDINAL.sub(_ordinal_match, text)
    return _DIGITS.sub(_digit_run, text)


def _digit_run(m: re.Match) -> str:
    """Standalone runs are cardinals; runs touching letters are spelled (and split from the letters)."""
    text, start, end = m.string, m.start(), m.end()
    glued = (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha())
    return f" {digits(m.group(0)) if glued else _integer(m.group(0))} "


def _strip_punctuation(text: str) -> str:
    """Step 4: keep letters, marks, digits, whitespace and apostrophes; the rest becomes a space."""
    kept = [c if c == "'" or c.isspace() or unicodedata.category(c)[0] in "LMN" else " " for c in text]
    return _APOSTROPHE_OUTSIDE_WORD.sub(" ", "".join(kept))


def normalize_en(text: str) -> str:
    """Normalize English text for ASR targets and scoring (policy in the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _numbers_to_words(text).lower()
    text = _strip_punctuation(text)
    return " ".join(text.split())


def normalize_basic(text: str) -> str:
    """Any other language: NFKC, lowercase, punctuation removed, whitespace collapsed; digits kept as
    written, since how to read them depends on the language."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()
    return " ".join(_strip_punctuation(text).split())


NORMALIZERS = {"en": normalize_en, "zh": normalize_zh}


def normalize(text: str, lang: str | None = None) -> str:
    """Normalize ``text`` with the normalizer of ``lang`` (English when None).

    ``lang`` may carry a region ("en-US", "en_GB"); only the language part picks the normalizer. A
    language without its own entry gets :func:`normalize_basic`, so a corpus in it still trains.
    """
    key = (lang or "en").replace("_", "-").split("-")[0].lower()
    return NORMALIZERS.get(key, normalize_basic)(text)
