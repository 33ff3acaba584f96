"""Batches capped by seconds of padded audio, drawn from duration buckets, with exact mid-epoch resume.

Utterances are sorted by duration and cut into ``num_buckets`` buckets of equal count, so a batch holds
utterances of similar length and little of it is padding. Each epoch, every bucket is shuffled and packed
greedily into batches whose *padded* cost, ``max duration × count``, stays within ``batch_seconds`` (that is
what the model actually computes on); then the batches of all buckets are shuffled together. Everything
random comes from ``(seed, epoch)``, so an epoch's batches are the same on every rank and after a restart.

With several ranks each batch is a *global* batch: rank ``r`` takes ``batch[r::world_size]``. A global batch
with fewer items than ranks is dropped (it can only happen when a few utterances alone fill the budget);
every rank then gets the same number of batches, which keeps DDP's collective calls in step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class DurationBucketSampler:
    """Yields lists of utterance indices (this rank's share of each global batch).

    ``durations`` are seconds per utterance. An utterance longer than ``batch_seconds`` makes a batch of its
    own. Call :meth:`set_epoch` before each epoch; :meth:`state_dict` / :meth:`load_state_dict` carry the
    epoch and the number of batches already consumed in it.
    """

    def __init__(
        self,
        durations: list[float],
        batch_seconds: float,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
    ):
        if batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be > 0, got {batch_seconds}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_seconds = float(batch_seconds)
        self.shuffle = shuffle
        self.seed = seed
        self.world_size = world_size
        self.rank = rank
        order = np.argsort(self.durations, kind="stable")
        n_buckets = max(1, min(num_buckets, len(order)))
        self.buckets = [b for b in np.array_split(order, n_buckets) if len(b)]
        self.epoch = 0
        self.position = 0  # batches of this epoch already handed out
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first batch."""
        self.epoch = epoch
        self.position = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Resume at batch ``position`` of epoch ``epoch``: iteration yields exactly the remaining batches."""
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every global batch of ``epoch`` (default: the current one), in order, before the rank split."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        for bucket in self.buckets:
            items = rng.permutation(bucket) if self.shuffle else bucket
            batches.extend(self._pack(items))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        batches = [b for b in batches if len(b) >= self.world_size]
        self._cache = (epoch, batches)
        return batches

    def _pack(self, items: np.ndarray) -> list[list[int]]:
        """Greedy packing in the given order: a batch closes when one more item would pass the budget."""
        batches, current, longest = [], [], 0.0
        for i in items.tolist():
            d = float(self.durations[i])
            if current and max(longest, d) * (len(current) + 1) > self.batch_seconds:
                batches.append(current)
                current, longest = [], 0.0
            current.append(i)
            longest = max(longest, d)
        if current:
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield batch[self.rank :: self.world_size]
        self.position = 0  # a finished epoch; iterating again repeats it unless set_epoch moves on

    def __len__(self) -> int:
        """Batches in the current epoch (the same on every rank)."""
        return len(self.global_batches())
