"""Sound-alikes (ceasr.text.soundalike): festival lexicon lines parsed by hand, the one-phone neighbours of a small
lexicon against a brute-force edit distance, and festival's own dictionaries where installed."""

from __future__ import annotations

import pytest

from ceasr.errors import CeasrError
from ceasr.text.soundalike import CMU, SoundAlikes, parse_festival_lexicon, phone_distance

LINES = '''MNCL
("'em" prp (((@ m) 0)) ((pos "Qx$")))
("lights" nil (((l ay t s) 1)))
("light" nil (((l ay t) 1)))
("light" v (((l ay t) 0)))
("flights" nil (((f l ay t s) 1)))
("lites" nil (((l ay t s) 1)))
("bites" nil (((b ay t s) 1)))
("lice" nil (((l ay s) 1)))
("lie" nil (((l ay) 1)))
("lighter" nil (((l ay) 1) ((t er) 0)))
("a" dt (((ax) 0)))
("ax" nil (((ae k s) 1)))
'''.splitlines()


def test_parse_by_hand():
    lex = parse_festival_lexicon(LINES)
    assert lex["lights"] == ("l", "ay", "t", "s")
    assert lex["lighter"] == ("l", "ay", "t", "er")  # syllables joined, stress dropped
    assert lex["light"] == ("l", "ay", "t")  # the first of two entries
    assert "'em" not in lex and len(lex) == 10


def test_phone_distance_by_hand():
    assert phone_distance(("l", "ay", "t", "s"), ("f", "l", "ay", "t", "s")) == 1
    assert phone_distance(("l", "ay", "t", "s"), ("b", "ay", "t", "s")) == 1
    assert phone_distance(("l", "ay", "t", "s"), ("l", "ay")) == 2
    assert phone_distance((), ("a", "b")) == 2 and phone_distance(("a",), ("a",)) == 0


def test_neighbours_equal_brute_force():
    lex = parse_festival_lexicon(LINES)
    alikes = SoundAlikes(lex)
    for word in lex:
        if len(word) < 2:
            continue
        brute = sorted(w for w in lex if len(w) > 1 and phone_distance(lex[word], lex[w]) == 1)
        assert alikes(word) == brute
    assert alikes("lights") == ["bites", "flights", "lice", "light", "lighter"]  # not the homophone "lites"
    assert alikes("lie") == ["lice", "light"] and alikes("unknown") == [] and alikes("a") == []


def test_common_words_filter():
    alikes = SoundAlikes(parse_festival_lexicon(LINES), common={"lights", "light", "bites"})
    assert alikes("lights") == ["bites", "light"]


def test_missing_dictionary_is_a_clear_error(tmp_path):
    with pytest.raises(CeasrError, match="festlex-cmu"):
        SoundAlikes.from_festival(tmp_path / "cmudict.out", tmp_path / "oald.out")


@pytest.mark.skipif(not CMU.exists(), reason="festival's CMU dictionary (festlex-cmu) is not installed")
def test_festival_dictionary():
    alikes = SoundAlikes.from_festival()
    assert {"fans", "van", "fun"} <= set(alikes("fan")) and "flights" in alikes("lights")
    assert all(phone_distance(alikes.lexicon["ten"], alikes.lexicon[w]) == 1 for w in alikes("ten"))
