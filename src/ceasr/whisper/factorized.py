"""Teacher-forced decoder logits for training on frozen encoder outputs, with factorized cross-attention.

The decoder's cross-attention projects the whole encoder output into keys and values in every layer:
``T x D x D`` multiply-adds each for K and V (Whisper base: 1500 x 512 x 512 x 2 x 6 layers, about 4.7 G per
utterance), paid again in the backward pass, while a fine-tuning target has only ``L`` (about 20) tokens.
Associativity gives the same attention at ``H x L x T x D`` each when ``H x L`` is small next to ``D``:

    scores_h = (q_h K_h^T) = (q_h W_k,h) A^T              q_h W_k,h: (L, D), A: encoder output (T, D)
    out_h    = softmax(scores_h) (A W_v,h^T + b_v,h) = (softmax(scores_h) A) W_v,h^T + b_v,h

(the attention weights of a row sum to one, so the value bias passes through). The result equals
``decoder(tokens, audio)`` up to float rounding (checked in the tests) at about a third of the cost for
Whisper base and short texts. Decoding keeps the usual cached keys/values (one projection, many steps).
"""

from __future__ import annotations

import math

import torch

from ceasr.models.whisper import MultiHeadAttention, ResidualBlock, TextDecoder


def _cross_attention(mha: MultiHeadAttention, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """``x`` (B, L, D) attends to ``audio`` (B, T, D) through ``mha``'s projections; returns (B, L, D)."""
    b, n, d = x.shape
    h = mha.heads
    dh = d // h
    q = mha._split(mha.query(x))  # (B, H, L, Dh)
    qk = torch.einsum("bhld,hde->bhle", q, mha.key.weight.view(h, dh, d))  # (B, H, L, D)
    scores = torch.bmm(qk.reshape(b, h * n, d), audio.transpose(1, 2)) / math.sqrt(dh)  # (B, H*L, T)
    context = torch.bmm(scores.softmax(dim=-1), audio).view(b, h, n, d)  # (B, H, L, D)
    y = torch.einsum("bhle,hde->bhld", context, mha.value.weight.view(h, dh, d))
    y = y + mha.value.bias.view(1, h, 1, dh)
    return mha.out(y.transpose(1, 2).flatten(2))


def _block(block: ResidualBlock, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    h = block.attn_ln(x)
    x = x + block.attn(h, block.attn.project_kv(h), causal=True)
    x = x + _cross_attention(block.cross_attn, block.cross_attn_ln(x), audio)
    return x + block.mlp(block.mlp_ln(x))


def teacher_forced_logits(decoder: TextDecoder, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Logits (B, L, V) of the next token after each of ``tokens`` (B, L) over ``audio`` (B, T, D): the
    same as ``decoder(tokens, audio)[0]``."""
    x = decoder.token_embedding(tokens) + decoder.positional_embedding[: tokens.size(1)]
    for block in decoder.blocks:
        x = _block(block, x, audio)
    return (decoder.ln(x) @ decoder.token_embedding.weight.t()).float()

