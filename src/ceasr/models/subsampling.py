"""Front end: 4x or 8x time subsampling of filterbank frames by two or three strided 2-D convolutions."""

from __future__ import annotations

import torch
from torch import nn

FACTORS = (4, 8)


def subsampled_lengths(lengths: torch.Tensor | int, factor: int = 4) -> torch.Tensor | int:
    """Frames left after log2(factor) unpadded 3x3 stride-2 convolutions: ``((T - 1) // 2 - 1) // 2`` for 4.

    Each convolution maps T to ``(T - 3) // 2 + 1 = (T - 1) // 2``. Inputs shorter than
    :func:`min_frames` give 0 (clamped, so the result is never negative).
    """
    out = lengths
    for _ in range(n_convs(factor)):
        out = (out - 1) // 2
    return out.clamp(min=0) if isinstance(out, torch.Tensor) else max(out, 0)


def min_frames(factor: int = 4) -> int:
    """The shortest input that yields one output frame: 7 for 4x, 15 for 8x."""
    return 2 ** (n_convs(factor) + 1) - 1


def n_convs(factor: int) -> int:
    """How many stride-2 convolutions make ``factor``: 2 for 4x, 3 for 8x."""
    if factor not in FACTORS:
        raise ValueError(f"subsampling factor must be one of {FACTORS}, got {factor}")
    return factor.bit_length() - 1


class Conv2dSubsampling(nn.Module):
    """Conv2d(3x3, /2) + ReLU, log2(factor) times, then a Linear from channels x reduced mel bins to ``d_model``.

    The convolutions are unpadded, so output frame t sees input frames ``factor·t .. factor·t + min_frames - 1``
    only; every valid output frame is computed from valid input frames and padding never leaks in.
    """

    def __init__(self, n_mels: int, d_model: int, channels: int, factor: int = 4):
        super().__init__()
        self.factor, self.min_frames = factor, min_frames(factor)
        layers: list[nn.Module] = []
        for i in range(n_convs(factor)):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, kernel_size=3, stride=2), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * subsampled_lengths(n_mels, factor), d_model)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, F) features, x_lens: (B,) -> y: (B, T', D), y_lens: (B,), T' = subsampled_lengths(T)."""
        # (B, 1, T, F) with channels-last strides (a view, no copy): oneDNN then keeps the convolutions and
        # their backward in channels-last layout, ~1.7x faster on CPU than NCHW (no layout copies of the
        # largest activation). A plain unsqueeze(1) would not do: a one-channel tensor's layout is ambiguous
        # and defaults to NCHW.
        y = self.conv(x.unsqueeze(-1).permute(0, 3, 1, 2))  # (B, C, T', F'), channels-last in memory
        b, c, t, f = y.shape
        y = self.out(y.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return y, subsampled_lengths(x_lens, self.factor)

