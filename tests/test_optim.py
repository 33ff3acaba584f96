"""Optimizers against their update rules written out by hand; schedules against their closed forms."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from ceasr.config import TrainConfig
from ceasr.errors import ConfigError
from ceasr.train.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler, fusable, param_groups

A = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)  # curvatures of f(x) = 0.5 * sum(A * x**2)
X0 = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
LR, MU, B1, B2, EPS = 0.1, 0.9, 0.9, 0.98, 1e-8


class Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.x = torch.nn.Parameter(X0.clone())  # 1-D: no weight decay

    def loss(self):
        return 0.5 * (A * self.x**2).sum()


def run(name: str, steps: int = 4) -> list[torch.Tensor]:
    cfg = TrainConfig(optimizer=name, lr=LR, momentum=MU, betas=(B1, B2), weight_decay=0.5)
    model = Quadratic()
    opt = build_optimizer(model, cfg)
    xs = []
    for _ in range(steps):
        opt.zero_grad()
        model.loss().backward()
        opt.step()
        xs.append(model.x.detach().clone())
    return xs


def by_hand(name: str, steps: int = 4) -> list[torch.Tensor]:
    """The textbook update rules, gradient g = A * x."""
    x, buf, m, v = X0.clone(), None, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    xs = []
    for t in range(1, steps + 1):
        g = A * x
        if name == "sgd":
            x = x - LR * g
        elif name in ("momentum", "nesterov"):
            buf = g.clone() if buf is None else MU * buf + g
            x = x - LR * (g + MU * buf if name == "nesterov" else buf)
        elif name in ("adam", "adamw"):
            m = B1 * m + (1 - B1) * g
            v = B2 * v + (1 - B2) * g * g
            x = x - LR * (m / (1 - B1**t)) / ((v / (1 - B2**t)).sqrt() + EPS)
        elif name == "rmsprop":
            v = B2 * v + (1 - B2) * g * g
            x = x - LR * g / (v.sqrt() + EPS)
        xs.append(x)
    return xs


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_first_steps_match_update_rule(name):
    for got, want in zip(run(name), by_hand(name), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_registry_is_complete():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"}
    assert set(SCHEDULERS) == {"constant", "noam", "cosine"}


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)  # weight 2-D, bias 1-D
        self.norm = torch.nn.LayerNorm(4)  # 1-D gain and bias
        self.emb = torch.nn.Embedding(5, 4)  # 2-D
        self.conv = torch.nn.Conv1d(4, 4, 3)  # 3-D weight, 1-D bias
        self.frozen = torch.nn.Parameter(torch.ones(2, 2), requires_grad=False)


def test_decay_groups_hold_exactly_matrices():
    model = Tiny()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.01))
    decay, plain = opt.param_groups
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model.lin.weight, model.emb.weight, model.conv.weight])
    assert ids(plain["params"]) == ids(
        [model.lin.bias, model.norm.weight, model.norm.bias, model.conv.bias]
    )
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_fused_update_equals_torch_per_parameter_loop(name):
    """The fused kernels ceasr picks on CPU step a multi-tensor model as torch's per-parameter loop does."""
    cfg = TrainConfig(optimizer=name, lr=0.01, momentum=MU, betas=(B1, B2), weight_decay=0.1)
    fused_model = Tiny()
    loop_model = Tiny()
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, cfg)
    assert fused.defaults["fused"] is True
    kinds = inspect.signature(type(fused)).parameters
    options = {k: v for k, v in fused.defaults.items() if k in kinds} | {"fused": None, "foreach": False}
    loop = type(fused)(param_groups(loop_model, cfg.weight_decay), **options)
    x = torch.randn(2, 4, 3)
    for _ in range(3):
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            opt.zero_grad()
            model.conv(model.norm(model.lin(x)).transpose(1, 2)).square().mean().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_not_fusable_without_float_parameters():
    assert fusable([{"params": [torch.nn.Parameter(torch.zeros(2))]}]) is True
    assert fusable([{"params": [torch.zeros(2, dtype=torch.int64)]}]) is None
    assert fusable([{"params": []}]) is None
    assert build_optimizer(Tiny(), TrainConfig(optimizer="rmsprop")).defaults.get("fused") is None


def test_sgd_decays_matrix_not_bias():
    lin = torch.nn.Linear(2, 2).double()
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    opt = build_optimizer(lin, TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.5))
    lin(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
    opt.step()
    # d/dW sum(W x + b) = 1 for x = ones; d/db = 1. L2 decay adds wd * W to the matrix gradient only.
    torch.testing.assert_close(lin.weight.detach(), w0 - 0.1 * (1.0 + 0.5 * w0))
    torch.testing.assert_close(lin.bias.detach(), b0 - 0.1 * 1.0)


def lrs(scheduler: str, steps: int, **kw) -> list[float]:
    """The learning rate each of the first ``steps`` optimizer steps uses (index 0 is step 1)."""
    cfg = dataclasses.replace(TrainConfig(optimizer="sgd", lr=2.0, scheduler=scheduler), **kw)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg.lr)
    sched = build_scheduler(opt, cfg)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_with_warmup():
    got = lrs("constant", 7, warmup_steps=4)
    assert got == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0])
    assert lrs("constant", 3, warmup_steps=0) == pytest.approx([2.0, 2.0, 2.0])


def test_noam():
    got = lrs("noam", 16, warmup_steps=4)
    assert got[0] == pytest.approx(2.0 * 1 / 4)
    assert got[2] == pytest.approx(2.0 * 3 / 4)
    assert got[3] == pytest.approx(2.0)  # the peak, at step = warmup
    assert got[8] == pytest.approx(2.0 * math.sqrt(4 / 9))
    assert got[15] == pytest.approx(1.0)  # 2 * sqrt(4 / 16)


def test_cosine():
    got = lrs("cosine", 14, warmup_steps=4, max_steps=12)
    assert got[1] == pytest.approx(1.0)  # warmup: 2 * 2/4
    assert got[3] == pytest.approx(2.0)
    assert got[5] == pytest.approx(1.0 + math.cos(math.pi * 2 / 8))  # step 6: 2 * 0.5 * (1 + cos(pi * 2/8))
    assert got[7] == pytest.approx(1.0)  # halfway
    assert got[11] == pytest.approx(0.0, abs=1e-12)
    assert got[13] == pytest.approx(0.0, abs=1e-12)  # stays at 0 after the end


def test_cosine_needs_total():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match="max_steps"):
        build_scheduler(opt, TrainConfig(scheduler="cosine", max_steps=0))
    build_scheduler(opt, TrainConfig(scheduler="cosine", max_steps=0), total_steps=10)


def test_unknown_names_list_known():
    with pytest.raises(ConfigError, match=r"train.optimizer: unknown 'lbfgs'; known: sgd, momentum, nesterov"):
        build_optimizer(Tiny(), TrainConfig(optimizer="lbfgs"))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match=r"unknown 'step'; known: constant, noam, cosine"):
        build_scheduler(opt, TrainConfig(scheduler="step"))


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_decay_l2_vs_decoupled(name):
    w = torch.nn.Parameter(X0.clone().unsqueeze(0))  # (1, 3): a matrix, so it is decayed
    model = torch.nn.Module()
    model.w = w
    wd = 0.5
    opt = build_optimizer(model, TrainConfig(optimizer=name, lr=LR, betas=(B1, B2), weight_decay=wd))
    (0.5 * (A * w**2).sum()).backward()
    opt.step()
    g, x0 = A * X0, X0.unsqueeze(0)
    # Adam's first step is g_hat / (|g_hat| + eps): bias correction cancels the moment averaging.
    if name == "adam":
        g_hat = g + wd * x0  # L2: decay joins the gradient
        want = x0 - LR * g_hat / (g_hat.abs() + EPS)
    else:
        want = x0 * (1 - LR * wd) - LR * g / (g.abs() + EPS)  # decoupled
    torch.testing.assert_close(w.detach(), want, rtol=1e-12, atol=1e-12)
