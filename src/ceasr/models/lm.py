"""A causal Transformer language model over token ids (the recognizer's tokenizer).

Its blocks are the recognizer's Transformer encoder layers run with a causal mask (no cross-attention).
Sequences are ``sos w1 .. wn`` in and ``w1 .. wn eos`` out; padding sits at the end, so the causal mask alone
keeps valid positions away from it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ceasr.models.transformer import TransformerEncoderLayer, sinusoidal_encoding


class TransformerLM(nn.Module):
    """Token embedding + sinusoidal positions, causal pre-LN blocks, output projection tied to the embedding."""

    def __init__(
        self, vocab_size: int, d_model: int, n_heads: int, layers: int, ff_dim: int, dropout: float = 0.1
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.out.weight = self.embed.weight  # tied: fewer parameters for a small text corpus
        # Tied weights start small (std d^-1/2): the input scale sqrt(d) makes embeddings unit-sized, and the
        # first logits stay near 0 instead of ~sqrt(d) (an initial loss of ~30 nats that takes long to undo).
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)

    def forward(self, ys_in: torch.Tensor) -> torch.Tensor:
        """ys_in: (B, L) ids -> logits (B, L, V); position i sees ys_in[:, :i+1] only."""
        length, d_model = ys_in.size(1), self.embed.embedding_dim
        x = self.drop(self.embed(ys_in) * self.scale + sinusoidal_encoding(length, d_model, ys_in.device))
        for block in self.blocks:
            x = block(x, None, is_causal=True)
        return self.out(self.norm(x))

    def loss(self, ys_in: torch.Tensor, ys_out: torch.Tensor, ignore_id: int = -1) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy of ys_out (B, L) (``ignore_id`` = padding) given ys_in (B, L); and the count
        of predicted tokens."""
        logits = self(ys_in)  # (B, L, V)
        total = F.cross_entropy(logits.flatten(0, 1), ys_out.flatten(), ignore_index=ignore_id, reduction="sum")
        return total, int((ys_out != ignore_id).sum())
