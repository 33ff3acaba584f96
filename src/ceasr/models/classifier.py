"""Utterance classifier: filterbank frames -> one of ``num_classes`` labels (e.g. voice commands).

normalize (CMVN) -> 4x subsampling -> encoder (Conformer or Transformer, as the ASR model) -> mean over the
valid frames -> linear layer to class logits; the softmax is left to the loss or the caller.
"""

from __future__ import annotations

import torch
from torch import nn

from ceasr.config import ModelConfig
from ceasr.errors import ConfigError
from ceasr.models.asr import ENCODERS
from ceasr.models.subsampling import Conv2dSubsampling
from ceasr.models.transformer import lengths_to_mask


class UtteranceClassifier(nn.Module):
    """Composed from parts, like :class:`ceasr.models.asr.ASRModel`.

    Args:
        normalize: ``(x (B, T, F), x_lens (B,)) -> (B, T, F)``, e.g. ``GlobalCMVN``.
        embed: subsampling ``(x, x_lens) -> (y, y_lens)`` to d_model.
        encoder: ``(x, x_lens) -> (enc, enc_lens)`` on (B, T', D).
        out: Linear D -> number of classes.
    """

    def __init__(self, normalize: nn.Module, embed: nn.Module, encoder: nn.Module, out: nn.Linear):
        super().__init__()
        self.normalize, self.embed, self.encoder, self.out = normalize, embed, encoder, out
        self.num_classes = out.out_features

    def pool(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """x: (B, T, F), x_lens: (B,) -> the mean of the valid encoder frames, (B, D)."""
        enc, enc_lens = self.encoder(*self.embed(self.normalize(x, x_lens), x_lens))  # (B, T', D), (B,)
        mask = lengths_to_mask(enc_lens, enc.size(1)).unsqueeze(-1).to(enc.dtype)  # (B, T', 1)
        return (enc * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """x: (B, T, F) features, x_lens: (B,) -> class logits (B, C). Inputs need >= 7 frames."""
        return self.out(self.pool(x, x_lens))


def build_classifier(
    cfg: ModelConfig, n_mels: int, num_classes: int, normalize: nn.Module | None = None
) -> UtteranceClassifier:
    """A classifier with the encoder of ``cfg`` (its decoder fields are unused)."""
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"model.encoder: unknown {cfg.encoder!r}; known: {', '.join(ENCODERS)}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if normalize is None:
        from ceasr.features import GlobalCMVN

        normalize = GlobalCMVN(n_mels, cfg.utterance_norm)
    return UtteranceClassifier(
        normalize,
        Conv2dSubsampling(n_mels, cfg.d_model, cfg.subsampling_channels, cfg.subsampling),
        ENCODERS[cfg.encoder](cfg),
        nn.Linear(cfg.d_model, num_classes),
    )
