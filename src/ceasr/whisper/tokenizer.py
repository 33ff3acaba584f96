"""Whisper's byte-level BPE tokenizer, read from a checkpoint's ``tokenizer.json`` (the ``tokenizers`` library).

Special tokens are found by their text (``<|endoftext|>``, ``<|startoftranscript|>``, ``<|en|>``, ...), so
multilingual, English-only and large-v3 vocabularies all work without a table of ids. Text tokens are the
ids below ``<|endoftext|>``; everything from it on is a control token that :meth:`decode` leaves out.

A ceasr Whisper model directory keeps ``tokenizer/tokenizer.json`` and ``tokenizer/whisper.json`` (the ids
the decoder must never emit, as the checkpoint gave them, or derived as OpenAI does when it gave none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer

from ceasr.errors import CeasrError
from ceasr.io import atomic_write_text
from ceasr.text.normalize import normalize_basic
from ceasr.text.tokenizer import WORD_START

TOKENIZER_JSON, SUPPRESS_JSON = "tokenizer.json", "whisper.json"
_LANGUAGE = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")
# Symbols OpenAI keeps Whisper from writing (speaker turns, music marks, brackets of sound descriptions).
_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + (
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
)
_MUSIC = "♩♪♫♬♭♮♯"


class WhisperTokenizer:
    """Text <-> ids plus Whisper's control tokens (``sot``, ``eot``, languages, tasks, ``no_timestamps``)."""

    def __init__(self, tokenizer: Tokenizer, suppress_ids: Sequence[int] = (), suppress_ids_begin: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.eot = self._special("<|endoftext|>")
        self.sot = self._special("<|startoftranscript|>")
        self.transcribe_id = self._special("<|transcribe|>")
        self.translate_id = self._special("<|translate|>")
        self.no_timestamps = self._special("<|notimestamps|>")
        self.languages = self._languages()  # code -> id, in id order
        self.suppress_ids = tuple(suppress_ids) or self._derive_suppress_ids()
        self.suppress_ids_begin = tuple(suppress_ids_begin) or (self.encode(" ")[0], self.eot)

    def _special(self, text: str) -> int:
        i = self.tokenizer.token_to_id(text)
        if i is None:
            raise CeasrError(f"tokenizer: no {text} token; not a Whisper tokenizer")
        return i

    def _languages(self) -> dict[str, int]:
        found = {}
        for i in range(self.sot + 1, self.translate_id):
            m = _LANGUAGE.match(self.tokenizer.id_to_token(i) or "")
            if m:
                found[m.group(1)] = i
        return found

    def _derive_suppress_ids(self) -> tuple[int, ...]:
        """OpenAI's rule: symbols that encode to one token (alone or after a space), music marks, " -", " '"."""
        ids = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in _SYMBOLS + list(_MUSIC):
            for pieces in (self.encode(symbol), self.encode(" " + symbol)):
                if len(pieces) == 1 or symbol in _MUSIC:
                    ids.add(pieces[0])
        return tuple(sorted(i for i in ids if i < self.eot))

    @property
    def no_speech(self) -> int | None:
        """The id whose probability right after ``sot`` is Whisper's no-speech probability (``<|nospeech|>``;
        ``<|nocaptions|>`` in the first multilingual tokenizers), or None."""
        for text in ("<|nospeech|>", "<|nocaptions|>"):
            i = self.tokenizer.token_to_id(text)
            if i is not None:
                return i
        return None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    def prompt(self, language: str | None, task: str = "transcribe") -> list[int]:
        """The decoder's start: ``sot [language] [task] no_timestamps`` (English-only models have neither)."""
        if not self.multilingual:
            return [self.sot, self.no_timestamps]
        if language not in self.languages:
            raise CeasrError(f"language {language!r}: unknown; known: {', '.join(self.languages)}")
        task_id = {"transcribe": self.transcribe_id, "translate": self.translate_id}.get(task)
        if task_id is None:
            raise CeasrError(f"task {task!r}: expected transcribe or translate")
        return [self.sot, self.languages[language], task_id, self.no_timestamps]

    def encode(self, text: str) -> list[int]:
        """Text ids of ``text`` (no control tokens added). Whisper's transcripts start with a space."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, control tokens (``>= eot``) left out."""
        return self.tokenizer.decode([int(i) for i in ids if i < self.eot], skip_special_tokens=False)

    def id_to_piece(self, i: int) -> str:
        return self.tokenizer.id_to_token(int(i)) or ""

    @cached_property
    def word_pieces(self) -> tuple[str, ...]:
        """Each id's text as a language model over normalized words sees it, in ceasr's piece convention: a
        leading space becomes "▁" (a word starts), the rest is lowercased with punctuation removed
        (``normalize_basic``); control tokens are "". Byte pieces of a split UTF-8 character spell nothing."""
        texts = self.tokenizer.decode_batch([[i] for i in range(self.eot)], skip_special_tokens=False)
        texts += [""] * (self.vocab_size - self.eot)
        spelled = ("".join(normalize_basic(text.replace("\ufffd", "")).split()) for text in texts)
        return tuple((WORD_START if text.startswith(" ") else "") + body for text, body in zip(texts, spelled))

    def encode_words(self, text: str) -> list[int]:
        """Ids of normalized words as Whisper writes them inside a transcript (after a space)."""
        return self.encode(" " + text)

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json`` and ``whisper.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / TOKENIZER_JSON, self.tokenizer.to_str())
        ids = {"suppress_ids": list(self.suppress_ids), "suppress_ids_begin": list(self.suppress_ids_begin)}
        atomic_write_text(directory / SUPPRESS_JSON, json.dumps(ids) + "\n")


def restore_merges(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer`` with the BPE merges its vocabulary implies but its merge list lacks.

    Whisper's vocabulary was made by merging in id order (the token made by merge r has id 256 + r), and the
    ``tokenizer.json`` files in circulation (faster-whisper's among them) lost the first merge, "Ġ t": then
    no token starting with "Ġt" is ever produced and " the" encodes as "Ġ" + "the", while the model writes
    "Ġthe". Fine-tuning on such targets teaches the model a second spelling of every word starting with t.
    When the merges' results are in id order, each text token no merge makes and that splits in exactly one
    way into two older tokens gets that merge back, at its rank.
    """
    spec = json.loads(tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or not model.get("merges"):
        return tokenizer
    vocab, merges = model["vocab"], model["merges"]
    as_text = isinstance(merges[0], str)
    pairs = [tuple(m.split(" ", 1)) if as_text else tuple(m) for m in merges]
    made = [vocab.get(a + b) for a, b in pairs]
    if None in made or made != sorted(made):
        return tokenizer  # not a vocabulary built in merge order: nothing to infer
    produced = {a + b for a, b in pairs}
    special = {t["content"] for t in spec.get("added_tokens") or ()}
    restored = []
    for token, i in vocab.items():
        if len(token) < 2 or token in produced or token in special:  # base symbols are single characters
            continue
        splits = [(token[:k], token[k:]) for k in range(1, len(token))
                  if vocab.get(token[:k], i) < i and vocab.get(token[k:], i) < i]
        if len(splits) == 1:
            restored.append(splits[0])
    if not restored:
        return tokenizer
    pairs = sorted(pairs + restored, key=lambda p: vocab[p[0] + p[1]])
    model["merges"] = [" ".join(p) if as_text else list(p) for p in pairs]
    return Tokenizer.from_str(json.dumps(spec))


def read_tokenizer_json(path: str | Path, suppress_ids=(), suppress_ids_begin=()) -> WhisperTokenizer:
    """A :class:`WhisperTokenizer` from a Hugging Face ``tokenizer.json``; a bad file is a CeasrError."""
    path = Path(path)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exceptions for missing and malformed files alike
        raise CeasrError(f"{path}: cannot read tokenizer ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return WhisperTokenizer(restore_merges(tok), suppress_ids, suppress_ids_begin)


def load_whisper_tokenizer(directory: str | Path) -> WhisperTokenizer:
    """Read a tokenizer saved by :meth:`WhisperTokenizer.save`."""
    directory = Path(directory)
    ids = {}
    if (directory / SUPPRESS_JSON).is_file():
        ids = json.loads((directory / SUPPRESS_JSON).read_text())
    return read_tokenizer_json(directory / TOKENIZER_JSON, ids.get("suppress_ids", ()), ids.get("suppress_ids_begin", ()))
