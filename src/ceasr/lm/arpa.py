"""ARPA text format: read and write :class:`~ceasr.lm.kneser_ney.NgramTables`.

Layout: ``\\data\\``, one ``ngram N=count`` line per order, then per order a ``\\N-grams:`` section of
``log10(p)<TAB>w1 .. wn[<TAB>log10(back-off)]`` lines, and ``\\end\\``. A missing back-off means 0 (weight 1).
"""

from __future__ import annotations

import re
from pathlib import Path

from ceasr.errors import CeasrError
from ceasr.io import atomic_path
from ceasr.lm.kneser_ney import NgramTables

_COUNT = re.compile(r"^ngram (\d+)=(\d+)$")
_SECTION = re.compile(r"^\\(\d+)-grams:$")


def write_arpa(tables: NgramTables, path: str | Path) -> None:
    """Write ``tables`` as ARPA (sorted, so the file depends on the model only), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n\\data\\\n")
        for n, level in enumerate(tables.probs, start=1):
            f.write(f"ngram {n}={len(level)}\n")
        for n, level in enumerate(tables.probs, start=1):
            f.write(f"\n\\{n}-grams:\n")
            backoffs = tables.backoffs[n - 1]
            for g in sorted(level):
                line = f"{level[g]:.7f}\t{' '.join(g)}"
                if g in backoffs:
                    line += f"\t{backoffs[g]:.7f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def read_arpa(path: str | Path) -> NgramTables:
    """Parse an ARPA file; a malformed one raises CeasrError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CeasrError(f"{path}: cannot read ARPA file ({getattr(e, 'strerror', None) or e})") from None
    expected: dict[int, int] = {}
    probs: list[dict] = []
    backoffs: list[dict] = []
    section = 0  # 0: header, n: inside the n-grams section
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line == "\\data\\":
            continue
        if line == "\\end\\":
            break
        if m := _COUNT.match(line):
            expected[int(m.group(1))] = int(m.group(2))
            continue
        if m := _SECTION.match(line):
            section = int(m.group(1))
            if section != len(probs) + 1:
                raise CeasrError(f"{path}:{lineno}: section \\{section}-grams out of order")
            probs.append({})
            backoffs.append({})
            continue
        if section == 0:
            raise CeasrError(f"{path}:{lineno}: expected \\data\\ counts or a section, got {line[:40]!r}")
        _parse_entry(line, section, probs[-1], backoffs[-1], f"{path}:{lineno}")
    if not probs:
        raise CeasrError(f"{path}: no n-gram sections (not an ARPA file?)")
    for n, level in enumerate(probs, start=1):
        if expected.get(n, len(level)) != len(level):
            raise CeasrError(f"{path}: header says {expected[n]} {n}-grams, found {len(level)}")
    return NgramTables(len(probs), tuple(probs), tuple(backoffs))


def _parse_entry(line: str, n: int, probs: dict, backoffs: dict, where: str) -> None:
    fields = line.split()
    if len(fields) not in (n + 1, n + 2):
        raise CeasrError(f"{where}: expected log-prob, {n} words and an optional back-off")
    try:
        logp = float(fields[0])
        backoff = float(fields[n + 1]) if len(fields) == n + 2 else None
    except ValueError:
        raise CeasrError(f"{where}: not a number in {line[:60]!r}") from None
    g = tuple(fields[1 : n + 1])
    probs[g] = logp
    if backoff is not None:
        backoffs[g] = backoff
