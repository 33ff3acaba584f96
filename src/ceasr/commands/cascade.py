"""Two-stage command recognition: a fast recognizer screens every clip, a slower one decides the rest.

A ceasr CTC model scores a command clip in about 10 ms, a Whisper model in about a second (its 30 s encoder
window). Most of what a listener hears is not a command, and the fast model is sure of much of it: clips
whose first-stage confidence is below ``gate`` are rejected there (confidence 0), and only the others go to
the second stage (``ceasr command --verify DIR``), whose phrase, confidence and threshold decide. The gate
sits far below the first stage's own threshold, so it throws away little that the second stage would
accept; what it does throw away is mostly speech the first stage hears as unlike any phrase (README: the
commands benchmark measures both stages and the share of clips that reach the second).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ceasr.commands.recognize import CommandRecognizerBase, CommandResult
from ceasr.errors import ConfigError


class CascadeCommandRecognizer(CommandRecognizerBase):
    """``first`` screens with ``gate``; ``second`` decides (its ``recognizer``, ``commands`` and ``cfg`` are this
    recognizer's). Both must use the same command set and sample rate."""

    def __init__(self, first: CommandRecognizerBase, second: CommandRecognizerBase, gate: float):
        if not 0.0 <= gate <= 1.0:
            raise ConfigError(f"gate {gate}: must be between 0 and 1 (a first-stage confidence)")
        if [c.text for c in first.commands.commands] != [c.text for c in second.commands.commands]:
            raise ConfigError("the two stages of a cascade need the same command set")
        if first.sample_rate != second.sample_rate:
            raise ConfigError(f"the two stages of a cascade need one sample rate, not {first.sample_rate} and "
                              f"{second.sample_rate}")
        self.first, self.second, self.gate = first, second, gate
        self.recognizer, self.commands, self.cfg = second.recognizer, second.commands, second.cfg
        self.verified = 0  # clips the second stage has seen so far

    def with_threshold(self, threshold: float):
        """The same cascade with another threshold for the second stage (the gate stays)."""
        clone = copy.copy(self)
        clone.second = self.second.with_threshold(threshold)
        clone.cfg = clone.second.cfg
        return clone

    def recognize_batch(self, waves: list[np.ndarray]) -> list[CommandResult]:
        screened = self.first.recognize_batch(waves)
        todo = [i for i, r in enumerate(screened) if r.confidence >= self.gate]
        decided = dict(zip(todo, self.second.recognize_batch([waves[i] for i in todo]) if todo else []))
        self.verified += len(todo)
        gated = {"accepted": self.cfg.threshold <= 0.0, "confidence": 0.0}
        return [decided[i] if i in decided else dataclasses.replace(r, **gated) for i, r in enumerate(screened)]
