"""Configuration: frozen dataclasses, filled from YAML and ``section.field=value`` overrides.

An experiment config has one section per stage. A trained model directory stores the whole config as JSON
(``config.json``), so a model is rebuilt from what is saved next to its weights.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ceasr.errors import ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    """Kaldi-compatible log-mel filterbank (the defaults match kaldi-native-fbank with dither 0)."""

    sample_rate: int = 16000
    n_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    window: str = "povey"  # povey | hann | hamming
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means nyquist + high_freq (Kaldi's convention)
    snip_edges: bool = True
    dither: float = 0.0  # training may turn it on; inference keeps it off


@dataclass(frozen=True)
class TokenizerConfig:
    kind: str = "bpe"  # bpe | char | bilingual (Chinese characters + English BPE)
    vocab_size: int = 128  # bpe (bilingual: its English part); char vocabularies are as large as the text needs


@dataclass(frozen=True)
class ModelConfig:
    encoder: str = "conformer"  # conformer | transformer
    d_model: int = 144
    n_heads: int = 4
    encoder_layers: int = 6
    ff_dim: int = 576
    conv_kernel: int = 15  # conformer depthwise convolution
    subsampling: int = 4  # time subsampling of the front end: 4 (40 ms frames) | 8 (80 ms, about half the encoder cost)
    subsampling_channels: int = 144
    decoder_layers: int = 2  # 0: no attention decoder (CTC only)
    decoder_ff_dim: int = 576
    # Absolute sinusoidal positions added to the encoder output the decoder attends to. A rotary encoder's
    # output carries none, so cross-attention finds its place by content alone, and two identical words in a
    # row look alike (Whisper's encoder output has positions).
    decoder_positions: bool = False
    dropout: float = 0.1
    ctc_weight: float = 0.3  # loss = ctc_weight * CTC + (1 - ctc_weight) * attention CE
    label_smoothing: float = 0.1
    # Intermediate CTC (Lee & Watanabe, 2021; ESPnet's interctc_weight): the CTC term becomes
    # (1 - w) * CTC(last layer) + w * CTC(output of encoder layer interctc_layer), one shared CTC head.
    interctc_weight: float = 0.0
    interctc_layer: int = 0  # 1 .. encoder_layers - 1; 0: the middle layer (encoder_layers // 2)
    # Bilingual models: weight of a language-ID head's loss (which languages an utterance speaks); 0: no head.
    lid_weight: float = 0.0
    lid_detach: bool = True  # the head does not train the encoder (trained jointly it cost Mandarin CER, README)
    # Per-utterance normalization before global CMVN: none | level (subtract the mean log-mel: gain-invariant)
    # | mean (subtract each bin's mean: also removes a fixed channel tilt). See ceasr.features.utterance_offset.
    utterance_norm: str = "none"


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"  # sgd | momentum | nesterov | adam | adamw | rmsprop
    lr: float = 2e-3
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 1e-3  # applied to matrices only
    scheduler: str = "noam"  # constant | noam | cosine
    warmup_steps: int = 300
    max_steps: int = 0  # 0: run max_epochs
    max_epochs: int = 10
    # A wall-clock budget (minutes, 0: none), counted from the start of training and over resumes: at the first
    # step past it training checkpoints, averages the last checkpoints and exports as if it had ended there.
    # The schedule still follows max_steps/max_epochs, so a budget that does not bind changes nothing.
    max_minutes: float = 0.0
    batch_seconds: float = 120.0  # total audio seconds in a batch
    num_buckets: int = 10
    grad_clip: float = 5.0
    accum_steps: int = 1
    seed: int = 0
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    keep_last: int = 5
    average_last: int = 3  # the final model averages this many last checkpoints
    best_by: str = "dev_loss"  # dev_loss | wer
    max_bad_steps: int = 20  # consecutive non-finite losses before training stops
    num_workers: int = 0
    log_every: int = 10
    spec_augment: bool = True
    spec_freq_width: int = 15  # SpecAugment: 2 frequency masks of up to this many mel bins each
    spec_time_ratio: float = 0.05  # and 2 time masks of up to this fraction of the utterance (at most 40 frames)
    # BPE-dropout (ceasr.text.bpe_dropout): each training target segmented at random, every merge candidate
    # dropped with this probability, so the model also learns the short pieces that spell unheard words. 0: off
    bpe_dropout: float = 0.0
    precision: str = "fp32"  # fp32 | bf16 (autocast matmuls and convolutions; weights stay fp32) | auto: bf16
    # where the hardware has it natively (AVX512-BF16/AMX CPUs, recent GPUs), else fp32


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly waveform augmentation in training (see ceasr.data.augment); SpecAugment is train.spec_augment.

    Each step happens with its probability, its parameter drawn uniformly from its (low, high) range.
    """

    enabled: bool = False
    speed_prob: float = 0.0
    speed: tuple[float, float] = (0.9, 1.1)  # playback rate: duration changes by 1 / factor
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds, for synthetic RIRs (when rir_dir is empty)
    drr_db: tuple[float, float] = (0.0, 10.0)  # direct-to-reverberant ratio of synthetic RIRs
    rir_dir: str = ""  # a folder of impulse responses (any audio files, searched recursively)
    noise_prob: float = 0.0
    noise_kinds: str = "white,pink,brown,babble"  # comma-separated; "folder" (implied by noise_dir) too
    snr_db: tuple[float, float] = (0.0, 30.0)
    noise_dir: str = ""  # a folder of noise recordings (e.g. MUSAN's noise/)
    babble_talkers: tuple[int, int] = (3, 7)
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-30.0, 10.0)  # clipped to [-1, 1] after the gain


@dataclass(frozen=True)
class FeatAugmentConfig:
    """Augmentation of the cached log-mel features in the training step (see ceasr.data.feat_augment): no
    workers, no audio, a few elementwise ops per batch. Each step happens with its probability, its parameter
    drawn uniformly from its (low, high) range."""

    enabled: bool = False
    warp_prob: float = 0.0
    warp: tuple[float, float] = (0.9, 1.1)  # VTLP factor alpha: formants move by alpha
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds
    drr_db: tuple[float, float] = (0.0, 10.0)  # direct-to-reverberant ratio
    noise_prob: float = 0.0
    noise_kinds: str = "white,pink,brown,babble"  # babble: other utterances of the batch
    snr_db: tuple[float, float] = (0.0, 30.0)  # on filterbank energies with the preemphasis undone (~ the waves')
    gain_prob: float = 0.0
    gain_db: tuple[float, float] = (-30.0, 6.0)
    # Narrowband audio (8 kHz telephone or TTS voices resampled to 16 kHz): nothing above a cut-off frequency.
    bandlimit_prob: float = 0.0
    bandlimit_hz: tuple[float, float] = (3400.0, 7000.0)  # cut-off frequency
    bandlimit_stop_db: tuple[float, float] = (40.0, 70.0)  # attenuation above it
    # Tempo: the item played r times as fast, pitch unchanged (its frames resampled along time to n / r).
    tempo_prob: float = 0.0
    tempo: tuple[float, float] = (0.9, 1.1)
    # Whispering: the voicing replaced by breath noise under the same spectral envelope, the low frequencies
    # weakened by a tilt of so many dB per octave below 1.5 kHz (see ceasr.data.feat_augment.whisper).
    whisper_prob: float = 0.0
    whisper_tilt_db: tuple[float, float] = (0.0, 8.0)


@dataclass(frozen=True)
class DecodeConfig:
    method: str = "ctc_greedy"  # ctc_greedy | ctc_prefix_beam | attention | attention_rescoring
    beam_size: int = 4
    ctc_weight: float = 0.3  # attention(_rescoring): score = (1 - w) * attention + w * CTC (prefix) score
    length_penalty: float = 0.0  # beta: score bonus per output token (ctc_prefix_beam and attention)
    max_len_ratio: float = 1.0  # attention: max output tokens = ratio * encoder frames
    lm: str = ""  # language model directory (ceasr train-lm) or ARPA file; "" decodes without one
    lm_weight: float = 0.5  # lambda: score = acoustic + lambda * LM + beta * tokens
    lm_mode: str = "fusion"  # fusion (shallow, during the search) | rescore (the n-best list afterwards)
    hotwords: str = ""  # file of phrases to boost, one a line, "phrase<TAB>boost" or "phrase"
    hotword_boost: float = 2.0  # bonus per matched token when a line gives none
    lm_oov_penalty: float = -10.0  # word LM: score (times lambda) of a partial word no LM word starts with
    lm_lookahead: bool = False  # word LM: pay a partial word's best-completion unigram score in advance
    # Models with a language-ID head (model.lid_weight > 0): tokens of a language heard with a probability below
    # this (and not the likeliest) are not decoded. 0: no constraint. 0.25: chosen on dev (README).
    lid_threshold: float = 0.25


@dataclass(frozen=True)
class LMConfig:
    """A language model: an n-gram (``order``, over ``units``) or a causal Transformer over tokens."""

    type: str = "ngram"  # ngram | transformer
    units: str = "words"  # words | tokens (a transformer always uses tokens)
    order: int = 3
    d_model: int = 128
    n_heads: int = 4
    layers: int = 2
    ff_dim: int = 512
    dropout: float = 0.1
    batch_sentences: int = 64
    heldout_fraction: float = 0.05  # of the text kept for perplexity when no held-out file is given
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=1e-3, warmup_steps=100, max_steps=1000, checkpoint_every=250)
    )


@dataclass(frozen=True)
class CommandConfig:
    """Grammar-constrained command recognition (``ceasr command``/``listen``/``evaluate-commands``)."""

    ctc_weight: float = 0.5  # phrase score = (1 - w) * attention log-prob + w * CTC log-likelihood
    threshold: float = 0.7  # accept when confidence >= threshold (confidence in [0, 1], see commands/)
    exact_limit: int = 2000  # sets up to this many phrases are scored exhaustively, larger ones by beam
    beam_size: int = 16  # prefix-trie constrained beam for large sets
    # Audio whose speech-band level spans less than this (ceasr.audio.level_spread_db, dB) is stationary
    # noise, hum or silence, never speech, and is rejected with confidence 0 whatever the model hears (noise
    # spans at most 2.5 dB, speech at 0 dB SNR 7.9 or more); 0 turns the check off.
    min_spread_db: float = 5.0
    no_speech_threshold: float = 0.6  # Whisper: reject if P(<|nospeech|>) after sot is above (OpenAI's); 1: off
    gate: float = 0.05  # with a second stage (--verify): first-stage confidence below this rejects without it
    # Confidence times the attention decoder's probability of the phrase (label smoothing's cap divided out, at most
    # 1) to this power (ceasr.commands.recognize). None: 0.25 for a model trained on near misses (ceasr negatives;
    # its tokenizer spells their filler word as one token), else 0. Chosen 2026-12-07 (README, "Hard negatives").
    attention_weight: float | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    feat_augment: FeatAugmentConfig = field(default_factory=FeatAugmentConfig)


def to_dict(cfg) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls, data: dict[str, Any], where: str = ""):
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys and wrong types by name."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {value!r}")
            kwargs[name] = from_dict(type(default), value, key)
        else:
            kwargs[name] = _coerce(value, default, key, variadic=str(known[name].type).endswith(", ...]"))
    return cls(**kwargs)


def _coerce(value, default, where: str, variadic: bool = False):
    """Coerce ``value`` to the type of ``default`` (YAML and flags give strings, ints and lists); a
    ``variadic`` tuple (annotated ``tuple[float, ...]``) takes any length of floats."""
    if isinstance(value, str) and not isinstance(default, str):
        value = yaml.safe_load(value)
        if isinstance(default, tuple) and isinstance(value, str):  # a flag's "0.8,1.1" as well as "[0.8, 1.1]"
            value = [yaml.safe_load(v) for v in value.split(",")] if value else []
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple) and variadic:
            return tuple(float(v) for v in value)
        if isinstance(default, tuple):
            return tuple(type(d)(v) for d, v in zip(default, value, strict=True))
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")


def with_overrides(cfg, overrides: list[str]):
    """Apply ``section.field=value`` overrides, e.g. ``train.lr=1e-3`` or ``model.encoder=transformer``.

    Works for any sectioned config (``ExperimentConfig``, ``WhisperModelDirConfig``) and returns its type."""
    data = to_dict(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        section = data.get(parts[0]) if len(parts) == 2 else None
        if not sep or not isinstance(section, dict) or parts[1] not in section:
            raise ConfigError(f"bad override {item!r}: expected section.field=value with a known field")
        data[parts[0]][parts[1]] = value
    return from_dict(type(cfg), data)


def _read_mapping(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's sections; a top-level ``base: FILE`` (relative to this file) is read first and this
    file's fields override its fields one by one."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: config bases form a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = _read_mapping(path.parent / str(base), seen + (path.resolve(),))
    for section, values in data.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML (or JSON) config; missing sections and fields keep their defaults. A file may start from
    another (``base: demo.yaml``) and change only what differs."""
    data = _read_mapping(Path(path)) if path is not None else {}
    try:
        cfg = from_dict(ExperimentConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return with_overrides(cfg, list(overrides))


def save_json(cfg, path: str | Path) -> None:
    """Write a config as JSON atomically."""
    from ceasr.io import atomic_write_text

    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2) + "\n")
