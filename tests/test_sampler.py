"""DurationBucketSampler: coverage, caps, determinism, rank split, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from ceasr.data.sampler import DurationBucketSampler


@pytest.fixture
def durations():
    rng = np.random.default_rng(7)
    return rng.uniform(0.5, 8.0, size=203).round(3).tolist()


def test_every_utterance_once_per_epoch(durations):
    s = DurationBucketSampler(durations, batch_seconds=30.0, num_buckets=5, seed=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        seen = [i for batch in s for i in batch]
        assert sorted(seen) == list(range(len(durations)))
        assert len(list(s)) == len(s)


def test_padded_cost_within_cap(durations):
    cap = 20.0
    s = DurationBucketSampler(durations + [25.0], batch_seconds=cap, num_buckets=4)
    for batch in s:
        cost = max(durations[i] if i < len(durations) else 25.0 for i in batch) * len(batch)
        assert cost <= cap or len(batch) == 1  # only a lone over-long utterance may pass the cap
    assert [len(durations)] in list(s)  # the 25 s utterance is a batch of its own


def test_buckets_group_similar_lengths(durations):
    s = DurationBucketSampler(durations, batch_seconds=40.0, num_buckets=8, shuffle=False)
    d = np.asarray(durations)
    spreads = [d[b].max() - d[b].min() for b in s]
    # Each batch comes from one bucket: its spread is within one eighth of the sorted range (+ slack).
    assert max(spreads) < (d.max() - d.min()) / 8 * 1.5


def test_deterministic_per_seed_and_epoch(durations):
    def batches(seed, epoch):
        s = DurationBucketSampler(durations, batch_seconds=30.0, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert batches(3, 2) == batches(3, 2)
    assert batches(3, 2) != batches(3, 1)
    assert batches(3, 2) != batches(4, 2)


def test_ranks_partition_each_global_batch(durations):
    world = 3
    samplers = [DurationBucketSampler(durations, 30.0, seed=5, world_size=world, rank=r) for r in range(world)]
    for s in samplers:
        s.set_epoch(4)
    per_rank = [list(s) for s in samplers]
    global_batches = samplers[0].global_batches()
    assert all(len(b) >= world for b in global_batches)
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == len(global_batches)
    for k, batch in enumerate(global_batches):
        shares = [per_rank[r][k] for r in range(world)]
        assert all(shares)  # no rank gets an empty share
        assert sorted(i for share in shares for i in share) == sorted(batch)


def test_small_global_batches_dropped_with_many_ranks():
    # Two 10 s utterances fill a 10 s budget alone: those batches have 1 item < 2 ranks and are dropped.
    durations = [10.0, 10.0, 1.0, 1.0, 1.0, 1.0]
    s = DurationBucketSampler(durations, batch_seconds=10.0, num_buckets=3, world_size=2, rank=0)
    kept = {i for b in s.global_batches() for i in b}
    assert kept == {2, 3, 4, 5}
    single = DurationBucketSampler(durations, batch_seconds=10.0, num_buckets=3)
    assert {i for b in single for i in b} == set(range(6))


def test_resume_yields_exactly_the_rest(durations):
    full = DurationBucketSampler(durations, 30.0, seed=9)
    full.set_epoch(2)
    want = list(full)

    first = DurationBucketSampler(durations, 30.0, seed=9)
    first.set_epoch(2)
    it = iter(first)
    head = [next(it) for _ in range(5)]
    state = first.state_dict()
    assert state == {"epoch": 2, "position": 5}

    resumed = DurationBucketSampler(durations, 30.0, seed=9)
    resumed.load_state_dict(state)
    assert head + list(resumed) == want
    # After a finished epoch the position is back at 0 and the next epoch starts fresh.
    assert resumed.state_dict() == {"epoch": 2, "position": 0}
    resumed.set_epoch(3)
    assert list(resumed) != want
