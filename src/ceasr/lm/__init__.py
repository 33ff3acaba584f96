"""Language models for decoding: n-gram (modified Kneser-Ney, ARPA) and a Transformer, one interface.

An LM directory (what ``ceasr train-lm`` writes and ``--lm DIR`` reads) holds ``lm.json`` (type, config,
held-out perplexity) and, per type: ``lm.arpa`` and ``vocab.txt`` (n-gram), ``model.safetensors``
(Transformer), ``tokenizer/`` (when the symbols are the recognizer's tokens), ``checkpoints/`` (Transformer
training). A bare ARPA file of words is accepted as well.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import load_file, save_file

from ceasr.config import LMConfig, from_dict, to_dict
from ceasr.errors import CeasrError, ConfigError
from ceasr.io import atomic_path, atomic_write_text
from ceasr.lm import kenlm_backend
from ceasr.lm.arpa import read_arpa, write_arpa
from ceasr.lm.base import UNITS, LanguageModel, Perplexity, perplexity
from ceasr.lm.kneser_ney import estimate
from ceasr.lm.ngram import NgramLM, text_units

META, ARPA, VOCAB, WEIGHTS, TOKENIZER = "lm.json", "lm.arpa", "vocab.txt", "model.safetensors", "tokenizer"
BACKENDS = ("auto", "python", "kenlm")


def read_texts(paths: Sequence[str | Path]) -> list[str]:
    """Normalized, non-empty lines of text files; a ``.jsonl`` manifest contributes its ``text`` fields."""
    from ceasr.text.normalize import normalize

    texts = []
    for path in map(Path, paths):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CeasrError(f"{path}: cannot read text ({getattr(e, 'strerror', None) or e})") from None
        if path.suffix == ".jsonl":
            from ceasr.data.manifest import read_reported

            rows, _ = read_reported(path)
            lines = [r.text for r in rows]
        texts += [t for t in (normalize(line) for line in lines) if t]
    if not texts:
        raise ConfigError(f"no text in {', '.join(map(str, paths))}")
    return texts


def split_heldout(texts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded random ``fraction`` of the lines (at least one when there are two)."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    k = min(max(int(len(texts) * fraction), 1 if fraction > 0 else 0), len(texts) - 1)
    held = set(order[:k])
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def train_lm(
    cfg: LMConfig, texts: list[str], out_dir: str | Path, tokenizer=None, heldout: list[str] | None = None,
    progress: bool = True,
) -> Perplexity:
    """Train the LM ``cfg.type`` on normalized ``texts`` into ``out_dir``; return its held-out perplexity.

    ``tokenizer`` (the recognizer's) is needed for token units and for the Transformer. Without
    ``heldout``, ``cfg.heldout_fraction`` of ``texts`` is held out.
    """
    if cfg.type not in TRAINERS:
        raise ConfigError(f"lm.type: unknown {cfg.type!r}; known: {', '.join(TRAINERS)}")
    if cfg.units not in UNITS:
        raise ConfigError(f"lm.units: unknown {cfg.units!r}; known: {', '.join(UNITS)}")
    if (cfg.units == "tokens" or cfg.type == "transformer") and tokenizer is None:
        raise ConfigError(f"a {cfg.type} LM over tokens needs the recognizer's tokenizer (--tokenizer MODEL_DIR)")
    if heldout is None:
        texts, heldout = split_heldout(texts, cfg.heldout_fraction, cfg.train.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = TRAINERS[cfg.type](cfg, texts, out_dir, tokenizer, progress)
    if tokenizer is not None:
        tokenizer.save(out_dir / TOKENIZER)
    ppl = perplexity(lm, heldout) if heldout else None
    meta = {"type": cfg.type, "config": to_dict(cfg), "train_sentences": len(texts),
            "heldout": None if ppl is None else {"perplexity": ppl.value, "sentences": ppl.sentences,
                                                 "predicted": ppl.predicted, "oov": ppl.oov}}
    atomic_write_text(out_dir / META, json.dumps(meta, indent=2) + "\n")  # last: marks the directory complete
    return ppl


def _train_ngram(cfg: LMConfig, texts, out_dir: Path, tokenizer, progress: bool) -> LanguageModel:
    tables = estimate([text_units(t, cfg.units, tokenizer) for t in texts], cfg.order)
    write_arpa(tables, out_dir / ARPA)
    lm = NgramLM(tables, cfg.units, tokenizer)
    atomic_write_text(out_dir / VOCAB, "".join(w + "\n" for w in lm.vocab))
    return lm


def _train_transformer(cfg: LMConfig, texts, out_dir: Path, tokenizer, progress: bool) -> LanguageModel:
    from ceasr.lm.neural import NeuralLM, train_transformer

    if cfg.units != "tokens":
        raise ConfigError("lm.units: a transformer LM works on the recognizer's tokens (use --units tokens)")
    sentences = [ids for ids in (tokenizer.encode(t) for t in texts) if ids]
    model = train_transformer(
        cfg, sentences, tokenizer.vocab_size, tokenizer.sos_id, tokenizer.eos_id, out_dir, progress
    )
    with atomic_path(out_dir / WEIGHTS) as tmp:
        save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp))
    return NeuralLM(model, tokenizer)


TRAINERS = {"ngram": _train_ngram, "transformer": _train_transformer}


def load_lm(path: str | Path, backend: str = "auto") -> LanguageModel:
    """Load an LM directory (or a bare ARPA file of words). ``backend`` for n-grams: ``kenlm`` (needs the
    module), ``python``, or ``auto`` (kenlm when installed)."""
    if backend not in BACKENDS:
        raise ConfigError(f"lm backend: unknown {backend!r}; known: {', '.join(BACKENDS)}")
    path = Path(path)
    if path.is_file():
        return _ngram_from(path, read_arpa(path) if backend != "kenlm" else None, "words", None, backend)
    if not (path / META).is_file():
        raise CeasrError(f"{path}: not a language model (no {META}; make one with ceasr train-lm)")
    try:
        meta = json.loads((path / META).read_text())
        cfg = from_dict(LMConfig, meta["config"], "lm")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CeasrError(f"{path / META}: not a valid LM description ({e})") from None
    tokenizer = None
    if (path / TOKENIZER).exists():
        from ceasr.text.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(path / TOKENIZER)
    if cfg.type == "transformer":
        return _load_transformer(cfg, path, tokenizer)
    if cfg.type != "ngram":
        raise CeasrError(f"{path / META}: unknown LM type {cfg.type!r}")
    return _ngram_from(path / ARPA, None, cfg.units, tokenizer, backend, path / VOCAB)


def _ngram_from(arpa: Path, tables, units: str, tokenizer, backend: str, vocab: Path | None = None):
    use_kenlm = backend == "kenlm" or (backend == "auto" and kenlm_backend.available())
    if backend == "kenlm" and not kenlm_backend.available():
        raise ConfigError("lm backend kenlm: the kenlm module is not installed (pip install kenlm)")
    if not use_kenlm:
        return NgramLM(tables if tables is not None else read_arpa(arpa), units, tokenizer)
    if vocab is not None and vocab.is_file():
        words = vocab.read_text(encoding="utf-8").split()
    else:
        words = [g[0] for g in (tables or read_arpa(arpa)).probs[0]]
    return kenlm_backend.KenlmLM(arpa, words, units, tokenizer)


def _load_transformer(cfg: LMConfig, path: Path, tokenizer) -> LanguageModel:
    from ceasr.lm.neural import NeuralLM, build_lm_model

    if tokenizer is None:
        raise CeasrError(f"{path}: a transformer LM directory needs {TOKENIZER}/")
    model = build_lm_model(cfg, tokenizer.vocab_size)
    try:
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except (OSError, RuntimeError) as e:
        raise CeasrError(f"{path / WEIGHTS}: cannot load LM weights ({str(e).splitlines()[0]})") from None
    return NeuralLM(model, tokenizer)


__all__ = ["LanguageModel", "NgramLM", "Perplexity", "load_lm", "perplexity", "read_texts", "train_lm"]
