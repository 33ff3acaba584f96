"""Command sets: grammar compilation and slots, exact scores, constrained beam vs exhaustive, calibration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ceasr.commands import load_command_set, parse_command_set
from ceasr.commands.beam import TokenTrie, constrained_beam_search
from ceasr.commands.calibrate import det_curve, threshold_for_far
from ceasr.commands.score import (Phrases, attention_scores, best_joint_scores, ctc_scores, joint_scores,
                                  pad_sequences)
from ceasr.config import ModelConfig
from ceasr.data.domain import command_phrases
from ceasr.decode.ctc import CTCPrefixScorer
from ceasr.errors import CeasrError
from ceasr.models.asr import build_model
from ceasr.text.tokenizer import CharTokenizer


def test_default_set_expands_to_the_corpus_commands_in_order():
    assert load_command_set("default").phrases == command_phrases()


def test_default_set_slots():
    cs = load_command_set("default")
    assert cs.lookup("go forward ten meters").as_dict() == {"intent": "go", "direction": "forward", "distance": "ten"}
    assert cs.lookup("go backward one meter").as_dict() == {"intent": "go", "direction": "backward",
                                                            "distance": "one"}
    assert cs.lookup("turn off the fan").as_dict() == {"intent": "switch", "state": "off", "device": "fan"}
    assert cs.lookup("set a timer for one minute").as_dict() == {"intent": "timer", "minutes": "one"}
    assert cs.lookup("what time is it").as_dict() == {"intent": "time"}
    assert cs.lookup("go forward eleven meters") is None


def test_alternatives_optional_rules_and_nested_slots():
    text = """
    # a comment
    <n> = one | two | (twenty [one]){tens}
    call: [please] call (mom | the (doctor | nurse){who}){person} <n>{times} times;
    hello
    """
    cs = parse_command_set(text)
    expected = [" ".join(w for w in (p, "call", who, n, "times") if w)
                for p in ("please", "") for who in ("mom", "the doctor", "the nurse")
                for n in ("one", "two", "twenty one", "twenty")]
    assert cs.phrases == expected + ["hello"]
    c = cs.lookup("call the nurse twenty one times")
    assert c.as_dict() == {"intent": "call", "who": "nurse", "person": "the nurse", "tens": "twenty one",
                           "times": "twenty one"}
    assert cs.lookup("please call mom two times").as_dict() == {"intent": "call", "person": "mom", "times": "two"}
    assert cs.lookup("hello").as_dict() == {"intent": "hello"}  # no intent given: the first word


@pytest.mark.parametrize("text, reason", [
    ("go <dist>", "x:1: rule <dist> is not defined"),
    ("<a> = b <a>\ngo <a>", "x:1: rule <a> refers to itself"),
    ("go (left | right", "x:1: '(' without its ')'"),
    ("go 10 meters", "x:1: write '10' as spoken words"),
    ("go left)", "x:1: unexpected ')'"),
    ("\n# nothing\n", "x: the command set has no command"),
    ("<a> = b\n<a> = c\ngo", "x:2: rule <a> is defined twice"),
    ("go [left]\n(| )", "x:2: an alternative of this command says nothing"),
])
def test_grammar_errors_name_the_line(text, reason):
    with pytest.raises(CeasrError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_command_set(text, source="x")


def test_missing_command_file_is_an_error(tmp_path):
    with pytest.raises(CeasrError, match="no such command set"):
        load_command_set(tmp_path / "none.commands")


PHRASES = ["go left", "go right", "go", "stop", "lights on", "lights off", "yes", "no"]


@pytest.fixture(scope="module")
def tiny():
    """A random tiny CTC/attention model, a char tokenizer, and one utterance's encoder output."""
    torch.manual_seed(0)
    tok = CharTokenizer.train(PHRASES)
    cfg = ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64, subsampling_channels=8,
                      decoder_layers=2, decoder_ff_dim=64, dropout=0.0)
    model = build_model(cfg, 80, tok.vocab_size).eval()
    with torch.inference_mode():
        feats = torch.randn(1, 140, 80)
        enc, lens = model.encode(feats, torch.tensor([140]))
        lp = model.ctc_log_probs(enc)[0]
    return model, tok, enc, lp


def _brute_ctc(lp: torch.Tensor, seq: list[int]) -> float:
    """log P(seq | x) by enumerating every frame labelling that collapses to seq (tiny T only)."""
    T, V = lp.shape
    total = -math.inf
    for path in itertools.product(range(V), repeat=T):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if collapsed == seq:
            total = np.logaddexp(total, sum(float(lp[t, k]) for t, k in enumerate(path)))
    return total


def test_ctc_scores_match_brute_force_and_prefix_scorer(tiny):
    torch.manual_seed(1)
    small = torch.randn(6, 4, dtype=torch.float64).log_softmax(-1)
    seqs = [(1, 2), (2, 2), (3,), (1, 2, 3), (1, 1, 1, 1)]
    padded, lens = pad_sequences(seqs, 0)
    got = ctc_scores(small, padded, lens)
    for s, g in zip(seqs, got.tolist()):
        assert g == pytest.approx(_brute_ctc(small, list(s)), abs=1e-9)
    _, tok, _, lp = tiny
    seqs = [tuple(tok.encode(p)) for p in PHRASES]
    padded, lens = pad_sequences(seqs, 2)
    scorer = CTCPrefixScorer(lp)
    for s, g in zip(seqs, ctc_scores(lp, padded, lens).tolist()):
        assert g == pytest.approx(scorer.sequence_score(list(s)), abs=1e-6)


def test_attention_scores_match_full_forward_per_sequence(tiny):
    model, tok, enc, _ = tiny
    seqs = [tuple(tok.encode(p)) for p in PHRASES] + [()]
    padded, lens = pad_sequences(seqs, model.eos_id)
    with torch.inference_mode():
        got = attention_scores(model.decoder, enc, padded, lens, model.sos_id, model.eos_id)
        for s, g in zip(seqs, got.tolist()):
            ys = torch.tensor([[model.sos_id, *s]])
            logp = model.decoder(enc, torch.tensor([enc.shape[1]]), ys).log_softmax(-1)[0]  # (L + 1, V)
            want = sum(float(logp[i, t]) for i, t in enumerate([*s, model.eos_id]))
            assert g == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.5, 1.0])
def test_constrained_beam_equals_exhaustive_scoring(tiny, ctc_weight):
    model, tok, enc, lp = tiny
    seqs = [tuple(tok.encode(p)) for p in PHRASES]
    with torch.inference_mode():
        exact = joint_scores(model, enc, lp, seqs, ctc_weight)
        wide = constrained_beam_search(model, enc, lp, TokenTrie(seqs), len(seqs), ctc_weight)
        narrow = constrained_beam_search(model, enc, lp, TokenTrie(seqs), 3, ctc_weight)
    ranking = sorted(range(len(seqs)), key=lambda i: -float(exact[i]))
    assert [i for i, _ in wide] == ranking
    for i, score in wide:
        assert score == pytest.approx(float(exact[i]), abs=1e-6)
    assert narrow[0][0] == ranking[0]  # the best survives a narrow beam on this utterance


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3, 0.5, 1.0])
def test_pruned_exact_search_finds_the_exhaustive_best(tiny, ctc_weight):
    """The decoder runs only on the best phrases by CTC until the bound w * CTC <= best joint score closes the
    rest; the winner and its score equal exhaustive scoring, on the real utterance and on noise inputs."""
    model, tok, enc, lp = tiny
    seqs = [tuple(tok.encode(p)) for p in PHRASES] + [(5,), (5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)]
    gen = torch.Generator().manual_seed(0)
    inputs = [(enc, lp)] + [(torch.randn(enc.shape, generator=gen), torch.randn(lp.shape, generator=gen)
                             .log_softmax(-1)) for _ in range(6)]
    with torch.inference_mode():
        for memory, log_probs in inputs:
            exact = joint_scores(model, memory, log_probs, seqs, ctc_weight)
            ready = Phrases.of(model, seqs)  # padded, with their decoder states, once: the same scores
            for first, phrases in ((1, seqs), (2, seqs), (len(seqs), seqs), (1, ready), (3, ready)):
                got = best_joint_scores(model, memory, log_probs, phrases, ctc_weight, first=first)
                assert got[0][0] == int(torch.argmax(exact))
                for i, score in got:
                    assert score == pytest.approx(float(exact[i]), abs=1e-6)
                assert len({i for i, _ in got}) == len(got) <= len(seqs)
        scored = len(best_joint_scores(model, enc, lp, seqs, ctc_weight, first=1))
    if ctc_weight == 0.5:  # the bound prunes: on the real utterance the decoder scored fewer than all
        assert scored < len(seqs)
    if ctc_weight == 0.0:  # no bound without CTC: everything is scored
        assert scored == len(seqs)


def test_trie_shares_prefixes_and_marks_ends():
    trie = TokenTrie([(1, 2), (1, 2, 3), (1, 4), (1, 2)])
    assert len(trie) == 5  # root, 1, 1-2, 1-2-3, 1-4
    node = trie.children[trie.children[0][1]][2]
    assert trie.ends[node] == 0 and trie.ends[trie.children[node][3]] == 1


def test_threshold_for_far_on_known_lists():
    oog = [0.1 * i for i in range(1, 11)]  # 0.1 .. 1.0
    t = threshold_for_far(oog, 0.2)  # 2 of 10 may pass: just above the third highest, 0.8
    assert 0.8 < t < 0.8 + 1e-12
    assert np.mean(np.asarray(oog) >= t) == pytest.approx(0.2)
    assert threshold_for_far(oog, 0.25) == t  # 2.5 false accepts round down to 2
    assert threshold_for_far(oog, 0.0) > 1.0  # nothing may pass
    assert threshold_for_far(oog, 1.0) == 0.0
    assert threshold_for_far([0.5, 0.5, 0.5, 0.2], 0.5) > 0.5  # ties cannot be split: FAR 0 <= 0.5
    with pytest.raises(CeasrError):
        threshold_for_far([], 0.1)


def test_det_curve_by_hand():
    thresholds, frr, far = det_curve([0.9, 0.6, 0.3], [0.2, 0.6])
    assert thresholds.tolist() == [0.2, 0.3, 0.6, 0.9, math.inf]
    assert frr.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1])
    assert far.tolist() == pytest.approx([1, 0.5, 0.5, 0, 0])
