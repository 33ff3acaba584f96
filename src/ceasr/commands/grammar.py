"""Command sets: a small text format with alternatives, optional parts, named slots and rules.

The format, one item a line (``#`` starts a comment, blank lines are skipped, a trailing ``;`` is ignored)::

    <many> = two | three | four | five | six | seven | eight | nine | ten
    go: go (forward | backward){direction} (one{distance} meter | <many>{distance} meters)
    stop

* ``<name> = EXPANSION`` defines a rule; ``<name>`` in any expansion (before or after) stands for it.
* ``INTENT: EXPANSION`` is a command; without ``INTENT:`` the intent is the phrase's first word.
* An expansion is a sequence of words (normalized: lowercase, numbers spelled out), ``( a | b c )`` groups of
  alternatives (an empty alternative is allowed), ``[ x ]`` optional parts and ``<rule>`` references.
* ``{slot}`` right after a word, group, optional part or rule reference names a slot: its value is the words
  that element produced (an optional part that produced nothing sets no slot).

A set compiles to an explicit list of :class:`Command` (phrase, intent, slot values) in file order, each
phrase once: when two lines produce the same words, the first line's parse wins. The built-in set
``default`` (``default.commands`` next to this module) is the default corpus's 61 commands.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ceasr.errors import CeasrError
from ceasr.text.normalize import normalize

MAX_PHRASES = 200_000  # an expansion beyond this is a mistake (or wants a graph, which sets here never need)
BUILTIN = {"default": "default.commands"}

_TOKEN = re.compile(r"\s*(?:(?P<punct>[()\[\]|])|<(?P<rule>[\w-]+)>|\{(?P<slot>[\w-]+)\}|(?P<word>[^\s()\[\]|<>{}]+))")
_RULE_DEF = re.compile(r"^<(?P<name>[\w-]+)>\s*=(?P<body>.*)$")
_COMMAND = re.compile(r"^(?:(?P<intent>[\w-]+)\s*:)?(?P<body>.*)$")


@dataclass(frozen=True)
class Command:
    """One allowed phrase: its words, intent and slot values (in the order the slots appear)."""

    text: str
    intent: str
    slots: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, str]:
        """``{"intent": ..., slot: value, ...}``, e.g. ``{"intent": "go", "direction": "forward"}``."""
        return {"intent": self.intent, **dict(self.slots)}


@dataclass(frozen=True)
class CommandSet:
    """A compiled command set: every allowed phrase once, in file order."""

    name: str
    commands: tuple[Command, ...]

    def __post_init__(self):
        object.__setattr__(self, "_by_text", {c.text: c for c in self.commands})

    @property
    def phrases(self) -> list[str]:
        return [c.text for c in self.commands]

    def lookup(self, text: str) -> Command | None:
        """The command whose phrase is ``text`` (normalized words), or None."""
        return self._by_text.get(" ".join(text.split()))

    def __len__(self) -> int:
        return len(self.commands)


# An expansion is a list of alternatives, each (words, slots) with slots a tuple of (name, value) pairs.
_Expansion = list[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]]


class _Parser:
    """Recursive descent over one line's tokens; rules are resolved lazily through ``expand_rule``."""

    def __init__(self, text: str, where: str, expand_rule):
        self.where, self.expand_rule = where, expand_rule
        self.tokens = self._lex(text)
        self.pos = 0

    def _lex(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        text = text.rstrip().removesuffix(";")
        while pos < len(text.rstrip()):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise CeasrError(f"{self.where}: cannot read {text[pos:].strip()!r}")
            kind = m.lastgroup
            tokens.append((kind, m.group(kind)))
            pos = m.end()
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> _Expansion:
        result = self._alternatives()
        if self._peek() is not None:
            raise CeasrError(f"{self.where}: unexpected {self._peek()[1]!r}")
        return result

    def _alternatives(self) -> _Expansion:
        result = self._sequence()
        while self._peek() == ("punct", "|"):
            self.pos += 1
            result = result + self._sequence()
        return result

    def _sequence(self) -> _Expansion:
        result: _Expansion = [((), ())]
        while (tok := self._peek()) is not None and tok[1] not in ("|", ")", "]"):
            item = self._item()
            result = [(w1 + w2, s1 + s2) for (w1, s1), (w2, s2) in itertools.product(result, item)]
            if len(result) > MAX_PHRASES:
                raise CeasrError(f"{self.where}: expands to more than {MAX_PHRASES} phrases")
        return result

    def _item(self) -> _Expansion:
        kind, value = self.tokens[self.pos]
        self.pos += 1
        if kind == "word":
            if normalize(value) != value:
                raise CeasrError(f"{self.where}: write {value!r} as spoken words, e.g. {normalize(value)!r}")
            atom, optional = [((value,), ())], False
        elif kind == "rule":
            atom, optional = self.expand_rule(value, self.where), False
        elif value in ("(", "["):
            atom = self._alternatives()
            close = ")" if value == "(" else "]"
            if self._peek() != ("punct", close):
                raise CeasrError(f"{self.where}: {value!r} without its {close!r}")
            self.pos += 1
            optional = value == "["
        else:
            raise CeasrError(f"{self.where}: unexpected {value!r}")
        if self._peek() is not None and self._peek()[0] == "slot":
            name = self.tokens[self.pos][1]
            self.pos += 1
            atom = [(w, s + ((name, " ".join(w)),) if w else s) for w, s in atom]
        return atom + [((), ())] if optional else atom


def _logical_lines(text: str, source: str) -> list[tuple[str, str]]:
    """(where, line) pairs: comments stripped, blank lines dropped."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append((f"{source}:{lineno}", line))
    return out


def parse_command_set(text: str, name: str = "commands", source: str | None = None) -> CommandSet:
    """Compile the text of a command set (format in the module docstring). Errors name ``source:line``."""
    source = source or name
    rules: dict[str, tuple[str, str]] = {}
    commands: list[tuple[str, str]] = []
    for where, line in _logical_lines(text, source):
        m = _RULE_DEF.match(line)
        if m:
            if m.group("name") in rules:
                raise CeasrError(f"{where}: rule <{m.group('name')}> is defined twice")
            rules[m.group("name")] = (where, m.group("body"))
        else:
            commands.append((where, line))
    cache: dict[str, _Expansion] = {}
    active: list[str] = []

    def expand_rule(rule: str, where: str) -> _Expansion:
        if rule not in rules:
            raise CeasrError(f"{where}: rule <{rule}> is not defined")
        if rule in active:
            raise CeasrError(f"{rules[rule][0]}: rule <{rule}> refers to itself ({' -> '.join(active + [rule])})")
        if rule not in cache:
            active.append(rule)
            cache[rule] = _Parser(rules[rule][1], rules[rule][0], expand_rule).parse()
            active.pop()
        return cache[rule]

    found: dict[str, Command] = {}
    for where, line in commands:
        m = _COMMAND.match(line)
        for words, slots in _Parser(m.group("body"), where, expand_rule).parse():
            if not words:
                raise CeasrError(f"{where}: an alternative of this command says nothing")
            text = " ".join(words)
            if text not in found:
                found[text] = Command(text, m.group("intent") or words[0], slots)
        if len(found) > MAX_PHRASES:
            raise CeasrError(f"{where}: the set expands to more than {MAX_PHRASES} phrases")
    if not found:
        raise CeasrError(f"{source}: the command set has no command")
    return CommandSet(name, tuple(found.values()))


def load_command_set(name_or_path: str | Path) -> CommandSet:
    """A built-in set by name (``default``) or a command-set file; a missing or bad file raises CeasrError."""
    key = str(name_or_path)
    if key in BUILTIN:
        text = resources.files("ceasr.commands").joinpath(BUILTIN[key]).read_text(encoding="utf-8")
        return parse_command_set(text, key, BUILTIN[key])
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CeasrError(f"{path}: no such command set (built in: {', '.join(BUILTIN)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CeasrError(f"{path}: cannot read command set ({e})") from None
    return parse_command_set(text, path.stem, str(path))


def jsgf(commands: CommandSet) -> str:
    """An equivalent JSGF grammar (every phrase an alternative), for recognizers such as PocketSphinx."""
    body = " |\n    ".join(commands.phrases)
    return f"#JSGF V1.0;\ngrammar {re.sub(r'[^A-Za-z0-9_]', '_', commands.name)};\npublic <command> =\n    {body};\n"
