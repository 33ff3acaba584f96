"""Intermediate CTC: the tapped encoder block, the loss against one composed by hand from torch's CTC, and the
config checks."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ceasr.config import ModelConfig
from ceasr.errors import ConfigError
from ceasr.features import GlobalCMVN
from ceasr.models import build_model
from ceasr.models.transformer import lengths_to_mask, rotary_tables, sinusoidal_encoding

N_MELS, VOCAB = 20, 9
CFG = ModelConfig(d_model=32, n_heads=2, encoder_layers=3, ff_dim=48, conv_kernel=5, subsampling_channels=8,
                  decoder_layers=1, decoder_ff_dim=48, dropout=0.0, ctc_weight=0.4, interctc_weight=0.3,
                  interctc_layer=1)


def model(seed=0, **changes):
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(CFG, **changes), N_MELS, VOCAB, normalize=GlobalCMVN(N_MELS)).eval()


def batch():
    g = torch.Generator().manual_seed(3)
    feats, lens = torch.randn(3, 48, N_MELS, generator=g), torch.tensor([48, 40, 31])
    ys, ys_lens = torch.tensor([[3, 4, 5], [6, 3, -1], [8, -1, -1]]), torch.tensor([3, 2, 1])
    return feats, lens, ys, ys_lens


@pytest.mark.parametrize("encoder", ["conformer", "transformer"])
@pytest.mark.parametrize("tap", [1, 2, 3])
def test_the_tapped_output_is_that_block_s_output_and_the_last_is_unchanged(encoder, tap):
    m = model(encoder=encoder)
    x, lens = torch.randn(2, 11, CFG.d_model), torch.tensor([11, 7])
    out, out_lens, tapped = m.encoder(x, lens, tap)
    plain, _ = m.encoder(x, lens)
    torch.testing.assert_close(out, plain)
    mask = lengths_to_mask(lens, 11)
    h = x if encoder == "conformer" else x * m.encoder.scale + sinusoidal_encoding(11, CFG.d_model, x.device)
    for layer in m.encoder.layers[:tap]:  # the blocks by hand
        h = layer(h, mask, rotary_tables(11, CFG.d_model // CFG.n_heads, x.device)) if encoder == "conformer" \
            else layer(h, mask)
    if encoder == "transformer":
        h = m.encoder.norm(h)
    torch.testing.assert_close(tapped, h * mask.unsqueeze(-1))
    assert out_lens.tolist() == [11, 7]


def test_loss_mixes_the_two_ctc_terms_as_composed_from_torch_ctc():
    m = model()
    feats, lens, ys, ys_lens = batch()
    loss, stats = m(feats, lens, ys, ys_lens)
    x, x_lens = m.embed(m.normalize(feats, lens), lens)
    mask = lengths_to_mask(x_lens, x.size(1))
    rope = rotary_tables(x.size(1), CFG.d_model // CFG.n_heads, x.device)
    h1 = m.encoder.layers[0](x, mask, rope)  # block 1, the tap
    last = m.encoder.layers[2](m.encoder.layers[1](h1, mask, rope), mask, rope)

    def ctc(h):
        logp = F.log_softmax(m.ctc(h * mask.unsqueeze(-1)), dim=-1).transpose(0, 1)
        return F.ctc_loss(logp, ys.clamp(min=0), x_lens, ys_lens, blank=0, reduction="sum").item() / 3

    ctc_last, ctc_mid = ctc(last), ctc(h1)
    no_inter = model(interctc_weight=0.0)
    _, base = no_inter(feats, lens, ys, ys_lens)  # the same weights: intermediate CTC adds no parameters
    want = 0.4 * (0.7 * ctc_last + 0.3 * ctc_mid) + 0.6 * base["att"]
    assert stats["interctc"] == pytest.approx(ctc_mid, rel=1e-5)
    assert base["ctc"] == pytest.approx(ctc_last, rel=1e-5)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert set(m.state_dict()) == set(no_inter.state_dict())


def test_blocks_above_the_tap_see_only_the_last_term_scaled_by_one_minus_w():
    feats, lens, ys, ys_lens = batch()
    grads = []
    for w in (0.0, 0.5):
        m = model(interctc_weight=w, ctc_weight=1.0).train()  # CTC only: the loss is the CTC mix itself
        m(feats, lens, ys, ys_lens)[0].backward()
        grads.append({name: p.grad for name, p in m.named_parameters() if name.startswith("encoder.layers.")})
    for name, g in grads[0].items():
        scaled = torch.allclose(grads[1][name], 0.5 * g, atol=1e-6)
        assert scaled == (not name.startswith("encoder.layers.0.")), name  # block 1 also feeds the tap


def test_the_middle_block_by_default_and_bad_settings_are_named():
    assert build_model(dataclasses.replace(CFG, interctc_layer=0, encoder_layers=4), N_MELS, VOCAB).interctc_layer == 2
    assert build_model(dataclasses.replace(CFG, interctc_weight=0.0), N_MELS, VOCAB).interctc_layer == 0
    for bad in ({"interctc_layer": 3}, {"interctc_weight": 1.0}, {"interctc_weight": -0.1},
                {"encoder_layers": 1, "interctc_layer": 0}):
        with pytest.raises(ConfigError, match="interctc"):
            build_model(dataclasses.replace(CFG, **bad), N_MELS, VOCAB)
