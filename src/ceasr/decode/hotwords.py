"""Hotword boosting: an Aho-Corasick automaton over token sequences whose bonus is paid token by token.

Each phrase is a token sequence with a boost per token. A hypothesis's hotword score is a function of its
tokens alone:

    bonus(tokens) = sum over complete phrase occurrences (overlaps included) of boost * len(phrase)
                    + boost * depth of the partial match still open at the end of ``tokens``

so a partial match earns its bonus as it grows (beam search sees it early and keeps the path), and the
bonus is taken back when the match fails (the automaton falls back to a shorter match) or the utterance
ends inside it (:meth:`Hotwords.final`). The automaton state is an int (a trie node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceasr.errors import ConfigError


@dataclass
class _Node:
    children: dict[int, int] = field(default_factory=dict)
    fail: int = 0
    partial: float = 0.0  # bonus paid while this node is the open match (0 at a complete phrase)
    gain: float = 0.0  # bonus kept for every phrase that ends here (this node's and its suffixes')
    terminal: float | None = None  # boost * len of the phrase ending exactly here


class Hotwords:
    """Phrases (token id sequences) with per-token boosts, compiled into an Aho-Corasick automaton."""

    def __init__(self, phrases: Sequence[tuple[Sequence[int], float]]):
        self.nodes = [_Node()]
        self.phrases = tuple(tuple(tokens) for tokens, _ in phrases if tokens)
        for tokens, boost in phrases:
            if tokens:
                self._insert(tuple(tokens), float(boost))
        self._link()
        self._goto: dict[tuple[int, int], int] = {}

    def _insert(self, tokens: tuple[int, ...], boost: float) -> None:
        node = 0
        for depth, t in enumerate(tokens, start=1):
            if t not in self.nodes[node].children:
                self.nodes.append(_Node())
                self.nodes[node].children[t] = len(self.nodes) - 1
            node = self.nodes[node].children[t]
            # A node shared by several phrases pays the largest of their boosts.
            self.nodes[node].partial = max(self.nodes[node].partial, boost * depth)
        total = boost * len(tokens)
        self.nodes[node].terminal = max(self.nodes[node].terminal or 0.0, total)

    def _link(self) -> None:
        """Failure links breadth first; ``gain`` adds the phrases ending at the failure chain."""
        queue = deque(self.nodes[0].children.values())
        while queue:
            u = queue.popleft()
            node = self.nodes[u]
            node.gain = (node.terminal or 0.0) + self.nodes[node.fail].gain
            if node.terminal is not None:
                node.partial = 0.0  # complete: its bonus is kept in ``gain``, nothing is pending
            for t, v in node.children.items():
                f = node.fail
                while f and t not in self.nodes[f].children:
                    f = self.nodes[f].fail
                # The longest proper suffix of v's path that is in the trie (root children keep fail 0).
                self.nodes[v].fail = self.nodes[f].children.get(t, 0)
                queue.append(v)

    def start(self) -> int:
        return 0

    def step(self, state: int, token: int) -> tuple[float, int]:
        """(score change, next state) when ``token`` follows ``state``."""
        nxt = self._goto.get((state, token))
        if nxt is None:
            u = state
            while u and token not in self.nodes[u].children:
                u = self.nodes[u].fail
            nxt = self.nodes[u].children.get(token, 0)
            self._goto[(state, token)] = nxt
        node = self.nodes[nxt]
        return node.gain + node.partial - self.nodes[state].partial, nxt

    def final(self, state: int) -> float:
        """The score change at the end of the utterance: the open partial match's bonus is taken back."""
        return -self.nodes[state].partial

    def score(self, tokens: Sequence[int]) -> float:
        """bonus(tokens) of a complete hypothesis (the sum of :meth:`step` changes and :meth:`final`)."""
        state, total = 0, 0.0
        for t in tokens:
            delta, state = self.step(state, t)
            total += delta
        return total + self.final(state)


def load_hotwords(path: str | Path, encode: Callable[[str], list[int]], default_boost: float) -> Hotwords:
    """Read ``phrase`` or ``phrase<TAB>boost`` lines (normalized, then made token ids by ``encode``)."""
    from ceasr.text.normalize import normalize

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read hotwords ({getattr(e, 'strerror', None) or e})") from None
    phrases = []
    for lineno, line in enumerate(lines, start=1):
        text, _, boost = line.partition("\t")
        text = normalize(text)
        if not text:
            continue
        try:
            value = float(boost) if boost.strip() else default_boost
        except ValueError:
            raise ConfigError(f"{path}:{lineno}: boost {boost!r} is not a number") from None
        phrases.append((encode(text), value))
    if not phrases:
        raise ConfigError(f"{path}: no hotword phrases")
    return Hotwords(phrases)
