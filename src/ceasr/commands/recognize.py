"""Grammar-constrained recognition: the best allowed phrase, its intent and slots, a confidence, a decision.

For one utterance with T' encoder frames:

* every allowed phrase gets its joint score ``(1 - w) * log p_att + w * log P_ctc`` — exactly when the set
  has at most ``exact_limit`` phrases (CTC for all, the decoder only for the best by CTC until no other can
  win), else by the prefix-trie beam
  (:mod:`ceasr.commands.beam`) — and the best one is chosen;
* its CTC log-likelihood is compared with those of the free alternatives, the CTC greedy transcript and
  the empty transcript: ``confidence = exp((phrase - best of the three) / S)``, with S the frames where
  the model hears speech (blank probability below 1/2). It is the per-speech-frame likelihood ratio of the
  phrase against what the model would rather say, in (0, 1]; 1 when no free alternative beats it. The
  margin is CTC's, because the attention decoder of a model trained on its commands alone is also a language
  model of them and favours in-set phrases on any audio (with the joint score 40 % of out-of-grammar dev
  sentences scored 1.0, with CTC 7 %).

A model trained on near misses (:mod:`ceasr.commands.negatives`) has learned to write a word it does not know as
the filler word, and its decoder then gives a near miss's one wrong word a low probability where CTC still hears
the command ("close the car": CTC says "close the door" outright, the decoder would rather say "close the zzz").
For such a model the confidence is also multiplied by ``(p_att / (1 - eps) ** (L + 1)) ** a``, capped at 1: the
decoder's probability of the phrase's L tokens and eos given the audio, over the most a decoder trained with label
smoothing ``eps`` gives a sequence it is sure of, to the power ``a`` (``attention_weight``; by default 0.25 when the
tokenizer spells :data:`~ceasr.commands.negatives.FILLER` as one token, else 0: for a model never shown near misses
it separated nothing better and rejected more commands; README, "Hard negatives").

The phrase is accepted when ``confidence >= threshold``. Out-of-grammar speech makes the free transcript win
by many frames' worth; silence and noise make the empty one win. Before any of that, audio whose level
hardly moves (:func:`ceasr.audio.level_spread_db` below ``min_spread_db``: stationary noise, hum, silence)
is rejected with confidence 0: a model trained to hear words through noise can hear them in noise alone.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ceasr.api import Recognizer
from ceasr.audio import level_spread_db
from ceasr.audio import load as load_audio
from ceasr.commands.beam import TokenTrie, constrained_beam_search
from ceasr.commands.grammar import Command, CommandSet
from ceasr.commands.negatives import FILLER
from ceasr.commands.score import Phrases, attention_scores, best_joint_scores, ctc_scores, pad_sequences
from ceasr.config import CommandConfig
from ceasr.decode.ctc import greedy_tokens
from ceasr.errors import CeasrError, ConfigError


@dataclass(frozen=True)
class CommandResult:
    """One utterance's outcome: the best allowed ``command`` (even when rejected), whether it is accepted."""

    command: Command
    accepted: bool
    confidence: float
    score: float  # joint log score of the best allowed phrase (what chose it)
    ctc_score: float  # its CTC log-likelihood (a Whisper model: its decoder log-probability)
    free_score: float  # the best CTC log-likelihood of it, the greedy and the empty transcript (Whisper: of
    # it and the greedy transcript)
    free_text: str  # the (CTC) greedy transcript
    frames: int  # encoder frames where speech is likely, blank probability below 1/2 (Whisper: tokens + 1)

    @property
    def text(self) -> str | None:
        """The recognized phrase, or None when rejected."""
        return self.command.text if self.accepted else None

    def as_dict(self) -> dict:
        out = {"phrase": self.text, "best": self.command.text, "confidence": round(self.confidence, 4)}
        if self.accepted:
            out.update(self.command.as_dict())
        return out


def check_config(cfg: CommandConfig) -> None:
    """Reject a command config that cannot run, naming the field."""
    if not 0.0 <= cfg.ctc_weight <= 1.0:
        raise ConfigError(f"commands.ctc_weight={cfg.ctc_weight}: must be between 0 and 1")
    if not cfg.threshold >= 0.0:  # above 1 rejects everything; a calibration may ask for that
        raise ConfigError(f"threshold {cfg.threshold}: must be >= 0 (confidences are in [0, 1])")
    if not cfg.min_spread_db >= 0.0:
        raise ConfigError(f"commands.min_spread_db={cfg.min_spread_db}: must be >= 0 (0 turns the check off)")
    if not 0.0 <= cfg.no_speech_threshold <= 1.0:
        raise ConfigError(f"commands.no_speech_threshold={cfg.no_speech_threshold}: must be between 0 and 1")
    if not 0.0 <= cfg.gate <= 1.0:
        raise ConfigError(f"commands.gate={cfg.gate}: must be between 0 and 1")
    if cfg.attention_weight is not None and not cfg.attention_weight >= 0.0:
        raise ConfigError(f"commands.attention_weight={cfg.attention_weight}: must be >= 0 (0 turns it off)")
    if cfg.beam_size < 1 or cfg.exact_limit < 0:
        raise ConfigError("commands.beam_size must be >= 1 and commands.exact_limit >= 0")


class CommandRecognizerBase:
    """What every command recognizer shares: a ``recognizer`` (the model), ``commands``, ``cfg``, and its own
    ``recognize_batch(waves) -> list[CommandResult]``."""

    recognizer: Recognizer
    commands: CommandSet
    cfg: CommandConfig

    @property
    def sample_rate(self) -> int:
        return self.recognizer.sample_rate

    def with_threshold(self, threshold: float):
        """The same recognizer (sharing the model and the compiled phrases) with another acceptance threshold."""
        cfg = dataclasses.replace(self.cfg, threshold=threshold)
        check_config(cfg)
        clone = copy.copy(self)
        clone.cfg = cfg
        return clone

    def recognize(self, audio: str | Path | np.ndarray) -> CommandResult:
        """Recognize one file path or float32 mono array at ``sample_rate``."""
        if not isinstance(audio, np.ndarray):
            audio = load_audio(audio, sample_rate=self.sample_rate)
        return self.recognize_batch([audio])[0]


class CommandRecognizer(CommandRecognizerBase):
    """A :class:`~ceasr.api.Recognizer` restricted to a :class:`CommandSet`, with rejection."""

    def __init__(self, recognizer: Recognizer, commands: CommandSet, cfg: CommandConfig = CommandConfig()):
        check_config(cfg)
        self.recognizer, self.commands, self.cfg = recognizer, commands, cfg
        self.model = recognizer.model
        self.ctc_weight = cfg.ctc_weight if self.model.decoder is not None else 1.0
        tok = recognizer.tokenizer
        self.seqs = [tuple(tok.encode(c.text)) for c in commands.commands]
        for c, seq in zip(commands.commands, self.seqs):
            if tok.unk_id in seq or not seq:
                raise CeasrError(f"command {c.text!r}: the model's tokenizer cannot spell it (unknown characters)")
        self.trie = TokenTrie(self.seqs) if len(self.seqs) > cfg.exact_limit else None
        self.attention_weight = attention_weight(cfg, self.model, tok)
        self.label_smoothing = recognizer.cfg.model.label_smoothing
        self._phrases = None  # the phrases padded, with their decoder states: made on first use

    @torch.inference_mode()
    def encode(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Waves -> encoder output (B, T', D), lengths (B,) and CTC log-probs (B, T', V), one padded batch."""
        rec = self.recognizer
        lens = torch.tensor([len(w) for w in waves], dtype=torch.int64)
        batch = torch.zeros(len(waves), int(lens.max()), dtype=torch.float32)
        for i, w in enumerate(waves):
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        feats, feat_lens = rec.fbank(batch.to(rec.device), lens.to(rec.device))
        min_frames = getattr(self.model.embed, "min_frames", 1)
        if feats.shape[1] < min_frames:  # too short to encode: no frame at all
            empty = torch.zeros(len(waves), 0, 1)
            return empty, torch.zeros(len(waves), dtype=torch.long), empty
        enc, enc_lens = self.model.encode(feats, feat_lens)
        return enc, enc_lens.cpu(), self.model.ctc_log_probs(enc).cpu()

    @torch.inference_mode()
    def recognize_batch(self, waves: list[np.ndarray]) -> list[CommandResult]:
        """Recognize several arrays (encoded as one padded batch; results equal per-item calls)."""
        enc, enc_lens, log_probs = self.encode(waves)
        results = [self.decide(enc[b : b + 1, :n], log_probs[b, :n]) for b, n in enumerate(enc_lens.tolist())]
        return [r if level_spread_db(w, self.sample_rate) >= self.cfg.min_spread_db
                else dataclasses.replace(r, accepted=self.cfg.threshold <= 0.0, confidence=0.0)
                for r, w in zip(results, waves)]

    def phrase_scores(self, memory: torch.Tensor, log_probs: torch.Tensor) -> list[tuple[int, float]]:
        """(command index, joint score) of allowed phrases, best first: for a small set, those the exact
        search had to score (:func:`~ceasr.commands.score.best_joint_scores`), else the beam's n-best.
        ``memory`` (1, T', D), ``log_probs`` (T', V)."""
        if self.trie is None:
            if self._phrases is None:
                self._phrases = Phrases.of(self.model, self.seqs)
            return best_joint_scores(self.model, memory, log_probs, self._phrases, self.ctc_weight)
        return constrained_beam_search(self.model, memory, log_probs, self.trie, self.cfg.beam_size,
                                       self.ctc_weight)

    def decide(self, memory: torch.Tensor, log_probs: torch.Tensor) -> CommandResult:
        """The result for one utterance's encoder output ``memory`` (1, T', D) and CTC log-probs (T', V)."""
        T = log_probs.shape[0]
        if T == 0:  # too short to hold any phrase
            return CommandResult(self.commands.commands[0], False, 0.0, -math.inf, -math.inf, 0.0, "", 0)
        ranked = self.phrase_scores(memory, log_probs)
        index, best = ranked[0] if ranked else (0, -math.inf)
        greedy = greedy_tokens(log_probs, self.model.blank_id)
        # The margin is judged by CTC alone: the attention decoder is also a language model of the training
        # texts and favours in-set phrases whatever the audio says.
        padded, lens = pad_sequences([self.seqs[index], greedy, ()], self.model.eos_id)
        ctc = ctc_scores(log_probs, padded, lens, self.model.blank_id).tolist()
        # Evidence per frame of speech: a frame counts when the model thinks something is said (blank
        # below 1/2). Dividing by all frames would let long silence dilute a short hallucinated word.
        active = max(1, int((log_probs[:, self.model.blank_id] < math.log(0.5)).sum()))
        top = max(ctc)
        confidence = math.exp((ctc[0] - top) / active) if ctc[0] > -math.inf else 0.0
        if self.attention_weight > 0.0 and confidence > 0.0:
            confidence *= self.attention_factor(self.phrase_attention(best, ctc[0], memory, padded[:1], lens[:1]),
                                                int(lens[0]))
        return CommandResult(self.commands.commands[index], confidence >= self.cfg.threshold, confidence, best,
                             ctc[0], top, self.recognizer.tokenizer.decode(list(greedy)), active)

    def phrase_attention(self, joint: float, ctc: float, memory: torch.Tensor, padded: torch.Tensor,
                         lens: torch.Tensor) -> float:
        """log p_att of the chosen phrase (``padded`` (1, L), ``lens`` (1,)) and eos: out of its ``joint`` score
        ``(1 - w) * att + w * ctc`` when that holds it (w < 1), else from one decoder call."""
        w = self.ctc_weight
        if w < 1.0:
            return (joint - w * ctc) / (1.0 - w)
        return float(attention_scores(self.model.decoder, memory, padded, lens, self.model.sos_id,
                                      self.model.eos_id)[0])

    def attention_factor(self, att: float, tokens: int) -> float:
        """``(p_att / (1 - eps) ** (tokens + 1)) ** a`` capped at 1, for a phrase's log p_att ``att``."""
        ceiling = (tokens + 1) * math.log1p(-self.label_smoothing)
        return math.exp(self.attention_weight * min(0.0, att - ceiling))


AUTO_ATTENTION_WEIGHT = 0.25  # 2026-12-07, four seeds of the default negatives (README, "Hard negatives")


def attention_weight(cfg: CommandConfig, model, tokenizer) -> float:
    """``cfg.attention_weight``, or when it is None :data:`AUTO_ATTENTION_WEIGHT` if the model has a decoder and
    its tokenizer spells :data:`~ceasr.commands.negatives.FILLER` as one known token (it was trained on near
    misses), else 0. Without a decoder: 0."""
    if model.decoder is None:
        return 0.0
    if cfg.attention_weight is not None:
        return cfg.attention_weight
    ids = tokenizer.encode(FILLER)
    return AUTO_ATTENTION_WEIGHT if len(ids) == 1 and ids[0] != tokenizer.unk_id else 0.0


def load_command_recognizer(model_dir, commands: str = "default", threshold: float | None = None,
                            jit: bool = False, int8: bool = False, verify: str | Path | None = None,
                            **fields) -> CommandRecognizerBase:
    """A model directory and a command set (a built-in name or a file) as a :class:`CommandRecognizer` (a
    converted Whisper model: a :class:`~ceasr.commands.whisper.WhisperCommandRecognizer`);
    ``threshold`` and other ``fields`` override :class:`~ceasr.config.CommandConfig` defaults; ``jit``
    traces the encoder (:meth:`ceasr.api.Recognizer.traced`), ``int8`` runs its Linear layers in int8
    (:meth:`ceasr.api.Recognizer.int8`). With ``verify`` (a second model directory, e.g. Whisper), a
    :class:`~ceasr.commands.cascade.CascadeCommandRecognizer`: this model screens with ``gate``, that one
    decides with ``threshold`` (``jit`` and ``int8`` apply to the first)."""
    from ceasr.api import load_model
    from ceasr.commands.cascade import CascadeCommandRecognizer
    from ceasr.commands.grammar import load_command_set
    from ceasr.commands.whisper import WhisperCommandRecognizer
    from ceasr.whisper.recognizer import WhisperRecognizer

    if threshold is not None:
        fields["threshold"] = threshold
    cfg, command_set = CommandConfig(**fields), load_command_set(commands)

    def build(recognizer):
        kind = WhisperCommandRecognizer if isinstance(recognizer, WhisperRecognizer) else CommandRecognizer
        return kind(recognizer, command_set, cfg)

    first = build(load_model(model_dir, jit=jit, int8=int8))
    if verify is None:
        return first
    return CascadeCommandRecognizer(first, build(load_model(verify)), cfg.gate)


def recognize_files(crec: CommandRecognizerBase, files: list[str], fmt: str = "text", out=None) -> int:
    """Print ``path<TAB>phrase<TAB>confidence`` (``<rejected>`` for no command) or JSON lines per file;
    returns how many files could not be read (each reported on stderr)."""
    import json
    import sys

    out = out or sys.stdout
    failed = 0
    for path in files:
        try:
            result = crec.recognize(path)
        except CeasrError as e:
            print(f"ceasr command: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if fmt == "json":
            print(json.dumps({"path": path, **result.as_dict()}, ensure_ascii=False), file=out, flush=True)
        else:
            print(f"{path}\t{result.text or '<rejected>'}\t{result.confidence:.4f}", file=out, flush=True)
    return failed
