"""Corpus importers: a corpus laid out on disk → manifest rows, with one error per row that cannot be used.

Each importer returns ``(rows, errors)``: rows sorted by id, ``duration`` filled from the audio header, and a
:class:`ManifestError` (file, reason, line where there is one) for every utterance it had to skip.
:func:`prepare` runs one by name and writes the manifest atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ceasr import audio
from ceasr.data.manifest import Utterance, write_manifest
from ceasr.errors import AudioError, CeasrError, ManifestError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TRANSCRIPT_SUFFIXES = (".txt", ".lab")
_SEGMENT_SLACK = 0.01  # seconds a Kaldi segment may run past its recording (header rounding)

Result = tuple[list[Utterance], list[ManifestError]]


def _utterance(audio_path: Path, text: str, utt_id: str, where: tuple[Path, int | None], **fields) -> Utterance:
    """One row, its duration read from the audio header; a bad transcript or audio raises ManifestError."""
    text = " ".join(text.split())
    if not text:
        raise ManifestError(where[0], f"utterance {utt_id}: empty transcript", where[1])
    try:
        header = audio.info(audio_path)
    except AudioError as e:
        detail = e.reason if Path(e.path) == where[0] else str(e)  # name the audio file once
        raise ManifestError(where[0], f"utterance {utt_id}: {detail}", where[1]) from None
    return Utterance(str(audio_path), text, utt_id, duration=round(header.duration, 6), **fields)


def _finish(rows: list[Utterance], errors: list[ManifestError]) -> Result:
    """Sort rows by id, turning repeated ids after the first into errors."""
    seen, unique = set(), []
    for row in sorted(rows, key=lambda r: r.id):
        if row.id in seen:
            errors.append(ManifestError(row.audio, f"duplicate utterance id {row.id!r}"))
            continue
        seen.add(row.id)
        unique.append(row)
    return unique, errors


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; an unreadable file raises ManifestError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(path, f"cannot read ({e})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def librispeech(root: str | Path) -> Result:
    """LibriSpeech: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` lines ``UTTID TEXT`` beside ``UTTID.flac``."""
    root = Path(root)
    rows, errors = [], []
    for trans in sorted(root.rglob("*.trans.txt")):
        listed = set()
        speaker = trans.parent.parent.name
        try:
            lines = _read_lines(trans)
        except ManifestError as e:
            errors.append(e)
            continue
        for lineno, line in lines:
            utt_id, text = (line.split(maxsplit=1) + [""])[:2]
            listed.add(utt_id)
            flac = trans.parent / f"{utt_id}.flac"
            try:
                rows.append(_utterance(flac, text, utt_id, (trans, lineno), speaker=speaker, lang="en"))
            except ManifestError as e:
                errors.append(e)
        for flac in sorted(trans.parent.glob("*.flac")):
            if flac.stem not in listed:
                errors.append(ManifestError(flac, f"no transcript line in {trans.name}"))
    return _finish(rows, errors)


def commonvoice(root: str | Path, split: str = "train") -> Result:
    """Common Voice: ``{split}.tsv`` (header with ``path``, ``sentence``, ``client_id``, maybe ``locale``)
    naming files in ``clips/``. The speaker is ``client_id``; ``locale`` becomes ``lang`` when present."""
    root = Path(root)
    tsv = root / f"{split}.tsv"
    if not tsv.is_file():
        raise ManifestError(tsv, f"no such file (is {root} a Common Voice folder and {split!r} a split?)")
    try:
        text = tsv.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(tsv, f"cannot read ({e})") from None
    # Sentences hold bare quotes; QUOTE_NONE keeps csv from joining lines at them, so one record is one line.
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = {"path", "sentence"} - set(reader.fieldnames or ())
    if missing:
        raise ManifestError(tsv, f"missing column(s) {', '.join(sorted(missing))} in the header", 1)
    rows, errors = [], []
    for record in reader:
        lineno = reader.line_num
        if None in record or None in record.values():
            errors.append(ManifestError(tsv, "wrong number of tab-separated fields", lineno))
            continue
        clip = root / "clips" / record["path"]
        fields = {"speaker": record.get("client_id") or None, "lang": record.get("locale") or None}
        try:
            rows.append(_utterance(clip, record["sentence"], Path(record["path"]).stem, (tsv, lineno), **fields))
        except ManifestError as e:
            errors.append(e)
    return _finish(rows, errors)


def _kaldi_table(path: Path, errors: list[ManifestError], optional: bool = False) -> dict[str, tuple[str, int]]:
    """A Kaldi ``key rest-of-line`` file → {key: (rest, line)}; a repeated key is an error, the first kept."""
    if optional and not path.exists():
        return {}
    table = {}
    for lineno, line in _read_lines(path):
        key, rest = (line.split(maxsplit=1) + [""])[:2]
        if key in table:
            errors.append(ManifestError(path, f"repeated key {key!r} (first on line {table[key][1]})", lineno))
        else:
            table[key] = (rest.strip(), lineno)
    return table


@dataclass(frozen=True)
class _KaldiDir:
    """The tables of one Kaldi data dir, each {key: (rest of line, line number)}."""

    path: Path
    scp: dict
    texts: dict
    segments: dict | None  # None when there is no segments file
    speakers: dict
    base: Path

    def segment(self, utt_id: str, entry: str, lineno: int) -> tuple[str, float, float | None]:
        """``recid start end`` → (recid, offset, duration or None for Kaldi's ``end == -1``)."""
        where = self.path / "segments"
        parts = entry.split()
        try:
            rec, start, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise ManifestError(where, f"utterance {utt_id}: bad segment {entry!r} (want: recid start end)",
                                lineno) from None
        if rec not in self.scp:
            raise ManifestError(where, f"utterance {utt_id}: recording {rec!r} not in wav.scp", lineno)
        if not (math.isfinite(start) and start >= 0 and (end == -1 or end > start)):
            raise ManifestError(where, f"utterance {utt_id}: bad segment times {start} .. {end}", lineno)
        return rec, start, (None if end == -1 else end - start)

    def audio_path(self, rec: str) -> Path:
        """The file a wav.scp entry names; pipes cannot be read and raise ManifestError at their line."""
        rxfile, lineno = self.scp[rec]
        if rxfile.endswith("|") or rxfile.startswith("|"):
            raise ManifestError(self.path / "wav.scp", f"recording {rec}: pipe commands are not supported; "
                                "convert the audio to files first", lineno)
        if not rxfile:
            raise ManifestError(self.path / "wav.scp", f"recording {rec}: no path", lineno)
        path = Path(rxfile)
        return path if path.is_absolute() else self.base / path

    def row(self, utt_id: str, entry: str, lineno: int) -> Utterance:
        """The utterance defined on ``lineno`` of segments (or of wav.scp when there are no segments)."""
        where = (self.path / ("wav.scp" if self.segments is None else "segments"), lineno)
        if utt_id not in self.texts:
            raise ManifestError(where[0], f"utterance {utt_id} has no line in text", lineno)
        rec, offset, length = utt_id, 0.0, None
        if self.segments is not None:
            rec, offset, length = self.segment(utt_id, entry, lineno)
        speaker = self.speakers.get(utt_id, (None, 0))[0] or None
        row = _utterance(self.audio_path(rec), self.texts[utt_id][0], utt_id, where, speaker=speaker)
        if self.segments is None:
            return row
        length = row.duration - offset if length is None else length
        if length <= 0 or offset + length > row.duration + _SEGMENT_SLACK:
            raise ManifestError(where[0], f"utterance {utt_id}: segment {offset:.3f}+{length:.3f} s runs past "
                                f"the end of {rec} ({row.duration:.3f} s)", lineno)
        return dataclasses.replace(row, offset=offset, duration=round(length, 6))


def kaldi(data_dir: str | Path, base: str | Path | None = None) -> Result:
    """A Kaldi data dir: ``wav.scp``, ``text``, optional ``segments`` and ``utt2spk``.

    Relative paths in wav.scp are taken from ``base`` (default: the current directory, as in Kaldi, whose
    scripts run from the recipe folder). Piped entries (``sox ... |``) are reported as errors.
    """
    data_dir = Path(data_dir)
    errors: list[ManifestError] = []
    has_segments = (data_dir / "segments").exists()
    tables = _KaldiDir(
        path=data_dir,
        scp=_kaldi_table(data_dir / "wav.scp", errors),
        texts=_kaldi_table(data_dir / "text", errors),
        segments=_kaldi_table(data_dir / "segments", errors) if has_segments else None,
        speakers=_kaldi_table(data_dir / "utt2spk", errors, optional=True),
        base=Path.cwd() if base is None else Path(base),
    )
    utts = tables.scp if tables.segments is None else tables.segments
    rows = []
    for utt_id, (entry, lineno) in utts.items():
        try:
            rows.append(tables.row(utt_id, entry, lineno))
        except ManifestError as e:
            errors.append(e)
    for utt_id, (_, lineno) in tables.texts.items():
        if utt_id not in utts:
            table = "wav.scp" if tables.segments is None else "segments"
            errors.append(ManifestError(data_dir / "text", f"utterance {utt_id} not in {table}", lineno))
    return _finish(rows, errors)


def _folder_transcript(wav: Path) -> Path | None:
    for suffix in TRANSCRIPT_SUFFIXES:
        if (found := wav.with_suffix(suffix)).is_file():
            return found
    return None


def folder(root: str | Path) -> Result:
    """Audio files (wav/flac/ogg/mp3, any depth) each with a same-stem ``.txt`` or ``.lab`` transcript beside it.

    The id is the path below ``root`` without its suffix (``spk1/utt3``), so equal stems in two folders differ.
    """
    root = Path(root)
    rows, errors = [], []
    for wav in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        utt_id = wav.relative_to(root).with_suffix("").as_posix()
        transcript = _folder_transcript(wav)
        if transcript is None:
            errors.append(ManifestError(wav, "no transcript (.txt or .lab of the same name) beside it"))
            continue
        try:
            text = transcript.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            errors.append(ManifestError(transcript, f"cannot read transcript ({e})"))
            continue
        if not text.strip():
            errors.append(ManifestError(transcript, "empty transcript"))
            continue
        try:
            rows.append(_utterance(wav, text, utt_id, (wav, None)))
        except ManifestError as e:
            errors.append(e)
    return _finish(rows, errors)


IMPORTERS = {"librispeech": librispeech, "commonvoice": commonvoice, "kaldi": kaldi, "folder": folder}


def prepare(kind: str, src: str | Path, out: str | Path, **options) -> tuple[int, list[ManifestError]]:
    """Import corpus ``src`` of layout ``kind`` (a key of IMPORTERS) and write manifest ``out`` atomically.

    Returns (rows written, errors for skipped rows). An unknown kind, a missing source folder, an option the
    importer does not take, or a source with no usable utterance raises :class:`CeasrError` (nothing written).
    """
    importer = IMPORTERS.get(kind)
    if importer is None:
        raise CeasrError(f"unknown corpus layout {kind!r}; choose one of {', '.join(IMPORTERS)}")
    src = Path(src)
    if not src.is_dir():
        raise CeasrError(f"{src}: no such directory")
    try:
        inspect.signature(importer).bind(src, **options)
    except TypeError as e:
        raise CeasrError(f"{kind} importer: {e}") from None
    rows, errors = importer(src, **options)
    if not rows:
        first = f"; first of {len(errors)} errors: {errors[0]}" if errors else ""
        raise CeasrError(f"{src}: no usable utterances in a {kind} layout{first}")
    write_manifest(out, rows)
    return len(rows), errors
