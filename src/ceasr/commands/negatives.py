"""Hard negatives for a commands model: near misses of a command set, synthesized and added to training.

A model trained only on its commands learns them as a language: its free (CTC greedy) transcript of "close the
car" is "close the door", and rejection, which compares the best allowed phrase with the free transcript
(:mod:`ceasr.commands.recognize`), then has nothing to see. Near misses teach it to hear what was said. Each text
is one of (drawn with the weights of ``mix``):

* ``swap``: a command with one word replaced by an out-of-domain word ("turn on the horse");
* ``dictionary``: a command with one word replaced by any word of the pronouncing dictionary (the 36 k words of
  festival's CMU dictionary that OALD lists too: :class:`ceasr.text.soundalike.SoundAlikes`), nearly always a
  word no other negative says ("turn on the sturgeon"): what a user says is seldom among a few hundred words;
* ``insert``: a command with an out-of-domain word before or after it ("please open the door");
* ``sound``: a command with one word replaced by an out-of-domain word one phone from it (``ceasr.text.soundalike``:
  "turn on the lights" -> "turn on the flights", "go forward ten meters" -> "go forward tan meters");
* ``recombine``: a command with one word replaced by another word of the set, when that makes no command ("go
  door one meter", "turn off the music");
* ``extend``: a command with a word of the set before or after it, when that makes no command ("volume up is",
  "open the door yes");
* ``shuffle``: one to six words of the set in random order, mostly no command ("minutes the play go"): the model
  hears each word out of its commands' context, where otherwise "start a timer" comes out "set a timer";
* ``drop``: a command with one word left out, when that makes no command ("set timer for five minutes");
* ``function``: a command with one function word (article, possessive, preposition, particle) replaced by
  another ("open a window", "set the timer for one minute", "turn of the fan"): the one-word differences a
  model trained on commands hears as the command;
* ``general``: a general English sentence (:mod:`ceasr.data.domain_general`).

Transcripts keep the words the training corpus knows and write each run of other words as one filler word
(``zzz``: the garbage model of keyword spotters), so the model learns to say "a word I do not know" rather than
bend it into a command word; a commands model may print the filler in free transcripts.

``exclude_words`` (those the corpus does not know) and ``exclude_texts`` keep words and whole texts out
(``bench/commands_negatives.py`` holds out every word and sentence of the commands bench's near misses, so the bench
measures speech the model never heard).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ceasr.commands.grammar import CommandSet
from ceasr.data import domain_general
from ceasr.data.domain import TextSource
from ceasr.errors import CeasrError
from ceasr.text.soundalike import SoundAlikes

FILLER = "zzz"  # the default transcript of a run of words the corpus does not know
KINDS = ("swap", "dictionary", "insert", "sound", "recombine", "extend", "shuffle", "drop", "function", "general")
# The mix measured best on the commands bench (README, "Hard negatives").
DEFAULT_MIX = {"swap": 0.05, "dictionary": 0.1, "insert": 0.05, "sound": 0.15, "recombine": 0.1, "extend": 0.05,
               "shuffle": 0.35, "drop": 0.05, "general": 0.1}
FILLERS = ("please", "now", "then", "again", "here", "there", "really", "just", "maybe", "today", "quickly",
           "slowly", "also", "very", "much")
FUNCTION_WORDS = ("a", "an", "the", "my", "your", "our", "this", "that", "some", "no", "to", "for", "of", "on", "off",
                  "in", "at", "by", "with", "from", "up", "down", "out", "it", "is")
_WORD_LISTS = ("NAMES", "NOUNS", "PLURALS", "ADJECTIVES", "VERBS", "PAST", "PLACES", "TIMES", "FEELINGS",
               "QUESTIONS")
_MAX_TRIES = 100  # draws per wanted text before giving up (every kind may be impossible for a tiny set)


def out_of_domain_words(vocabulary: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """Everyday English words (those of :mod:`ceasr.data.domain_general` and a few fillers) outside
    ``vocabulary`` and ``exclude``, sorted."""
    pool = {w for name in _WORD_LISTS for phrase in getattr(domain_general, name) for w in phrase.split()}
    return sorted((pool | set(FILLERS)) - set(vocabulary) - set(exclude))


def near_misses(commands: CommandSet, count: int, vocabulary: Iterable[str], seed: int = 0,
                exclude_words: Iterable[str] = (), exclude_texts: Iterable[str] = (),
                mix: dict[str, float] | None = None,
                sound_alikes: Callable[[str], list[str]] | None = None,
                dictionary: Iterable[str] | None = None) -> list[str]:
    """``count`` near-miss texts of ``commands`` (kinds in the module docstring; texts may repeat), none of them
    a command or in ``exclude_texts``, none with a word of ``exclude_words`` outside ``vocabulary`` (what the
    training corpus knows; out-of-domain words are drawn from outside it and the set's words). ``sound_alikes``
    gives the near words of a word for ``sound`` and ``dictionary`` the words for ``dictionary`` (default for both:
    :meth:`SoundAlikes.from_festival`, read only when the mix needs it)."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    if set(mix) - set(KINDS) or not all(w >= 0 for w in mix.values()) or not sum(mix.values()) > 0:
        raise CeasrError(f"near-miss mix {mix}: kinds are {', '.join(KINDS)}, weights >= 0, not all 0")
    kinds = list(mix)
    weights = np.array([mix[k] for k in kinds], dtype=float) / sum(mix.values())
    vocabulary = set(vocabulary)
    excluded_words, excluded = set(exclude_words) - vocabulary, set(exclude_texts) | set(commands.phrases)
    phrases = [p.split() for p in commands.phrases]
    in_set = sorted({w for p in phrases for w in p} - excluded_words)
    pool = out_of_domain_words(vocabulary | set(in_set), excluded_words)
    known = vocabulary | set(in_set) | excluded_words
    festival = None
    if (mix.get("sound", 0) > 0 and sound_alikes is None) or (mix.get("dictionary", 0) > 0 and dictionary is None):
        festival = SoundAlikes.from_festival()
    near: dict[str, list[str]] = {}
    if mix.get("sound", 0) > 0:
        sound_alikes = sound_alikes or festival
        near = {w: [v for v in sound_alikes(w) if v not in known] for w in in_set}
    lexicon: list[str] = []
    if mix.get("dictionary", 0) > 0:
        lexicon = sorted(set(festival.lexicon if dictionary is None else dictionary) - known)
    general = TextSource(("general",))
    rng = np.random.default_rng([seed, 4177])
    texts: list[str] = []
    for _ in range(_MAX_TRIES * max(count, 1)):
        if len(texts) >= count:
            break
        kind = kinds[rng.choice(len(kinds), p=weights)]
        words = list(phrases[rng.integers(len(phrases))])
        where = int(rng.integers(len(words)))
        if kind == "swap" and pool:
            words[where] = pool[rng.integers(len(pool))]
        elif kind == "dictionary" and lexicon:
            words[where] = lexicon[rng.integers(len(lexicon))]
        elif kind == "insert" and pool:
            word = pool[rng.integers(len(pool))]
            words = words + [word] if rng.random() < 0.5 else [word] + words
        elif kind == "sound" and near.get(words[where]):
            alikes = near[words[where]]
            words[where] = alikes[rng.integers(len(alikes))]
        elif kind == "recombine" and in_set:
            words[where] = in_set[rng.integers(len(in_set))]
        elif kind == "extend" and in_set:
            word = in_set[rng.integers(len(in_set))]
            words = words + [word] if rng.random() < 0.5 else [word] + words
        elif kind == "shuffle" and in_set:
            words = [in_set[i] for i in rng.integers(len(in_set), size=int(rng.integers(1, 7)))]
        elif kind == "drop" and len(words) > 1:
            del words[where]
        elif kind == "function" and (spots := [i for i, w in enumerate(words) if w in FUNCTION_WORDS]):
            where = spots[rng.integers(len(spots))]
            others = [w for w in FUNCTION_WORDS if w != words[where]]
            words[where] = others[rng.integers(len(others))]
        elif kind == "general":
            words = general(rng).split()
        else:
            continue
        text = " ".join(words)
        if text not in excluded and not excluded_words & set(words):
            texts.append(text)
    if len(texts) < count:
        raise CeasrError(f"command set {commands.name!r}: only {len(texts)} of {count} near misses could be drawn "
                         f"with the mix {mix}")
    return texts


def balanced_commands(commands: CommandSet, count: int, seed: int = 0) -> list[str]:
    """``count`` phrases of ``commands``, each intent equally likely and each phrase of an intent too: "start" is
    drawn as often as all twenty "go ..." phrases together."""
    by_intent: dict[str, list[str]] = {}
    for c in commands.commands:
        by_intent.setdefault(c.intent, []).append(c.text)
    intents = list(by_intent.values())
    rng = np.random.default_rng([seed, 5303])
    return [(p := intents[rng.integers(len(intents))])[rng.integers(len(p))] for _ in range(count)]


def parse_mix(spec: str) -> dict[str, float]:
    """``"swap=0.4,insert=0.3,general=0.3"`` as a mix for :func:`near_misses`; a bad spec raises CeasrError."""
    mix = {}
    for item in spec.split(","):
        kind, _, weight = item.partition("=")
        try:
            mix[kind.strip()] = float(weight)
        except ValueError:
            raise CeasrError(f"near-miss mix {spec!r}: {item!r} is not kind=weight") from None
    return mix


def garbage_transcript(text: str, vocabulary: set[str], filler: str = FILLER) -> str:
    """``text`` with each run of words outside ``vocabulary`` written as one ``filler``."""
    out: list[str] = []
    for word in text.split():
        if word in vocabulary:
            out.append(word)
        elif not out or out[-1] != filler:
            out.append(filler)
    return " ".join(out)


def make_negatives(corpus: str | Path, out: str | Path, commands: CommandSet, hours: float = 0.7,
                   texts: int = 4000, seed: int = 0, filler: str = FILLER, exclude_words: Iterable[str] = (),
                   exclude_texts: Iterable[str] = (), mix: dict[str, float] | None = None, positives: float = 0.0,
                   jobs: int = 2, progress: bool = True):
    """Synthesize near misses of ``commands`` with the training voices of ``seed``'s voice split (those of
    ``corpus`` when ``ceasr synth`` made it with that seed, which is checked; a recorded corpus gets them too) and
    write ``out/train.jsonl``: the corpus's training split plus about ``hours`` of negatives with garbage
    transcripts. A share ``positives`` of the texts are commands (:func:`balanced_commands`) kept as they are,
    so that short commands such as "start", seldom in a corpus, are heard as often as the others. Also writes
    ``out/texts.txt`` and ``out/gen/`` (the synthesized corpus, whose dev and test voices' share is synthesized
    too and left unused). Returns (corpus rows, near misses, commands)."""
    from ceasr.data.manifest import load_rows, read_manifest, write_manifest
    from ceasr.data.synth import corpus_engines, corpus_voices, split_voices, synthesize
    from ceasr.io import atomic_write_text

    corpus, out = Path(corpus), Path(out)
    if not hours > 0:
        raise CeasrError(f"hours must be positive, got {hours}")
    if not 0 <= positives < 1:
        raise CeasrError(f"positives is a share of the texts, in [0, 1), got {positives}")
    rows = load_rows(corpus / "train.jsonl")
    voices, _ = corpus_voices(corpus_engines(None))
    train = {v.id for v in split_voices(voices, seed)["train"]}
    others = {r.speaker for r in rows} & ({v.id for v in voices} - train)
    if others:  # a synthesized corpus made with another seed: its dev and test voices would speak negatives
        raise CeasrError(f"{corpus}: {len(others)} training voices (e.g. {min(others)}) are not in seed {seed}'s "
                         "training split; pass the seed the corpus was synthesized with")
    vocabulary = {w for r in rows for w in r.text.split()}
    if filler in vocabulary:
        raise CeasrError(f"filler {filler!r} is a word of the corpus; choose another")
    wanted = round(texts * positives)
    lines = (near_misses(commands, texts - wanted, vocabulary, seed, exclude_words, exclude_texts, mix)
             + balanced_commands(commands, wanted, seed))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "texts.txt", "\n".join(lines) + "\n")
    train_share = len(train) / len(voices)
    synthesize(out / "gen", hours=hours / train_share, seed=seed, text_file=out / "texts.txt", jobs=jobs,
               progress=progress)
    spoken, _ = read_manifest(out / "gen" / "train.jsonl")
    negatives, positive = [], []
    for r in spoken:
        if commands.lookup(r.text):
            positive.append(dataclasses.replace(r, id=f"pos-{r.id}"))
        else:
            negatives.append(dataclasses.replace(r, id=f"neg-{r.id}",
                                                 text=garbage_transcript(r.text, vocabulary, filler)))
    write_manifest(out / "train.jsonl", rows + negatives + positive, relative=False)
    return rows, negatives, positive
