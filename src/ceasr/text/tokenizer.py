"""Tokenizers: characters or SentencePiece BPE, behind one interface with fixed special ids.

Ids 0, 1 and 2 are always ``<blank>`` (the CTC blank), ``<unk>`` and ``<sos/eos>`` (start and end of the
attention decoder's sequences); real tokens start at 3. Both kinds mark word starts with "▁" (U+2581):
the BPE kind as SentencePiece does (glued to the word's first piece), the char kind as a token of its own
between words. Texts given here are already normalized (see :mod:`ceasr.text.normalize`).

A tokenizer is saved as a directory: ``tokenizer.json`` (``{"kind": ...}`` plus the char list) and, for
BPE, ``bpe.model`` (the SentencePiece model proto). ``tokenizer.json`` is written last, atomically.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import sentencepiece as spm

from ceasr.config import TokenizerConfig
from ceasr.errors import ConfigError
from ceasr.io import atomic_write_bytes, atomic_write_text

BLANK, UNK, SOS_EOS = "<blank>", "<unk>", "<sos/eos>"
SPECIALS = (BLANK, UNK, SOS_EOS)
BLANK_ID, UNK_ID, SOS_EOS_ID = 0, 1, 2
WORD_START = "\u2581"
META_FILE, BPE_FILE = "tokenizer.json", "bpe.model"


class Tokenizer(Protocol):
    """What the rest of ceasr relies on; :class:`CharTokenizer` and :class:`BpeTokenizer` provide it."""

    kind: str
    blank_id: int
    unk_id: int
    sos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def id_to_piece(self, i: int) -> str: ...
    def save(self, directory: str | Path) -> None: ...


class _Specials:
    """The fixed special ids, shared by both kinds."""

    blank_id, unk_id, sos_id, eos_id = BLANK_ID, UNK_ID, SOS_EOS_ID, SOS_EOS_ID


class CharTokenizer(_Specials):
    """One token per character; "▁" is its own token between words."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        """``chars``: the real tokens, in id order from 3 (``WORD_START`` among them)."""
        self.pieces = list(SPECIALS) + list(chars)
        self._ids = {p: i for i, p in enumerate(self.pieces)}
        if len(self._ids) != len(self.pieces) or any(len(c) != 1 for c in chars):
            raise ConfigError("char tokenizer: chars must be distinct single characters")

    @classmethod
    def train(cls, texts: Iterable[str], cfg: TokenizerConfig = TokenizerConfig(kind="char")) -> "CharTokenizer":
        """Every character seen in ``texts`` (sorted, so the result does not depend on text order)."""
        chars = {c for text in texts for c in text if not c.isspace()}
        if not chars:
            raise ConfigError("char tokenizer: no text to train on")
        return cls([WORD_START] + sorted(chars - {WORD_START}))

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def encode(self, text: str) -> list[int]:
        """Characters to ids; words are joined by the "▁" token, unknown characters become ``unk_id``."""
        joined = WORD_START.join(text.split())
        return [self._ids.get(c, UNK_ID) for c in joined]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text; special ids are skipped and "▁" becomes a space."""
        text = "".join(self.pieces[i] for i in ids if i >= len(SPECIALS))
        return " ".join(text.replace(WORD_START, " ").split())

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside the vocabulary of {self.vocab_size}")
        return self.pieces[i]

    def save(self, directory: str | Path) -> None:
        meta = {"kind": self.kind, "chars": self.pieces[len(SPECIALS):]}
        atomic_write_text(Path(directory) / META_FILE, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "CharTokenizer":
        chars = meta.get("chars")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ConfigError(f"{directory / META_FILE}: 'chars' must be a list of characters")
        return cls(chars)


class BpeTokenizer(_Specials):
    """SentencePiece BPE, trained in-process; the specials sit at ids 0-2 of its vocabulary."""

    kind = "bpe"

    def __init__(self, model_proto: bytes):
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        found = tuple(self.sp.id_to_piece(i) for i in range(min(3, self.sp.get_piece_size())))
        if found != SPECIALS:
            raise ConfigError(f"bpe tokenizer: model's first pieces are {found}, expected {SPECIALS}")

    @classmethod
    def train(cls, texts: Iterable[str], cfg: TokenizerConfig = TokenizerConfig()) -> "BpeTokenizer":
        """Train on ``texts`` (deterministic: one thread, no sampling). ``cfg.vocab_size`` is an upper
        bound; a small corpus yields fewer pieces."""
        texts = [t for t in texts if t.strip()]
        chars = {c for t in texts for c in t if not c.isspace()}
        if not texts:
            raise ConfigError("bpe tokenizer: no text to train on")
        needed = len(chars) + 1 + len(SPECIALS)  # every character, "▁", the specials
        if cfg.vocab_size < needed:
            raise ConfigError(f"tokenizer.vocab_size={cfg.vocab_size} is below the {needed} pieces the text's "
                              f"{len(chars)} characters need; raise it or use tokenizer.kind=char")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=model, model_type="bpe", vocab_size=cfg.vocab_size,
                pad_id=BLANK_ID, pad_piece=BLANK, unk_id=UNK_ID, unk_piece=UNK, bos_id=SOS_EOS_ID,
                bos_piece=SOS_EOS, eos_id=-1, character_coverage=1.0, hard_vocab_limit=False,
                normalization_rule_name="identity", num_threads=1, input_sentence_size=0,
                shuffle_input_sentence=False, minloglevel=2)
        except RuntimeError as e:
            raise ConfigError(f"bpe tokenizer: sentencepiece training failed ({str(e).splitlines()[0]})") from None
        return cls(model.getvalue())

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Text to BPE ids; characters the model never saw become ``unk_id``."""
        return self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text; special ids are skipped."""
        return self.sp.decode([int(i) for i in ids if i >= len(SPECIALS)])

    def id_to_piece(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside the vocabulary of {self.vocab_size}")
        return self.sp.id_to_piece(i)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        atomic_write_bytes(directory / BPE_FILE, self.model_proto)
        atomic_write_text(directory / META_FILE, json.dumps({"kind": self.kind, "model": BPE_FILE}) + "\n")

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "BpeTokenizer":
        path = directory / meta.get("model", BPE_FILE)
        try:
            return cls(path.read_bytes())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the BPE model ({e.strerror or e})") from None
        except RuntimeError as e:
            raise ConfigError(f"{path}: not a SentencePiece model ({str(e).splitlines()[0]})") from None


TOKENIZERS = {"char": CharTokenizer, "bpe": BpeTokenizer}


def train_tokenizer(cfg: TokenizerConfig, texts: Iterable[str]) -> Tokenizer:
    """Train the tokenizer ``cfg.kind`` names on already-normalized ``texts``."""
    if cfg.kind not in TOKENIZERS:
        raise ConfigError(f"tokenizer.kind: unknown {cfg.kind!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[cfg.kind].train(texts, cfg)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer saved with ``save(directory)``."""
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read tokenizer ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg})") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in TOKENIZERS:
        raise ConfigError(f"{path}: unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].load(Path(directory), meta)
