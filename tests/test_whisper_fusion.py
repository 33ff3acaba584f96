"""Whisper's tokenizer repair, its word pieces, and beam search with a language model and hotwords fused in."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from ceasr.decode import Fusion, Scorers
from ceasr.decode.hotwords import Hotwords
from ceasr.errors import ConfigError
from ceasr.lm.base import LanguageModel
from ceasr.whisper.config import WhisperDecodeConfig
from ceasr.whisper.decoding import _Masks, _step, beam_search, decode_windows
from ceasr.whisper.tokenizer import WhisperTokenizer, read_tokenizer_json, restore_merges

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import ceasr_cli  # noqa: E402
from whisper_fixtures import CORPUS, tiny_model, tiny_tokenizer  # noqa: E402

TEXTS = sorted(set(CORPUS)) + [" turn on the light", " the ten timers", "tttt t", " two three"]


def _merges(tok: Tokenizer) -> list:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def _without_merge(tok: Tokenizer, rank: int) -> Tokenizer:
    spec = json.loads(tok.to_str())
    del spec["model"]["merges"][rank]
    return Tokenizer.from_str(json.dumps(spec))


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tiny_model(tok.get_vocab_size()), tok


@pytest.mark.parametrize("rank", [0, 3])
def test_restore_merges_brings_back_a_lost_merge(tiny, rank):
    _, full = tiny
    assert _merges(full)[0] == ("Ġ", "t")  # the merge the circulating Whisper files lost
    broken = _without_merge(full, rank)
    ids = lambda t, s: t.encode(s, add_special_tokens=False).ids  # noqa: E731
    assert any(ids(broken, s) != ids(full, s) for s in TEXTS)  # losing it changes the encoding
    fixed = restore_merges(broken)
    assert _merges(fixed) == _merges(full)
    assert all(ids(fixed, s) == ids(full, s) for s in TEXTS)


def test_restore_merges_leaves_complete_and_unordered_tokenizers_alone(tiny):
    _, full = tiny
    assert _merges(restore_merges(full)) == _merges(full)
    spec = json.loads(full.to_str())
    merges = spec["model"]["merges"]
    merges[1], merges[2] = merges[2], merges[1]  # no longer in id order: nothing can be inferred
    del merges[0]
    shuffled = Tokenizer.from_str(json.dumps(spec))
    assert _merges(restore_merges(shuffled)) == _merges(shuffled)


def test_read_tokenizer_json_restores(tiny, tmp_path):
    _, full = tiny
    _without_merge(full, 0).save(str(tmp_path / "tokenizer.json"))
    tok = read_tokenizer_json(tmp_path / "tokenizer.json")
    assert tok.encode(" the light") == full.encode(" the light", add_special_tokens=False).ids


def test_word_pieces_spell_normalized_words(tiny):
    _, hf = tiny
    tok = WhisperTokenizer(hf)
    pieces = tok.word_pieces
    assert len(pieces) == tok.vocab_size
    assert all(p == "" for p in pieces[tok.eot :])
    for text, words in [("Turn on, the LIGHT!", "▁turn▁on▁the▁light"), ("hello world?", "hello▁world")]:
        assert "".join(pieces[i] for i in tok.encode(text if text[0] == "h" else " " + text)) == words
    assert tok.encode_words("turn on") == tok.encode(" turn on")


class UniformLM(LanguageModel):
    """A token LM that gives every token the log-probability -log 3, and the end 0 (not normalized: a
    constant cost per token)."""

    units, eos, unk, vocab = "tokens", 0, 1, ("</s>", "<unk>", "x")

    def start(self):
        return ()

    def advance(self, state, symbol):
        return ()

    def log_probs(self, states):
        rows = np.full((len(states), 3), -math.log(3))
        rows[:, self.eos] = 0.0
        return rows

    def encode(self, text):
        return []


def _setup(tiny, seed=0):
    model, hf = tiny
    tok = WhisperTokenizer(hf)
    torch.manual_seed(seed)
    enc = model.encode(torch.randn(1, 80, 3000))
    cfg = WhisperDecodeConfig(method="beam", beam_size=3, max_new_tokens=8, fusion_candidates=6)
    return model, tok, enc, cfg


@pytest.mark.parametrize("seed", range(3))
def test_lm_weight_zero_equals_no_lm(tiny, seed):
    model, tok, enc, cfg = _setup(tiny, seed)
    mels = torch.randn(1, 80, 3000)
    plain = decode_windows(model, mels, tok, dataclasses.replace(cfg, language="en"))
    scorers = Scorers(tok.word_pieces, UniformLM(), None)
    zero = decode_windows(model, mels, tok, dataclasses.replace(cfg, language="en", lm_weight=0.0), scorers)
    assert zero[0].tokens == plain[0].tokens and zero[0].avg_logprob == pytest.approx(plain[0].avg_logprob)


@pytest.mark.parametrize("seed", range(3))
def test_uniform_lm_only_adds_a_length_term(tiny, seed):
    """lambda * (-log 3) per token: the same search as a length bonus beta - lambda log 3."""
    model, tok, enc, cfg = _setup(tiny, seed)
    prompt = tok.prompt("en")
    lam, beta = 0.7, 0.4
    fused = beam_search(model, enc, prompt, tok, cfg, Fusion(tok.word_pieces, UniformLM(), lam, beta))
    shifted = beam_search(model, enc, prompt, tok, cfg, Fusion(tok.word_pieces, length_bonus=beta - lam * math.log(3)))
    assert fused[0] == shifted[0] and fused[2] == pytest.approx(shifted[2])


@torch.inference_mode()
def test_fused_beam_returns_the_best_of_an_exhaustive_search(tiny):
    """Two steps, every token tried: the beam's finished answer scores at least as high as any one- or
    two-token hypothesis ending there (log-probabilities + beta per token)."""
    model, tok, enc, cfg = _setup(tiny)
    prompt = tok.prompt("en")
    cfg = dataclasses.replace(cfg, max_new_tokens=2, beam_size=model.cfg.n_vocab, fusion_candidates=model.cfg.n_vocab)
    beta = 0.3
    found = beam_search(model, enc, prompt, tok, cfg, Fusion(tok.word_pieces, length_bonus=beta))
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    first, cache = _step(model, torch.tensor([prompt]), model.decoder.init_cache(enc), masks, first=True)
    first = first[0]
    best = -math.inf
    for t in torch.nonzero(first.isfinite()).flatten().tolist():
        after, _ = _step(model, torch.tensor([prompt + [t]]), model.decoder.init_cache(enc), masks, first=False)
        after = after[0]
        best = max(best, float(first[t] + after[tok.eot]) + beta)  # one token, then the end
        two = after[: tok.eot].max()  # two tokens, stopped by the length limit
        best = max(best, float(first[t] + two) + 2 * beta)
    assert found[2] + beta * len(found[0]) == pytest.approx(best, abs=1e-4)


def test_a_boosted_hotword_wins(tiny):
    model, tok, enc, cfg = _setup(tiny)
    prompt = tok.prompt("en")
    plain = beam_search(model, enc, prompt, tok, cfg)[0]
    masks = _Masks(tok, model.cfg.n_vocab, enc.device, cfg.suppress_blank)
    first, _ = _step(model, torch.tensor([prompt]), model.decoder.init_cache(enc), masks, first=True)
    runner_up = [t for t in first[0].topk(cfg.fusion_candidates).indices.tolist() if t not in plain][0]
    hot = Hotwords([([runner_up], 50.0)])
    boosted = beam_search(model, enc, prompt, tok, cfg, Fusion(tok.word_pieces, hotwords=hot))[0]
    assert runner_up in boosted and runner_up not in plain


def test_lm_needs_beam_search(tiny):
    model, tok, _, cfg = _setup(tiny)
    with pytest.raises(ConfigError, match="method=beam"):
        decode_windows(model, torch.randn(1, 80, 3000), tok, dataclasses.replace(cfg, method="greedy", language="en"),
                       Scorers(tok.word_pieces, UniformLM(), None))


def test_cli_evaluates_a_whisper_model_with_a_word_lm_and_hotwords(tiny, tmp_path):
    import soundfile as sf

    from ceasr.whisper.convert import convert_whisper
    from whisper_fixtures import write_hf

    model, hf = tiny
    write_hf(model, hf, tmp_path / "hf")
    out = convert_whisper(tmp_path / "hf", tmp_path / "model", language="en")
    sf.write(tmp_path / "a.wav", (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "turn on the light", "lang": "en"}) + "\n")
    words = ["turn", "on", "the", "light"]
    arpa = ["\\data\\", f"ngram 1={len(words) + 3}", "", "\\1-grams:", "-1.0\t<s>", "-1.0\t</s>", "-1.0\t<unk>",
            *[f"-0.6\t{w}" for w in words], "", "\\end\\"]
    (tmp_path / "lm.arpa").write_text("\n".join(arpa) + "\n")
    (tmp_path / "hot.txt").write_text("light\t3\n")
    res = ceasr_cli("evaluate", "--model", str(out), "--manifest", str(tmp_path / "m.jsonl"), "--lm",
                    str(tmp_path / "lm.arpa"), "--hotwords", str(tmp_path / "hot.txt"), "--decode",
                    "method=beam,beam_size=2,max_new_tokens=6", "--out", str(tmp_path / "r.jsonl"))
    assert res.returncode == 0, res.stderr
    assert "LM/hotwords changed the output" in res.stdout and res.stdout.strip().splitlines()[-1].startswith("WER=")
    row = json.loads((tmp_path / "r.jsonl").read_text())
    assert row["lm"] in ("same", "fixed", "broke", "changed") and "hyp_without_lm" in row
    greedy = ceasr_cli("transcribe", "--model", str(out), "--lm", str(tmp_path / "lm.arpa"), str(tmp_path / "a.wav"),
                       check=False)
    assert greedy.returncode == 2 and "method=beam" in greedy.stderr and greedy.stderr.count("\n") == 1
