"""Hard negatives (ceasr.commands.negatives): each kind of near miss by its definition, exclusions, garbage
transcripts by hand, and ``ceasr negatives`` end to end on a tiny synthesized corpus."""

from __future__ import annotations

import json

import pytest

from ceasr.commands import load_command_set, parse_command_set
from ceasr.commands.negatives import (FUNCTION_WORDS, balanced_commands, garbage_transcript, near_misses,
                                     out_of_domain_words, parse_mix)
from ceasr.data.synth import corpus_engines, corpus_voices, split_voices
from ceasr.errors import CeasrError
from ceasr.text.soundalike import phone_distance
from tests.conftest import ceasr_cli

SET = parse_command_set("turn (on|off) the (light|fan)\nstop\nplay music\n", "tiny")
VOCAB = {w for p in SET.phrases for w in p.split()} | {"zero"}


def nearest(text: str) -> int:
    """Words between ``text`` and the nearest command (the Levenshtein distance tested in test_soundalike.py)."""
    return min(phone_distance(tuple(text.split()), tuple(p.split())) for p in SET.phrases)


def test_garbage_transcript_by_hand():
    vocab = {"six", "the", "door"}
    assert garbage_transcript("there were six small chairs", vocab) == "zzz six zzz"
    assert garbage_transcript("open the door", vocab, "<garbage>") == "<garbage> the door"
    assert garbage_transcript("six the door", vocab) == "six the door"
    assert garbage_transcript("", vocab) == ""


@pytest.mark.parametrize("kind", ["swap", "insert", "recombine", "extend", "drop", "function"])
def test_each_kind_is_one_word_from_a_command_and_no_command(kind):
    texts = near_misses(SET, 200, VOCAB, seed=1, mix={kind: 1.0})
    assert len(texts) == 200
    assert not set(texts) & set(SET.phrases)
    assert all(nearest(t) == 1 for t in texts)
    lengths = {len(p.split()) for p in SET.phrases}
    words = [set(t.split()) for t in texts]
    if kind == "swap":  # the same length, exactly one word the corpus does not know
        assert all(len(t.split()) in lengths and len(w - VOCAB) == 1 for t, w in zip(texts, words))
    if kind == "insert":
        assert all(len(t.split()) - 1 in lengths and len(w - VOCAB) == 1 for t, w in zip(texts, words))
    if kind == "recombine":  # only the set's own words
        assert all(w <= VOCAB for w in words) and len(set(texts)) > 5
    if kind == "extend":
        assert all(len(t.split()) - 1 in lengths and w <= VOCAB for t, w in zip(texts, words))
    if kind == "drop":
        assert all(len(t.split()) + 1 in lengths and w <= VOCAB for t, w in zip(texts, words))
    if kind == "function":  # "turn on the light" -> "turn on a light", "turn at the light"; "stop" has none to swap
        def function_swap(text, phrase):
            pairs = [(a, b) for a, b in zip(text.split(), phrase.split()) if a != b]
            return len(text.split()) == len(phrase.split()) and len(pairs) == 1 and set(pairs[0]) <= set(FUNCTION_WORDS)
        assert all(any(function_swap(t, p) for p in SET.phrases) for t in texts)
        assert {t.split()[1] for t in texts} - {"on", "off"} and {t.split()[2] for t in texts} - {"the"}


def test_sound_swaps_a_word_for_a_near_one():
    alikes = {"light": ["fight", "lice", "turn"], "fan": ["fun", "play"], "stop": ["zero"]}.get
    texts = near_misses(SET, 300, VOCAB, seed=3, mix={"sound": 1.0}, sound_alikes=lambda w: alikes(w, []),
                        exclude_words={"lice"})
    swapped = {w for t in texts for w in t.split()} - VOCAB
    assert swapped == {"fight", "fun"}  # never a word the corpus or the set knows ("turn", "play", "zero"), nor "lice"
    assert all(nearest(t) == 1 for t in texts)


def test_dictionary_swaps_a_word_for_any_unknown_word_of_the_dictionary():
    dictionary = ["aardvark", "zebra", "yacht", "light", "play", "quartz"]
    texts = near_misses(SET, 300, VOCAB, seed=5, mix={"dictionary": 1.0}, dictionary=dictionary,
                        exclude_words={"quartz"})
    swapped = {w for t in texts for w in t.split()} - VOCAB
    assert swapped == {"aardvark", "zebra", "yacht"}  # never a known word ("light", "play") nor an excluded one
    assert all(nearest(t) == 1 and len(set(t.split()) - VOCAB) == 1 for t in texts)


def test_balanced_commands_draw_each_intent_equally_often():
    commands = parse_command_set("go: go (north|south|east|west)\nhalt: stop\n", "two intents")
    drawn = balanced_commands(commands, 4000, seed=2)
    counts = {p: drawn.count(p) for p in commands.phrases}
    assert sum(counts.values()) == 4000 and abs(counts["stop"] - 2000) < 150  # binomial sd 32
    assert all(abs(counts[f"go {d}"] - 500) < 100 for d in ("north", "south", "east", "west"))  # sd 27
    assert drawn == balanced_commands(commands, 4000, seed=2) != balanced_commands(commands, 4000, seed=3)


def test_shuffle_draws_words_of_the_set():
    texts = near_misses(SET, 300, VOCAB, seed=4, mix={"shuffle": 1.0})
    assert all(set(t.split()) <= VOCAB - {"zero"} and 1 <= len(t.split()) <= 6 for t in texts)
    assert not set(texts) & set(SET.phrases) and len({len(t.split()) for t in texts}) == 6


def test_general_sentences_and_seeds():
    texts = near_misses(SET, 300, VOCAB, seed=0, mix={"swap": 1.0, "general": 1.0})
    far = [t for t in texts if nearest(t) > 1]  # general sentences are more than one word from a command
    assert 0.4 < len(far) / len(texts) < 0.6
    assert texts == near_misses(SET, 300, VOCAB, seed=0, mix={"swap": 1.0, "general": 1.0})
    assert near_misses(SET, 300, VOCAB, seed=0) != near_misses(SET, 300, VOCAB, seed=1)  # the default mix


def test_excluded_words_and_texts_never_appear():
    words = set(out_of_domain_words(VOCAB)[:200])
    texts = near_misses(SET, 500, VOCAB, seed=2, exclude_words=words | {"turn"}, exclude_texts={"play", "stop music"})
    assert not {w for t in texts for w in t.split()} & words
    assert "turn" in {w for t in texts for w in t.split()}  # a word of the corpus is never excluded
    assert not {"play", "stop music"} & set(texts)
    assert not set(out_of_domain_words(VOCAB)) & VOCAB


def test_impossible_mix_and_bad_specs_raise():
    single = parse_command_set("stop\n", "single")
    with pytest.raises(CeasrError, match="only 0 of 5"):
        near_misses(single, 5, {"stop"}, mix={"recombine": 1.0})  # "stop" -> "stop" is the command itself
    for mix in ({"scramble": 1.0}, {"swap": -1.0}, {"swap": 0.0}):
        with pytest.raises(CeasrError, match="mix"):
            near_misses(SET, 5, VOCAB, mix=mix)
    assert parse_mix("swap=0.5, drop=1") == {"swap": 0.5, "drop": 1.0}
    with pytest.raises(CeasrError, match="'drop' is not kind=weight"):
        parse_mix("swap=0.5,drop")


def test_cli_adds_near_misses_to_the_training_split(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "neg"
    ceasr_cli("synth", "--out", corpus, "--hours", "0.004", "--seed", "5")
    r = ceasr_cli("negatives", "--corpus", corpus, "--out", out, "--hours", "0.003", "--texts", "50",
                  "--seed", "5", "--mix", "swap=1")
    assert "near misses" in r.stdout
    base = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    negatives = rows[len(base):]
    assert [r["text"] for r in rows[: len(base)]] == [r["text"] for r in base] and negatives
    vocab = {w for r in base for w in r["text"].split()}
    train_voices = {r["speaker"] for r in base}
    for row in negatives:
        assert row["id"].startswith("neg-") and row["speaker"] in train_voices
        assert set(row["text"].split()) <= vocab | {"zzz"} and "zzz" in row["text"].split()
    set_words = {w for p in load_command_set("default").phrases for w in p.split()}
    spoken = (out / "texts.txt").read_text().splitlines()
    assert len(spoken) == 50 and all(len(set(t.split()) - set_words) == 1 for t in spoken)


def test_cli_positives_keep_their_transcripts(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "neg"
    ceasr_cli("synth", "--out", corpus, "--hours", "0.004", "--seed", "5")
    r = ceasr_cli("negatives", "--corpus", corpus, "--out", out, "--hours", "0.006", "--texts", "40",
                  "--seed", "5", "--mix", "swap=1", "--positives", "0.5")
    commands = load_command_set("default")
    spoken = (out / "texts.txt").read_text().splitlines()
    assert sum(commands.lookup(t) is not None for t in spoken) == 20
    added = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()
             if json.loads(x)["id"].startswith(("neg-", "pos-"))]
    positives = [row for row in added if row["id"].startswith("pos-")]
    assert positives and len(positives) < len(added) and f"+ {len(positives)} commands" in r.stdout
    assert all(commands.lookup(row["text"]) for row in positives)  # spoken and written as the command
    assert all("zzz" in row["text"].split() for row in added if row not in positives)
    r = ceasr_cli("negatives", "--corpus", corpus, "--out", out, "--positives", "1", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "positives is a share" in r.stderr


def test_cli_bad_input_is_one_line(tmp_path):
    corpus = tmp_path / "corpus"  # seed 5's training voices; negatives asked for with a seed that tests one of them
    ceasr_cli("synth", "--out", corpus, "--hours", "0.004", "--seed", "5")
    speakers = {json.loads(x)["speaker"] for x in (corpus / "train.jsonl").read_text().splitlines()}
    voices, _ = corpus_voices(corpus_engines(None))
    seed = next(s for s in range(100) if speakers - {v.id for v in split_voices(voices, s)["train"]})
    r = ceasr_cli("negatives", "--corpus", corpus, "--out", tmp_path / "o", "--seed", seed, "--hours", "0.003",
                  check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "pass the seed the corpus was synthesized" in r.stderr
    r = ceasr_cli("negatives", "--corpus", tmp_path / "nowhere", "--out", tmp_path / "o", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nowhere" in r.stderr
    r = ceasr_cli("negatives", "--corpus", tmp_path, "--out", tmp_path / "o", "--mix", "swap", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "kind=weight" in r.stderr
