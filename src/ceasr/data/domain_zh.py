"""Chinese and Chinese–English text for the bilingual synthetic corpus: seeded generators like the English ones.

Texts are normalized (:func:`ceasr.text.zh.normalize_zh`): no spaces between Chinese characters, one space
around an English word. The commands mirror the English ``commands`` domain; the mixed ones put the English
noun or verb into a Chinese sentence, as Mandarin speakers do ("打开 lights", "把 volume 调高").
"""

from __future__ import annotations

import itertools

import numpy as np

from ceasr.text.script import runs

# 幺 is how "one" is read in digit strings (phone and room numbers), besides 一.
ZH_DIGIT_CHARS = ("零", "幺", "一", "二", "三", "四", "五", "六", "七", "八", "九")
ZH_NUMBERS = ("一", "两", "三", "四", "五", "六", "七", "八", "九", "十")  # counts before a measure word
MAX_DIGITS = 7

_N = ("{n}",)
ZH_COMMAND_TEMPLATES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("前进", "后退"), _N, ("米",)),
    (("左转", "右转", "向后转"),),
    (("停止", "开始", "取消", "是的", "不是"),),
    (("打开", "关闭"), ("灯", "风扇", "暖气", "收音机", "电视")),
    (("音量调高", "音量调低"),),
    (("播放音乐", "暂停音乐", "下一首", "上一首"),),
    (("打开", "关上"), ("门", "窗户", "车库")),
    (("设置",), _N, ("分钟的定时器",)),
    (("现在几点",),),
)
MIXED_COMMAND_TEMPLATES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("打开", "关闭"), ("lights", "fan", "heater", "radio", "television")),
    (("播放", "暂停"), ("music",)),
    (("把 volume 调",), ("高", "低")),
    (("下一首", "上一首"), ("song",)),
    (("打开", "关上"), ("door", "window", "garage")),
    (("设置",), _N, ("分钟的 timer",)),
    (("向", "往"), ("left", "right"), ("转",)),
    (("帮我",), ("play music", "stop", "cancel")),
)


def _join(words: tuple[str, ...], n: str = "") -> str:
    """Slots joined into a normalized sentence: Chinese slots glued, English ones spaced."""
    return " ".join(stretch for _, stretch in runs(" ".join(words).replace("{n}", n)))


def _draw(templates, rng: np.random.Generator) -> str:
    template = templates[int(rng.integers(len(templates)))]
    words = tuple(slot[int(rng.integers(len(slot)))] for slot in template)
    return _join(words, ZH_NUMBERS[int(rng.integers(len(ZH_NUMBERS)))])


def zh_digits(rng: np.random.Generator) -> str:
    """A Chinese digit string of 1..MAX_DIGITS characters, e.g. ``"幺三八"``."""
    count = int(rng.integers(1, MAX_DIGITS + 1))
    return "".join(ZH_DIGIT_CHARS[i] for i in rng.integers(0, len(ZH_DIGIT_CHARS), size=count))


def zh_commands(rng: np.random.Generator) -> str:
    """A Chinese voice command mirroring the English default (``"设置五分钟的定时器"``)."""
    return _draw(ZH_COMMAND_TEMPLATES, rng)


def mixed_commands(rng: np.random.Generator) -> str:
    """A Chinese command with English words in it (``"打开 lights"``, ``"把 volume 调高"``)."""
    return _draw(MIXED_COMMAND_TEMPLATES, rng)


def phrases(templates) -> list[str]:
    """Every phrase a template list can produce, in a fixed order, without duplicates."""
    out: dict[str, None] = {}
    for template in templates:
        for words in itertools.product(*template):
            for n in ZH_NUMBERS if _N in template else ("",):
                out[_join(words, n)] = None
    return list(out)


ZH_DOMAINS = {"zh_digits": zh_digits, "zh_commands": zh_commands, "mixed_commands": mixed_commands}
