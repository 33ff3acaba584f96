"""Shallow fusion, n-best rescoring and hotwords against closed forms, exhaustive search and brute force."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from ceasr.config import DecodeConfig
from ceasr.decode import Fusion, Hypothesis, Scorers, attention_nbest, ctc_prefix_beam_search, decode, rescore
from ceasr.decode.hotwords import Hotwords, load_hotwords
from ceasr.errors import ConfigError
from ceasr.lm.base import LanguageModel
from ceasr.lm.kneser_ney import estimate
from ceasr.lm.ngram import NgramLM
from ceasr.text.tokenizer import CharTokenizer
from test_decode import EOS, StandInModel, ctc_loss_score, exhaustive, random_log_probs

V = 6
PIECES = ("<blank>", "<unk>", "<sos/eos>", "a", "b", "c")


class UniformLM(LanguageModel):
    """Every token (and the end of sentence) equally likely: log p = -log(n)."""

    units, eos, unk = "tokens", 0, 1

    def __init__(self, pieces=PIECES):
        self.vocab = ("</s>", "<unk>", *pieces[3:])

    def start(self):
        return ()

    def advance(self, state, symbol):
        return ()

    def log_probs(self, states):
        return np.full((len(states), len(self.vocab)), -math.log(len(self.vocab)))

    def encode(self, text):
        return []


def token_ngram(seed: int = 0) -> NgramLM:
    """A trigram over the pieces a, b, c that prefers "a b" and dislikes "c"."""
    rng = random.Random(seed)
    sents = [[rng.choice("aab" if i % 2 else "abbc") for i in range(rng.randint(1, 5))] for _ in range(60)]
    return NgramLM(estimate(sents, 3), "tokens", tokenizer=object())


@pytest.mark.parametrize("seed", range(4))
def test_lm_weight_zero_equals_no_lm(seed):
    lp = random_log_probs(12, V, seed)
    lm = token_ngram(seed)
    plain = ctc_prefix_beam_search(lp, 4)
    zero = ctc_prefix_beam_search(lp, 4, fusion=Fusion(PIECES, lm, lm_weight=0.0))
    assert [(h.tokens, h.score) for h in zero] == [(h.tokens, h.score) for h in plain]
    fused = ctc_prefix_beam_search(lp, 4, fusion=Fusion(PIECES, lm, lm_weight=2.0))
    assert [h.tokens for h in fused] != [h.tokens for h in plain]  # the test can see a difference


@pytest.mark.parametrize("seed", range(4))
def test_uniform_lm_only_changes_length_scoring(seed):
    lp = random_log_probs(12, V, seed)
    lam, beta = 0.7, 1.3
    n = len(UniformLM().vocab)
    fused = ctc_prefix_beam_search(lp, 5, fusion=Fusion(PIECES, UniformLM(), lam, beta))
    # Each token costs lam * log(1/n) and earns beta; the end of sentence costs lam * log(1/n) for everyone.
    shifted = ctc_prefix_beam_search(lp, 5, fusion=Fusion(PIECES, length_bonus=beta - lam * math.log(n)))
    assert [h.tokens for h in fused] == [h.tokens for h in shifted]
    for f, s in zip(fused, shifted):
        assert f.score == pytest.approx(s.score - lam * math.log(n), abs=1e-9)


def test_fused_prefix_beam_matches_exhaustive_scores():
    # A beam wide enough never to prune: the best hypothesis maximizes log P_ctc + lam * log P_lm + beta * len.
    lp = random_log_probs(5, V, 3, scale=1.0)
    lm, lam, beta = token_ngram(1), 0.8, 0.4
    fusion = Fusion(PIECES, lm, lam, beta)
    best = ctc_prefix_beam_search(lp, 400, fusion=fusion)[0]
    idx = lm.index()
    ref = max(
        (ctc_loss_score(lp, list(seq)) + lam * lm.sentence_log_probs([[idx[PIECES[t]] for t in seq]])[0]
         + beta * len(seq), seq)
        for n in range(6) for seq in itertools.product((3, 4, 5), repeat=n)
    )
    assert best.tokens == ref[1]
    assert best.score == pytest.approx(ref[0], abs=1e-6)


def test_fused_attention_matches_exhaustive_search():
    model = StandInModel(seed=2)
    enc = torch.randn(1, 4, V, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lm, lam = token_ngram(2), 0.6
    fusion = Fusion(("<blank>", "<unk>", "<sos/eos>", "<unk>", "a", "b"), lm, lam)
    idx = lm.index()
    to_lm = {1: lm.unk, 3: lm.unk, 4: idx["a"], 5: idx["b"]}
    ref = sorted(
        ((s + lam * lm.sentence_log_probs([[to_lm[t] for t in seq]])[0], seq)
         for s, seq in exhaustive(model, enc, 0.4, max_len=4)),
        reverse=True,
    )
    nbest = attention_nbest(model, enc, torch.tensor([4]), beam_size=400, ctc_weight=0.4, fusion=fusion)[0]
    assert nbest[0].tokens == ref[0][1]
    assert nbest[0].score == pytest.approx(ref[0][0], abs=1e-6)
    plain = attention_nbest(model, enc, torch.tensor([4]), beam_size=400, ctc_weight=0.4)[0]
    zero = attention_nbest(model, enc, torch.tensor([4]), beam_size=400, ctc_weight=0.4,
                           fusion=Fusion(fusion.pieces, lm, 0.0))[0]
    assert [(h.tokens, h.score) for h in zero] == [(h.tokens, h.score) for h in plain]


def _tie_log_probs() -> torch.Tensor:
    """Frames spelling "a" then "b" or "c" with equal probability: "a b" and "a c" tie exactly."""
    lp = torch.full((4, V), math.log(1e-3), dtype=torch.float64)
    lp[0, 3] = lp[2, 0] = math.log(0.99)
    lp[1, 0] = math.log(0.99)
    lp[3, 4] = lp[3, 5] = math.log(0.49)
    return lp.log_softmax(-1)


def test_boosted_phrase_wins_a_tie_it_would_otherwise_lose():
    lp = _tie_log_probs()
    plain = ctc_prefix_beam_search(lp, 4)
    assert plain[0].score == pytest.approx(plain[1].score)
    winner, loser = plain[0].tokens, plain[1].tokens
    assert {winner, loser} == {(3, 4), (3, 5)}
    boosted = ctc_prefix_beam_search(lp, 4, fusion=Fusion(PIECES, hotwords=Hotwords([(loser, 1.0)])))
    assert boosted[0].tokens == loser
    # 1.0 per token of the phrase, kept: the exact CTC score of the phrase plus 2.
    assert boosted[0].score == pytest.approx(ctc_loss_score(lp, list(loser)) + 2.0, abs=1e-4)


def hotword_reference(phrases, tokens) -> float:
    """Brute force: every occurrence of every phrase (overlaps included) earns boost * length."""
    total = 0.0
    for phrase, boost in phrases:
        n = len(phrase)
        total += sum(boost * n for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n]) == tuple(phrase))
    return total


@pytest.mark.parametrize("seed", range(3))
def test_hotword_bonus_equals_brute_force_count(seed):
    rng = random.Random(seed)
    phrases = [((3, 4, 3), 1.0), ((4, 3), 0.5), ((5,), 2.0), ((3, 3, 4, 4), 0.25), ((4, 4, 5), 1.5)]
    hot = Hotwords(phrases)
    for n in range(7):
        for seq in itertools.product((3, 4, 5), repeat=n):
            assert hot.score(seq) == pytest.approx(hotword_reference(phrases, seq)), seq
    for _ in range(200):
        seq = [rng.choice((3, 4, 5, 6)) for _ in range(rng.randint(0, 15))]
        assert hot.score(seq) == pytest.approx(hotword_reference(phrases, seq))


def test_partial_match_bonus_is_taken_back():
    hot = Hotwords([((3, 4, 5), 1.0)])
    d1, s = hot.step(hot.start(), 3)
    d2, s = hot.step(s, 4)
    assert (d1, d2) == (1.0, 1.0)  # paid as the match grows
    d3, s = hot.step(s, 3)  # the match fails: back to depth 1 ("3")
    assert d3 == pytest.approx(-1.0)
    assert hot.final(s) == pytest.approx(-1.0)  # and the open match is taken back at the end
    assert hot.score((3, 4)) == 0.0 and hot.score((3, 4, 5)) == 3.0


def test_word_lm_scores_words_at_boundaries():
    texts = ["go left", "go right now", "stop", "turn left now"]
    tok = CharTokenizer.train(texts)
    pieces = tuple(tok.id_to_piece(i) for i in range(tok.vocab_size))
    lm = NgramLM(estimate([t.split() for t in texts], 2))
    lam, beta = 0.5, 0.25
    fusion = Fusion(pieces, lm, lam, beta)
    for text in ["go left", "turn right", "stop stop now", "gone"]:
        ids = tok.encode(text)
        ref = lam * lm.sentence_log_probs([lm.encode(text)])[0] + beta * len(ids)
        assert fusion.sequence_score(ids) == pytest.approx(ref)
    state = fusion.start()
    deltas = []
    for t in tok.encode("go le"):
        d, state = fusion.extend(state, t)
        deltas.append(d)
    # Only the token starting the second word completes "go"; partial words are not scored.
    word_start = tok.encode("go le").index(tok.encode("go le")[2])
    assert [d - beta for d in deltas][:word_start] == [0.0] * word_start


def test_rescoring_picks_the_best_combined_score():
    lm = token_ngram(4)
    fusion = Fusion(PIECES, lm, 1.5)
    idx = lm.index()
    hyps = [Hypothesis((3, 5, 5), -1.0, ()), Hypothesis((3, 4), -1.2, ()), Hypothesis((5,), -3.0, ())]
    lm_scores = [lm.sentence_log_probs([[idx[PIECES[t]] for t in h.tokens]])[0] for h in hyps]
    totals = [h.score + 1.5 * s for h, s in zip(hyps, lm_scores)]
    best = rescore(hyps, fusion, 0.0)
    assert best.tokens == hyps[int(np.argmax(totals))].tokens
    assert best.score == pytest.approx(max(totals))


def test_decode_with_scorers_and_rescore_mode():
    model = StandInModel(seed=1)
    feats = torch.randn(2, 9, V, generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([9, 6])
    scorers = Scorers(PIECES, token_ngram(0), None)
    for method in ("ctc_prefix_beam", "attention"):
        base = decode(model, feats, lens, DecodeConfig(method=method, beam_size=4))
        zero = decode(model, feats, lens, DecodeConfig(method=method, beam_size=4, lm_weight=0.0), scorers)
        assert [h.tokens for h in zero] == [h.tokens for h in base]
        for mode in ("fusion", "rescore"):
            cfg = DecodeConfig(method=method, beam_size=4, lm_weight=1.0, lm_mode=mode)
            assert len(decode(model, feats, lens, cfg, scorers)) == 2
    with pytest.raises(ConfigError, match="lm_mode"):
        decode(model, feats, lens, DecodeConfig(lm_mode="deep"), scorers)


def test_hotword_file(tmp_path):
    tok = CharTokenizer.train(["hello world", "ceasr"])
    path = tmp_path / "hot.txt"
    path.write_text("Hello World\t3\n\nceasr\n")
    hot = load_hotwords(path, tok, default_boost=1.5)
    assert hot.score(tok.encode("hello world")) == pytest.approx(3 * len(tok.encode("hello world")))
    assert hot.score(tok.encode("ceasr")) == pytest.approx(1.5 * len(tok.encode("ceasr")))
    path.write_text("hello\tloud\n")
    with pytest.raises(ConfigError, match=r"hot.txt:1"):
        load_hotwords(path, tok, 1.0)
