"""Losses against closed forms (numpy), torch's reference implementations and brute-force CTC."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ceasr.losses import cross_entropy, ctc_loss, hybrid_loss, mse, rmse


def smoothed_targets(targets: np.ndarray, V: int, eps: float) -> np.ndarray:
    """P = (1 - eps) * onehot + eps / V, torch's label-smoothing convention."""
    return (1 - eps) * np.eye(V)[targets] + eps / V


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35])
def test_cross_entropy_equals_closed_form(eps):
    rng = np.random.default_rng(0)
    N, V = 7, 5
    z = rng.normal(size=(N, V)) * 3
    y = rng.integers(0, V, size=N)
    per_token = -(smoothed_targets(y, V, eps) * np_log_softmax(z)).sum(axis=1)  # H(P, Q) per row
    logits, targets = torch.tensor(z), torch.tensor(y)
    assert cross_entropy(logits, targets, eps).item() == pytest.approx(per_token.mean(), rel=1e-6)
    assert cross_entropy(logits, targets, eps, reduction="sum").item() == pytest.approx(per_token.sum(), rel=1e-6)
    np.testing.assert_allclose(cross_entropy(logits, targets, eps, reduction="none").numpy(), per_token, rtol=1e-6)


def test_hand_computed_case():
    # Two classes, logits (0, 0): Q = (1/2, 1/2), so H = log 2 whatever the smoothing.
    assert cross_entropy(torch.zeros(1, 2), torch.tensor([1]), 0.2).item() == pytest.approx(math.log(2))
    # Logits (log 3, 0): Q = (3/4, 1/4); target 1 with eps 0.5: P = (1/4, 3/4).
    loss = cross_entropy(torch.tensor([[math.log(3), 0.0]]), torch.tensor([1]), 0.5)
    assert loss.item() == pytest.approx(-(0.25 * math.log(0.75) + 0.75 * math.log(0.25)))


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch_with_padding(eps, reduction):
    torch.manual_seed(0)
    B, L, V = 3, 6, 11
    logits = torch.randn(B, L, V) * 2
    targets = torch.randint(0, V, (B, L))
    targets[0, 4:] = -1
    targets[2, 1:] = -1
    ours = cross_entropy(logits, targets, eps, ignore_index=-1, reduction=reduction)
    ref = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-1, label_smoothing=eps, reduction=reduction)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_gradient_is_softmax_minus_target_over_token_count():
    torch.manual_seed(1)
    N, V, eps = 6, 4, 0.1
    logits = torch.randn(N, V, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, -1, 2, -1, 1])
    cross_entropy(logits, targets, eps).backward()
    valid = targets >= 0
    P = torch.tensor(smoothed_targets(targets.clamp(min=0).numpy(), V, eps))
    expected = (logits.detach().softmax(-1) - P) / valid.sum()
    expected[~valid] = 0.0
    torch.testing.assert_close(logits.grad, expected.to(logits.grad.dtype), rtol=1e-5, atol=1e-6)


def test_ignored_positions_do_not_count():
    torch.manual_seed(2)
    logits = torch.randn(5, 7)
    targets = torch.tensor([1, 2, 3, 4, 5])
    padded_logits = torch.cat([logits, torch.randn(3, 7) * 100])
    padded_targets = torch.cat([targets, torch.full((3,), -1)])
    for reduction in ("mean", "sum"):
        a = cross_entropy(logits, targets, 0.1, reduction=reduction)
        b = cross_entropy(padded_logits, padded_targets, 0.1, reduction=reduction)
        assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert cross_entropy(logits, torch.full((5,), -1)).item() == 0.0  # nothing to average: 0, not NaN


def test_mse_and_rmse_match_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 9, 3)), rng.normal(size=(4, 9, 3))
    pa, pb = torch.tensor(a), torch.tensor(b)
    assert mse(pa, pb).item() == pytest.approx(((a - b) ** 2).mean())
    assert rmse(pa, pb).item() == pytest.approx(np.sqrt(((a - b) ** 2).mean()))
    lens = np.array([9, 2, 5, 1])
    sq = np.concatenate([((a[i, :n] - b[i, :n]) ** 2).ravel() for i, n in enumerate(lens)])
    assert mse(pa, pb, lengths=torch.tensor(lens)).item() == pytest.approx(sq.mean())
    assert rmse(pa, pb, lengths=torch.tensor(lens)).item() == pytest.approx(np.sqrt(sq.mean()))
    mask = torch.arange(9)[None, :] < torch.tensor(lens)[:, None]
    assert mse(pa, pb, mask=mask).item() == pytest.approx(sq.mean())


def brute_force_ctc(probs: np.ndarray, target: list[int], blank: int = 0) -> float:
    """-log of the summed probability of every length-T path over V symbols that collapses to ``target``."""
    T, V = probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        collapsed = [s for i, s in enumerate(path) if s != blank and (i == 0 or s != path[i - 1])]
        if collapsed == target:
            total += np.prod([probs[t, s] for t, s in enumerate(path)])
    return -math.log(total) if total > 0 else math.inf


def test_ctc_equals_brute_force_sum_over_alignments():
    torch.manual_seed(4)
    V = 3
    lens = [5, 4, 3]
    targets_list = [[1, 1], [2, 1], [2]]  # the repeat needs a blank between the two 1s
    log_probs = torch.randn(3, 5, V, dtype=torch.float64).log_softmax(-1)
    targets = torch.full((3, 2), -1)
    for i, t in enumerate(targets_list):
        targets[i, : len(t)] = torch.tensor(t)
    per_utt = ctc_loss(log_probs, torch.tensor(lens), targets, torch.tensor([2, 2, 1]), reduction="none")
    for i, (n, t) in enumerate(zip(lens, targets_list)):
        expected = brute_force_ctc(log_probs[i, :n].exp().numpy(), t)
        assert per_utt[i].item() == pytest.approx(expected, rel=1e-6)
    summed = ctc_loss(log_probs, torch.tensor(lens), targets, torch.tensor([2, 2, 1]))
    ref = F.ctc_loss(
        log_probs.transpose(0, 1), targets.clamp(min=0), torch.tensor(lens), torch.tensor([2, 2, 1]), reduction="sum"
    )
    assert summed.item() == pytest.approx(ref.item(), rel=1e-9)
    mean = ctc_loss(log_probs, torch.tensor(lens), targets, torch.tensor([2, 2, 1]), reduction="mean")
    assert mean.item() == pytest.approx(summed.item() / 3)  # per utterance, not torch's per-token mean


def test_infeasible_ctc_target_gives_zero_and_finite_gradients():
    log_probs = torch.randn(1, 4, 3).log_softmax(-1).requires_grad_()
    # "1 1 1" needs 5 frames (blanks between repeats); 4 frames cannot emit it.
    loss = ctc_loss(log_probs, torch.tensor([4]), torch.tensor([[1, 1, 1]]), torch.tensor([3]))
    assert brute_force_ctc(log_probs[0].detach().exp().numpy(), [1, 1, 1]) == math.inf
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(log_probs.grad).all()


def test_hybrid_weights():
    ctc, att = torch.tensor(4.0), torch.tensor(10.0)
    assert hybrid_loss(ctc, att, 1.0).item() == 4.0
    assert hybrid_loss(ctc, att, 0.0).item() == 10.0
    assert hybrid_loss(ctc, att, 0.3).item() == pytest.approx(0.3 * 4 + 0.7 * 10)
    assert hybrid_loss(ctc, None, 1.0).item() == 4.0
    assert hybrid_loss(None, att, 0.0).item() == 10.0
    assert hybrid_loss(ctc, torch.tensor(math.nan), 1.0).item() == 4.0  # an unused term never leaks in
    with pytest.raises(ValueError):
        hybrid_loss(ctc, att, 1.5)
    with pytest.raises(ValueError):
        hybrid_loss(ctc, None, 0.3)
