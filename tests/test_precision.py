"""bf16 training (``train.precision``): autocast reaches the matmuls, fp32 stays where it must (weights,
gradients, losses, attention, the depthwise convolution), and the loss and gradients agree with fp32 within
bfloat16's rounding."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from ddp_worker import tiny_config
from test_models import batch, tiny

from ceasr.config import TrainConfig
from ceasr.errors import ConfigError
from ceasr.models.transformer import fp32_under_cpu_autocast
from ceasr.train.optim import autocast, resolve_precision
from ceasr.train.prepare import check_train_config


def test_autocast_context_by_name():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(ConfigError, match=r"train.precision: unknown 'fp16'; known: fp32, bf16, auto"):
        autocast("fp16")


def test_auto_is_bf16_exactly_where_the_cpu_has_it(monkeypatch):
    for caps, want in (({"avx512_bf16": True}, "bf16"), ({"amx_bf16": True, "avx512_bf16": False}, "bf16"),
                       ({"avx512_bf16": False, "avx2": True}, "fp32"), ({}, "fp32")):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        assert resolve_precision("auto") == want
        a = torch.randn(2, 2)
        with autocast("auto"):
            assert (a @ a).dtype == (torch.bfloat16 if want == "bf16" else torch.float32)
        assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"


def test_training_config_rejects_an_unknown_precision():
    cfg = tiny_config()
    check_train_config(cfg)
    with pytest.raises(ConfigError, match="train.precision"):
        check_train_config(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="half")))
    assert TrainConfig().precision == "fp32"


def test_attention_runs_in_fp32_under_autocast():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 8, generator=g) for _ in range(3))
    reference = F.scaled_dot_product_attention(q, k, v)
    with autocast("bf16"):
        y = fp32_under_cpu_autocast(F.scaled_dot_product_attention, q.bfloat16(), k.bfloat16(), v.bfloat16())
        plain = F.scaled_dot_product_attention(q, k, v)  # what autocast alone would do
    assert y.dtype == torch.float32 and plain.dtype == torch.bfloat16
    # fp32 arithmetic on bf16-rounded inputs: far closer to the fp32 reference than bf16's own 2^-8 step.
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(),
                                                                 v.bfloat16().float()), rtol=1e-6, atol=1e-6)
    assert (y - reference).abs().max() < 0.05
    assert fp32_under_cpu_autocast(F.scaled_dot_product_attention, q, k, v).equal(reference)  # no autocast: as is


@pytest.mark.parametrize("encoder", ["conformer", "transformer"])
def test_bf16_loss_and_gradients_match_fp32(encoder):
    model = tiny(encoder, dropout=0.0)
    feats, feat_lens, ys, ys_lens = batch()
    loss32, _ = model(feats, feat_lens, ys, ys_lens)
    grads32 = torch.autograd.grad(loss32, list(model.parameters()), allow_unused=True)
    with autocast("bf16"):
        loss16, stats = model(feats, feat_lens, ys, ys_lens)
    grads16 = torch.autograd.grad(loss16, list(model.parameters()), allow_unused=True)
    assert loss16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-2)
    assert loss16.item() != loss32.item()  # bf16 really ran
    flat32 = torch.cat([g.flatten() for g in grads32 if g is not None])
    flat16 = torch.cat([g.flatten() for g in grads16 if g is not None])
    assert flat16.dtype == torch.float32
    cosine = F.cosine_similarity(flat16, flat32, dim=0).item()
    assert cosine > 0.99, cosine
    assert set(stats) >= {"loss", "ctc", "att"}


def test_bf16_trains_a_tiny_model_as_fp32_does():
    """50 Adam steps on a tiny batch (test_models' overfitting test): bf16 overfits it as fp32 does."""
    for precision in ("fp32", "bf16"):
        model = tiny(dropout=0.0, label_smoothing=0.0, ctc_weight=0.3)
        feats, feat_lens, ys, ys_lens = batch(lens=(60, 52, 44, 40), ys_lens=(6, 5, 4, 4), seed=1)
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        first = None
        for _ in range(50):
            with autocast(precision):
                loss, stats = model(feats, feat_lens, ys, ys_lens)
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = first if first is not None else stats["loss"]
        assert stats["loss"] < 0.1 * first and stats["att_acc"] > 0.9, (precision, first, stats)


def test_depthwise_convolution_sees_fp32_under_autocast():
    """The Conformer's depthwise convolution runs in fp32 (oneDNN's bf16 kernel can take minutes to generate);
    the pointwise layers around it run in bf16."""
    model = tiny("conformer", dropout=0.0)
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.groups > 1 or name.endswith("pointwise_in"):
            module.register_forward_hook(lambda m, args, out, name=name: seen.update({name: out.dtype}) and None)
    feats, feat_lens, ys, ys_lens = batch()
    with autocast("bf16"):
        model(feats, feat_lens, ys, ys_lens)
    depthwise = {n: d for n, d in seen.items() if n.endswith("depthwise")}
    pointwise = {n: d for n, d in seen.items() if n.endswith("pointwise_in")}
    assert depthwise and set(depthwise.values()) == {torch.float32}
    assert pointwise and set(pointwise.values()) == {torch.bfloat16}
