"""Language models: Kneser-Ney against hand computation and closed forms, ARPA round trips, kenlm agreement,
normalization of every context, perplexity, the Transformer LM, LM directories."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from ceasr.config import LMConfig, TrainConfig
from ceasr.errors import CeasrError, ConfigError
from ceasr.lm import load_lm, perplexity, train_lm
from ceasr.lm.arpa import read_arpa, write_arpa
from ceasr.lm.base import BOS, EOS, LanguageModel
from ceasr.lm.kneser_ney import adjust_counts, count_ngrams, discounts, estimate
from ceasr.lm.ngram import NgramLM
from ceasr.text.tokenizer import CharTokenizer

HAND_D = [(0.5, 1.0, 1.5)] * 2


def hand_model() -> NgramLM:
    return NgramLM(estimate([["a", "b"], ["b"]], 2, HAND_D))


def test_bigram_matches_hand_computation():
    # <s> a b </s>, <s> b </s>. Continuation counts: a 1 ({<s>}), b 2 ({<s>, a}), </s> 1 ({b}); S = 4,
    # gamma() = (0.5 + 1.0 + 0.5) / 4 = 0.5 spread over |{a, b, </s>, <unk>}| = 4.
    lm = hand_model()
    ids = lm.index()
    p = lambda h, w: math.exp(lm.log_probs([tuple(ids[x] for x in h)])[0, ids[w]])  # noqa: E731
    assert p((), "a") == pytest.approx(0.5 / 4 + 0.5 / 4)
    assert p((), "b") == pytest.approx(1.0 / 4 + 0.5 / 4)
    assert p((), EOS) == pytest.approx(0.5 / 4 + 0.5 / 4)
    assert p((), "<unk>") == pytest.approx(0.5 / 4)
    # Context <s>: raw counts 1, 1; S = 2, gamma = 0.5.
    assert p((BOS,), "a") == pytest.approx(0.5 / 2 + 0.5 * 0.25)
    assert p((BOS,), "b") == pytest.approx(0.5 / 2 + 0.5 * 0.375)
    assert p((BOS,), EOS) == pytest.approx(0.5 * 0.25)
    assert p(("a",), "b") == pytest.approx(0.5 / 1 + 0.5 * 0.375)
    assert p(("b",), EOS) == pytest.approx((2 - 1.0) / 2 + 0.5 * 0.25)
    total = lm.sentence_log_probs([lm.encode("a b")])[0]
    assert total == pytest.approx(math.log(0.375 * 0.6875 * 0.625))
    ppl = perplexity(lm, ["a b"])
    assert ppl.value == pytest.approx(math.exp(-total / 3)) and ppl.predicted == 3 and ppl.oov == 0


def test_adjusted_counts_are_continuation_counts():
    raw = count_ngrams([["x", "y"], ["z", "y"], ["x", "y"]], 2)
    adj = adjust_counts(raw)
    assert raw[0][("y",)] == 3 and adj[0][("y",)] == 2  # preceded by x and z
    assert adj[0][(BOS,)] == raw[0][(BOS,)] == 3  # <s> keeps its raw count
    assert adj[1] == raw[1]  # the highest order is raw


def test_discounts_closed_form():
    # t1..t4 = 4, 2, 1, 1 -> Y = 4/8; D1 = 1 - 2Y*2/4, D2 = 2 - 3Y*1/2, D3+ = 3 - 4Y*1/1.
    counts = Counter({i: c for i, c in enumerate([1, 1, 1, 1, 2, 2, 3, 4, 9])})
    assert discounts(counts) == pytest.approx((0.5, 1.25, 1.0))


def random_corpus(seed: int, n: int = 120) -> list[list[str]]:
    rng = random.Random(seed)
    words = "one two three four five stop go left right".split()
    return [[rng.choice(words[: rng.randint(3, 9)]) for _ in range(rng.randint(1, 6))] for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_sums_to_one(order):
    lm = NgramLM(estimate(random_corpus(order), order))
    contexts = {()} | {tuple(lm.index()[w] for w in g) for level in lm.tables.probs for g in level}
    contexts |= {(lm.bos, 5, 5), (7,), (3, 3, 3)}  # never seen: pure back-off
    for h in contexts:
        h = h[-(order - 1):] if order > 1 else ()
        if h and h[-1] == lm.eos:
            continue
        probs = np.exp(lm.log_probs([h])[0])
        assert probs.sum() == pytest.approx(1.0, abs=1e-9), h
        assert probs[lm.bos] == 0.0


def test_arpa_round_trip(tmp_path):
    tables = estimate(random_corpus(7), 3)
    write_arpa(tables, tmp_path / "lm.arpa")
    back = read_arpa(tmp_path / "lm.arpa")
    for ours, theirs in zip(tables.probs + tables.backoffs, back.probs + back.backoffs):
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[g] - theirs[g]) < 1e-6 for g in ours)
    a, b = NgramLM(tables), NgramLM(back)
    states = [a.start(), a.advance(a.start(), 4), (5, 6), ()]
    np.testing.assert_allclose(a.log_probs(states), b.log_probs(states), atol=1e-5)


def test_malformed_arpa_names_the_line(tmp_path):
    path = tmp_path / "bad.arpa"
    path.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-0.5\tword\textra\tfield\n\\end\\\n")
    with pytest.raises(CeasrError, match=r"bad.arpa:5"):
        read_arpa(path)
    with pytest.raises(CeasrError, match="no lm.json"):
        load_lm(tmp_path)


def test_kenlm_agrees_with_python_queries(tmp_path):
    pytest.importorskip("kenlm")
    from ceasr.lm.kenlm_backend import KenlmLM

    tables = estimate(random_corpus(3), 3)
    write_arpa(tables, tmp_path / "lm.arpa")
    ours = NgramLM(tables)
    theirs = KenlmLM(tmp_path / "lm.arpa", ours.vocab)
    assert theirs.vocab == ours.vocab
    for words in random_corpus(11, 20):
        ids = [ours.index().get(w, ours.unk) for w in words]
        assert theirs.sentence_log_probs([ids])[0] == pytest.approx(ours.sentence_log_probs([ids])[0], abs=1e-4)


def test_ngram_over_tokens_and_lm_directory(tmp_path):
    texts = [" ".join(w) for w in random_corpus(5)]
    tok = CharTokenizer.train(texts)
    cfg = LMConfig(type="ngram", units="tokens", order=4)
    ppl = train_lm(cfg, texts, tmp_path / "lm", tokenizer=tok, progress=False)
    for backend in ("python", "auto"):
        lm = load_lm(tmp_path / "lm", backend=backend)
        assert lm.units == "tokens"
        assert lm.encode("go left")[:2] == [lm.index()["g"], lm.index()["o"]]
        again = perplexity(lm, [t for t in texts if t][:0] or ["go left"])
        assert again.value > 1.0
    assert 1.0 < ppl.value < tok.vocab_size  # far better than uniform over the characters


class _Counting(LanguageModel):
    """Stand-in to check the generic sentence scoring: p(next) uniform over V = 4."""

    units, vocab, eos, unk = "tokens", ("<unk>", "<s>", "</s>", "x"), 2, 0

    def start(self):
        return ()

    def advance(self, state, symbol):
        return (*state, symbol)

    def log_probs(self, states):
        return np.full((len(states), 4), -math.log(4))

    def encode(self, text):
        return [3] * len(text.split())


def test_generic_sentence_scoring_counts_end_of_sentence():
    assert _Counting().sentence_log_probs([[3, 3]])[0] == pytest.approx(3 * -math.log(4))
    assert perplexity(_Counting(), ["x x", "x"]).value == pytest.approx(4.0)


def test_transformer_lm_learns_and_scores_consistently(tmp_path):
    import torch

    torch.manual_seed(0)
    texts = ["go left", "go right", "stop", "go left now", "turn left", "turn right now"] * 10
    tok = CharTokenizer.train(texts)
    cfg = LMConfig(type="transformer", units="tokens", d_model=32, n_heads=2, layers=1, ff_dim=64, dropout=0.0,
                   batch_sentences=16, train=TrainConfig(lr=3e-3, warmup_steps=10, max_steps=60, checkpoint_every=30,
                                                        average_last=1, scheduler="noam"))
    ppl = train_lm(cfg, texts, tmp_path / "tlm", tokenizer=tok, heldout=["go left", "turn right"], progress=False)
    assert ppl.value < tok.vocab_size / 3  # a uniform model would score about vocab_size
    lm = load_lm(tmp_path / "tlm")
    assert (tmp_path / "tlm" / "checkpoints").is_dir()
    sents = [lm.encode(t) for t in ("go left", "stop now", "turn")]
    batched = lm.sentence_log_probs(sents)
    stepwise = LanguageModel.sentence_log_probs(lm, sents)
    assert batched == pytest.approx(stepwise, rel=1e-6, abs=1e-6)  # float32 sums of -12: a few ulps apart
    rows = np.exp(lm.log_probs([lm.start(), (*lm.start(), *sents[0][:2])]))
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-9)
    assert rows[:, tok.blank_id].max() == 0.0


def test_neural_lm_row_cache_never_drops_what_a_call_asks_for(monkeypatch):
    import torch

    from ceasr.lm import neural

    torch.manual_seed(0)
    tok = CharTokenizer.train(["go left", "turn right"])
    cfg = LMConfig(type="transformer", d_model=16, n_heads=2, layers=1, ff_dim=32)
    model = neural.build_lm_model(cfg, tok.vocab_size)
    reference = neural.NeuralLM(model, tok)  # the default cache: nothing is evicted here
    monkeypatch.setattr(neural, "CACHE_STATES", 3)
    lm = neural.NeuralLM(model, tok)
    a, b, c, d, e = ((lm.sos, *tok.encode(w)) for w in ("go", "le", "ft", "tu", "rn"))
    lm.log_probs([a, b, c])  # the cache is full
    for states in ([a, d, e], [b, c, d, e, a]):  # a is the oldest entry; then more states than the cache holds
        np.testing.assert_allclose(lm.log_probs(states), reference.log_probs(states), atol=1e-6)  # batches differ
    assert list(lm._cache) == [d, e, a]  # the least recently asked for went first


def test_train_lm_rejects_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="lm.type"):
        train_lm(LMConfig(type="rnn"), ["a"], tmp_path / "x")
    with pytest.raises(ConfigError, match="tokenizer"):
        train_lm(LMConfig(type="transformer", units="tokens"), ["a"], tmp_path / "x")
