"""Models: subsampling front end, Conformer / Transformer encoders, attention decoder, the composed ASRModel."""

from ceasr.models.asr import ENCODERS, ASRModel, build_model, count_flops
from ceasr.models.conformer import ConformerEncoder
from ceasr.models.subsampling import Conv2dSubsampling, min_frames, subsampled_lengths
from ceasr.models.transformer import TransformerDecoder, TransformerEncoder, lengths_to_mask

__all__ = [
    "ENCODERS",
    "ASRModel",
    "ConformerEncoder",
    "Conv2dSubsampling",
    "min_frames",
    "TransformerDecoder",
    "TransformerEncoder",
    "build_model",
    "count_flops",
    "lengths_to_mask",
    "subsampled_lengths",
]
