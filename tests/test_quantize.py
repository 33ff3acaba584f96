"""int8 inference (ceasr.models.quantize): what a quantized Linear computes, and that a recognizer keeps working."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ceasr.api import Recognizer
from ceasr.config import ExperimentConfig, ModelConfig
from ceasr.models.asr import build_model
from ceasr.models.quantize import int8_for_inference, is_int8
from ceasr.models.trace import is_traced
from ceasr.text.tokenizer import CharTokenizer


def _input_grid(x: torch.Tensor) -> torch.Tensor:
    """x rounded as dynamic quantization rounds activations on x86 (fbgemm): 128 levels (7 bits, "reduce_range",
    so that fbgemm's 16-bit intermediate sums cannot overflow) spanning [min(x, 0), max(x, 0)] with an integer
    zero point."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 127
    zero = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 127) - zero) * scale


def test_an_int8_linear_computes_with_int8_weights_and_7_bit_inputs():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    q = int8_for_inference(torch.nn.Sequential(lin))[0]
    x = torch.randn(5, 64)
    scale = float(lin.weight.abs().max()) / 127.5  # symmetric: the largest weight sits at the end of int8's range
    w = torch.clamp(torch.round(lin.weight / scale), -128, 127) * scale
    torch.testing.assert_close(q.weight().dequantize(), w, atol=1e-7, rtol=0)
    torch.testing.assert_close(q(x), _input_grid(x) @ w.T + lin.bias, atol=1e-5, rtol=1e-5)
    assert (q(x) - lin(x)).abs().max() > 1e-3  # it is not the float layer


def _recognizer():
    torch.manual_seed(0)
    tok = CharTokenizer.train(["go left", "stop", "turn on the lights"])
    cfg = ExperimentConfig(model=ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64,
                                             subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64))
    return Recognizer(build_model(cfg.model, cfg.features.n_mels, tok.vocab_size), cfg, tok)


def test_int8_recognizer_is_a_copy_close_to_float_and_traces_to_the_same_results():
    rec = _recognizer()
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    q = rec.int8()
    assert q.quantized and is_int8(q.model) and not is_int8(rec.model) and q.int8() is q
    assert not is_int8(q.model.decoder) and not is_int8(q.model.ctc)  # the encoding path only
    assert all(torch.equal(before[k], v) for k, v in rec.model.state_dict().items())  # the original is untouched
    feats, lens = torch.randn(2, 150, 80), torch.tensor([150, 97])
    with torch.inference_mode():
        ref = rec.model.ctc_log_probs(rec.model.encode(feats, lens)[0])
        got = q.model.ctc_log_probs(q.model.encode(feats, lens)[0])
    assert not torch.equal(got, ref)
    assert (got.exp() - ref.exp()).abs().max() < 0.05  # int8 rounding, not another model
    fast = q.traced()
    assert is_traced(fast.model) and fast.quantized
    waves = [0.1 * np.random.default_rng(0).standard_normal(n).astype(np.float32) for n in (8000, 20000)]
    assert q.with_decode(method="ctc_greedy").quantized
    for method in ("ctc_greedy", "attention_rescoring"):
        for x, y in zip(q.with_decode(method=method).transcribe_batch(waves),
                        fast.with_decode(method=method).transcribe_batch(waves)):
            assert x.text == y.text and x.tokens == y.tokens
            np.testing.assert_allclose(x.token_scores, y.token_scores, atol=1e-4)
    with pytest.raises(ValueError, match="quantize first"):
        rec.traced().int8()
