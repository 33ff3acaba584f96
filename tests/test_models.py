"""Models: shapes and lengths, padding invariance (batched == per item), causality, losses, overfitting,
safetensors round trip, and the analytic FLOP count against torch's FlopCounterMode."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ceasr.features import GlobalCMVN
from ceasr.config import ModelConfig
from ceasr.errors import CeasrError, ConfigError
from ceasr.models import ENCODERS, Conv2dSubsampling, build_model, count_flops, min_frames, subsampled_lengths
from ceasr.models.transformer import apply_rotary, rotary_tables, sinusoidal_encoding

N_MELS, VOCAB = 20, 13
TINY = ModelConfig(
    d_model=32, n_heads=2, encoder_layers=2, ff_dim=48, conv_kernel=5, subsampling_channels=8,
    decoder_layers=2, decoder_ff_dim=48, dropout=0.1,
)


def tiny(encoder="conformer", seed=0, **changes) -> nn.Module:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TINY, encoder=encoder, **changes)
    return build_model(cfg, N_MELS, VOCAB, normalize=GlobalCMVN(N_MELS))


def batch(lens=(50, 31, 12), ys_lens=(5, 3, 1), seed=0):
    """Features padded with large noise (not zeros), so leaking padding would show; targets padded -1."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lens), max(lens), N_MELS, generator=g)
    for i, n in enumerate(lens):
        feats[i, n:] = 50 * torch.randn(max(lens) - n, N_MELS, generator=g)
    ys = torch.full((len(ys_lens), max(ys_lens)), -1)
    for i, n in enumerate(ys_lens):
        ys[i, :n] = torch.randint(3, VOCAB, (n,), generator=g)
    return feats, torch.tensor(lens), ys, torch.tensor(ys_lens)


def test_subsampling_length_formula_matches_real_convolutions():
    sub = Conv2dSubsampling(N_MELS, 16, 4)
    for T in [*range(7, 40), 99, 100, 101, 102, 299, 300]:
        y, y_lens = sub(torch.randn(2, T, N_MELS), torch.tensor([T, 7]))
        assert y.shape == (2, ((T - 1) // 2 - 1) // 2, 16)
        assert y_lens.tolist() == [y.shape[1], 1]
    assert subsampled_lengths(torch.tensor([0, 3, 6, 7, 10, 11])).tolist() == [0, 0, 0, 1, 1, 2]


def test_subsampling_8x_length_formula_and_receptive_field():
    sub = Conv2dSubsampling(N_MELS, 16, 4, factor=8)
    assert sub.min_frames == min_frames(8) == 15
    for T in [*range(15, 50), 299, 300]:
        y, y_lens = sub(torch.randn(2, T, N_MELS), torch.tensor([T, 15]))
        assert y.shape == (2, (((T - 1) // 2 - 1) // 2 - 1) // 2, 16)
        assert y_lens.tolist() == [y.shape[1], 1]
    assert subsampled_lengths(torch.tensor([14, 15, 22, 23]), 8).tolist() == [0, 1, 1, 2]
    # Output frame t sees input frames 8t .. 8t + 14 only: changing frame 8 + 15 leaves frames 0 and 1 alone.
    x = torch.randn(1, 64, N_MELS)
    y0, _ = sub(x, torch.tensor([64]))
    x[:, 8 + 15] += 1.0
    y1, _ = sub(x, torch.tensor([64]))
    assert torch.equal(y0[:, :2], y1[:, :2]) and not torch.equal(y0[:, 2], y1[:, 2])
    with pytest.raises(ValueError, match="subsampling factor"):
        Conv2dSubsampling(N_MELS, 16, 4, factor=6)


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_shapes_and_lengths(encoder):
    model = tiny(encoder)
    feats, feat_lens, ys, ys_lens = batch()
    enc, enc_lens = model.encode(feats, feat_lens)
    assert enc.shape == (3, subsampled_lengths(50), TINY.d_model)
    assert enc_lens.tolist() == [subsampled_lengths(n) for n in (50, 31, 12)]
    assert model.ctc_log_probs(enc).shape == (3, enc.shape[1], VOCAB)
    torch.testing.assert_close(model.ctc_log_probs(enc).exp().sum(-1), torch.ones(3, enc.shape[1]))
    ys_in, ys_out = model.decoder_io(ys, ys_lens)
    assert model.decoder(enc, enc_lens, ys_in, ys_lens + 1).shape == (3, ys.shape[1] + 1, VOCAB)


def test_decoder_io_adds_sos_and_eos():
    model = tiny()
    ys_in, ys_out = model.decoder_io(torch.tensor([[5, 6, 7], [8, -1, -1]]), torch.tensor([3, 1]))
    assert ys_in.tolist() == [[2, 5, 6, 7], [2, 8, 2, 2]]
    assert ys_out.tolist() == [[5, 6, 7, 2], [8, 2, -1, -1]]


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_padded_batch_equals_items_alone(encoder):
    model = tiny(encoder).eval()
    feats, feat_lens, ys, ys_lens = batch()
    ys_in, _ = model.decoder_io(ys, ys_lens)
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, feat_lens)
        logits = model.decoder(enc, enc_lens, ys_in, ys_lens + 1)
        assert (enc[1, enc_lens[1]:] == 0).all()  # padded frames are zeroed
        for i, (n, m) in enumerate(zip(feat_lens.tolist(), ys_lens.tolist())):
            one, one_lens = model.encode(feats[i : i + 1, :n], feat_lens[i : i + 1])
            t = one_lens.item()
            torch.testing.assert_close(enc[i, :t], one[0], atol=1e-5, rtol=0)
            one_logits = model.decoder(one, one_lens, ys_in[i : i + 1, : m + 1], ys_lens[i : i + 1] + 1)
            torch.testing.assert_close(logits[i, : m + 1], one_logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_batch_gradient_is_the_sum_of_per_item_gradients(encoder):
    # What multi-process training relies on: with norm=1 the loss is a plain sum over utterances.
    model = tiny(encoder, dropout=0.0)
    feats, feat_lens, ys, ys_lens = batch()
    model(feats, feat_lens, ys, ys_lens, norm=1.0)[0].backward()
    batched = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    for i, (n, m) in enumerate(zip(feat_lens.tolist(), ys_lens.tolist())):
        model(feats[i : i + 1, :n], feat_lens[i : i + 1], ys[i : i + 1, :m], ys_lens[i : i + 1], norm=1.0)[0].backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(batched[k], p.grad, rtol=1e-4, atol=1e-5, msg=k)


def test_decoder_is_causal():
    model = tiny().eval()
    feats, feat_lens, _, _ = batch()
    ys_in = torch.randint(3, VOCAB, (3, 6))
    changed = ys_in.clone()
    changed[:, 4] = (changed[:, 4] - 3 + 1) % (VOCAB - 3) + 3
    with torch.no_grad():
        enc, enc_lens = model.encode(feats, feat_lens)
        a = model.decoder(enc, enc_lens, ys_in, torch.full((3,), 6))
        b = model.decoder(enc, enc_lens, changed, torch.full((3,), 6))
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-6, rtol=0)
    assert (a[:, 4:] - b[:, 4:]).abs().amax(dim=(1, 2)).min() > 1e-4


def test_rotary_scores_depend_only_on_offsets():
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    cos, sin = (t.double() for t in rotary_tables(40, 8))

    def at(x, pos):
        return apply_rotary(x, (cos[pos : pos + 1], sin[pos : pos + 1]))

    def score(m, n):
        return (at(q, m) * at(k, n)).sum()

    assert score(3, 10).item() == pytest.approx(score(20, 27).item(), rel=1e-6)  # float32 angle tables
    assert score(3, 10).item() != pytest.approx(score(3, 11).item(), rel=1e-3)
    assert at(q, 5).norm().item() == pytest.approx(q.norm().item())


def test_sinusoidal_encoding_closed_form():
    pe = sinusoidal_encoding(7, 6)
    pos, i = 5, 2  # channels 2i, 2i+1 hold sin, cos of pos / 10000^(2i/d)
    angle = pos / 10000 ** (2 * i / 6)
    assert pe[pos, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(angle)).item(), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(torch.cos(torch.tensor(angle)).item(), abs=1e-6)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3, 1.0])
def test_forward_gives_finite_loss_and_gradients(ctc_weight):
    model = tiny(ctc_weight=ctc_weight)
    feats, feat_lens, ys, ys_lens = batch()
    loss, stats = model(feats, feat_lens, ys, ys_lens)
    assert torch.isfinite(loss) and set(stats) == {"loss", "ctc", "att", "att_acc"}
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert stats["loss"] == pytest.approx(ctc_weight * stats["ctc"] + (1 - ctc_weight) * stats["att"], rel=1e-5)
    assert (stats["ctc"] > 0) == (ctc_weight > 0) and (stats["att"] > 0) == (ctc_weight < 1)


def test_loss_terms_equal_reference_computations():
    model = tiny(ctc_weight=0.3, label_smoothing=0.1).eval()
    feats, feat_lens, ys, ys_lens = batch()
    with torch.no_grad():
        loss, stats = model(feats, feat_lens, ys, ys_lens)
        halved, _ = model(feats, feat_lens, ys, ys_lens, norm=6.0)
        enc, enc_lens = model.encode(feats, feat_lens)
        ctc = F.ctc_loss(model.ctc_log_probs(enc).transpose(0, 1), ys.clamp(min=0), enc_lens, ys_lens, reduction="sum")
        ys_in, ys_out = model.decoder_io(ys, ys_lens)
        logits = model.decoder(enc, enc_lens, ys_in, ys_lens + 1)
        att = F.cross_entropy(logits.transpose(1, 2), ys_out, ignore_index=-1, label_smoothing=0.1, reduction="sum")
    assert stats["ctc"] == pytest.approx(ctc.item() / 3, rel=1e-5)  # sums per utterance, B = 3
    assert stats["att"] == pytest.approx(att.item() / 3, rel=1e-5)
    assert halved.item() == pytest.approx(loss.item() / 2, rel=1e-6)  # norm replaces the local B
    hits = ((logits.argmax(-1) == ys_out) & (ys_out >= 0)).sum().item()
    assert stats["att_acc"] == pytest.approx(hits / (ys_lens + 1).sum().item())


def test_ctc_only_model_without_decoder():
    model = tiny(decoder_layers=0, ctc_weight=1.0)
    assert model.decoder is None
    feats, feat_lens, ys, ys_lens = batch()
    loss, stats = model(feats, feat_lens, ys, ys_lens)
    loss.backward()
    assert torch.isfinite(loss) and stats["att"] == 0.0 and stats["loss"] == stats["ctc"]


def test_too_short_inputs():
    model = tiny()
    feats, feat_lens, ys, ys_lens = batch(lens=(30, 5), ys_lens=(2, 1))  # 5 frames -> 0 encoder frames
    loss, _ = model(feats, feat_lens, ys, ys_lens)
    assert torch.isfinite(loss)
    with pytest.raises(CeasrError, match="shorter than the 7 frames"):
        model.encode(torch.randn(1, 6, N_MELS), torch.tensor([6]))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"encoder": "lstm"}, "model.encoder"),
        ({"n_heads": 3}, "model.d_model"),
        ({"decoder_layers": 0, "ctc_weight": 0.3}, "model.ctc_weight"),
        ({"ctc_weight": 1.5}, "model.ctc_weight"),
        ({"conv_kernel": 4}, "model.conv_kernel"),
        ({"subsampling": 6}, "model.subsampling"),
    ],
)
def test_bad_configs_raise_config_errors(changes, field):
    with pytest.raises(ConfigError, match=field):
        build_model(dataclasses.replace(TINY, **changes), N_MELS, VOCAB, normalize=GlobalCMVN(N_MELS))


def test_tiny_model_overfits_a_tiny_batch():
    model = tiny(dropout=0.0, label_smoothing=0.0, ctc_weight=0.3)
    feats, feat_lens, ys, ys_lens = batch(lens=(60, 52, 44, 40), ys_lens=(6, 5, 4, 4), seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(50):
        loss, stats = model(feats, feat_lens, ys, ys_lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else stats["loss"]
    assert stats["loss"] < 0.1 * first and stats["att_acc"] > 0.9


def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    model = tiny("conformer", seed=0).eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    other = tiny("conformer", seed=1).eval()
    other.load_state_dict(load_file(tmp_path / "model.safetensors"))
    feats, feat_lens, ys, ys_lens = batch()
    with torch.no_grad():
        assert torch.equal(model(feats, feat_lens, ys, ys_lens)[0], other(feats, feat_lens, ys, ys_lens)[0])
        assert torch.equal(model.encode(feats, feat_lens)[0], other.encode(feats, feat_lens)[0])


def _cpu_sdpa_flops(query, key, value, *args, **kwargs):
    """FlopCounterMode has no formula for the CPU flash kernel; use torch's own SDPA formula on its shapes."""
    return sdpa_flop_count(query, key, value)


@pytest.mark.parametrize("encoder, ctc_weight", [("conformer", 0.3), ("transformer", 0.3), ("conformer", 1.0)])
def test_count_flops_matches_flop_counter(encoder, ctc_weight):
    cfg = dataclasses.replace(TINY, encoder=encoder, ctc_weight=ctc_weight, subsampling=8 if ctc_weight == 1.0 else 4)
    model = build_model(cfg, N_MELS, VOCAB, normalize=GlobalCMVN(N_MELS))
    B, T, L = 2, 64, 7
    feats, feat_lens, ys, ys_lens = batch(lens=(T, T), ys_lens=(L, L))
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(feats, feat_lens, ys, ys_lens)
    measured = counter.get_total_flops()
    ours = count_flops(cfg, N_MELS, VOCAB, T, L, B, backward=False)
    assert ours == pytest.approx(measured, rel=1e-3)  # exact in practice; MFU needs ~10 %
    assert count_flops(cfg, N_MELS, VOCAB, T, L, B) == 3 * ours
