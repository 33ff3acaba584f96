"""int8 inference: every Linear layer dynamically quantized (torch.ao's ``quantize_dynamic``).

Weights are stored as int8 with one scale per tensor; each call quantizes its input on the fly, multiplies in
int8 (fbgemm on x86) and returns float32. Convolutions, attention products and normalizations stay float32.
At batch size 1 on a CPU most of the encoder's arithmetic is in its Linear layers; measured 2026-12-02 on one
thread, 80 test utterances of the demo corpus: encoder 15.4-16.2 ms per utterance traced in float32, 9.3-11.3
ms traced in int8, with 99.8 % of the CTC frame argmaxes unchanged (README, voice commands, for the effect on
accuracy). For inference only: the result is a copy; training the original does not change it.

An input's scale is taken over the whole batch, so an item's result depends a little on what it is batched
with. ceasr's own models therefore quantize the encoding path only (``embed`` and ``encoder``, batch 1 per
utterance in command recognition): the attention decoder, which scores many phrases per call and gained no
measurable time from int8, stays float32 and gives the same scores however the phrases are grouped.

``torch.ao.quantization`` is deprecated in favour of the separate ``torchao`` package; it still works in the
pinned torch and keeps ceasr free of another dependency. The warnings it prints on every call are silenced
here.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def int8_for_inference(model: nn.Module, parts: tuple[str, ...] = ()) -> nn.Module:
    """An eval-mode copy of ``model`` whose ``nn.Linear`` layers are int8 (dynamic quantization): all of them,
    or those inside the submodules named in ``parts``; the other layers are copies of the original's float32
    ones."""
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice and a per-tensor quantization notice
        if not parts:
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        for name in parts:
            setattr(model, name, torch.ao.quantization.quantize_dynamic(getattr(model, name), {nn.Linear},
                                                                        dtype=torch.qint8))
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether ``model`` holds dynamically quantized Linear layers (made by :func:`int8_for_inference`)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())
