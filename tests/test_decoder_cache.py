"""Incremental decoding: cached key/value steps of the TransformerDecoder against full-prefix recomputation."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from ceasr.config import ModelConfig
from ceasr.decode.beam import attention_nbest
from ceasr.models.asr import build_model
from ceasr.models.transformer import TransformerDecoder

VOCAB, D = 13, 16


def _decoder(layers: int = 2, seed: int = 0) -> TransformerDecoder:
    torch.manual_seed(seed)
    return TransformerDecoder(VOCAB, D, n_heads=2, layers=layers, ff_dim=32, dropout=0.1).eval()


@pytest.mark.parametrize("layers", [1, 2])
def test_step_logits_equal_full_forward_at_every_position(layers):
    dec = _decoder(layers)
    memory, lens = torch.randn(3, 7, D), torch.tensor([7, 4, 1])  # padded memory rows
    ys = torch.randint(0, VOCAB, (3, 6))
    with torch.inference_mode():
        full = dec(memory, lens, ys)  # (3, 6, V)
        state = dec.start(memory, lens)
        for i in range(ys.shape[1]):
            logits, state = dec.step(state, ys[:, i])
            torch.testing.assert_close(logits, full[:, i], atol=1e-5, rtol=1e-5)
    assert state.length == ys.shape[1]


def test_forward_with_one_shared_memory_equals_the_memory_repeated_per_row():
    dec = _decoder()
    memory = torch.randn(1, 7, D)
    ys = torch.randint(0, VOCAB, (4, 5))
    with torch.inference_mode():
        for length in (7, 3):  # also a padded memory: frames past the length are masked in every row
            repeated = dec(memory.repeat(4, 1, 1).clone(), torch.full((4,), length), ys)
            shared = dec(memory, torch.tensor([length]), ys)
            torch.testing.assert_close(shared, repeated, atol=1e-6, rtol=1e-6)


def test_select_with_shared_memory_equals_recompute_of_reordered_prefixes():
    dec = _decoder()
    memory, lens = torch.randn(1, 5, D), torch.tensor([5])
    with torch.inference_mode():
        state = dec.start(memory, lens)
        _, state = dec.step(state, torch.tensor([2]))
        state = state.select(torch.tensor([0, 0, 0]))  # one prefix grows into three hypotheses
        _, state = dec.step(state, torch.tensor([3, 4, 5]))
        state = state.select(torch.tensor([2, 0]))  # keep hypotheses 2 and 0, reordered
        logits, _ = dec.step(state, torch.tensor([6, 7]))
        prefixes = torch.tensor([[2, 5, 6], [2, 3, 7]])
        full = dec(memory.expand(2, -1, -1), lens.expand(2), prefixes)
    torch.testing.assert_close(logits, full[:, -1], atol=1e-5, rtol=1e-5)


def test_select_with_per_hypothesis_memory_follows_the_index():
    dec = _decoder(seed=1)
    memory, lens = torch.randn(3, 6, D), torch.tensor([6, 3, 5])
    ys = torch.randint(0, VOCAB, (3, 2))
    index = torch.tensor([2, 0, 2])
    with torch.inference_mode():
        state = dec.start(memory, lens)
        for i in range(2):
            _, state = dec.step(state, ys[:, i])
        logits, _ = dec.step(state.select(index), torch.tensor([1, 2, 3]))
        prefixes = torch.cat([ys[index], torch.tensor([[1], [2], [3]])], dim=1)
        full = dec(memory[index], lens[index], prefixes)
    torch.testing.assert_close(logits, full[:, -1], atol=1e-5, rtol=1e-5)


class _WholePrefixOnly:
    """The same decoder seen through its full-prefix call only, so beam search reruns it every step."""

    def __init__(self, decoder):
        self.decoder = decoder

    def __call__(self, *args):
        return self.decoder(*args)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_beam_search_with_cache_equals_whole_prefix_search(ctc_weight):
    cfg = ModelConfig(d_model=D, n_heads=2, encoder_layers=1, ff_dim=32, subsampling_channels=4,
                      decoder_layers=2, decoder_ff_dim=32)
    torch.manual_seed(3)
    model = build_model(cfg, n_mels=8, vocab_size=VOCAB).eval()
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    feats, lens = torch.randn(2, 60, 8), torch.tensor([60, 41])
    with torch.inference_mode():
        enc, enc_lens = model.encode(feats, lens)
        cached = attention_nbest(model, enc, enc_lens, beam_size=3, ctc_weight=ctc_weight, max_len_ratio=0.5)
        assert not calls  # the incremental path never ran the full-prefix forward
        plain = SimpleNamespace(decoder=_WholePrefixOnly(model.decoder), sos_id=model.sos_id,
                                eos_id=model.eos_id, ctc_log_probs=model.ctc_log_probs)
        reference = attention_nbest(plain, enc, enc_lens, beam_size=3, ctc_weight=ctc_weight, max_len_ratio=0.5)
    assert calls
    for got, want in zip(cached, reference):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


def test_memory_positions_equal_the_plain_decoder_on_a_memory_with_sinusoids_added():
    """``memory_positions`` adds Vaswani et al.'s sin/cos of each frame index to the memory (computed here
    from the formula, not from ``sinusoidal_encoding``), in both the whole-sequence and the cached path."""
    torch.manual_seed(3)
    plain = TransformerDecoder(VOCAB, D, n_heads=2, layers=2, ff_dim=32, dropout=0.0).eval()
    positioned = TransformerDecoder(VOCAB, D, n_heads=2, layers=2, ff_dim=32, dropout=0.0,
                                    memory_positions=True).eval()
    positioned.load_state_dict(plain.state_dict())
    memory, lens = torch.randn(2, 9, D), torch.tensor([9, 5])
    t = torch.arange(9.0)[:, None]
    i = torch.arange(0, D, 2, dtype=torch.float32)[None, :]
    pe = torch.zeros(9, D)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(t / 10000 ** (i / D)), torch.cos(t / 10000 ** (i / D))
    ys = torch.randint(0, VOCAB, (2, 4))
    with torch.inference_mode():
        expected = plain(memory + pe, lens, ys)
        torch.testing.assert_close(positioned(memory, lens, ys), expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(plain(memory, lens, ys), expected, atol=1e-3)  # the positions change the output
        state = positioned.start(memory, lens)
        for k in range(ys.shape[1]):
            logits, state = positioned.step(state, ys[:, k])
            torch.testing.assert_close(logits, expected[:, k], atol=1e-5, rtol=1e-5)


def test_build_model_passes_decoder_positions_through():
    cfg = ModelConfig(d_model=16, n_heads=2, encoder_layers=1, ff_dim=32, subsampling_channels=8,
                      decoder_layers=1, decoder_ff_dim=32, decoder_positions=True)
    assert build_model(cfg, n_mels=20, vocab_size=VOCAB).decoder.memory_positions
    off = dataclasses.replace(cfg, decoder_positions=False)
    assert not build_model(off, n_mels=20, vocab_size=VOCAB).decoder.memory_positions
