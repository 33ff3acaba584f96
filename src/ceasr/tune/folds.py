"""Speaker-disjoint K-fold splits: no voice is on both the training and the held-out side of a fold."""

from __future__ import annotations

import numpy as np

from ceasr.data.manifest import Utterance
from ceasr.errors import ConfigError


def speaker_groups(rows: list[Utterance]) -> list[list[int]]:
    """Row indices grouped by speaker; a row without a speaker is a group of its own (first-seen order)."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        key = f"speaker:{row.speaker}" if row.speaker is not None else f"row:{i}"
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def speaker_folds(rows: list[Utterance], k: int, seed: int = 0) -> list[list[int]]:
    """``k`` lists of held-out row indices; every row is held out exactly once, each speaker in one fold.

    Groups are shuffled with ``seed``, then dealt largest first to the fold holding the fewest rows so far,
    so folds are balanced by rows as far as the speakers allow.
    """
    if k < 2:
        raise ConfigError(f"--folds: needs at least 2 folds, got {k}")
    groups = speaker_groups(rows)
    if len(groups) < k:
        raise ConfigError(f"--folds: {k} folds need at least {k} speakers, the data has {len(groups)}")
    order = np.random.default_rng(seed).permutation(len(groups))
    shuffled = [groups[i] for i in order]
    shuffled.sort(key=len, reverse=True)  # stable: equal sizes keep the shuffled order
    folds: list[list[int]] = [[] for _ in range(k)]
    for group in shuffled:
        smallest = min(range(k), key=lambda f: len(folds[f]))
        folds[smallest].extend(group)
    return [sorted(f) for f in folds]


def train_indices(n: int, held_out: list[int]) -> list[int]:
    """The complement of ``held_out`` in ``range(n)``."""
    out = set(held_out)
    return [i for i in range(n) if i not in out]
