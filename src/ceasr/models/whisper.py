"""Whisper: a pre-norm Transformer encoder over a log-mel spectrogram and a Transformer decoder over text.

Parameter names follow OpenAI's checkpoints (``encoder.blocks.0.attn.query.weight``, ...), so an OpenAI
``.pt`` state dict loads as is; :mod:`ceasr.whisper.convert` maps the Hugging Face and CTranslate2 names onto
these. The model rebuilds from :class:`WhisperConfig` alone (OpenAI's ``dims``), stored next to the weights.

Shapes: B batch, M mel bins, F mel frames (2 x the encoder frames), T encoder frames (``n_audio_ctx`` for
a 30 s window; fewer for a shorter window, which takes the first T positional encodings), L text tokens,
D width, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ceasr.whisper.config import WhisperConfig

__all__ = ["KVCache", "Whisper", "WhisperConfig", "sinusoids"]


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """(length, channels) fixed positional encodings: sines in the first half, cosines in the second."""
    log_step = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_step * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


@dataclass
class KVCache:
    """Decoder state kept between steps: per layer the self-attention keys/values so far (B, H, l, Dh) and
    the cross-attention keys/values of the encoder output (B, H, T, Dh), computed once per utterance."""

    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        first = self.self_kv[0] if self.self_kv else None
        return 0 if first is None else first[0].size(2)

    def select(self, index: torch.Tensor) -> "KVCache":
        """Reorder (or repeat) the batch rows, e.g. to follow the surviving hypotheses of a beam.

        Cross-attention keys/values of a single utterance (batch 1) stay as they are: every row attends to
        the same audio (see :meth:`MultiHeadAttention.forward`), so a beam never copies them."""
        pick = lambda kv: None if kv is None else (kv[0][index], kv[1][index])  # noqa: E731
        shared = lambda kv: kv if kv is None or kv[0].size(0) == 1 else pick(kv)  # noqa: E731
        return KVCache([pick(kv) for kv in self.self_kv], [shared(kv) for kv in self.cross_kv])


class MultiHeadAttention(nn.Module):
    """Attention with OpenAI's layout: ``key`` has no bias (a key bias cancels in the softmax)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, H, n, Dh)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, H, n, Dh) of ``x`` (B, n, D)."""
        return self._split(self.key(x)), self._split(self.value(x))

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        causal: bool = False,
    ) -> torch.Tensor:
        """``x`` (B, n, D) attends to keys/values ``kv`` (B, H, m, Dh); returns (B, n, D).

        ``causal`` masks later keys (the last ``n`` keys are ``x``'s own positions). Padding needs no mask:
        text is padded on the right, so a causal query never sees it, and audio is never padded. Keys/values
        of batch 1 are shared by all B rows of ``x`` (a beam over one utterance): the rows' queries are then
        stacked as one sequence, the same attention without B copies of the keys.
        """
        q = self._split(self.query(x))
        k, v = kv
        b, h, n, dh = q.shape
        if k.size(0) == 1 and b > 1 and not causal:
            y = F.scaled_dot_product_attention(q.transpose(0, 1).reshape(1, h, b * n, dh), k, v)
            return self.out(y.view(h, b, n, dh).permute(1, 2, 0, 3).flatten(2))
        mask = None
        m = k.size(2)
        if causal and n > 1:
            mask = torch.ones(n, m, dtype=torch.bool, device=x.device).tril(diagonal=m - n)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, Dh)
        return self.out(y.transpose(1, 2).flatten(2))


class ResidualBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention to the encoder output, then a GELU MLP."""

    def __init__(self, d: int, heads: int, cross: bool):
        super().__init__()
        self.attn = MultiHeadAttention(d, heads)
        self.attn_ln = nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, heads) if cross else None
        self.cross_attn_ln = nn.LayerNorm(d) if cross else None
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.mlp_ln = nn.LayerNorm(d)

    def forward(
        self,
        x: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        cross_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (B, n, D) -> (B, n, D) and the self-attention keys/values including ``x``'s."""
        h = self.attn_ln(x)
        k, v = self.attn.project_kv(h)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        x = x + self.attn(h, (k, v), causal=causal)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), cross_kv)
        x = x + self.mlp(self.mlp_ln(x))
        return x, (k, v)


class AudioEncoder(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        d = cfg.n_audio_state
        self.conv1 = nn.Conv1d(cfg.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(cfg.n_audio_ctx, d))
        self.blocks = nn.ModuleList(ResidualBlock(d, cfg.n_audio_head, cross=False) for _ in range(cfg.n_audio_layer))
        self.ln_post = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` (B, M, F) with F = 2 * T, T <= n_audio_ctx -> (B, T, D)."""
        return self.finish(self.lower(mel, len(self.blocks)), len(self.blocks))

    def lower(self, mel: torch.Tensor, stop: int) -> torch.Tensor:
        """The hidden states (B, T, D) after the stem and blocks ``[0, stop)``: what :meth:`finish` takes."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T, D)
        if mel.size(2) % 2 or x.size(1) > self.positional_embedding.size(0):
            raise ValueError(f"encoder expects an even number of mel frames up to "
                             f"{2 * self.positional_embedding.size(0)}, got {mel.size(2)}")
        x = x + self.positional_embedding[: x.size(1)]
        for block in self.blocks[:stop]:
            x, _ = block(x)
        return x

    def finish(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Blocks ``[start, n)`` and the final LayerNorm on hidden states (B, T, D) from :meth:`lower`."""
        for block in self.blocks[start:]:
            x, _ = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        d = cfg.n_text_state
        self.token_embedding = nn.Embedding(cfg.n_vocab, d)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.n_text_ctx, d))
        self.blocks = nn.ModuleList(ResidualBlock(d, cfg.n_text_head, cross=True) for _ in range(cfg.n_text_layer))
        self.ln = nn.LayerNorm(d)

    def init_cache(self, audio: torch.Tensor) -> KVCache:
        """A cache holding each layer's cross-attention keys/values of ``audio`` (B, T, D)."""
        cross = [b.cross_attn.project_kv(audio) for b in self.blocks]
        return KVCache([None] * len(self.blocks), cross)

    def forward(
        self,
        tokens: torch.Tensor,
        audio: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, L, V) of the next token after each of ``tokens`` (B, L), and the updated cache.

        Without ``cache`` the whole sequence is run from position 0 over ``audio`` (B, T, D) (training);
        with one, ``tokens`` continue the cached prefix (decoding), one step or several.
        """
        if cache is None:
            cache = self.init_cache(audio)
        offset = cache.length
        x = self.token_embedding(tokens) + self.positional_embedding[offset : offset + tokens.size(1)]
        new_self = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cache.self_kv[i], cache.cross_kv[i], causal=True)
            new_self.append(kv)
        x = self.ln(x)
        logits = x @ self.token_embedding.weight.t()  # tied output projection
        return logits.float(), KVCache(new_self, cache.cross_kv)


class Whisper(nn.Module):
    """The encoder-decoder. ``forward`` is the training path; decoding uses ``encode`` + ``decoder``."""

    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg)
        self.decoder = TextDecoder(cfg)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` (B, M, 2 * T) -> encoder output (B, T, D); T is ``n_audio_ctx`` for a 30 s window."""
        return self.encoder(mel)

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) for ``tokens`` (B, L) given ``mel`` (B, M, F)."""
        logits, _ = self.decoder(tokens, self.encode(mel))
        return logits

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the input side to the output side, one group per depth, for layer-wise LR decay:
        [encoder stem, encoder blocks..., encoder ln + decoder embeddings, decoder blocks..., decoder ln]."""
        enc, dec = self.encoder, self.decoder
        groups = [[*enc.conv1.parameters(), *enc.conv2.parameters()]]
        groups += [list(b.parameters()) for b in enc.blocks]
        groups.append([*enc.ln_post.parameters(), *dec.token_embedding.parameters(), dec.positional_embedding])
        groups += [list(b.parameters()) for b in dec.blocks]
        groups.append(list(dec.ln.parameters()))
        return groups
