"""The public Python API: ``ceasr.load_model(DIR).transcribe(path_or_array)``."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ceasr.audio import load as load_audio
from ceasr.config import ExperimentConfig, with_overrides
from ceasr.decode import Scorers, decode
from ceasr.errors import CeasrError
from ceasr.features import Fbank
from ceasr.text.script import languages_to_label, piece_language
from ceasr.text.tokenizer import pieces


@dataclass(frozen=True)
class Transcript:
    """One utterance's result: text plus each token with its log-probability (a confidence).

    ``language`` is the utterance's: ``"zh"``, ``"en"``, ``"mixed"`` (both), or ``""`` (nothing recognized);
    ``token_languages`` holds one tag per token (``""`` for a token without letters, like a bare "▁").
    """

    text: str
    tokens: tuple[str, ...]
    token_scores: tuple[float, ...]
    language: str = ""
    token_languages: tuple[str, ...] = ()


class Recognizer:
    """A trained model with its feature extractor, tokenizer and decode options, ready to transcribe."""

    def __init__(
        self, model: torch.nn.Module, cfg: ExperimentConfig, tokenizer, device: str = "cpu", lm=None
    ):
        """``lm``: an already loaded language model for ``cfg.decode.lm`` (else it is loaded from there)."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.quantized = False  # whether int8() made the model (a trace hides its quantized layers)
        # Inference never dithers, whatever training did.
        self.fbank = Fbank(dataclasses.replace(cfg.features, dither=0.0)).to(self.device)
        self.scorers = load_scorers(cfg.decode, lambda: pieces(tokenizer), tokenizer.encode, lm)

    @property
    def sample_rate(self) -> int:
        return self.cfg.features.sample_rate

    def with_decode(self, **fields) -> "Recognizer":
        """A recognizer sharing this one's model, decoding with other options (e.g. ``method="attention"``)."""
        cfg = dataclasses.replace(self.cfg, decode=dataclasses.replace(self.cfg.decode, **fields))
        same_lm = self.scorers is not None and cfg.decode.lm == self.cfg.decode.lm
        lm = self.scorers.lm if same_lm else None  # loaded once, shared
        other = Recognizer(self.model, cfg, self.tokenizer, str(self.device), lm=lm)
        other.quantized = self.quantized
        return other

    def traced(self) -> "Recognizer":
        """A recognizer sharing this one's weights and options whose encoder runs as a TorchScript trace
        (:mod:`ceasr.models.trace`): the same results, about a quarter less encoder time at batch size 1 on
        a CPU, after about a second of tracing. For inference only."""
        from ceasr.models.trace import is_traced, traced_for_inference

        if is_traced(self.model):
            return self
        clone = copy.copy(self)  # shares the features, tokenizer, LM and hotwords
        clone.model = traced_for_inference(self.model, self.cfg.features.n_mels)
        return clone

    def int8(self) -> "Recognizer":
        """A recognizer with a copy of this one's model whose encoder (subsampling and blocks) runs its Linear
        layers in int8 (:mod:`ceasr.models.quantize`): about a third less encoder time on a CPU, results within
        rounding of int8 weights; the CTC head and decoder stay float32. Call before :meth:`traced` (a trace is
        of the modules it was made from)."""
        from ceasr.models.quantize import int8_for_inference
        from ceasr.models.trace import is_traced

        if self.quantized:
            return self
        if is_traced(self.model):
            raise ValueError("int8() of a traced recognizer: quantize first, then trace (int8().traced())")
        clone = copy.copy(self)
        clone.model, clone.quantized = int8_for_inference(self.model, parts=("embed", "encoder")), True
        return clone

    def transcribe(self, audio: str | Path | np.ndarray) -> Transcript:
        """Transcribe a file path or a float32 mono array at ``sample_rate``."""
        if not isinstance(audio, np.ndarray):
            audio = load_audio(audio, sample_rate=self.sample_rate)
        return self.transcribe_batch([audio])[0]

    @torch.inference_mode()
    def transcribe_batch(self, waves: list[np.ndarray]) -> list[Transcript]:
        """Transcribe several arrays in one padded batch (results equal per-item calls)."""
        lens = torch.tensor([len(w) for w in waves], dtype=torch.int64)
        batch = torch.zeros(len(waves), int(lens.max()), dtype=torch.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        feats, feat_lens = self.fbank(batch.to(self.device), lens.to(self.device))
        hyps = decode(self.model, feats, feat_lens, self.cfg.decode, self.scorers)
        return [self._to_transcript(h) for h in hyps]

    def _to_transcript(self, hyp) -> Transcript:
        tokens = tuple(self.tokenizer.id_to_piece(t) for t in hyp.tokens)
        # The bilingual tokenizer tags its own ids; for the others the piece's script decides.
        tag = getattr(self.tokenizer, "language", None)
        langs = tuple(tag(t) if tag else piece_language(p) for t, p in zip(hyp.tokens, tokens))
        text = self.tokenizer.decode(list(hyp.tokens))
        return Transcript(text, tokens, tuple(hyp.token_scores), languages_to_label(langs), langs)


def load_scorers(cfg, pieces: Callable[[], Sequence[str]], encode: Callable[[str], list[int]],
                 lm=None) -> Scorers | None:
    """The LM and hotwords a decode config ``cfg`` names (None when it names neither), for a recognizer whose
    token ``i`` is ``pieces()[i]`` (called only when needed) and whose tokenizer turns hotword text into ids
    with ``encode``; ``lm``: the model ``cfg.lm`` names, already loaded."""
    if not cfg.lm and not cfg.hotwords:
        return None
    from ceasr.decode.hotwords import load_hotwords
    from ceasr.lm import load_lm

    if cfg.lm and lm is None:
        lm = load_lm(cfg.lm)
    hot = load_hotwords(cfg.hotwords, encode, cfg.hotword_boost) if cfg.hotwords else None
    return Scorers(tuple(pieces()), lm if cfg.lm else None, hot)


def _load_asr(model_dir: str | Path, decode: list[str], device: str, jit: bool, int8: bool) -> Recognizer:
    from ceasr.modeldir import load_model_dir

    model, cfg, tokenizer = load_model_dir(model_dir)
    cfg = with_overrides(cfg, list(decode))
    recognizer = Recognizer(model, cfg, tokenizer, device)
    if int8:
        recognizer = recognizer.int8()
    return recognizer.traced() if jit else recognizer


def _load_whisper(model_dir: str | Path, decode: list[str], device: str, jit: bool, int8: bool):
    from ceasr.whisper.recognizer import load_whisper

    if jit:
        raise CeasrError(f"{model_dir}: --jit is for ceasr's own models; a Whisper model runs as it is")
    recognizer = load_whisper(model_dir, decode, device)
    return recognizer.int8() if int8 else recognizer


# config.json's "kind" -> loader; ceasr's own models have no "kind".
LOADERS = {"asr": _load_asr, "whisper": _load_whisper}


def load_model(model_dir: str | Path, decode: list[str] = (), device: str = "cpu", jit: bool = False,
               int8: bool = False) -> Recognizer:
    """Load a model directory (config.json, model.safetensors, tokenizer/) as a :class:`Recognizer`
    (or, for a converted Whisper model, a recognizer with the same methods).

    ``decode`` takes config overrides such as ``["decode.method=attention", "decode.beam_size=8"]``;
    ``jit`` traces the encoder (:meth:`Recognizer.traced`); ``int8`` runs the encoder's Linear layers in int8
    (:meth:`Recognizer.int8`; a Whisper model's every Linear layer).
    """
    from ceasr.modeldir import model_kind

    kind = model_kind(model_dir)
    if kind not in LOADERS:
        raise CeasrError(f"{model_dir}: unknown model kind {kind!r}; known: {', '.join(LOADERS)}")
    return LOADERS[kind](model_dir, list(decode), device, jit, int8)
