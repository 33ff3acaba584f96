"""Manifests: JSON Lines, one utterance a line.

Fields: ``audio`` (path, relative to the manifest's folder or absolute; NeMo's ``audio_filepath`` is an
alias), ``text``, and optional ``id``, ``offset``, ``duration`` (seconds), ``speaker``, ``lang``.
Reading keeps the good rows and reports each bad one as a :class:`ManifestError` with its line number.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ceasr.errors import ManifestError
from ceasr.io import atomic_write_text


@dataclass(frozen=True)
class Utterance:
    audio: str  # absolute path once read
    text: str
    id: str = ""
    offset: float = 0.0
    duration: float | None = None
    speaker: str | None = None
    lang: str | None = None

    def to_json(self, relative_to: Path | None = None) -> str:
        row = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if relative_to is not None:
            try:
                row["audio"] = str(Path(self.audio).resolve().relative_to(relative_to))
            except ValueError:
                pass
        if not row.get("offset"):
            row.pop("offset", None)
        return json.dumps(row, ensure_ascii=False)


_OPTIONAL = {"id": str, "offset": float, "duration": float, "speaker": str, "lang": str}


def parse_row(line: str, base: Path, path: Path, lineno: int) -> Utterance:
    """One manifest line to an :class:`Utterance`; raises :class:`ManifestError` naming the line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(path, f"invalid JSON ({e.msg})", lineno) from None
    if not isinstance(row, dict):
        raise ManifestError(path, "a row must be a JSON object", lineno)
    audio = row.get("audio", row.get("audio_filepath"))
    if not isinstance(audio, str) or not audio:
        raise ManifestError(path, "missing key 'audio' (or 'audio_filepath')", lineno)
    text = row.get("text")
    if not isinstance(text, str):
        raise ManifestError(path, "missing key 'text'", lineno)
    kwargs = {}
    for key, kind in _OPTIONAL.items():
        if row.get(key) is None:
            continue
        value = row[key]
        # Speaker ids are often numbers (LibriSpeech, Kaldi); they are kept as strings.
        ok = isinstance(value, (str, int)) and not isinstance(value, bool) if kind is str else _is_seconds(value)
        if not ok:
            raise ManifestError(path, f"bad {key!r}: {value!r}", lineno)
        kwargs[key] = kind(value)
    audio_path = Path(audio) if Path(audio).is_absolute() else base / audio
    kwargs["id"] = kwargs.get("id") or Path(audio).stem
    return Utterance(audio=str(audio_path), text=text, **kwargs)


def _is_seconds(value) -> bool:
    """A finite, non-negative number (JSON booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def read_manifest(path: str | Path, check_audio: bool = False) -> tuple[list[Utterance], list[ManifestError]]:
    """Read a manifest; returns ``(good rows, errors)``. A missing or unreadable file raises.

    With ``check_audio`` each row's audio file is opened (header only) and rows whose audio cannot be
    read become errors too.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ManifestError(path, "no such manifest") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(path, f"cannot read manifest ({e})") from None
    rows, errors = [], []
    base = path.parent.resolve()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            utt = parse_row(line, base, path, lineno)
            if check_audio:
                _check_audio(utt, path, lineno)
            rows.append(utt)
        except ManifestError as e:
            errors.append(e)
    return rows, errors


def _check_audio(utt: Utterance, path: Path, lineno: int) -> None:
    from ceasr.audio import info
    from ceasr.errors import AudioError

    try:
        info(utt.audio)
    except AudioError as e:
        raise ManifestError(path, f"unreadable audio {e}", lineno) from None


def write_manifest(path: str | Path, rows: list[Utterance], relative: bool = True) -> None:
    """Write rows atomically; audio paths are stored relative to the manifest's folder when possible."""
    path = Path(path)
    base = path.parent.resolve() if relative else None
    text = "".join(utt.to_json(base) + "\n" for utt in rows)
    atomic_write_text(path, text)


def load_rows(path: str | Path) -> list[Utterance]:
    """Read a manifest for a job: each bad row reported on stderr (and skipped); no usable row is an error."""
    return read_reported(path)[0]


def read_reported(path: str | Path) -> tuple[list[Utterance], int]:
    """:func:`load_rows` that also returns how many bad rows it reported and skipped."""
    import sys

    rows, errors = read_manifest(path)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    if not rows:
        raise ManifestError(path, "no usable rows")
    return rows, len(errors)
