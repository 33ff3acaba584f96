"""A converted Whisper model directory as a recognizer with the same surface as :class:`ceasr.api.Recognizer`
(``transcribe``, ``transcribe_batch``, ``sample_rate``, ``with_decode``), so ``ceasr transcribe``,
``ceasr evaluate`` and ``ceasr.load_model`` treat it like ceasr's own models.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ceasr.api import Transcript, load_scorers
from ceasr.audio import load as load_audio
from ceasr.config import from_dict, with_overrides
from ceasr.errors import CeasrError, ConfigError
from ceasr.models.whisper import Whisper
from ceasr.whisper.audio import SAMPLE_RATE, window_frames, windows
from ceasr.whisper.config import WhisperModelDirConfig
from ceasr.whisper.decoding import WindowResult, decode_windows
from ceasr.whisper.tokenizer import WhisperTokenizer, load_whisper_tokenizer

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer"


class WhisperRecognizer:
    """A Whisper model with its tokenizer and decode options. Audio of any length is cut in 30 s windows
    (``decode.audio_ctx``: shorter ones)."""

    def __init__(self, model: Whisper, cfg: WhisperModelDirConfig, tokenizer: WhisperTokenizer,
                 device: str = "cpu", window_batch: int = 8, lm=None):
        """``lm``: an already loaded language model for ``cfg.decode.lm`` (else it is loaded from there)."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.frames = window_frames(cfg.decode.audio_ctx, model.cfg.n_audio_ctx)  # mel frames per window
        self.window_batch = window_batch  # windows encoded and decoded together
        # A language model and hotwords see Whisper's tokens as normalized word pieces.
        self.scorers = load_scorers(cfg.decode, lambda: tokenizer.word_pieces, tokenizer.encode_words, lm)

    sample_rate = SAMPLE_RATE

    def with_decode(self, **fields) -> "WhisperRecognizer":
        """A recognizer sharing this one's model, decoding with other options (e.g. ``method="beam"``)."""
        cfg = dataclasses.replace(self.cfg, decode=dataclasses.replace(self.cfg.decode, **fields))
        same_lm = self.scorers is not None and cfg.decode.lm == self.cfg.decode.lm
        lm = self.scorers.lm if same_lm else None  # loaded once, shared
        return WhisperRecognizer(self.model, cfg, self.tokenizer, str(self.device), self.window_batch, lm)

    def int8(self) -> "WhisperRecognizer":
        """A recognizer with a copy of this one's model whose Linear layers run in int8
        (:mod:`ceasr.models.quantize`; README: speed and words against float32)."""
        from ceasr.models.quantize import int8_for_inference, is_int8

        if is_int8(self.model):
            return self
        clone = copy.copy(self)  # shares the tokenizer, LM and hotwords
        clone.model = int8_for_inference(self.model)
        return clone

    def transcribe(self, audio: str | Path | np.ndarray) -> Transcript:
        """Transcribe a file path or a float32 mono array at 16 kHz."""
        if not isinstance(audio, np.ndarray):
            audio = load_audio(audio, sample_rate=self.sample_rate)
        return self.transcribe_batch([audio])[0]

    @torch.inference_mode()
    def transcribe_batch(self, waves: list[np.ndarray]) -> list[Transcript]:
        """Transcribe several arrays; their windows are decoded in batches (results equal per-item calls
        for greedy search up to float rounding)."""
        mels, owner = [], []
        for i, w in enumerate(waves):
            wave = torch.from_numpy(np.asarray(w, dtype=np.float32)).to(self.device)
            win = windows(wave, self.model.cfg.n_mels, self.cfg.decode.window_padding, self.frames)
            mels.extend(win)
            owner.extend([i] * len(win))
        results: list[WindowResult] = []
        for start in range(0, len(mels), self.window_batch):
            batch = torch.stack(mels[start : start + self.window_batch])
            results.extend(decode_windows(self.model, batch, self.tokenizer, self.cfg.decode, self.scorers))
        per_wave: list[list[WindowResult]] = [[] for _ in waves]
        for i, r in zip(owner, results):
            per_wave[i].append(r)
        return [self._to_transcript(rs) for rs in per_wave]

    def _to_transcript(self, results: list[WindowResult]) -> Transcript:
        ids = [t for r in results for t in r.tokens]
        scores = tuple(s for r in results for s in r.token_scores)
        pieces = tuple(self.tokenizer.id_to_piece(t) for t in ids)
        text = " ".join(self.tokenizer.decode(r.tokens).strip() for r in results).strip()
        return Transcript(text, pieces, scores)


def load_whisper_dir(model_dir: str | Path) -> tuple[Whisper, WhisperModelDirConfig, WhisperTokenizer]:
    """Rebuild ``(model, cfg, tokenizer)`` from a Whisper model directory written by ``ceasr convert``."""
    model_dir = Path(model_dir)
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        if not (model_dir / name).exists():
            raise CeasrError(f"{model_dir}: not a ceasr model directory (no {name})")
    try:
        cfg = from_dict(WhisperModelDirConfig, json.loads((model_dir / CONFIG).read_text()))
    except json.JSONDecodeError as e:
        raise CeasrError(f"{model_dir / CONFIG}: not valid JSON ({e.msg})") from None
    except ConfigError as e:
        raise ConfigError(f"{model_dir / CONFIG}: {e}") from None
    model = Whisper(cfg.model)
    model.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    return model.eval(), cfg, load_whisper_tokenizer(model_dir / TOKENIZER)


def load_whisper(model_dir: str | Path, decode: list[str] = (), device: str = "cpu") -> WhisperRecognizer:
    """``ceasr.load_model`` for Whisper directories; ``decode`` takes ``decode.field=value`` overrides."""
    model, cfg, tok = load_whisper_dir(model_dir)
    return WhisperRecognizer(model, with_overrides(cfg, list(decode)), tok, device)
