"""WER/CER against hand-computed alignments and an independent edit-distance dynamic programme."""

from __future__ import annotations

import random

import pytest

from ceasr.errors import CeasrError, ConfigError
from ceasr.metrics import ErrorCounts, char_errors, corpus_errors, word_errors


def _levenshtein(a: list, b: list) -> int:
    """Plain O(len(a)*len(b)) edit distance with unit costs, the reference for totals."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def test_identical():
    counts, ali = word_errors("the cat sat", "the cat sat")
    assert counts == ErrorCounts(S=0, D=0, I=0, N=3)
    assert ali == [("the", "the"), ("cat", "cat"), ("sat", "sat")]
    assert counts.rate == 0.0


def test_substitution():
    counts, ali = word_errors("the cat sat", "the bat sat")
    assert counts == ErrorCounts(S=1, D=0, I=0, N=3)
    assert ali == [("the", "the"), ("cat", "bat"), ("sat", "sat")]
    assert counts.rate == pytest.approx(1 / 3)


def test_deletion():
    counts, ali = word_errors("the cat sat", "the sat")
    assert counts == ErrorCounts(S=0, D=1, I=0, N=3)
    assert ali == [("the", "the"), ("cat", None), ("sat", "sat")]


def test_insertion():
    counts, ali = word_errors("the cat", "the big cat")
    assert counts == ErrorCounts(S=0, D=0, I=1, N=2)
    assert ali == [("the", "the"), (None, "big"), ("cat", "cat")]
    assert counts.rate == 0.5


def test_substitution_and_insertion_unique_alignment():
    # b->x must be a substitution (cheaper than delete+insert) and the extra e an insertion: 2 edits, one way.
    counts, ali = word_errors("a b c d", "a x c d e")
    assert counts == ErrorCounts(S=1, D=0, I=1, N=4)
    assert ali == [("a", "a"), ("b", "x"), ("c", "c"), ("d", "d"), (None, "e")]


def test_empty_reference_and_hypothesis():
    counts, ali = word_errors("", "a b")
    assert counts == ErrorCounts(S=0, D=0, I=2, N=0)
    assert ali == [(None, "a"), (None, "b")]
    assert counts.rate == float("inf")
    counts, ali = word_errors("a b", "  ")
    assert counts == ErrorCounts(S=0, D=2, I=0, N=2)
    assert ali == [("a", None), ("b", None)]
    assert counts.rate == 1.0
    counts, ali = word_errors("", "")
    assert counts == ErrorCounts() and ali == [] and counts.rate == 0.0


def test_symbols_that_look_like_epsilon_are_words():
    counts, ali = word_errors("* a", "* b")
    assert counts == ErrorCounts(S=1, D=0, I=0, N=2)
    assert ali == [("*", "*"), ("a", "b")]


def test_char_errors_exclude_spaces():
    counts, ali = char_errors("ab c", "abd")
    assert counts == ErrorCounts(S=1, D=0, I=0, N=3)
    assert ali == [("a", "a"), ("b", "b"), ("c", "d")]
    assert char_errors("a b", "ab")[0] == ErrorCounts(N=2)
    counts, _ = char_errors("héllo", "hello")
    assert counts == ErrorCounts(S=1, D=0, I=0, N=5)


def test_totals_match_independent_edit_distance():
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e"]
    for _ in range(200):
        ref = [rng.choice(words) for _ in range(rng.randint(0, 8))]
        hyp = [rng.choice(words) for _ in range(rng.randint(0, 8))]
        counts, ali = word_errors(" ".join(ref), " ".join(hyp))
        assert counts.errors == _levenshtein(ref, hyp)
        assert counts.N == len(ref)
        # The alignment reproduces both sequences.
        assert [r for r, _ in ali if r is not None] == ref
        assert [h for _, h in ali if h is not None] == hyp


def test_corpus_totals_are_sums_not_averages():
    refs = ["a b c d", "a", "x y", ""]
    hyps = ["a b c d", "b", "x", "z"]
    total = corpus_errors(refs, hyps)
    per = [word_errors(r, h)[0] for r, h in zip(refs, hyps)]
    assert total == ErrorCounts(
        S=sum(c.S for c in per), D=sum(c.D for c in per), I=sum(c.I for c in per), N=sum(c.N for c in per)
    )
    assert total == ErrorCounts(S=1, D=1, I=1, N=7)
    assert total.rate == pytest.approx(3 / 7)  # the mean of per-utterance rates would be inf here
    assert sum(per) == total
    chars = corpus_errors(refs, hyps, unit="char")
    assert chars == sum(char_errors(r, h)[0] for r, h in zip(refs, hyps))


def test_corpus_errors_bad_input():
    with pytest.raises(ConfigError, match="word, char"):
        corpus_errors(["a"], ["a"], unit="phone")
    with pytest.raises(CeasrError, match="2 references but 1 hypotheses"):
        corpus_errors(["a", "b"], ["a"])


def test_summary_format():
    assert ErrorCounts(S=1, D=0, I=2, N=243).summary() == "WER=0.0123 S=1 D=0 I=2 N=243"
    assert ErrorCounts(S=0, D=1, I=0, N=3).summary("CER") == "CER=0.3333 S=0 D=1 I=0 N=3"
    assert ErrorCounts().summary() == "WER=0.0000 S=0 D=0 I=0 N=0"


def test_addition():
    a, b = ErrorCounts(1, 2, 3, 10), ErrorCounts(4, 5, 6, 20)
    assert a + b == ErrorCounts(5, 7, 9, 30)
    assert (a + b).rate == pytest.approx(21 / 30)


def test_evaluation_by_speaker_adds_up_per_speaker_worst_first():
    from ceasr.data.manifest import Utterance
    from ceasr.evaluate import score

    rows = [Utterance("1.wav", "one two three", "1", speaker="a"), Utterance("2.wav", "four five", "2", speaker="a"),
            Utterance("3.wav", "six seven", "3", speaker="b"), Utterance("4.wav", "eight", "4")]
    report = score(rows, ["one two", "four five", "six eight seven", "nine"])
    assert report.by_speaker() == {"a": ErrorCounts(D=1, N=5), "b": ErrorCounts(I=1, N=2), "": ErrorCounts(S=1, N=1)}
    assert [r.get("speaker") for r in report.results] == ["a", "a", "b", None]
    table = report.summary_lines(by_speaker=True).splitlines()
    assert [line.split()[:3] for line in table[1:5]] == [
        ["speaker", "utts", "WER"], ["?", "1", "1.0000"], ["b", "1", "0.5000"], ["a", "2", "0.2000"]]
    assert table[-1] == "WER=0.3750 S=1 D=1 I=1 N=8"
    assert report.summary_lines().splitlines()[-1] == table[-1] and "speaker" not in report.summary_lines()
