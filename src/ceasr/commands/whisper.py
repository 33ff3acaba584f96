"""Grammar-constrained recognition with a converted Whisper model (``ceasr convert whisper``).

Whisper has no CTC head, so its decoder alone judges. For one utterance (its first window, 30 s or
``decode.audio_ctx``; a command is a few seconds):

* the free transcript ``F``: greedy decoding from ``sot [en] transcribe no_timestamps``, with its total
  log-probability (end token included), as ``ceasr transcribe`` decodes;
* every allowed phrase ``p``: ``log P(p)`` = log of the summed probabilities of the ways Whisper writes it,
  each teacher-forced after the same prompt with the same masks as greedy decoding, end token included: the
  words with a capital and a full stop (" Turn on the lights."), the same with number words as digits
  (" Set a timer for 5 minutes."), the normalized words (" turn on the lights", how a model fine-tuned on
  ceasr manifests writes), and the free transcript itself when it normalizes to ``p``;
* the best phrase is the one with the highest ``log P(p)``, and ``confidence = exp(min(0, a(p) - a(F)))``,
  with ``a`` the mean log-probability per token (end token included) of the phrase's likeliest written form
  and of the free transcript: how much less likely, token for token, the phrase is than what the model would
  rather write. A transcript that is a phrase of the set gives 1 for it; a near miss ("open a window" for "open the
  window") loses its differing tokens. (Totals instead of means would favour short phrases: "No." outscores a
  long sentence the model is unsure of.)
* Whisper's own speech detector decides first: when the probability of ``<|nospeech|>`` right after ``sot`` is
  above ``no_speech_threshold`` (0.6, OpenAI's), the utterance is rejected with confidence 0. (Before it,
  Whisper base heard "you" in noise clips and the set's "no" matched it at confidence 0.6-0.8.)

The written forms of all phrases share prefixes; they are scored level by level over their prefix trie with
the decoder's key/value cache, so every distinct prefix runs through the decoder once (the 61 phrases of the
default set in three forms, 152 sequences of 683 tokens with their end tokens, share 383 prefixes). Each
step projects onto the whole vocabulary (51865 tokens for base), so prefixes that cannot lead to the best
phrase are not continued: a first descent along the likeliest allowed tokens gives one complete sequence's
score, and a prefix already further below it than the phrase's forms could make up is dropped.

Even so, this recognizer is for accuracy, ceasr's own CTC models for speed (README: the commands benchmark);
a model fine-tuned in short windows (``ceasr finetune --audio-ctx``) makes the encoder's share small.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ceasr.audio import level_spread_db
from ceasr.commands.grammar import CommandSet
from ceasr.commands.recognize import CommandRecognizerBase, CommandResult, check_config
from ceasr.config import CommandConfig
from ceasr.models.whisper import KVCache
from ceasr.text.normalize import cardinal, normalize
from ceasr.whisper.audio import windows
from ceasr.whisper.decoding import _Masks, greedy

PRUNE_SLACK = 10.0  # nats below the bound before a prefix is dropped (see WhisperCommandRecognizer.decide)

# Number words Whisper usually writes as digits ("ten" -> "10"): the one-word cardinals.
_DIGITS = {cardinal(n): str(n) for n in range(0, 101) if " " not in cardinal(n)}


def written_forms(text: str) -> list[str]:
    """How Whisper would write the normalized phrase ``text`` as a whole short utterance: capitalized with
    a full stop, (when different) with its one-word numbers as digits, and as the normalized words
    themselves, which is how a model fine-tuned on ceasr manifests writes (``ceasr finetune``)."""
    forms = []
    for words in (text.split(), [_DIGITS.get(w, w) for w in text.split()]):
        s = " ".join(words)
        form = " " + s[:1].upper() + s[1:] + "."
        if form not in forms:
            forms.append(form)
    return forms + [" " + " ".join(text.split())]


@torch.inference_mode()
def start(model, cross: KVCache, prompt: list[int]) -> tuple[torch.Tensor, KVCache]:
    """The decoder run over ``prompt`` for one utterance, from ``cross`` (its cross-attention keys/values,
    ``model.decoder.init_cache(enc)`` of an encoder output (1, T, D)): logits (1, P, V) after each prompt
    token, and the key/value cache to continue from."""
    device = cross.cross_kv[0][0].device
    return model.decoder(torch.tensor([prompt], device=device), cache=cross)


@torch.inference_mode()
def descend(model, started: tuple[torch.Tensor, KVCache], seqs: list[tuple[int, ...]], masks: _Masks,
            eot: int) -> float:
    """``log P(seq + eot | prompt, audio)`` of the one sequence of ``seqs`` reached by taking, from the
    prompt on, the likeliest allowed next token (a child in their prefix trie, or the end where a sequence
    ends): a lower bound on the best sequence's, for a few decoder steps of one row."""
    logits, cache = started
    level = F.log_softmax(logits[0, -1] + masks.begin, dim=-1)  # (V,)
    prefix, total, ends = (), 0.0, set(seqs)
    while True:
        depth = len(prefix)
        allowed = {s[depth] for s in seqs if len(s) > depth and s[:depth] == prefix}
        if prefix in ends:
            allowed.add(eot)
        token = max(allowed, key=lambda t: float(level[t]))
        total += float(level[token])
        if token == eot:
            return total
        prefix += (token,)
        logits, cache = model.decoder(torch.tensor([[token]], device=logits.device), cache=cache)
        level = F.log_softmax(logits[0, -1] + masks.always, dim=-1)


@torch.inference_mode()
def score_sequences(model, started: tuple[torch.Tensor, KVCache], seqs: list[tuple[int, ...]], masks: _Masks,
                    eot: int, floor: float = -math.inf) -> list[tuple[float, int]]:
    """``(log P(seq + eot | prompt, audio), len(seq) + 1)`` for each token sequence, after a prompt
    :func:`start` ran; the decoder runs once per distinct prefix. A prefix whose log-probability is below
    ``floor`` is not continued (log-probabilities only fall as tokens are added): its sequences score
    ``(-inf, 0)``."""
    logits, cache = started
    device = logits.device
    level = F.log_softmax(logits[:, -1] + masks.begin, dim=-1)  # (rows, V): next token after each prefix
    rows, acc = {(): 0}, {(): 0.0}  # prefix -> its row in ``level``, its log-probability so far
    scores: list[tuple[float, int]] = [(-math.inf, 0)] * len(seqs)
    depth = 0
    while True:
        for i, s in enumerate(seqs):
            if len(s) == depth and s in rows:
                scores[i] = (acc[s] + float(level[rows[s], eot]), depth + 1)
        grown = {p: acc[p[:-1]] + float(level[rows[p[:-1]], p[-1]])
                 for p in {s[: depth + 1] for s in seqs if len(s) > depth and s[:depth] in rows}}
        nxt = sorted(p for p, lp in grown.items() if lp >= floor)
        if not nxt:
            return scores
        parents = [rows[p[:-1]] for p in nxt]
        acc = {p: grown[p] for p in nxt}
        cache = cache.select(torch.tensor(parents, device=device))
        logits, cache = model.decoder(torch.tensor([[p[-1]] for p in nxt], device=device), cache=cache)
        level = F.log_softmax(logits[:, -1] + masks.always, dim=-1)
        rows = {p: i for i, p in enumerate(nxt)}
        depth += 1


class WhisperCommandRecognizer(CommandRecognizerBase):
    """A :class:`~ceasr.whisper.recognizer.WhisperRecognizer` restricted to a :class:`CommandSet`, with
    rejection; the same surface as :class:`~ceasr.commands.recognize.CommandRecognizer`."""

    def __init__(self, recognizer, commands: CommandSet, cfg: CommandConfig = CommandConfig()):
        check_config(cfg)
        self.recognizer, self.commands, self.cfg = recognizer, commands, cfg
        self.model, tok = recognizer.model, recognizer.tokenizer
        self.prompt = tok.prompt(recognizer.cfg.decode.language or "en", "transcribe")
        self.masks = _Masks(tok, self.model.cfg.n_vocab, recognizer.device, recognizer.cfg.decode.suppress_blank)
        # Each phrase's written forms as token sequences, and which phrase each form belongs to.
        self.forms: list[tuple[int, ...]] = []
        self.owner: list[int] = []
        for i, c in enumerate(commands.commands):
            for form in written_forms(c.text):
                self.forms.append(tuple(tok.encode(form)))
                self.owner.append(i)

    @torch.inference_mode()
    def recognize_batch(self, waves: list[np.ndarray]) -> list[CommandResult]:
        """Recognize several arrays at 16 kHz (their windows encoded together)."""
        if not waves:
            return []
        # Stationary noise, hum and silence are rejected before the (costly) model sees them.
        steady = [level_spread_db(w, self.sample_rate) < self.cfg.min_spread_db for w in waves]
        todo = [w for w, s in zip(waves, steady) if not s]
        results = iter(self._recognize(todo) if todo else [])
        rejected = CommandResult(self.commands.commands[0], self.cfg.threshold <= 0.0, 0.0, -math.inf, -math.inf,
                                 -math.inf, "", 0)
        return [rejected if s else next(results) for s in steady]

    def _recognize(self, waves: list[np.ndarray]) -> list[CommandResult]:
        rec = self.recognizer
        mels = [windows(torch.from_numpy(np.asarray(w, dtype=np.float32)).to(rec.device),
                        self.model.cfg.n_mels, rec.cfg.decode.window_padding, rec.frames)[0] for w in waves]
        enc = self.model.encode(torch.stack(mels))
        prompts = torch.tensor([self.prompt] * len(waves), device=rec.device)
        cross = self.model.decoder.init_cache(enc)  # the audio's keys/values, for the free and forced decoding
        free = greedy(self.model, enc, prompts, rec.tokenizer, rec.cfg.decode, cross=cross)
        return [self.decide(KVCache(cross.self_kv, [(k[b : b + 1], v[b : b + 1]) for k, v in cross.cross_kv]), f)
                for b, f in enumerate(free)]

    def decide(self, cross: KVCache, free: tuple[list[int], list[float], float]) -> CommandResult:
        """The result for one utterance from its cross-attention keys/values ``cross``
        (``model.decoder.init_cache`` of its encoder output (1, T, D)) and its greedy transcript
        ``(tokens, token log-probs, total log-prob)``."""
        tok = self.recognizer.tokenizer
        free_tokens, _, free_score = free
        free_text = tok.decode(free_tokens).strip()
        seqs, owner = list(self.forms), list(self.owner)
        match = self.commands.lookup(normalize(free_text))
        if match is not None and tuple(free_tokens) not in seqs:  # the transcript is a phrase, as written
            seqs.append(tuple(free_tokens))
            owner.append(self.commands.commands.index(match))
        started = start(self.model, cross, self.prompt)
        # Branch and bound: a phrase's total is at most (its forms) x its best form, so a prefix more than
        # log(forms) below a complete sequence's score cannot lead to the best phrase; PRUNE_SLACK more keeps
        # the totals of the phrases that can win exact to float precision (what they lose is < e^-10 of them).
        forms = max(owner.count(i) for i in set(owner))
        floor = descend(self.model, started, seqs, self.masks, tok.eot) - math.log(forms) - PRUNE_SLACK
        scored = score_sequences(self.model, started, seqs, self.masks, tok.eot, floor)
        per_phrase: dict[int, list[tuple[float, int]]] = {}
        for i, s in zip(owner, scored):
            per_phrase.setdefault(i, []).append(s)
        total = {i: torch.logsumexp(torch.tensor([lp for lp, _ in ss]), 0).item() for i, ss in per_phrase.items()}
        index = max(total, key=total.get)
        best = total[index]
        form_score, n = max(per_phrase[index])  # the phrase's likeliest written form, its tokens (+ end)
        if match is not None and self.commands.commands[index] == match:
            confidence = 1.0  # what the model would write anyway
        elif best > -math.inf:  # the free transcript's end token is in its mean unless it ran out of length
            ended = len(free_tokens) < self.recognizer.cfg.decode.max_new_tokens
            confidence = math.exp(min(0.0, form_score / n - free_score / (len(free_tokens) + ended)))
        else:
            confidence = 0.0
        if tok.no_speech is not None:  # after sot, before the language token: Whisper's own speech detector
            no_speech = float(F.softmax(started[0][0, 0], dim=-1)[tok.no_speech])
            if no_speech > self.cfg.no_speech_threshold:
                confidence = 0.0
        return CommandResult(self.commands.commands[index], confidence >= self.cfg.threshold, confidence, best,
                             best, max(best, free_score), free_text, n)

