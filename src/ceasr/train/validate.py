"""Dev-set evaluation during training: mean loss per utterance and, on request, WER of a fast greedy decode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ceasr.config import DecodeConfig
from ceasr.data.dataset import AsrDataset, collate
from ceasr.data.sampler import DurationBucketSampler


@dataclass(frozen=True)
class DevResult:
    loss: float
    wer: float | None  # None unless asked for
    utterances: int


def greedy_config(ctc_weight: float) -> DecodeConfig:
    """Greedy CTC when the model trains a CTC head; a beam-1 attention search when it does not."""
    if ctc_weight > 0:
        return DecodeConfig(method="ctc_greedy")
    return DecodeConfig(method="attention", beam_size=1, ctc_weight=0.0)


@torch.no_grad()
def evaluate_dev(
    model, dataset: AsrDataset, tokenizer, batch_seconds: float, device, with_wer: bool
) -> DevResult | None:
    """Dev loss (summed losses / utterances, as the training loss) and optionally corpus WER; None if empty.

    Batches are the training sampler's, unshuffled, so padding stays small; the model is left in train mode.
    """
    if len(dataset) == 0:
        return None
    from ceasr.decode import decode
    from ceasr.metrics import corpus_errors
    from ceasr.text.normalize import normalize

    sampler = DurationBucketSampler(dataset.durations, batch_seconds, shuffle=False)
    decode_cfg = greedy_config(model.ctc_weight)
    model.eval()
    total, count, refs, hyps = 0.0, 0, [], []
    try:
        for indices in sampler:
            batch = collate([dataset[i] for i in indices]).to(device)
            loss, _ = model(batch.feats, batch.feat_lens, batch.ys, batch.ys_lens, norm=1.0)  # summed
            total += float(loss)
            count += len(batch)
            if with_wer:
                found = decode(model, batch.feats, batch.feat_lens, decode_cfg)
                for i, hyp in zip(indices, found, strict=True):
                    hyps.append(normalize(tokenizer.decode(list(hyp.tokens)), dataset.rows[i].lang))
                refs.extend(batch.texts)
    finally:
        model.train()
    wer = corpus_errors(refs, hyps).rate if with_wer else None
    return DevResult(total / count, wer, count)
