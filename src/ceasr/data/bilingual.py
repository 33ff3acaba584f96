"""Planning the Mandarin and Chinese–English corpus (``synthesize(..., lang="zh" | "zh-en")``).

The text decides the voice: English text gets an English voice exactly as in the English corpus (an engine by
its share, then its voices in turn); Mandarin text gets espeak-ng's next Mandarin voice of the split; mixed
text gets the next Mandarin voice for its Chinese stretches and an English espeak-ng voice of the same
variant (the same timbre, so one speaker switches language) for its English stretches, joined by pauses.
Mandarin voices share their variant's group with the English ones, so a timbre sits in one split for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ceasr.data.domain import TextSource
from ceasr.data.render import Job
from ceasr.data.synth import _Planner
from ceasr.data.voices import Voice
from ceasr.errors import CeasrError
from ceasr.text.script import EN, MIXED, ZH, runs, text_language

PAUSE_SECONDS = (0.04, 0.16)  # silence where the language changes: a short breath, not a full stop


class BilingualPlanner(_Planner):
    """Jobs for Mandarin, English and mixed text (see the module docstring); draws are seeded per utterance."""

    def __init__(self, splits: dict[str, list[Voice]], mandarin: set[Voice], sources: dict[str, TextSource],
                 seed: int, out_dir: Path):
        english = {name: [v for v in voices if v not in mandarin] for name, voices in splits.items()}
        super().__init__(english, sources, seed, out_dir)
        self.mandarin: dict[str, list[Voice]] = {}
        self.english_by_group: dict[str, dict[str, list[Voice]]] = {}
        for i, (name, voices) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, 15485863, i])
            zh = [v for v in voices if v in mandarin]
            self.mandarin[name] = [zh[j] for j in rng.permutation(len(zh))]
            groups: dict[str, list[Voice]] = {}
            for v in english[name]:
                if v.engine == "espeak-ng":
                    groups.setdefault(v.group, []).append(v)
            self.english_by_group[name] = groups
        self.zh_turns = dict.fromkeys(splits, 0)

    def can_plan(self, split: str) -> bool:
        return bool(self.by_engine[split] or self.mandarin[split])

    def _mandarin_voice(self, split: str) -> Voice:
        voices = self.mandarin[split]
        if not voices:
            raise CeasrError(f"Chinese text but no Mandarin voice in the {split} split")
        self.zh_turns[split] += 1
        return voices[(self.zh_turns[split] - 1) % len(voices)]

    def _one(self, split: str) -> Job:
        uid, rng = self._rng(split)
        text = self.sources[split](rng)
        lang = text_language(text)
        if lang == EN:
            if not self.by_engine[split]:
                raise CeasrError(f"English text {text!r} but no English voice (synthesizing Mandarin only?)")
            return self._job(uid, split, self._english_voice(split, rng), text, rng)
        voice = self._mandarin_voice(split)
        stretches: tuple[tuple[str, Voice], ...] = ()
        if lang == MIXED:
            same_timbre = self.english_by_group[split].get(voice.group)
            if not same_timbre:
                raise CeasrError(f"mixed text {text!r} needs an English espeak-ng voice of {voice.id}'s variant")
            english = same_timbre[int(rng.integers(len(same_timbre)))]
            stretches = tuple((s, voice if part == ZH else english) for part, s in runs(text))
        pauses = tuple(round(float(p), 3) for p in rng.uniform(*PAUSE_SECONDS, size=max(0, len(stretches) - 1)))
        return self._job(uid, split, voice, text, rng, lang=ZH, stretches=stretches, pauses=pauses)
