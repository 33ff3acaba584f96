"""Hard negatives for a commands model, held apart from the commands bench: ``ceasr negatives`` with every word
and every sentence of the bench's near misses (``commands_data.sentences()``, dev and test) kept out of the
negatives, so ``bench/commands.py`` measures rejection of speech the model never heard.

Run (after ``bench/commands_data.py``; the corpus is the demo's)::

    .venv/bin/python bench/commands_negatives.py --corpus runs/demo/data --out runs/negatives
    .venv/bin/ceasr train --config src/ceasr/configs/demo.yaml --train runs/negatives/train.jsonl \\
        --dev runs/demo/data/dev.jsonl --out runs/neg-s0 train.max_minutes=0
    .venv/bin/python bench/commands.py --model runs/neg-s0/model --corpus runs/demo/data --no-peers

The texts and their transcripts: :mod:`ceasr.commands.negatives`. ``--mix swap=0.4,insert=0.3,general=0.3``
gives the kinds of the runs measured first (README; not their very draws); ``--positives 0.15`` makes 15 % of the
texts commands, each intent equally often. Writes ``OUT/texts.txt``, ``OUT/gen/``
(the synthesized corpus) and ``OUT/train.jsonl`` (the corpus's training split plus the negatives).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import commands_data  # noqa: E402
from ceasr.commands import load_command_set  # noqa: E402
from ceasr.commands.negatives import make_negatives, parse_mix  # noqa: E402
from ceasr.errors import CeasrError  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="the demo corpus (its train.jsonl gives vocabulary and rows)")
    p.add_argument("--out", required=True)
    p.add_argument("--texts", type=int, default=4000, help="draws of near-miss text (some repeat)")
    p.add_argument("--hours", type=float, default=0.7, help="of negatives by the training voices")
    p.add_argument("--seed", type=int, default=0, help="the corpus's seed: the same voice split")
    p.add_argument("--mix", help="kind=weight,... (ceasr.commands.negatives.KINDS)")
    p.add_argument("--positives", type=float, default=0.0, help="share of the texts that are commands")
    p.add_argument("--filler", default="zzz")
    args = p.parse_args()

    bench = commands_data.sentences()
    words = {w for s in bench for w in s.split()}
    try:
        rows, negatives, commands = make_negatives(
            args.corpus, args.out, load_command_set("default"), args.hours, args.texts, args.seed, args.filler,
            exclude_words=words, exclude_texts=bench, mix=parse_mix(args.mix) if args.mix else None,
            positives=args.positives)
    except CeasrError as e:
        sys.exit(f"error: {e}")
    print(f"{Path(args.out) / 'train.jsonl'}: {len(rows)} corpus rows + {len(negatives)} negatives + "
          f"{len(commands)} commands")


if __name__ == "__main__":
    main()
