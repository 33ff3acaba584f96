"""Shallow fusion, n-best rescoring and hotwords against closed forms, exhaustive search and brute force."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from ceasr.config import DecodeConfig
from ceasr.decode.fusion import OOV_PENALTY
from ceasr.decode import Fusion, Hypothesis, Scorers, attention_nbest, ctc_prefix_beam_search, decode, rescore
from ceasr.decode.hotwords import Hotwords, load_hotwords
from ceasr.errors import ConfigError
from ceasr.lm.base import LanguageModel
from ceasr.lm.arpa import read_arpa
from ceasr.lm.kneser_ney import estimate
from ceasr.lm.ngram import NgramLM
from ceasr.text.tokenizer import CharTokenizer, pieces
from test_decode import StandInModel, ctc_loss_score, exhaustive, random_log_probs

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
    lm = NgramLM(estimate([t.split() for t in texts], 2))
    lam, beta = 0.5, 0.25
    fusion = Fusion(pieces(tok), lm, lam, beta)
    for text in ["go left", "turn right", "stop stop now", "gone"]:
        ids = tok.encode(text)
        unknown = sum(w not in lm.vocab for w in text.split())  # "gone": the LM's <unk> plus the OOV penalty
        ref = lam * (lm.sentence_log_probs([lm.encode(text)])[0] + OOV_PENALTY * unknown) + beta * len(ids)
        assert fusion.sequence_score(ids) == pytest.approx(ref)
    state = fusion.start()
    deltas = []
    for t in tok.encode("go le"):
        d, state = fusion.extend(state, t)
        deltas.append(d)
    # Only the token starting the second word completes "go"; partial words of known words cost nothing.
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
    hot = load_hotwords(path, tok.encode, default_boost=1.5)
    assert hot.score(tok.encode("hello world")) == pytest.approx(3 * len(tok.encode("hello world")))
    assert hot.score(tok.encode("ceasr")) == pytest.approx(1.5 * len(tok.encode("ceasr")))
    path.write_text("hello\tloud\n")
    with pytest.raises(ConfigError, match=r"hot.txt:1"):
        load_hotwords(path, tok.encode, 1.0)


# A unigram word LM written by hand (log10 probabilities), and BPE-like pieces that spell its words.
UNIGRAM_ARPA = """\\data\\
ngram 1=6

\\1-grams:
-1.0\t<unk>
-99\t<s>
-0.5\t</s>
-0.3\tgo
-0.7\tgone
-1.2\tstop

\\end\\
"""
WORD_PIECES = ("<blank>", "<unk>", "<sos/eos>", "▁g", "o", "ne", "▁st", "op", "x")
G, O, NE, ST, OP, X = 3, 4, 5, 6, 7, 8
LN10 = math.log(10.0)


@pytest.fixture
def unigram_lm(tmp_path):
    path = tmp_path / "uni.arpa"
    path.write_text(UNIGRAM_ARPA)
    return NgramLM(read_arpa(path))


def _deltas(fusion, tokens):
    state, out = fusion.start(), []
    for t in tokens:
        d, state = fusion.extend(state, t)
        out.append(d)
    return out, fusion.final(state)


def test_partial_words_scored_by_hand(unigram_lm):
    lam = 0.5
    fusion = Fusion(WORD_PIECES, unigram_lm, lam, oov_penalty=-10.0)
    deltas, end = _deltas(fusion, [G, O, X, ST, OP])
    # "g", "go": prefixes of known words, free; "gox": no known word starts so, -10 (times lambda); "▁st"
    # ends "gox", an unknown word: the LM's <unk> (-1.0) and the penalty replace the provisional -10.
    assert deltas == pytest.approx([0.0, 0.0, lam * -10.0, lam * -1.0 * LN10, 0.0])
    assert end == pytest.approx(lam * (-1.2 - 0.5) * LN10)  # "stop", then the end of sentence
    assert fusion.sequence_score([G, O, X, ST, OP]) == pytest.approx(lam * ((-1.0 - 1.2 - 0.5) * LN10 - 10.0))


def test_partial_words_with_lookahead_by_hand(unigram_lm):
    lam = 0.5
    fusion = Fusion(WORD_PIECES, unigram_lm, lam, oov_penalty=-10.0, lookahead=True)
    deltas, end = _deltas(fusion, [G, O, NE, ST, OP])
    # "g" and "go" may become "go" (-0.3, the best) or "gone"; "gone" may only become "gone" (-0.7);
    # "▁st" completes "gone" (-0.7, as promised) and opens "st" (best completion "stop", -1.2).
    assert deltas == pytest.approx([lam * -0.3 * LN10, 0.0, lam * -0.4 * LN10, lam * -1.2 * LN10, 0.0])
    assert end == pytest.approx(lam * -0.5 * LN10)  # "stop" was paid in advance; the end of sentence
    # The provisional scores telescope: the total is the LM's sentence score whatever the look-ahead.
    assert sum(deltas) + end == pytest.approx(lam * (-0.7 - 1.2 - 0.5) * LN10)


def test_hotword_words_are_not_out_of_vocabulary(unigram_lm):
    lam = 0.5
    fusion = Fusion(WORD_PIECES, unigram_lm, lam, oov_penalty=-10.0, hotwords=Hotwords([((G, O, X), 0.0)]))
    deltas, end = _deltas(fusion, [G, O, X, ST, OP])
    # "gox" is a hotword: its spelling is free and the whole word costs only the LM's <unk>.
    assert deltas == pytest.approx([0.0, 0.0, 0.0, lam * -1.0 * LN10, 0.0])


@pytest.mark.parametrize("lookahead", [False, True])
def test_word_lm_weight_zero_equals_no_lm(unigram_lm, lookahead):
    V = len(WORD_PIECES)
    for seed in range(3):
        lp = random_log_probs(10, V, seed)
        plain = ctc_prefix_beam_search(lp, 4)
        zero = ctc_prefix_beam_search(lp, 4, fusion=Fusion(WORD_PIECES, unigram_lm, 0.0, lookahead=lookahead))
        assert [(h.tokens, h.score) for h in zero] == [(h.tokens, h.score) for h in plain]


@pytest.mark.parametrize("lookahead", [False, True])
def test_fused_word_lm_prefix_beam_matches_exhaustive_scores(unigram_lm, lookahead):
    # No pruning: the best hypothesis maximizes log P_ctc + lam * (word LM + OOV penalties) + beta * len,
    # so the provisional partial-word scores must cancel exactly.
    lp = random_log_probs(5, len(WORD_PIECES), 5, scale=1.0)
    lam, beta = 0.6, 0.3
    fusion = Fusion(WORD_PIECES, unigram_lm, lam, beta, oov_penalty=-4.0, lookahead=lookahead)
    best = ctc_prefix_beam_search(lp, 10**5, fusion=fusion)[0]

    def lm_score(seq):
        words = "".join(WORD_PIECES[t] for t in seq).split("▁")
        words = [w for w in words if w]
        known = sum(unigram_lm.unigram_log_probs()[unigram_lm.index()[w]] for w in words if w in unigram_lm.vocab)
        unknown = sum(1 for w in words if w not in unigram_lm.vocab)
        return known + unknown * (-1.0 * LN10 - 4.0) - 0.5 * LN10

    ref = max((ctc_loss_score(lp, list(seq)) + lam * lm_score(seq) + beta * len(seq), seq)
              for n in range(6) for seq in itertools.product(range(3, len(WORD_PIECES)), repeat=n))
    assert best.tokens == ref[1]
    assert best.score == pytest.approx(ref[0], abs=1e-6)


def test_oov_penalty_keeps_known_spellings_in_a_narrow_beam(unigram_lm):
    # Frame by frame the acoustics prefer "▁g o x" slightly over "▁g o ne"; at beam 1 a search that does not
    # look at partial words commits to "gox" before the LM can object, one that does keeps "gone".
    lp = torch.full((5, len(WORD_PIECES)), math.log(1e-3), dtype=torch.float64)
    lp[0, G] = lp[1, 0] = lp[2, O] = lp[3, 0] = math.log(0.9)
    lp[4, X], lp[4, NE] = math.log(0.5), math.log(0.45)
    lp = lp.log_softmax(-1)
    blind = Fusion(WORD_PIECES, unigram_lm, 0.5, oov_penalty=0.0)
    seeing = Fusion(WORD_PIECES, unigram_lm, 0.5, oov_penalty=-10.0)
    assert ctc_prefix_beam_search(lp, 1, fusion=blind)[0].tokens == (G, O, X)
    assert ctc_prefix_beam_search(lp, 1, fusion=seeing)[0].tokens == (G, O, NE)


def test_scorers_share_one_prefix_table(unigram_lm):
    scorers = Scorers(WORD_PIECES, unigram_lm, Hotwords([((G, O, X), 1.0)]))
    a, b = scorers.fusion(0.5, 0.0), scorers.fusion(1.0, 1.0)
    assert a.prefixes is b.prefixes
    assert "gox" in a.prefixes and a.prefixes.best("gon") == pytest.approx(-0.7 * LN10)
    assert a.prefixes.best("gx") is None


@pytest.mark.parametrize("seed", range(3))
def test_search_scores_keep_only_complete_hotwords(seed):
    # Every hypothesis the search returns carries exactly its brute-force bonus: open partial matches
    # (paid token by token during the search) are taken back by the end.
    lp = random_log_probs(5, V, seed, scale=1.0)
    phrases = [((3, 4, 5), 1.5), ((4, 4), 0.7)]
    # A beam that never prunes, so the acoustic scores are exact; the 60 best are checked.
    fused = ctc_prefix_beam_search(lp, 10**5, fusion=Fusion(PIECES, hotwords=Hotwords(phrases)))[:60]
    assert any(h.tokens[-2:] == (3, 4) or h.tokens[-1:] == (3,) for h in fused)  # some end inside a match
    for h in fused:
        assert h.score == pytest.approx(ctc_loss_score(lp, list(h.tokens)) + hotword_reference(phrases, h.tokens),
                                        abs=1e-6)


def test_decode_config_sets_the_oov_penalty(unigram_lm):
    """decode.lm_oov_penalty reaches the search through decode_encoded: at beam 1 (one candidate token per
    frame) the search spells "gox", an unknown word, whose score carries lambda x the penalty."""
    from ceasr.decode import decode_encoded

    lp = torch.full((5, len(WORD_PIECES)), math.log(1e-3), dtype=torch.float64)
    lp[0, G] = lp[1, 0] = lp[2, O] = lp[3, 0] = math.log(0.9)
    lp[4, X], lp[4, NE] = math.log(0.5), math.log(0.45)
    lp = lp.log_softmax(-1)

    class CtcOnly:
        def ctc_log_probs(self, enc):
            return enc

    scorers = Scorers(WORD_PIECES, unigram_lm, None)
    best = {}
    for penalty in (0.0, -10.0, -4.0):
        cfg = DecodeConfig(method="ctc_prefix_beam", beam_size=1, lm_weight=0.5, length_penalty=0.0,
                           lm_oov_penalty=penalty)
        best[penalty] = decode_encoded(CtcOnly(), lp[None], torch.tensor([5]), cfg, scorers)[0]
    assert {h.tokens for h in best.values()} == {(G, O, X)}
    assert best[-10.0].score - best[0.0].score == pytest.approx(0.5 * -10.0)
    assert best[-4.0].score - best[0.0].score == pytest.approx(0.5 * -4.0)
