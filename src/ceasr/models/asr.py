"""The composed ASR model: normalize -> subsample -> encoder -> CTC head, plus an optional attention decoder
and, for bilingual models, an optional language-ID head.

Token conventions: 0 = CTC blank, 1 = unk, 2 = sos and eos, real tokens from 3; targets padded with -1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ceasr.config import ModelConfig
from ceasr.errors import CeasrError, ConfigError
from ceasr.losses import cross_entropy, ctc_loss, hybrid_loss
from ceasr.models.conformer import ConformerEncoder
from ceasr.models.subsampling import FACTORS, Conv2dSubsampling, n_convs
from ceasr.models.transformer import TransformerDecoder, TransformerEncoder, lengths_to_mask

BLANK_ID, UNK_ID, SOS_ID, EOS_ID, IGNORE_ID = 0, 1, 2, 2, -1
LANGUAGES = ("zh", "en")  # what a language-ID head detects, in the order of its outputs
NO_FRAME_LOGIT = -1e4  # a language-ID head's logit for every language of an utterance without encoder frames


def _conformer(cfg: ModelConfig) -> nn.Module:
    return ConformerEncoder(
        cfg.d_model, cfg.n_heads, cfg.encoder_layers, cfg.ff_dim, cfg.conv_kernel, cfg.dropout
    )


def _transformer(cfg: ModelConfig) -> nn.Module:
    return TransformerEncoder(cfg.d_model, cfg.n_heads, cfg.encoder_layers, cfg.ff_dim, cfg.dropout)


ENCODERS = {"conformer": _conformer, "transformer": _transformer}


class ASRModel(nn.Module):
    """Hybrid CTC/attention model built from parts.

    Args:
        normalize: applied to features first, ``(x (B, T, F), x_lens (B,)) -> (B, T, F)`` (e.g. GlobalCMVN).
        embed: subsampling, ``(x, x_lens) -> (y, y_lens)``.
        encoder: ``(x, x_lens) -> (enc, enc_lens)`` on (B, T', D).
        ctc: Linear d_model -> vocabulary (the CTC head).
        decoder: attention decoder ``(enc, enc_lens, ys_in, ys_in_lens) -> logits`` or None (CTC only).
        ctc_weight: loss = ctc_weight * CTC + (1 - ctc_weight) * attention CE.
        lid: Linear d_model -> len(LANGUAGES) frame logits of a language-ID head, or None. Its utterance logits
            (:meth:`language_logits`) say which languages are spoken; trained with binary cross-entropy against
            the languages of the target tokens, weight ``lid_weight``, added to the loss.
        token_languages: each token id's language (``"zh"``, ``"en"`` or ``""``), needed with ``lid``.
        lid_detach: the head learns from the encoder's output without training the encoder (a probe: the
            recognizer learns exactly what it would without the head).
        interctc_weight, interctc_layer: intermediate CTC. The CTC term becomes ``(1 - w) * CTC(last block) +
            w * CTC(block interctc_layer)``, both through the one CTC head; decoding reads the last block only.
    """

    def __init__(
        self,
        normalize: nn.Module,
        embed: nn.Module,
        encoder: nn.Module,
        ctc: nn.Linear,
        decoder: nn.Module | None = None,
        ctc_weight: float = 0.3,
        label_smoothing: float = 0.1,
        sos_id: int = SOS_ID,
        eos_id: int = EOS_ID,
        ignore_id: int = IGNORE_ID,
        lid: nn.Linear | None = None,
        lid_weight: float = 0.0,
        token_languages: tuple[str, ...] = (),
        lid_detach: bool = True,
        interctc_weight: float = 0.0,
        interctc_layer: int = 0,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        if decoder is None and ctc_weight < 1.0:
            raise ValueError(f"ctc_weight {ctc_weight} < 1 needs an attention decoder")
        self.normalize, self.embed, self.encoder, self.ctc, self.decoder = (
            normalize, embed, encoder, ctc, decoder,
        )
        self.ctc_weight = ctc_weight
        self.label_smoothing = label_smoothing
        self.sos_id, self.eos_id, self.ignore_id, self.blank_id = sos_id, eos_id, ignore_id, BLANK_ID
        self.vocab_size = ctc.out_features
        if lid is not None and len(token_languages) != self.vocab_size:
            raise ValueError(f"a language-ID head needs the language of each of the {self.vocab_size} tokens, "
                             f"got {len(token_languages)}")
        self.lid, self.lid_weight, self.lid_detach = lid, lid_weight, lid_detach
        if not 0.0 <= interctc_weight < 1.0:
            raise ValueError(f"interctc_weight must be in [0, 1), got {interctc_weight}")
        if interctc_weight > 0.0 and interctc_layer < 1:
            raise ValueError(f"interctc_weight {interctc_weight} needs an encoder block to read (interctc_layer >= 1)")
        self.interctc_weight, self.interctc_layer = interctc_weight, interctc_layer
        # token id -> 1 + its index in LANGUAGES, 0 for none; derived from the tokenizer, so not saved
        table = [LANGUAGES.index(lang) + 1 if lang in LANGUAGES else 0 for lang in token_languages]
        self.register_buffer("token_language", torch.tensor(table, dtype=torch.long), persistent=False)

    def encode(
        self, feats: torch.Tensor, feat_lens: torch.Tensor, tap: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """feats: (B, T, F), feat_lens: (B,) -> enc: (B, T', D) (padding zeroed), enc_lens: (B,); with ``tap`` = k
        > 0 also the output of encoder block k (B, T', D).

        T' = subsampled_lengths(T, factor) (4x: ((T - 1) // 2 - 1) // 2). Utterances shorter than the front end's
        ``min_frames`` (7 for 4x) get 0 encoder frames; a batch whose
        longest input is that short cannot be encoded at all and raises CeasrError.
        """
        min_frames = getattr(self.embed, "min_frames", 1)
        if feats.size(1) < min_frames:
            raise CeasrError(
                f"input of {feats.size(1)} frames is shorter than the {min_frames} frames the model needs"
            )
        x, x_lens = self.embed(self.normalize(feats, feat_lens), feat_lens)
        return self.encoder(x, x_lens, tap) if tap else self.encoder(x, x_lens)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """enc: (B, T', D) -> CTC log-probabilities (B, T', V)."""
        logits = self.ctc(enc)  # (B, T', V); half precision is widened to float32 for the log-softmax
        return F.log_softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))

    def language_logits(self, enc: torch.Tensor, enc_lens: torch.Tensor) -> torch.Tensor:
        """enc: (B, T', D), enc_lens: (B,) -> (B, len(LANGUAGES)) logits that each language is spoken in the
        utterance: the largest frame logit over its frames (multiple-instance pooling: a language is in the
        utterance if it is heard somewhere; a mixed utterance's English word is a few frames)."""
        frames = self.lid(enc)  # (B, T', L)
        valid = lengths_to_mask(enc_lens, enc.size(1)).unsqueeze(-1)
        return frames.masked_fill(~valid, NO_FRAME_LOGIT).amax(dim=1)

    def language_targets(self, ys: torch.Tensor) -> torch.Tensor:
        """ys: (B, L) target ids padded with -1 -> (B, len(LANGUAGES)) floats, 1 where a token of that
        language occurs."""
        langs = torch.where(ys >= 0, self.token_language[ys.clamp(min=0)], 0)  # (B, L)
        codes = torch.arange(1, len(LANGUAGES) + 1, device=ys.device)
        return (langs.unsqueeze(-1) == codes).any(dim=1).float()

    def decoder_io(self, ys: torch.Tensor, ys_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ys: (B, L) padded with -1 -> ys_in = [sos] + y (padded with eos), ys_out = y + [eos] (padded -1).

        Both are (B, L + 1); the decoder input lengths are ``ys_lens + 1``.
        """
        b, length = ys.shape
        valid = lengths_to_mask(ys_lens, length)  # (B, L)
        ys_in = torch.full((b, length + 1), self.eos_id, dtype=torch.long, device=ys.device)
        ys_in[:, 0] = self.sos_id
        ys_in[:, 1:] = torch.where(valid, ys, self.eos_id)
        ys_out = torch.full((b, length + 1), self.ignore_id, dtype=torch.long, device=ys.device)
        ys_out[:, :length] = torch.where(valid, ys, self.ignore_id)
        ys_out[torch.arange(b, device=ys.device), ys_lens] = self.eos_id
        return ys_in, ys_out

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        ys: torch.Tensor,
        ys_lens: torch.Tensor,
        norm: float | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hybrid training loss.

        Args:
            feats: (B, T, F); feat_lens: (B,).
            ys: (B, L) target ids padded with -1; ys_lens: (B,).
            norm: divisor of both summed losses; None means the local batch size B. With several processes
                pass the *global* number of utterances so that summed gradients equal the global mean.

        Returns:
            loss: ``ctc_weight * CTC + (1 - ctc_weight) * CE`` where CTC and the label-smoothed CE are each
                summed over utterances (and tokens, for CE; eos included) and divided by ``norm``: a loss
                per utterance, not per token. With a language-ID head, plus ``lid_weight`` times its binary
                cross-entropy summed over utterances and languages, divided by ``norm``.
            stats: floats ``loss``, ``ctc``, ``att`` (each divided by ``norm``; 0.0 for a term the weight
                switches off) and ``att_acc``, the attention's greedy token accuracy (0.0 when off); with
                intermediate CTC also ``interctc``, its CTC loss (``ctc`` is then the mixed term).
        """
        norm = float(feats.size(0)) if norm is None else float(norm)
        inter = self.interctc_weight > 0.0 and self.ctc_weight > 0.0
        if inter:
            enc, enc_lens, tapped = self.encode(feats, feat_lens, tap=self.interctc_layer)
        else:
            enc, enc_lens = self.encode(feats, feat_lens)
        stats = {"ctc": 0.0, "att": 0.0, "att_acc": 0.0}
        ctc = att = None
        if self.ctc_weight > 0.0:
            ctc = ctc_loss(self.ctc_log_probs(enc), enc_lens, ys, ys_lens, blank=self.blank_id) / norm
            if inter:
                ictc = ctc_loss(self.ctc_log_probs(tapped), enc_lens, ys, ys_lens, blank=self.blank_id) / norm
                stats["interctc"] = ictc.item()
                ctc = (1.0 - self.interctc_weight) * ctc + self.interctc_weight * ictc
            stats["ctc"] = ctc.item()
        if self.ctc_weight < 1.0:
            ys_in, ys_out = self.decoder_io(ys, ys_lens)
            logits = self.decoder(enc, enc_lens, ys_in, ys_lens + 1)  # (B, L + 1, V)
            att = cross_entropy(
                logits, ys_out, self.label_smoothing, ignore_index=self.ignore_id, reduction="sum"
            ) / norm
            stats["att"] = att.item()
            stats["att_acc"] = _accuracy(logits, ys_out, self.ignore_id)
        loss = hybrid_loss(ctc, att, self.ctc_weight)
        if self.lid is not None and self.lid_weight > 0.0:
            logits = self.language_logits(enc.detach() if self.lid_detach else enc, enc_lens)
            lid = F.binary_cross_entropy_with_logits(logits, self.language_targets(ys), reduction="sum") / norm
            loss = loss + self.lid_weight * lid
        stats["loss"] = loss.item()
        return loss, stats


def _accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> float:
    """Fraction of non-ignored positions where argmax(logits) equals the target."""
    valid = targets != ignore_id
    hits = (logits.argmax(dim=-1) == targets) & valid
    return hits.sum().item() / max(valid.sum().item(), 1)


def _check(cfg: ModelConfig, vocab_size: int) -> None:
    """Reject configs that cannot build a working model, naming the field."""
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"model.encoder: unknown {cfg.encoder!r}; known: {', '.join(ENCODERS)}")
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ConfigError(
            f"model.d_model {cfg.d_model} must split into model.n_heads {cfg.n_heads} heads of even size"
        )
    if cfg.encoder == "conformer" and cfg.conv_kernel % 2 == 0:
        raise ConfigError(f"model.conv_kernel: must be odd to keep frames aligned, got {cfg.conv_kernel}")
    if not 0.0 <= cfg.ctc_weight <= 1.0:
        raise ConfigError(f"model.ctc_weight: must be in [0, 1], got {cfg.ctc_weight}")
    if cfg.decoder_layers == 0 and cfg.ctc_weight < 1.0:
        raise ConfigError("model.ctc_weight: must be 1 when model.decoder_layers is 0 (no decoder)")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"model.label_smoothing: must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.subsampling not in FACTORS:
        raise ConfigError(f"model.subsampling: must be one of {FACTORS}, got {cfg.subsampling}")
    if not 0.0 <= cfg.interctc_weight < 1.0:
        raise ConfigError(f"model.interctc_weight: must be in [0, 1), got {cfg.interctc_weight}")
    if cfg.interctc_weight > 0.0 and not 0 <= cfg.interctc_layer < cfg.encoder_layers:
        raise ConfigError(f"model.interctc_layer: must be 1 .. {cfg.encoder_layers - 1} (0: the middle), "
                          f"got {cfg.interctc_layer}")
    if cfg.interctc_weight > 0.0 and cfg.encoder_layers < 2:
        raise ConfigError("model.interctc_weight: intermediate CTC needs at least 2 encoder layers")
    if cfg.lid_weight < 0.0:
        raise ConfigError(f"model.lid_weight: must be at least 0, got {cfg.lid_weight}")
    if vocab_size < 3:
        raise ConfigError(f"vocabulary of {vocab_size} tokens: needs blank, unk and sos/eos (ids 0-2)")


def build_model(
    cfg: ModelConfig, n_mels: int, vocab_size: int, normalize: nn.Module | None = None,
    token_languages: tuple[str, ...] = (),
) -> ASRModel:
    """Build an ASRModel from its config. ``normalize`` defaults to ``ceasr.features.GlobalCMVN(n_mels)``
    (identity stats until loaded from a checkpoint or set from data). ``token_languages`` (each token's
    language, :func:`ceasr.text.tokenizer.token_languages`) is needed when ``cfg.lid_weight > 0``."""
    _check(cfg, vocab_size)
    if cfg.lid_weight > 0.0 and not set(token_languages) & set(LANGUAGES):
        raise ConfigError("model.lid_weight: a language-ID head needs a tokenizer whose tokens have languages "
                          "(tokenizer.kind=bilingual)")
    if normalize is None:
        from ceasr.features import GlobalCMVN  # features are an earlier stage; imported only when needed

        normalize = GlobalCMVN(n_mels, cfg.utterance_norm)
    decoder = None
    if cfg.decoder_layers > 0:
        decoder = TransformerDecoder(
            vocab_size, cfg.d_model, cfg.n_heads, cfg.decoder_layers, cfg.decoder_ff_dim, cfg.dropout,
            memory_positions=cfg.decoder_positions,
        )
    embed = Conv2dSubsampling(n_mels, cfg.d_model, cfg.subsampling_channels, cfg.subsampling)
    encoder, ctc = ENCODERS[cfg.encoder](cfg), nn.Linear(cfg.d_model, vocab_size)
    # made last, so that a model with the head starts from the same weights as one without
    lid = nn.Linear(cfg.d_model, len(LANGUAGES)) if cfg.lid_weight > 0.0 else None
    return ASRModel(
        normalize=normalize,
        embed=embed,
        encoder=encoder,
        ctc=ctc,
        decoder=decoder,
        ctc_weight=cfg.ctc_weight,
        label_smoothing=cfg.label_smoothing,
        lid=lid,
        lid_weight=cfg.lid_weight,
        token_languages=tuple(token_languages) if lid is not None else (),
        lid_detach=cfg.lid_detach,
        interctc_weight=cfg.interctc_weight,
        interctc_layer=(cfg.interctc_layer or cfg.encoder_layers // 2) if cfg.interctc_weight > 0.0 else 0,
    )


def _attention_flops(b: int, t: int, s: int, d: int) -> int:
    """Projections (q, out on t queries; k, v on s keys) plus scores and weighted sum, 2 FLOPs per MAC."""
    return 2 * b * (2 * t * d * d + 2 * s * d * d) + 4 * b * t * s * d


def _encoder_layer_flops(cfg: ModelConfig, b: int, t: int) -> int:
    d, ff = cfg.d_model, cfg.ff_dim
    ffn = 4 * b * t * d * ff
    if cfg.encoder == "transformer":
        return _attention_flops(b, t, t, d) + ffn
    conv = 2 * b * t * (2 * d * d + d * cfg.conv_kernel + d * d)  # pointwise in, depthwise, pointwise out
    return _attention_flops(b, t, t, d) + 2 * ffn + conv


def count_flops(
    cfg: ModelConfig, n_mels: int, vocab_size: int, T: int, L: int, B: int, backward: bool = True
) -> int:
    """Matmul and convolution FLOPs of one training step on a (B, T, n_mels) batch with targets of L tokens.

    Counted from shapes (2 FLOPs per multiply-add); the decoder runs on L + 1 positions (sos/eos) when the
    attention loss is on. Attention scores are counted in full (causal masking is not subtracted), like
    torch's FlopCounterMode. ``backward=True`` multiplies the forward count by 3 (the usual estimate for
    forward + backward), which is what MFU needs.
    """
    c, d, v = cfg.subsampling_channels, cfg.d_model, vocab_size
    t2, f2 = T, n_mels
    flops = 0
    for i in range(n_convs(cfg.subsampling)):  # the stride-2 convolutions
        t2, f2 = (t2 - 1) // 2, (f2 - 1) // 2
        flops += 2 * B * t2 * f2 * c * (1 if i == 0 else c) * 9
    t2, f2 = max(t2, 0), max(f2, 0)
    flops += 2 * B * t2 * c * f2 * d  # the Linear to d_model
    flops += cfg.encoder_layers * _encoder_layer_flops(cfg, B, t2)
    if cfg.ctc_weight > 0.0:
        flops += 2 * B * t2 * d * v * (2 if cfg.interctc_weight > 0.0 else 1)  # the head on one or two layers
    if cfg.ctc_weight < 1.0 and cfg.decoder_layers > 0:
        n = L + 1
        per_layer = _attention_flops(B, n, n, d) + _attention_flops(B, n, t2, d)
        per_layer += 4 * B * n * d * cfg.decoder_ff_dim
        flops += cfg.decoder_layers * per_layer + 2 * B * n * d * v
    return int(flops * (3 if backward else 1))
