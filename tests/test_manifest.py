"""ceasr.data.manifest: JSON Lines rows, path resolution, per-line errors, audio checks, round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ceasr.data.manifest import Utterance, read_manifest, write_manifest
from ceasr.errors import ManifestError


def _write_lines(path: Path, rows) -> Path:
    """Rows are dicts (dumped as JSON) or raw strings (written as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fields_and_defaults(tmp_path):
    m = _write_lines(tmp_path / "m.jsonl", [
        {"audio": "a.wav", "text": "hello"},
        {"audio": "b.wav", "text": "hi there", "id": "utt-b", "offset": 1.25, "duration": 2, "speaker": 7,
         "lang": "en"},
    ])
    rows, errors = read_manifest(m)
    assert errors == []
    assert rows[0] == Utterance(audio=str(tmp_path / "a.wav"), text="hello", id="a")
    assert rows[1] == Utterance(str(tmp_path / "b.wav"), "hi there", "utt-b", 1.25, 2.0, "7", "en")


def test_nemo_audio_filepath_alias(tmp_path):
    m = _write_lines(tmp_path / "nemo.json", [
        {"audio_filepath": "clips/x.wav", "text": "nemo row", "duration": 3.5},
        {"audio": "y.wav", "audio_filepath": "ignored.wav", "text": "both keys"},
    ])
    rows, errors = read_manifest(m)
    assert errors == []
    assert rows[0].audio == str(tmp_path / "clips" / "x.wav") and rows[0].duration == 3.5
    assert rows[1].audio == str(tmp_path / "y.wav")  # 'audio' wins over the alias


def test_relative_paths_resolve_against_the_manifest_folder_not_cwd(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    m = _write_lines(tmp_path / "data" / "m.jsonl", [
        {"audio": "wavs/a.wav", "text": "x"},
        {"audio": "../other/b.wav", "text": "y"},
        {"audio": "/abs/c.wav", "text": "z"},
    ])
    rows, _ = read_manifest(m)
    assert rows[0].audio == str(tmp_path / "data" / "wavs" / "a.wav")
    assert Path(rows[1].audio).resolve() == (tmp_path / "other" / "b.wav")
    assert rows[2].audio == "/abs/c.wav"


def test_bad_rows_are_reported_by_line_and_good_rows_kept(tmp_path):
    m = _write_lines(tmp_path / "m.jsonl", [
        {"audio": "ok1.wav", "text": "one"},
        '{"audio": "broken.wav", "text": ',
        {"audio": "notext.wav"},
        {"text": "no audio"},
        "",
        {"audio": "d.wav", "text": "bad duration", "duration": "long"},
        '["a", "list"]',
        {"audio": "e.wav", "text": 5},
        {"audio": "ok2.wav", "text": "two"},
    ])
    rows, errors = read_manifest(m)
    assert [r.id for r in rows] == ["ok1", "ok2"]
    assert [e.line for e in errors] == [2, 3, 4, 6, 7, 8]  # the blank line 5 is skipped, not renumbered
    assert all(e.path == str(m) for e in errors)
    reasons = [e.reason for e in errors]
    assert reasons[0].startswith("invalid JSON")
    assert "'text'" in reasons[1] and "'audio'" in reasons[2]
    assert "duration" in reasons[3] and "long" in reasons[3]
    assert "JSON object" in reasons[4]
    assert str(errors[0]).startswith(f"{m}:2: ")


def test_missing_or_undecodable_manifest_raises(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"audio": "a.wav", "text": "caf\xe9"}\n')
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "latin1.jsonl")


def test_check_audio_flags_unreadable_files(tmp_path, tone):
    tone(tmp_path / "good.wav", 0.1)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF nonsense")
    m = _write_lines(tmp_path / "m.jsonl", [
        {"audio": "good.wav", "text": "fine"},
        {"audio": "missing.wav", "text": "gone"},
        {"audio": "corrupt.wav", "text": "broken"},
    ])
    rows, errors = read_manifest(m)
    assert len(rows) == 3 and errors == []  # without the check the files are never opened
    rows, errors = read_manifest(m, check_audio=True)
    assert [r.id for r in rows] == ["good"]
    assert [e.line for e in errors] == [2, 3]
    assert "unreadable audio" in errors[0].reason and "no such file" in errors[0].reason
    assert "corrupt.wav" in errors[1].reason


def test_write_read_round_trip_with_relative_paths(tmp_path):
    root = tmp_path / "corpus"
    outside = tmp_path / "other" / "z.flac"
    rows = [
        Utterance(str(root / "wavs" / "a.wav"), "héllo wörld", "a", 0.0, 1.5, "spk1", "de"),
        Utterance(str(root / "b.flac"), "two", "b", offset=3.25, duration=0.5),
        Utterance(str(outside), "far away", "z"),
    ]
    m = root / "train.jsonl"
    write_manifest(m, rows)
    raw = [json.loads(line) for line in m.read_text(encoding="utf-8").splitlines()]
    assert raw[0]["audio"] == os.path.join("wavs", "a.wav")
    assert raw[1]["audio"] == "b.flac" and raw[1]["offset"] == 3.25
    assert "offset" not in raw[0] and "speaker" not in raw[1]  # zero offset and None fields are left out
    assert raw[2]["audio"] == str(outside)  # not under the folder: stays absolute
    assert "héllo wörld" in m.read_text(encoding="utf-8")
    back, errors = read_manifest(m)
    assert errors == [] and back == rows
    assert sorted(p.name for p in root.iterdir()) == ["train.jsonl"]  # atomic: no temp file left


def test_relative_manifest_moves_with_its_audio(tmp_path):
    rows = [Utterance(str(tmp_path / "a" / "x.wav"), "x", "x")]
    write_manifest(tmp_path / "a" / "m.jsonl", rows)
    (tmp_path / "a").rename(tmp_path / "b")
    back, _ = read_manifest(tmp_path / "b" / "m.jsonl")
    assert back[0].audio == str(tmp_path / "b" / "x.wav")


def test_write_absolute_when_asked(tmp_path):
    rows = [Utterance(str(tmp_path / "x.wav"), "x", "x")]
    write_manifest(tmp_path / "m.jsonl", rows, relative=False)
    assert json.loads((tmp_path / "m.jsonl").read_text())["audio"] == str(tmp_path / "x.wav")


def test_relative_manifest_path_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_lines(tmp_path / "sub" / "m.jsonl", [{"audio": "a.wav", "text": "x"}])
    rows, _ = read_manifest("sub/m.jsonl")
    assert Path(rows[0].audio).is_absolute()
    write_manifest("sub/m2.jsonl", rows)
    back, _ = read_manifest(tmp_path / "sub" / "m2.jsonl")
    assert back[0].audio == str(tmp_path / "sub" / "a.wav")


def test_impossible_durations_are_errors(tmp_path):
    m = _write_lines(tmp_path / "m.jsonl", [
        '{"audio": "a.wav", "text": "x", "duration": -1}',
        '{"audio": "b.wav", "text": "x", "duration": NaN}',
        '{"audio": "c.wav", "text": "x", "offset": -2.0}',
        '{"audio": "d.wav", "text": "x", "duration": Infinity}',
    ])
    rows, errors = read_manifest(m)
    assert rows == [] and [e.line for e in errors] == [1, 2, 3, 4]
