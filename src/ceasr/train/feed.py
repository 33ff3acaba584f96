"""What the training loop steps over: this rank's collated batches, grouped for gradient accumulation."""

from __future__ import annotations

import torch

from ceasr.data.dataset import AsrDataset, AugmentedDataset, collate
from ceasr.data.sampler import DurationBucketSampler


def batches(sampler: DurationBucketSampler, train_set: AsrDataset, augmented: AugmentedDataset | None,
            num_workers: int):
    """This rank's collated batches for the rest of the sampler's epoch.

    Without augmentation (``augmented`` None) they come straight from ``train_set``'s cached features. With it,
    a DataLoader runs the augmentation and the feature extraction in ``num_workers`` worker processes (in this
    process when 0), keyed by ``(index, epoch)`` so what an item gets depends on neither the worker nor a resume.
    """
    if augmented is None:
        for indices in sampler:
            yield collate([train_set[i] for i in indices])
        return
    loader = torch.utils.data.DataLoader(
        augmented, batch_sampler=_EpochKeys(sampler), collate_fn=collate,
        num_workers=num_workers, worker_init_fn=_one_thread,
    )
    yield from loader


class _EpochKeys:
    """The sampler's batches as ``(index, epoch)`` keys for :class:`AugmentedDataset`."""

    def __init__(self, sampler: DurationBucketSampler):
        self.sampler = sampler

    def __iter__(self):
        for indices in self.sampler:
            yield [(i, self.sampler.epoch) for i in indices]

    def __len__(self) -> int:
        return len(self.sampler)


def _one_thread(worker_id: int) -> None:
    # A worker featurizes one utterance at a time; more threads would only contend with training's.
    torch.set_num_threads(1)


def groups(batches, size: int):
    """``batches`` ``size`` at a time (fewer at the end)."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group
