"""The language-ID head of bilingual models: targets from the tokens, multiple-instance pooling, its binary
cross-entropy against the closed form, the decoding constraint, saving and tracing."""

import dataclasses
import math

import pytest
import torch

from ceasr.config import DecodeConfig, ModelConfig
from ceasr.decode import MASKED_LOG_PROB, decode, language_bias
from ceasr.errors import ConfigError
from ceasr.features import GlobalCMVN
from ceasr.models import build_model
from ceasr.models.trace import traced_for_inference

N_MELS = 20
# blank, unk, sos/eos, two Chinese characters, two English pieces
LANGS = ("", "", "", "zh", "zh", "en", "en")
ZH_TOKENS, EN_TOKENS = (3, 4), (5, 6)
CFG = ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=48, conv_kernel=5, subsampling_channels=8,
                  decoder_layers=1, decoder_ff_dim=48, dropout=0.0, lid_weight=0.5)


def model(seed=0, **changes):
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CFG, **changes)
    return build_model(cfg, N_MELS, len(LANGS), normalize=GlobalCMVN(N_MELS), token_languages=LANGS).eval()


def test_targets_are_the_languages_of_the_target_tokens():
    m = model()
    ys = torch.tensor([[3, 5, -1], [6, -1, -1], [4, 3, -1], [1, -1, -1]])  # mixed, en, zh, unk only
    assert m.language_targets(ys).tolist() == [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]


def test_utterance_logits_are_the_largest_frame_logit_over_valid_frames():
    m = model()
    enc = torch.randn(3, 9, CFG.d_model)
    lens = torch.tensor([9, 4, 1])
    frames = m.lid(enc)
    want = torch.stack([frames[b, : int(n)].amax(dim=0) for b, n in enumerate(lens)])
    torch.testing.assert_close(m.language_logits(enc, lens), want)
    enc[1, 4:] = 1e3  # padding cannot raise an utterance's score
    torch.testing.assert_close(m.language_logits(enc, lens)[1], want[1])


def test_loss_adds_the_weighted_binary_cross_entropy_of_the_closed_form():
    with_head = model(lid_weight=0.5)
    without = model(lid_weight=0.0)  # the same weights: the head is made last
    without.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("lid.")})
    g = torch.Generator().manual_seed(1)
    feats, lens = torch.randn(2, 40, N_MELS, generator=g), torch.tensor([40, 30])
    ys, ys_lens = torch.tensor([[3, 5], [6, -1]]), torch.tensor([2, 1])
    loss, _ = with_head(feats, lens, ys, ys_lens)
    base, _ = without(feats, lens, ys, ys_lens)
    enc, enc_lens = with_head.encode(feats, lens)
    z = with_head.language_logits(enc, enc_lens).tolist()
    y = [[1, 1], [0, 1]]
    bce = -sum(t * math.log(1 / (1 + math.exp(-v))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-v)))
               for zs, ts in zip(z, y) for v, t in zip(zs, ts)) / 2
    assert loss.item() == pytest.approx(base.item() + 0.5 * bce, rel=1e-5)


@pytest.mark.parametrize("detach", [True, False])
def test_a_detached_head_leaves_the_recognizer_s_gradients_alone(detach):
    with_head, without = model(lid_detach=detach), model(lid_weight=0.0)
    without.load_state_dict({k: v for k, v in with_head.state_dict().items() if not k.startswith("lid.")})
    feats, lens = torch.randn(2, 40, N_MELS), torch.tensor([40, 30])
    ys, ys_lens = torch.tensor([[3, 5], [6, -1]]), torch.tensor([2, 1])
    for m in (with_head, without):
        m.train()
        m(feats, lens, ys, ys_lens)[0].backward()
    grads = dict(without.named_parameters())
    same = [torch.allclose(p.grad, grads[name].grad, atol=1e-6) for name, p in with_head.named_parameters()
            if not name.startswith("lid.")]
    assert all(same) == detach
    assert with_head.lid.weight.grad.abs().sum() > 0


def test_a_head_needs_token_languages():
    with pytest.raises(ConfigError, match="lid_weight"):
        build_model(CFG, N_MELS, len(LANGS), normalize=GlobalCMVN(N_MELS))
    with pytest.raises(ConfigError, match="lid_weight"):
        build_model(dataclasses.replace(CFG, lid_weight=-1.0), N_MELS, len(LANGS), token_languages=LANGS)


def _hearing(m, zh: float, en: float, ctc_prefers: int):
    """Make ``m``'s head hear Chinese and English with logits ``zh`` and ``en`` whatever the audio, and its CTC
    head emit ``ctc_prefers`` on every frame, then the other language's token second."""
    with torch.no_grad():
        m.lid.weight.zero_()
        m.lid.bias.copy_(torch.tensor([zh, en]))
        m.ctc.weight.zero_()
        bias = torch.zeros(len(LANGS))
        bias[ctc_prefers] = 5.0
        bias[3 if ctc_prefers in EN_TOKENS else 5] = 4.0
        m.ctc.bias.copy_(bias)
    return m


@pytest.mark.parametrize("method", ["ctc_greedy", "ctc_prefix_beam", "attention", "attention_rescoring"])
def test_decoding_keeps_to_the_languages_heard(method):
    m = _hearing(model(), zh=6.0, en=-6.0, ctc_prefers=5)  # hears Chinese only; CTC says an English piece
    feats, lens = torch.randn(1, 40, N_MELS), torch.tensor([40])
    cfg = DecodeConfig(method=method, beam_size=2, ctc_weight=0.5)
    constrained = decode(m, feats, lens, cfg)[0].tokens
    free = decode(m, feats, lens, dataclasses.replace(cfg, lid_threshold=0.0))[0].tokens
    assert 5 in free
    assert set(constrained) & set(ZH_TOKENS) and not set(constrained) & set(EN_TOKENS)


def test_bias_masks_only_the_languages_not_heard():
    m = model()
    enc, lens = torch.randn(3, 6, CFG.d_model), torch.tensor([6, 6, 0])
    with torch.no_grad():
        m.lid.weight.zero_()
    for zh, en, allowed in [(3.0, -3.0, {"", "zh"}), (-3.0, 3.0, {"", "en"}), (3.0, 3.0, {"", "zh", "en"}),
                            (-3.0, -2.0, {"", "en"})]:  # nothing heard: the likelier language stays
        with torch.no_grad():
            m.lid.bias.copy_(torch.tensor([zh, en]))
        bias = language_bias(m, enc, lens, 0.5)
        for i, lang in enumerate(LANGS):
            assert bias[0, i].item() == (0.0 if lang in allowed else MASKED_LOG_PROB)
        assert (bias[2] == 0).all()  # no frames: both languages equally (un)likely, nothing masked
    assert language_bias(m, enc, lens, 0.0) is None
    assert language_bias(model(lid_weight=0.0), enc, lens, 0.5) is None


def test_the_head_survives_saving_and_tracing(tmp_path):
    from safetensors.torch import load_file, save_file

    m = _hearing(model(), zh=-6.0, en=6.0, ctc_prefers=3)
    save_file(m.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = model(seed=5)
    loaded.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    feats, lens = torch.randn(2, 50, N_MELS), torch.tensor([50, 33])
    cfg = DecodeConfig(method="attention_rescoring", beam_size=2, ctc_weight=0.5)
    want = [h.tokens for h in decode(m, feats, lens, cfg)]
    assert all(set(t) & set(EN_TOKENS) and not set(t) & set(ZH_TOKENS) for t in want)
    assert [h.tokens for h in decode(loaded, feats, lens, cfg)] == want
    assert [h.tokens for h in decode(traced_for_inference(loaded, N_MELS), feats, lens, cfg)] == want
