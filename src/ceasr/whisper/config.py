"""Whisper's configs: the network's dimensions, decoding, a converted model directory and fine-tuning.

Frozen dataclasses like :mod:`ceasr.config`'s (same ``from_dict``/``to_dict``/overrides); a converted model
directory's ``config.json`` is a :class:`WhisperModelDirConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ceasr.config import TrainConfig


@dataclass(frozen=True)
class WhisperConfig:
    """Whisper's dimensions, OpenAI's ``dims`` (the defaults are ``base``: 74 M parameters)."""

    n_mels: int = 80
    n_audio_ctx: int = 1500  # encoder frames of a 30 s window (3000 mel frames, stride-2 conv)
    n_audio_state: int = 512
    n_audio_head: int = 8
    n_audio_layer: int = 6
    n_vocab: int = 51865
    n_text_ctx: int = 448
    n_text_state: int = 512
    n_text_head: int = 8
    n_text_layer: int = 6


@dataclass(frozen=True)
class WhisperDecodeConfig:
    """How a Whisper model decodes (OpenAI's defaults unless said otherwise)."""

    method: str = "greedy"  # greedy | beam
    beam_size: int = 5
    language: str = ""  # a code such as "en"; empty: detect per 30 s window
    task: str = "transcribe"  # transcribe | translate
    max_new_tokens: int = 224  # OpenAI's sample_len: half the text context
    suppress_blank: bool = True  # no space or end-of-text as the first token
    temperature_fallback: bool = False  # re-decode by sampling when a result looks degenerate
    temperature_step: float = 0.2  # fallback temperatures: step, 2 * step, ... up to 1.0
    compression_ratio_threshold: float = 2.4  # gzip ratio above this: repetitive, fall back
    logprob_threshold: float = -1.0  # mean token log-probability below this: fall back
    seed: int = 0  # for the sampling of the fallback
    window_padding: str = "zeros"  # zeros (faster-whisper's) | silence (OpenAI's); see ceasr.whisper.audio
    audio_ctx: int = 0  # encoder frames per window (50 a second); 0: the model's 30 s. See window_frames
    # Beam search only, as in DecodeConfig: score = acoustic + lambda * LM + beta * tokens (+ hotword bonus).
    lm: str = ""  # language model directory (ceasr train-lm) or ARPA file; "" decodes without one
    lm_weight: float = 0.5  # lambda
    length_penalty: float = 0.0  # beta: bonus per output token (with an LM or hotwords)
    hotwords: str = ""  # file of phrases to boost, one a line, "phrase<TAB>boost" or "phrase"
    hotword_boost: float = 2.0  # bonus per matched token when a line gives none
    lm_oov_penalty: float = -10.0  # word LM: score (times lambda) of a partial word no LM word starts with
    lm_lookahead: bool = False  # word LM: pay a partial word's best-completion unigram score in advance
    fusion_candidates: int = 16  # with an LM or hotwords: the acoustic top-N next tokens of a beam they rescore


@dataclass(frozen=True)
class WhisperModelDirConfig:
    """``config.json`` of a converted Whisper model directory; ``kind`` tells it from ceasr's own models."""

    kind: str = "whisper"
    model: WhisperConfig = field(default_factory=WhisperConfig)
    decode: WhisperDecodeConfig = field(default_factory=WhisperDecodeConfig)


@dataclass(frozen=True)
class WhisperFinetuneConfig:
    """``ceasr finetune``: label-smoothed cross-entropy on a pretrained Whisper (see ceasr.whisper.finetune).

    ``train`` reuses ceasr's optimizer, schedule, clipping and checkpoint fields (``max_epochs``, ``lr``...);
    its defaults here suit fine-tuning (small constant LR after a short warmup).
    """

    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=2e-5, scheduler="constant", warmup_steps=20, max_epochs=5, weight_decay=0.0, grad_clip=1.0, keep_last=1,
        average_last=1,  # k > 1: the mean of the last k epochs is one more candidate and what the merges start from
    ))
    freeze_encoder: bool = True  # train the decoder only, on encoder outputs computed once
    # With freeze_encoder: also train the top N encoder blocks and its final LayerNorm, on cached hidden
    # states of the blocks below (computed once, like the frozen encoder's outputs).
    train_encoder_layers: int = 0
    layer_decay: float = 1.0  # LR of a layer = lr * layer_decay ** (layers above it); 1 = the same for all
    batch_size: int = 8  # utterances per step
    label_smoothing: float = 0.0  # 0.1 with lr 1e-4 made Whisper base forget real speech (bench/whisper_finetune.py)
    patience: int = 2  # stop after this many epochs without a better dev WER
    max_forgetting: float = 1.0  # WER points the general-speech dev set may lose before a checkpoint is rejected
    # WiSE-FT candidates (1 - r) * pretrained + r * final weights (the last epoch, or the mean: train.average_last;
    # with several runs, their soup)
    merge_ratios: tuple[float, ...] = (0.5, 0.7)  # () = none
    # A model soup (Wortsman et al. 2022): fine-tune this many times from the pretrained weights, run i with the
    # batch order seeded train.seed + i - 1; the mean of the runs' final weights is one more candidate (the
    # soup) and what the merges start from. Each run costs what one run costs; the encoding is shared.
    runs: int = 1
    language: str = "en"
    max_train_utterances: int = 0  # 0: all; else an evenly spread subset (CPU time boxes)
    max_minutes: float = 0.0  # 0: no limit; else no new epoch starts after this much training time (per run)
    encoder_cache: str = ""  # folder keeping frozen-encoder outputs across runs (ceasr.whisper.encoder_cache)
    # Train (and decode, saved as decode.audio_ctx) on windows of this many encoder frames, 50 a second;
    # 0: the base model's decode.audio_ctx (0 there: 30 s). Longer utterances are skipped.
    audio_ctx: int = 0
    # Speed perturbation: each training utterance also at these speeds (pitch, formants and tempo together;
    # Kaldi's 0.9, 1.1), encoded once like the rest; each epoch trains on one version of each, drawn at random.
    speeds: tuple[float, ...] = ()
    lr_find_steps: int = 0  # > 0: train.lr := the LR range test's suggestion over this many steps first
    lr_find_min: float = 1e-7  # the range test's learning rates, geometric from min to max
    lr_find_max: float = 1e-3
