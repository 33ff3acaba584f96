"""Training objectives as pure functions: label-smoothed cross-entropy, MSE/RMSE, CTC and the hybrid mix.

Conventions shared by ceasr: targets are int64 token ids padded with ``-1`` (the ignore index) and id 0 is
the CTC blank. Every function returns a scalar tensor that autograd can differentiate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs are computed in float32 (log-softmax and CTC sums lose too much in 16 bits)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    ignore_index: int = -1,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy H(P, Q) = -sum_v P(v) log Q(v) between a smoothed target P and Q = softmax(logits).

    P follows torch's convention: ``P = (1 - eps) * onehot(target) + eps / V`` (the uniform share also goes to
    the true class), so the result equals ``F.cross_entropy(..., label_smoothing=eps)``.

    Args:
        logits: (N, V) or (B, L, V) unnormalized scores.
        targets: (N,) or (B, L) int64 class ids; positions equal to ``ignore_index`` contribute nothing.
        label_smoothing: eps in [0, 1].
        reduction: "mean" (over non-ignored tokens; 0 when there are none), "sum", or "none" (per position,
            0 at ignored positions, same shape as ``targets``).
    """
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
    log_q = F.log_softmax(_full_precision(logits), dim=-1)  # (..., V)
    valid = targets != ignore_index  # (...)
    safe = targets.masked_fill(~valid, 0)
    nll = -log_q.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (...): -log Q(target)
    uniform = -log_q.mean(dim=-1)  # (...): -(1/V) sum_v log Q(v)
    per_token = ((1.0 - label_smoothing) * nll + label_smoothing * uniform) * valid
    if reduction == "none":
        return per_token
    total = per_token.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


def _mask_from(pred: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None) -> torch.Tensor:
    """A float mask broadcastable to ``pred``: 1 where an element counts, 0 elsewhere."""
    if mask is not None and lengths is not None:
        raise ValueError("give mask or lengths, not both")
    if lengths is not None:
        steps = torch.arange(pred.size(1), device=pred.device)
        mask = steps[None, :] < lengths[:, None]  # (B, T)
    if mask is None:
        return torch.ones_like(pred)
    while mask.dim() < pred.dim():
        mask = mask.unsqueeze(-1)  # (B, T) -> (B, T, 1, ...)
    return mask.to(pred.dtype).expand_as(pred)


def mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the elements that count.

    Args:
        pred, target: same shape, e.g. (B, T, F).
        mask: optional bool mask of shape ``pred.shape[:k]`` (trailing dims broadcast), True = counts.
        lengths: optional (B,) valid lengths along dim 1 (an alternative to ``mask``).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    weight = _mask_from(pred, mask, lengths)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1)


def rmse(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Root mean squared error: ``sqrt(mse(...))`` with the same masking arguments."""
    return mse(pred, target, mask=mask, lengths=lengths).sqrt()


def ctc_loss(
    log_probs: torch.Tensor,
    log_prob_lens: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
    blank: int = 0,
    reduction: str = "sum",
) -> torch.Tensor:
    """CTC negative log-likelihood -log sum_{paths collapsing to y} prod_t p_t(path_t), via F.ctc_loss.

    Utterances whose target cannot be aligned (too short an input) give 0 instead of inf
    (``zero_infinity=True``), so a stray bad utterance does not poison a batch.

    Args:
        log_probs: (B, T, V) log-softmax outputs.
        log_prob_lens: (B,) valid frames.
        targets: (B, L) token ids padded with -1.
        target_lens: (B,) valid tokens.
        reduction: "sum" over utterances, "mean" = sum / B (per utterance, *not* torch's per-token mean),
            or "none" (B,).
    """
    _check_reduction(reduction)
    per_utt = F.ctc_loss(
        _full_precision(log_probs).transpose(0, 1),  # (T, B, V) as torch expects
        targets.clamp(min=0),  # padding is never read but must be a valid id
        log_prob_lens,
        target_lens,
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )  # (B,)
    if reduction == "none":
        return per_utt
    total = per_utt.sum()
    return total if reduction == "sum" else total / max(per_utt.numel(), 1)


def hybrid_loss(
    ctc: torch.Tensor | None, att: torch.Tensor | None, ctc_weight: float
) -> torch.Tensor:
    """``ctc_weight * ctc + (1 - ctc_weight) * att``; weight 1 is CTC only, 0 attention only.

    At the end points the unused term may be None and is never touched (so a NaN there cannot leak in).
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    if ctc_weight == 1.0:
        if ctc is None:
            raise ValueError("ctc_weight is 1 but no CTC loss was given")
        return ctc
    if ctc_weight == 0.0:
        if att is None:
            raise ValueError("ctc_weight is 0 but no attention loss was given")
        return att
    if ctc is None or att is None:
        raise ValueError(f"ctc_weight {ctc_weight} needs both the CTC and the attention loss")
    return ctc_weight * ctc + (1.0 - ctc_weight) * att
