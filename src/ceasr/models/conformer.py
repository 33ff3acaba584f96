"""Conformer encoder (Gulati et al., 2020): macaron FFNs around self-attention and a convolution module.

Positions: rotary embeddings on queries and keys (RoFormer) instead of Transformer-XL relative encodings.
Both make attention scores depend on relative offsets, but rotary needs no (T, 2T) position-bias matrix and
no rel-shift, so attention stays one fused ``scaled_dot_product_attention`` call, and it adds no parameters.

Convolution module normalization: LayerNorm over channels, not BatchNorm. BatchNorm's statistics would mix
padded frames and other utterances of the batch into each frame (breaking padding invariance) and are noisy
with the tiny batches this trains with.
"""

from __future__ import annotations

import torch
from torch import nn

from ceasr.models.transformer import (
    FeedForward, MultiHeadAttention, fp32_under_cpu_autocast, lengths_to_mask, rotary_tables,
)


class ConvModule(nn.Module):
    """LN -> pointwise (D -> 2D) -> GLU -> depthwise conv (kernel k) -> LN -> Swish -> pointwise -> dropout."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel must be odd to keep frames aligned, got {kernel_size}")
        self.norm_in = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)  # a 1x1 conv on (B, T, D)
        self.glu = nn.GLU(dim=-1)
        # A (1, k) Conv2d rather than a Conv1d: the same depthwise convolution over time, but oneDNN runs
        # the 2-D form (forward + backward) about 2.5x faster on CPU.
        self.depthwise = nn.Conv2d(
            d_model, d_model, (1, kernel_size), padding=(0, kernel_size // 2), groups=d_model
        )
        self.norm_mid = nn.LayerNorm(d_model)
        self.act = nn.SiLU()
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), mask: (B, T) True at valid frames -> (B, T, D)."""
        h = self.glu(self.pointwise_in(self.norm_in(x)))  # (B, T, D)
        h = h * mask.unsqueeze(-1)  # padded frames must not reach real frames through the kernel
        h = fp32_under_cpu_autocast(self.depthwise, h.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)
        h = self.pointwise_out(self.act(self.norm_mid(h)))
        return self.drop(h)


class ConformerLayer(nn.Module):
    """x + FFN/2, x + MHSA, x + Conv, x + FFN/2, LayerNorm; each module is pre-normed."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, conv_kernel: int, dropout: float):
        super().__init__()
        self.norm_ff1 = nn.LayerNorm(d_model)
        self.ff1 = FeedForward(d_model, ff_dim, activation=nn.SiLU)
        self.norm_att = nn.LayerNorm(d_model)
        self.att = MultiHeadAttention(d_model, n_heads)
        self.conv = ConvModule(d_model, conv_kernel, dropout)
        self.norm_ff2 = nn.LayerNorm(d_model)
        self.ff2 = FeedForward(d_model, ff_dim, activation=nn.SiLU)
        self.norm_out = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        x = x + 0.5 * self.drop(self.ff1(self.norm_ff1(x)))
        h = self.norm_att(x)
        x = x + self.drop(self.att(h, h, key_mask=mask, rope=rope))
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.drop(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x)


class ConformerEncoder(nn.Module):
    """A stack of Conformer blocks over subsampled frames; positions come from rotary attention."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        layers: int,
        ff_dim: int,
        conv_kernel: int = 15,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.head_dim = d_model // n_heads
        if self.head_dim % 2:
            raise ValueError(f"rotary attention needs an even head size, got {d_model} / {n_heads}")
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, n_heads, ff_dim, conv_kernel, dropout) for _ in range(layers)
        )

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, tap: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """x: (B, T, D), x_lens: (B,) -> (B, T, D) with padded frames zeroed, and the same lengths.

        With ``tap`` = k > 0 a third tensor follows: the output of block k (B, T, D), padding zeroed (each block
        ends in a LayerNorm, so it is on the last block's scale; intermediate CTC reads it).
        """
        mask = lengths_to_mask(x_lens, x.size(1))  # (B, T)
        rope = rotary_tables(x.size(1), self.head_dim, x.device)  # shared by all layers
        x = self.drop(x)
        tapped = None
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, mask, rope)
            if i == tap:
                tapped = x * mask.unsqueeze(-1)
        out = x * mask.unsqueeze(-1)
        return (out, x_lens, tapped) if tap else (out, x_lens)
