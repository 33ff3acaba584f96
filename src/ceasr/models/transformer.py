"""Transformer pieces: masks, positional encodings, attention, and the pre-LayerNorm encoder and decoder.

Attention runs through ``F.scaled_dot_product_attention`` (one fused kernel on CPU). The blocks do not drop
attention weights: on CPU, dropout inside SDPA leaves the fused kernel and doubles attention's cost; dropout
is applied to each block's residual branch instead. Masks are boolean with True meaning "may attend";
padding sits at the end of each sequence, so a causal mask alone keeps the decoder's valid positions away
from its padding. A query whose keys are all masked (an utterance with no frames) gets zeros, not NaN.
For search, the decoder also runs one token at a time (``start``/``step``) on cached keys and values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def sinusoidal_encoding(length: int, d_model: int, device=None) -> torch.Tensor:
    """(length, d_model) absolute sinusoidal positions (Vaswani et al.): sin on even, cos on odd channels."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )  # (D/2,)
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe


def rotary_tables(length: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (length, head_dim // 2) for rotary position embeddings (RoFormer)."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.arange(length, device=device).float()[:, None] * inv_freq[None, :]  # (T, Dh/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate channel pairs (first half, second half) of x (B, H, T, Dh) by position-dependent angles."""
    cos, sin = (t.to(x.dtype) for t in rope)  # (T, Dh/2) each
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def fp32_under_cpu_autocast(fn, *xs: torch.Tensor) -> torch.Tensor:
    """``fn(*xs)``, in fp32 when CPU autocast is on (``train.precision=bf16``), else as is.

    For the few operators where torch 2.13's CPU bf16 path loses: attention's backward is ~3x slower in bf16
    than in fp32, and oneDNN's bf16 depthwise convolution can spend minutes generating a kernel for some
    shapes on 2 threads. Both are a small part of the FLOPs."""
    if xs[0].device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return fn(*(x.float() for x in xs))
    return fn(*xs)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value projections (self- or cross-attention).

    ``dropout`` drops attention weights while training (off by default, see the module docstring).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """memory: (B, S, D) -> keys and values (B, H, S, Dh) each, as :meth:`attend` takes them."""
        k, v = self.kv_proj(memory).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) -> projected queries (B, H, T, Dh), as :meth:`attend_queries` takes them."""
        return self._heads(self.q_proj(x))

    def attend(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """x: (B, T, D) queries over projected keys/values (B, H, S, Dh) -> (B, T, D); key_mask: (B, S).
        Keys, values and mask of batch 1 are shared by all B queries."""
        return self._attend(self.queries(x), k, v, key_mask, is_causal)

    def attend_queries(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`attend` with the queries already projected: q (B, H, T, Dh) -> (B, T, D)."""
        return self._attend(q, k, v, key_mask, False)

    def _attend(self, q, k, v, key_mask, is_causal) -> torch.Tensor:
        if k.size(0) == 1 and q.size(0) > 1:  # views: SDPA wants the batch sizes of queries and keys to agree
            k, v = k.expand(q.size(0), -1, -1, -1), v.expand(q.size(0), -1, -1, -1)
            key_mask = None if key_mask is None else key_mask.expand(q.size(0), -1)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
        p = self.dropout if self.training else 0.0
        y = fp32_under_cpu_autocast(
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal),
            q, k, v,
        )  # (B, H, T, Dh)
        return self.out_proj(y.transpose(1, 2).flatten(2))

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, T, D) queries; memory: (B, S, D) keys/values; key_mask: (B, S) True = attend -> (B, T, D).

        A memory (and key_mask) of batch 1 is shared by all B queries: projected once, then broadcast.
        ``rope`` (cos, sin tables) rotates queries and keys so scores depend on relative offsets only.
        """
        q = self._heads(self.q_proj(x))
        k, v = self.keys_values(memory)
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        return self._attend(q, k, v, key_mask, is_causal)


class FeedForward(nn.Module):
    """Position-wise Linear -> activation -> Linear.

    No dropout on the (4x wider) hidden layer: on CPU a dropout mask costs ~10x the multiply it guards, and
    the blocks' residual dropout still regularizes.
    """

    def __init__(self, d_model: int, ff_dim: int, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, ff_dim), activation(), nn.Linear(ff_dim, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerEncoderLayer(nn.Module):
    """Pre-LN block: x + MHSA(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_att = nn.LayerNorm(d_model)
        self.att = MultiHeadAttention(d_model, n_heads)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool = False) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) True at real frames, or None; is_causal: each step sees only the past."""
        h = self.norm_att(x)
        x = x + self.drop(self.att(h, h, key_mask=mask, is_causal=is_causal))
        return x + self.drop(self.ff(self.norm_ff(x)))


class TransformerEncoder(nn.Module):
    """Scaled input + sinusoidal positions, pre-LN Transformer blocks, final LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, layers: int, ff_dim: int, dropout: float = 0.1):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, n_heads, ff_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, tap: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """x: (B, T, D), x_lens: (B,) -> (B, T, D) with padded frames zeroed, and the same lengths.

        With ``tap`` = k > 0 a third tensor follows: the output of block k through the final LayerNorm (as
        ESPnet normalizes intermediate CTC's input in pre-LN encoders), padding zeroed.
        """
        mask = lengths_to_mask(x_lens, x.size(1))  # (B, T)
        x = self.drop(x * self.scale + sinusoidal_encoding(x.size(1), x.size(2), x.device))
        tapped = None
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, mask)
            if i == tap:
                tapped = self.norm(x) * mask.unsqueeze(-1)
        out = self.norm(x) * mask.unsqueeze(-1)
        return (out, x_lens, tapped) if tap else (out, x_lens)


class TransformerDecoderLayer(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the encoder output, FFN."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_self = nn.LayerNorm(d_model)
        self.self_att = MultiHeadAttention(d_model, n_heads)
        self.norm_src = nn.LayerNorm(d_model)
        self.src_att = MultiHeadAttention(d_model, n_heads)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, ff_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        return self.audio_part(self.text_part(y), memory, memory_mask)

    def text_part(self, y: torch.Tensor) -> torch.Tensor:
        """The block up to the audio: y (N, L, D) + causal self-attention."""
        h = self.norm_self(y)
        return y + self.drop(self.self_att(h, h, is_causal=True))

    def audio_part(
        self, y: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, q: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The rest of the block after :meth:`text_part`: cross-attention to memory (B, S, D) with mask (B, S),
        then the FFN. ``q``: the cross-attention's queries of y if already projected (N, H, L, Dh)."""
        q = self.src_att.queries(self.norm_src(y)) if q is None else q
        k, v = self.src_att.keys_values(memory)
        y = y + self.drop(self.src_att.attend_queries(q, k, v, key_mask=memory_mask))
        return y + self.drop(self.ff(self.norm_ff(y)))

    def step(
        self, y: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor], memory_kv, memory_mask: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new position y: (N, 1, D) after ``past`` self-attention keys/values (N, H, L, Dh) each.

        Returns the block's output (N, 1, D) and the keys/values with this position appended (N, H, L+1, Dh).
        The new position may attend to every cached one, so no causal mask is needed.
        """
        h = self.norm_self(y)
        k, v = self.self_att.keys_values(h)  # (N, H, 1, Dh) each
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = y + self.drop(self.self_att.attend(h, k, v))
        y = y + self.drop(self.src_att.attend(self.norm_src(y), *memory_kv, key_mask=memory_mask))
        return y + self.drop(self.ff(self.norm_ff(y))), (k, v)


@dataclass(frozen=True)
class DecoderState:
    """What incremental decoding keeps between steps, for N hypotheses (see :meth:`TransformerDecoder.step`).

    ``memory_kv`` and ``memory_mask`` have batch N, or 1 when every hypothesis decodes the same utterance
    (beam search): computed once per utterance instead of once per hypothesis and step.
    """

    self_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer, keys and values (N, H, L, Dh)
    memory_kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer, keys and values (N or 1, H, S, Dh)
    memory_mask: torch.Tensor  # (N or 1, S) True at valid encoder frames
    length: int  # L, the positions fed so far

    def select(self, index: torch.Tensor) -> "DecoderState":
        """The state of hypotheses ``index`` (N',), in that order (repeats allowed)."""
        self_kv = tuple((k[index], v[index]) for k, v in self.self_kv)
        if self.memory_mask.size(0) == 1:  # shared by every hypothesis
            return dataclasses.replace(self, self_kv=self_kv)
        memory_kv = tuple((k[index], v[index]) for k, v in self.memory_kv)
        return DecoderState(self_kv, memory_kv, self.memory_mask[index], self.length)


class TransformerDecoder(nn.Module):
    """Autoregressive attention decoder: token embedding + positions, pre-LN blocks, output projection."""

    def __init__(
        self, vocab_size: int, d_model: int, n_heads: int, layers: int, ff_dim: int, dropout: float = 0.1,
        memory_positions: bool = False,
    ):
        super().__init__()
        self.memory_positions = memory_positions  # add sinusoidal positions to the memory (its frames' times)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.scale = math.sqrt(d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, n_heads, ff_dim, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(
        self,
        memory: torch.Tensor,
        memory_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """memory: (B, T, D), memory_lens: (B,), ys_in: (B, L) valid ids (pad with any valid id, e.g. eos)
        -> logits (B, L, V). Position i sees ys_in[:, :i+1] only; ``ys_in_lens`` is accepted for symmetry but
        not needed, since padding comes after every valid position. A memory of batch 1 (with lengths (1,))
        is shared by all B sequences, its keys and values projected once (scoring many texts of one
        utterance)."""
        return self.forward_text(memory, memory_lens, *self.text_states(ys_in))

    def text_states(self, ys_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the first block computes from the tokens alone, before any audio: ys_in (N, L) -> its
        self-attention output (N, L, D) and its cross-attention queries (N, H, L, Dh). A fixed set of texts
        (voice commands) needs them once, whatever the utterance."""
        length, d_model = ys_in.size(1), self.embed.embedding_dim
        y = self.drop(self.embed(ys_in) * self.scale + sinusoidal_encoding(length, d_model, ys_in.device))
        first = self.layers[0]
        y = first.text_part(y)
        return y, first.src_att.queries(first.norm_src(y))

    def forward_text(
        self, memory: torch.Tensor, memory_lens: torch.Tensor, y: torch.Tensor, q: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` from :meth:`text_states` ``y``, ``q`` -> logits (N, L, V)."""
        memory, memory_mask = self.positioned(memory), lengths_to_mask(memory_lens, memory.size(1))  # (B, T)
        y = self.layers[0].audio_part(y, memory, memory_mask, q)
        for layer in self.layers[1:]:
            y = layer(y, memory, memory_mask)
        return self.out(self.norm(y))  # (B, L, V)

    def positioned(self, memory: torch.Tensor) -> torch.Tensor:
        """The memory (B, S, D) the blocks attend to: with ``memory_positions``, plus each frame's sinusoidal
        position."""
        if not self.memory_positions:
            return memory
        return memory + sinusoidal_encoding(memory.size(1), memory.size(2), memory.device).to(memory.dtype)

    def start(self, memory: torch.Tensor, memory_lens: torch.Tensor) -> DecoderState:
        """The state before any token, for memory (B, S, D) with lengths (B,): B hypotheses (B = 1 may be
        shared by any number of hypotheses after :meth:`DecoderState.select`)."""
        memory, memory_mask = self.positioned(memory), lengths_to_mask(memory_lens, memory.size(1))  # (B, S)
        memory_kv = tuple(layer.src_att.keys_values(memory) for layer in self.layers)
        h, dh = self.layers[0].self_att.n_heads, self.embed.embedding_dim // self.layers[0].self_att.n_heads
        empty = memory.new_zeros(memory.size(0), h, 0, dh)
        return DecoderState(tuple((empty, empty) for _ in self.layers), memory_kv, memory_mask, 0)

    def step(self, state: DecoderState, tokens: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """Feed one token per hypothesis, tokens: (N,) at position ``state.length`` -> next-token logits (N, V)
        and the state including it. Equals ``forward`` on the whole prefix, at its last position."""
        length = state.length
        d_model = self.embed.embedding_dim
        pos = sinusoidal_encoding(length + 1, d_model, tokens.device)[length]  # (D,)
        y = self.drop(self.embed(tokens[:, None]) * self.scale + pos)  # (N, 1, D)
        self_kv = []
        for layer, past, memory_kv in zip(self.layers, state.self_kv, state.memory_kv):
            y, kv = layer.step(y, past, memory_kv, state.memory_mask)  # a batch-1 memory is shared (_attend)
            self_kv.append(kv)
        logits = self.out(self.norm(y[:, 0]))  # (N, V)
        return logits, dataclasses.replace(state, self_kv=tuple(self_kv), length=length + 1)
