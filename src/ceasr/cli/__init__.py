"""`ceasr <verb>`: thin shells over library calls. A user's mistake is one line on stderr and exit code 2.

Each module here registers one group of verbs (``add_verbs``): :mod:`~ceasr.cli.core` (synth, prepare,
train, evaluate, transcribe, demo), :mod:`~ceasr.cli.lm`, :mod:`~ceasr.cli.tune`,
:mod:`~ceasr.cli.commands`, :mod:`~ceasr.cli.whisper`. Library imports happen inside the verbs, so
``ceasr --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from ceasr.cli import commands, core, lm, tune, whisper
from ceasr.cli.common import attach_lists
from ceasr.errors import CeasrError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (``ceasr <verb>: error: ...``) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ceasr", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for group in (core, lm, tune, commands, whisper):
        group.add_verbs(verbs)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(attach_lists(sys.argv[1:] if argv is None else list(argv)))
    try:
        args.func(args)
    except CeasrError as e:
        print(f"ceasr {args.verb}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"ceasr {args.verb}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
