"""Checkpoints: exact round trip (weights, optimizer, scheduler, sampler, RNG), averaging, atomicity, pruning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ceasr.config import TrainConfig
from ceasr.train.checkpoint import (
    average_checkpoints,
    best_checkpoint,
    checkpoint_dir,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    mark_best,
    prune,
    save_checkpoint,
)
from ceasr.train.optim import build_optimizer, build_scheduler


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def trained(seed: int = 0, steps: int = 3):
    model = make_model(seed)
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, warmup_steps=5)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched, cfg


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched, cfg = trained()
    path = save_checkpoint(tmp_path, 3, 1, model, opt, sched, {"epoch": 1, "position": 7}, {"bad_steps": 2})
    assert path == tmp_path / "checkpoints" / "step-00000003"
    after_save = draws()

    fresh = make_model(seed=123)
    fresh_opt = build_optimizer(fresh, cfg)
    fresh_sched = build_scheduler(fresh_opt, cfg)
    state = load_checkpoint(path, fresh, fresh_opt, fresh_sched)

    for (k, a), (k2, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert fresh.state_dict()["1.num_batches_tracked"].item() == 3
    for pa, pb in zip(opt.state.values(), fresh_opt.state.values(), strict=True):
        for key in pa:
            assert torch.equal(torch.as_tensor(pa[key]), torch.as_tensor(pb[key]))
    assert fresh_sched.last_epoch == 3 and fresh_sched.get_last_lr() == sched.get_last_lr()
    assert [g["lr"] for g in fresh_opt.param_groups] == [g["lr"] for g in opt.param_groups]
    assert state["step"] == 3 and state["epoch"] == 1
    assert state["sampler"] == {"epoch": 1, "position": 7} and state["extra"] == {"bad_steps": 2}
    got = draws()
    assert got[0] == after_save[0] and got[1] == after_save[1] and torch.equal(got[2], after_save[2])

    # One more identical step on both gives identical weights: the optimizer moments came back too.
    x = torch.randn(8, 3)
    for m, o in ((model, opt), (fresh, fresh_opt)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_average_of_three_is_hand_mean(tmp_path):
    paths = []
    for i, fill in enumerate([1.0, 2.0, 6.0]):
        model = make_model()
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(fill)
        model[1].num_batches_tracked.fill_(10 * i + 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        paths.append(save_checkpoint(tmp_path, i + 1, 0, model, opt, None, {}))
    avg = average_checkpoints(paths)
    assert torch.equal(avg["0.weight"], torch.full((4, 3), 3.0))
    assert torch.equal(avg["2.bias"], torch.full((2,), 3.0))
    assert torch.equal(avg["1.running_var"], torch.ones(4))  # untouched buffer: mean of equal values
    assert avg["1.num_batches_tracked"].item() == 21 and avg["1.num_batches_tracked"].dtype == torch.int64


def test_crash_mid_write_leaves_nothing_visible(tmp_path):
    model, opt, sched, _ = trained()
    # A lambda cannot be pickled: torch.save raises after model.safetensors is already written.
    with pytest.raises(Exception):
        save_checkpoint(tmp_path, 5, 0, model, opt, sched, {}, {"oops": lambda: 0})
    assert latest_checkpoint(tmp_path) is None
    assert list(checkpoint_dir(tmp_path).iterdir()) == []  # the temporary folder is gone too


def test_failed_rewrite_keeps_the_old_checkpoint(tmp_path):
    model, opt, sched, _ = trained()
    good = save_checkpoint(tmp_path, 5, 0, model, opt, sched, {"epoch": 0, "position": 1})
    with pytest.raises(Exception):
        save_checkpoint(tmp_path, 5, 1, model, opt, sched, {}, {"oops": lambda: 0})
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(good, make_model(), restore_rng=False)["sampler"] == {"epoch": 0, "position": 1}
    # A successful rewrite of the same step replaces it.
    save_checkpoint(tmp_path, 5, 1, model, opt, sched, {"epoch": 1, "position": 0})
    assert load_checkpoint(good, make_model(), restore_rng=False)["epoch"] == 1


def test_latest_ignores_leftover_temp_dirs(tmp_path):
    model, opt, sched, _ = trained()
    save_checkpoint(tmp_path, 2, 0, model, opt, sched, {})
    save_checkpoint(tmp_path, 10, 0, model, opt, sched, {})
    (checkpoint_dir(tmp_path) / ".step-00000020.abc.tmp").mkdir()  # as a killed process would leave it
    assert latest_checkpoint(tmp_path).name == "step-00000010"


def test_prune_keeps_last_and_best(tmp_path):
    model, opt, sched, _ = trained()
    paths = [save_checkpoint(tmp_path, s, 0, model, opt, sched, {}) for s in (1, 2, 3, 4, 5)]
    mark_best(tmp_path, paths[1], "dev_loss", 0.5)
    removed = prune(tmp_path, keep_last=2)
    assert sorted(removed) == [paths[0], paths[2]]
    assert list_checkpoints(tmp_path) == [paths[1], paths[3], paths[4]]
    record = {"checkpoint": "step-00000002", "metric": "dev_loss", "value": 0.5}
    assert best_checkpoint(tmp_path) == (paths[1], record)
