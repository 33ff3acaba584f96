"""Tokenizers: characters, SentencePiece BPE, or bilingual (Chinese characters + English BPE), behind one
interface with fixed special ids.

Ids 0, 1 and 2 are always ``<blank>`` (the CTC blank), ``<unk>`` and ``<sos/eos>`` (start and end of the
attention decoder's sequences); real tokens start at 3. Both kinds mark word starts with "▁" (U+2581):
the BPE kind as SentencePiece does (glued to the word's first piece), the char kind as a token of its own
between words. Texts given here are already normalized (see :mod:`ceasr.text.normalize`).

A tokenizer is saved as a directory: ``tokenizer.json`` (``{"kind": ...}`` plus the char list) and, for
BPE and bilingual, ``bpe.model`` (the SentencePiece model proto). ``tokenizer.json`` is written last, atomically.
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
from ceasr.text.script import EN, ZH, is_han, runs

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


def pieces(tokenizer: Tokenizer) -> tuple[str, ...]:
    """Every token's piece, by id (``pieces(tok)[i] == tok.id_to_piece(i)``)."""
    return tuple(tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size))


def token_languages(tokenizer: Tokenizer) -> tuple[str, ...]:
    """Every token's language by id (``"zh"``, ``"en"``, ``""``) for a tokenizer that tags its tokens (the
    bilingual one); ``()`` for the others."""
    tag = getattr(tokenizer, "language", None)
    return tuple(tag(i) for i in range(tokenizer.vocab_size)) if tag else ()


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


class BilingualTokenizer(_Specials):
    """Chinese characters as units plus SentencePiece BPE for English, in one vocabulary.

    Ids: the specials (0-2), then the English BPE pieces at the ids SentencePiece gives them (its own
    specials sit at 0-2 too), then one id per Chinese character. Each token has a language tag
    (:meth:`language`): ``"en"`` for BPE pieces, ``"zh"`` for characters, ``""`` for the specials. Texts are
    split into one-language stretches by script (:func:`ceasr.text.script.runs`), so English glued to Chinese
    (``"打开lights"``) encodes like the normalized ``"打开 lights"``; decoding joins Chinese characters without
    spaces and puts one space where the language changes.
    """

    kind = "bilingual"

    def __init__(self, chars: Sequence[str], model_proto: bytes | None):
        """``chars``: the Chinese characters in id order; ``model_proto``: the English BPE model, or None
        when the training text had no English (every English word is then ``unk``)."""
        self.bpe = BpeTokenizer(model_proto) if model_proto is not None else None
        self.offset = self.bpe.vocab_size if self.bpe else len(SPECIALS)  # id of the first character
        self.chars = list(chars)
        self._ids = {c: self.offset + i for i, c in enumerate(self.chars)}
        if len(self._ids) != len(self.chars) or not all(len(c) == 1 and is_han(c) for c in self.chars):
            raise ConfigError("bilingual tokenizer: chars must be distinct single Chinese characters")

    @classmethod
    def train(cls, texts: Iterable[str], cfg: TokenizerConfig = TokenizerConfig(kind="bilingual")
              ) -> "BilingualTokenizer":
        """Chinese characters seen in ``texts`` (sorted) and a BPE of at most ``cfg.vocab_size`` pieces trained
        on the English stretches alone."""
        stretches = [runs(t) for t in texts]
        chars = sorted({c for rs in stretches for lang, s in rs if lang == ZH for c in s})
        english = [" ".join(s for lang, s in rs if lang == EN) for rs in stretches]
        english = [t for t in english if t]
        if not chars and not english:
            raise ConfigError("bilingual tokenizer: no text to train on")
        proto = BpeTokenizer.train(english, cfg).model_proto if english else None
        return cls(chars, proto)

    @property
    def vocab_size(self) -> int:
        return self.offset + len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Text to ids, stretch by stretch; unknown characters and (without a BPE) English words are ``unk``."""
        ids: list[int] = []
        for lang, stretch in runs(text):
            if lang == ZH:
                ids += [self._ids.get(c, UNK_ID) for c in stretch]
            else:
                ids += self.bpe.encode(stretch) if self.bpe else [UNK_ID] * len(stretch.split())
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text: consecutive ids of one language form a stretch; stretches are joined by one space."""
        stretches: list[tuple[str, list[int]]] = []
        for i in (int(i) for i in ids if i >= len(SPECIALS)):
            lang = self.language(i)
            if stretches and stretches[-1][0] == lang:
                stretches[-1][1].append(i)
            else:
                stretches.append((lang, [i]))
        texts = ["".join(self.chars[i - self.offset] for i in group) if lang == ZH else self.bpe.decode(group)
                 for lang, group in stretches]
        return " ".join(t for t in texts if t)

    def language(self, i: int) -> str:
        """The language tag of token ``i``: ``"zh"``, ``"en"``, or ``""`` for a special id."""
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"token id {i} outside the vocabulary of {self.vocab_size}")
        return "" if i < len(SPECIALS) else (EN if i < self.offset else ZH)

    def id_to_piece(self, i: int) -> str:
        if self.language(i) == ZH:
            return self.chars[i - self.offset]
        return self.bpe.id_to_piece(i) if self.bpe else SPECIALS[i]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        meta = {"kind": self.kind, "model": BPE_FILE if self.bpe else None, "chars": self.chars}
        if self.bpe:
            atomic_write_bytes(directory / BPE_FILE, self.bpe.model_proto)
        atomic_write_text(directory / META_FILE, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "BilingualTokenizer":
        chars = meta.get("chars")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ConfigError(f"{directory / META_FILE}: 'chars' must be a list of Chinese characters")
        proto = None
        if meta.get("model"):
            proto = BpeTokenizer.load(directory, meta).model_proto
        return cls(chars, proto)


TOKENIZERS = {"char": CharTokenizer, "bpe": BpeTokenizer, "bilingual": BilingualTokenizer}


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
