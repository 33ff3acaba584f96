"""Hard negatives for a commands model: near misses of the default commands, spoken by the training voices, with
every word outside the default domain written as one filler word (the garbage model of keyword spotters).

Run (after ``bench/commands_data.py``; the corpus is the demo's)::

    .venv/bin/python bench/commands_negatives.py --corpus runs/demo/data --out runs/negatives
    .venv/bin/ceasr train --config src/ceasr/configs/demo.yaml --train runs/negatives/train.jsonl \\
        --dev runs/demo/data/dev.jsonl --out runs/neg-s0 train.max_minutes=0
    .venv/bin/python bench/commands.py --model runs/neg-s0/model --corpus runs/demo/data --no-peers

Texts: a default command with one word swapped for an out-of-domain word (40 %), a command with such a word before
or after it (30 %), a general sentence (30 %, ``ceasr.data.domain_general``). Out-of-domain words come from the
general sentences' vocabulary plus a few fillers ("please", "now", ...), **minus every word of the bench's
near-miss sentences** (``commands_data.sentences()``, dev and test), so the commands bench measures rejection of
words the model never heard. Synthesized by ``ceasr synth --text-file`` with the demo corpus's seed, so the same
voice split; only the training split's utterances are used. Transcripts: each run of words outside the demo
corpus's training vocabulary becomes ``--filler`` ("there were six small chairs" -> "zzz six zzz"). Writes
``OUT/texts.txt``, ``OUT/gen/`` (the synthesized corpus) and ``OUT/train.jsonl`` (the corpus's training split plus
the negatives).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import commands_data  # noqa: E402
from ceasr.commands import load_command_set  # noqa: E402
from ceasr.data import domain_general  # noqa: E402
from ceasr.data.domain import TextSource  # noqa: E402
from ceasr.data.manifest import read_manifest, write_manifest  # noqa: E402
from ceasr.data.synth import synthesize  # noqa: E402

FILLERS = "please now then again here there really just maybe today quickly slowly also very much".split()
WORD_LISTS = ("NAMES", "NOUNS", "PLURALS", "ADJECTIVES", "VERBS", "PAST", "PLACES", "TIMES", "FEELINGS", "QUESTIONS")


def negative_texts(count: int, vocabulary: set[str], seed: int = 0) -> tuple[list[str], int]:
    """``count`` near-miss texts and the number of held-out bench words (see the module docstring)."""
    held_out = {w for s in commands_data.sentences() for w in s.split()} - vocabulary
    pool = {w for name in WORD_LISTS for phrase in getattr(domain_general, name) for w in phrase.split()}
    pool = sorted((pool | set(FILLERS)) - held_out - vocabulary)
    phrases = list(load_command_set("default").phrases)
    general = TextSource(("general",))
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    while len(texts) < count:
        kind, words = rng.random(), phrases[rng.integers(len(phrases))].split()
        word = pool[rng.integers(len(pool))]
        if kind < 0.4:
            words[rng.integers(len(words))] = word
        elif kind < 0.7:
            words = words + [word] if rng.random() < 0.5 else [word] + words
        else:
            words = general(rng).split()
            if set(words) & held_out:
                continue
        texts.append(" ".join(words))
    return texts, len(held_out)


def transcript(text: str, vocabulary: set[str], filler: str) -> str:
    """``text`` with each run of words outside ``vocabulary`` written as one ``filler``."""
    out: list[str] = []
    for word in text.split():
        if word in vocabulary:
            out.append(word)
        elif not out or out[-1] != filler:
            out.append(filler)
    return " ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="the demo corpus (its train.jsonl gives vocabulary and rows)")
    p.add_argument("--out", required=True)
    p.add_argument("--texts", type=int, default=2000, help="draws of near-miss text (some repeat)")
    p.add_argument("--hours", type=float, default=0.45, help="of synthesized negatives, all splits (train gets ~78 %%)")
    p.add_argument("--seed", type=int, default=0, help="the corpus's seed: the same voice split")
    p.add_argument("--filler", default="zzz")
    args = p.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, errors = read_manifest(Path(args.corpus) / "train.jsonl")
    if errors:
        sys.exit(f"{args.corpus}/train.jsonl: {len(errors)} bad rows, the first: {errors[0]}")
    vocabulary = {w for r in rows for w in r.text.split()}
    texts, held_out = negative_texts(args.texts, vocabulary, args.seed)
    (out / "texts.txt").write_text("\n".join(texts) + "\n")
    print(f"{len(texts)} texts; {held_out} words of the bench's near misses held out; e.g. {texts[:3]}")
    print(synthesize(out / "gen", hours=args.hours, seed=args.seed, text_file=out / "texts.txt"))
    negatives, _ = read_manifest(out / "gen" / "train.jsonl")
    negatives = [dataclasses.replace(r, id=f"neg-{r.id}", text=transcript(r.text, vocabulary, args.filler))
                 for r in negatives]
    write_manifest(out / "train.jsonl", rows + negatives, relative=False)
    print(f"{out / 'train.jsonl'}: {len(rows)} corpus rows + {len(negatives)} negatives")


if __name__ == "__main__":
    main()
