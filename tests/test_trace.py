"""TorchScript-traced encoding (ceasr.models.trace): the eager model's outputs at every shape, shared weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ceasr.api import Recognizer
from ceasr.config import ExperimentConfig, ModelConfig
from ceasr.models.asr import build_model
from ceasr.models.trace import EXAMPLE_FRAMES, is_traced, traced_for_inference
from ceasr.text.tokenizer import CharTokenizer


def _model(**fields):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, encoder_layers=2, ff_dim=64, subsampling_channels=8,
                      decoder_layers=1, decoder_ff_dim=64, **fields)
    model = build_model(cfg, 80, 12).eval()
    with torch.no_grad():  # non-trivial normalization statistics, so the traced buffers matter
        model.normalize.mean.uniform_(-1, 1)
        model.normalize.istd.uniform_(0.5, 2)
    return model


@pytest.mark.parametrize("fields", [
    {}, {"encoder": "transformer"}, {"utterance_norm": "level"}, {"utterance_norm": "mean", "subsampling": 8},
])
def test_traced_encoding_equals_eager_at_other_batch_sizes_and_lengths(fields):
    model = _model(**fields)
    traced = traced_for_inference(model, 80)
    assert is_traced(traced) and not is_traced(model)
    torch.manual_seed(1)
    # Traced on one item of EXAMPLE_FRAMES; asked for three padded items, all of other lengths, and one item.
    for lens in ([EXAMPLE_FRAMES + 57, 90, 31], [EXAMPLE_FRAMES * 3], [23]):
        feats = torch.randn(len(lens), max(lens), 80)
        with torch.inference_mode():
            enc, enc_lens = model.encode(feats, torch.tensor(lens))
            t_enc, t_lens = traced.encode(feats, torch.tensor(lens))
        assert torch.equal(enc_lens, t_lens)
        torch.testing.assert_close(t_enc, enc, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", [False, True])
def test_traced_decoder_scores_other_numbers_and_lengths_of_sequences_as_the_eager_one(positions):
    model = _model(decoder_positions=positions)
    traced = traced_for_inference(model, 80)
    assert isinstance(traced.decoder.forward, torch.jit.ScriptModule) and hasattr(traced.decoder, "step")
    assert not isinstance(model.decoder.forward_text, torch.jit.ScriptFunction | torch.jit.ScriptModule)
    torch.manual_seed(2)
    # Traced on one memory shared by 8 sequences of 7 tokens; asked for 3 of 12, 1 of 2, and 5 with 5 memories.
    for n, length, mem_batch, frames in ((3, 12, 1, 31), (1, 2, 1, 80), (5, 4, 5, 17)):
        memory = torch.randn(mem_batch, frames, 32)
        mem_lens = torch.randint(frames // 2, frames + 1, (mem_batch,))
        ys = torch.randint(0, 12, (n, length))
        with torch.inference_mode():
            eager = model.decoder(memory, mem_lens, ys, None)
            fast = traced.decoder(memory, mem_lens, ys, torch.full((n,), length))
            from_text = traced.decoder.forward_text(memory, mem_lens, *model.decoder.text_states(ys))
        assert fast.shape == (n, length, 12)
        torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(from_text, eager, atol=1e-5, rtol=1e-5)


def test_traced_model_shares_the_weights_and_state_dict_names():
    model = _model()
    traced = traced_for_inference(model, 80)
    assert traced.state_dict().keys() == model.state_dict().keys()
    for name, p in model.state_dict().items():
        assert traced.state_dict()[name].data_ptr() == p.data_ptr(), name
    feats, lens = torch.randn(1, 120, 80), torch.tensor([120])
    with torch.no_grad():
        before = traced.encode(feats, lens)[0].clone()
        model.encoder.layers[0].ff1.net[0].weight.mul_(2.0)  # a change to the model shows in the trace
        after_traced, after_eager = traced.encode(feats, lens)[0], model.encode(feats, lens)[0]
    assert not torch.allclose(before, after_traced)
    torch.testing.assert_close(after_traced, after_eager, atol=1e-5, rtol=1e-5)


def test_traced_recognizer_transcribes_as_the_eager_one():
    torch.manual_seed(0)
    tok = CharTokenizer.train(["go left", "stop", "turn on the lights"])
    cfg = ExperimentConfig(model=ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64,
                                             subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64))
    rec = Recognizer(build_model(cfg.model, cfg.features.n_mels, tok.vocab_size), cfg, tok)
    traced = rec.traced()
    assert is_traced(traced.model) and traced.traced() is traced and not is_traced(rec.model)
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (8000, 20000, 3000)]
    for method in ("ctc_greedy", "attention_rescoring", "attention"):  # attention: the decoder's eager step
        a, b = rec.with_decode(method=method), traced.with_decode(method=method)
        for x, y in zip(a.transcribe_batch(waves), b.transcribe_batch(waves)):
            assert x.text == y.text and x.tokens == y.tokens
            np.testing.assert_allclose(x.token_scores, y.token_scores, atol=1e-4)
