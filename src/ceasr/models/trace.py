"""TorchScript traces of a model's encoding path, for inference: the same weights, less time per call.

At batch size 1 on a CPU the encoder's matrices are small (a 2 s command is 50 encoder frames of 144
values), so much of its time goes to Python and the operator dispatcher between operations rather than to
arithmetic. A trace replays the same operations from C++. Measured 2026-12-01 on 2 threads, the 617 test
utterances of the demo corpus, eager and traced alternating: the encoder and CTC head 8.2 → 6.2 and 7.9 → 6.1
ms per second of audio in two runs (README, voice commands).

The normalization, the subsampling and the encoder are each traced once on an example of batch 1 and
reused for any batch size and length: nothing inside them branches in Python on the input's shape (tests
compare traced and eager outputs at other shapes, padding included). The attention decoder's ``forward``
and ``forward_text`` (whole sequences at once) are traced too, with one memory shared by several sequences; its
``start``/``step`` (attention beam search) stay eager. Dropout is traced in eval mode, so a traced model is for
inference only; it shares its parameters with the model it was made from.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ceasr.models.asr import ASRModel

EXAMPLE_FRAMES = 200  # 2 s of 10 ms frames: the example the trace runs once


def traced_for_inference(model: ASRModel, n_mels: int) -> ASRModel:
    """An eval-mode copy of ``model`` (sharing its parameters) whose ``normalize``, ``embed`` and ``encoder``
    are TorchScript traces and whose decoder's ``forward`` is; ``ctc`` (and ``lid``) are the model's own
    modules. ``n_mels``: feature bins."""
    model = model.eval()
    x = torch.randn(1, EXAMPLE_FRAMES, n_mels, device=next(model.parameters()).device)
    lens = torch.tensor([EXAMPLE_FRAMES], device=x.device)
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python value it freezes; the ones here are shape-independent (the
        # length-generalization tests check the result).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        normalize = torch.jit.trace(model.normalize, (x, lens), check_trace=False)
        y = model.normalize(x, lens)
        embed = torch.jit.trace(model.embed, (y, lens), check_trace=False)
        embed.min_frames = getattr(model.embed, "min_frames", 1)  # read by ASRModel.encode
        y, y_lens = model.embed(y, lens)
        encoder = torch.jit.trace(model.encoder, (y, y_lens), check_trace=False)
        memory, memory_lens = model.encoder(y, y_lens)
        decoder = None if model.decoder is None else _with_traced_forward(model.decoder, memory, memory_lens)
    traced = ASRModel(normalize, embed, encoder, model.ctc, decoder, ctc_weight=model.ctc_weight,
                      label_smoothing=model.label_smoothing, sos_id=model.sos_id, eos_id=model.eos_id,
                      ignore_id=model.ignore_id).eval()
    traced.lid, traced.lid_weight, traced.token_language = model.lid, model.lid_weight, model.token_language
    with torch.inference_mode():  # TorchScript optimizes a graph on its first two runs (~0.3 s): not on a user's
        for _ in range(2):
            traced.encode(x, lens)
    return traced


def _with_traced_forward(decoder: nn.Module, memory: torch.Tensor, memory_lens: torch.Tensor) -> nn.Module:
    """A shallow copy of ``decoder`` (the same parameters and submodules, its own ``start``/``step`` for
    incremental search) whose ``forward`` and ``forward_text`` (teacher-forced scoring of whole sequences, as
    attention rescoring and command scoring use them) replay traces. Traced with one utterance's memory shared
    by 8 sequences of 7 tokens: the path that broadcasts a batch-1 memory, also right when memory and sequences
    have the same batch size."""
    ys_in = torch.randint(0, decoder.embed.num_embeddings, (8, 7), device=memory.device)
    ys_lens = torch.full((8,), 7, device=memory.device)
    text = decoder.text_states(ys_in)
    traced = torch.jit.trace_module(decoder, {"forward": (memory, memory_lens, ys_in, ys_lens),
                                              "forward_text": (memory, memory_lens, *text)}, check_trace=False)
    fast = copy.copy(decoder)  # shares the parameter and submodule dicts, so the weights and their names
    fast.__dict__["forward"] = traced  # instance attributes, not registered submodules
    fast.__dict__["forward_text"] = traced.forward_text
    return fast


def is_traced(model: nn.Module) -> bool:
    """Whether ``model``'s encoder is a trace (made by :func:`traced_for_inference`)."""
    return isinstance(getattr(model, "encoder", None), torch.jit.ScriptModule)
