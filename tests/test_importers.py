"""ceasr.data.importers on tiny corpora in each real layout: ids, texts, speakers, durations, skipped rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceasr.data.importers import IMPORTERS, commonvoice, folder, kaldi, librispeech, prepare
from ceasr.data.manifest import read_manifest
from ceasr.errors import CeasrError, ManifestError

CORRUPT = b"RIFF\x10\x00\x00\x00WAVEjunk"  # a header that stops before any chunk


def _by_id(rows):
    return {r.id: r for r in rows}


def _one_line_errors(errors):
    assert all(isinstance(e, ManifestError) and "\n" not in str(e) for e in errors)
    return errors


@pytest.fixture
def libri(tmp_path, tone):
    root = tmp_path / "LibriSpeech" / "dev-clean"
    ch1, ch2 = root / "19" / "198", root / "26" / "495"
    tone(ch1 / "19-198-0000.flac", 0.50)
    tone(ch1 / "19-198-0001.flac", 0.75)
    tone(ch1 / "19-198-0009.flac", 0.20)  # no line in the transcript
    (ch1 / "19-198.trans.txt").write_text("19-198-0001 NORTHANGER ABBEY\n19-198-0000 CHAPTER ONE\n")
    tone(ch2 / "26-495-0001.flac", 1.25)
    (ch2 / "26-495-0000.flac").write_bytes(CORRUPT)
    (ch2 / "26-495.trans.txt").write_text(
        "26-495-0000 A BROKEN FILE\n26-495-0001 THE GOOD ONE\n26-495-0002 NO AUDIO FOR THIS LINE\n"
    )
    return root


def test_librispeech(libri):
    rows, errors = librispeech(libri)
    assert [r.id for r in rows] == ["19-198-0000", "19-198-0001", "26-495-0001"]
    got = _by_id(rows)
    assert got["19-198-0001"].text == "NORTHANGER ABBEY"
    assert got["19-198-0000"].audio == str(libri / "19" / "198" / "19-198-0000.flac")
    assert [r.speaker for r in rows] == ["19", "19", "26"] and {r.lang for r in rows} == {"en"}
    assert [r.duration for r in rows] == pytest.approx([0.5, 0.75, 1.25], abs=1e-3)
    errors = sorted(_one_line_errors(errors), key=str)
    assert len(errors) == 3
    no_line, corrupt, missing = errors
    assert no_line.path.endswith("19-198-0009.flac") and "no transcript line" in no_line.reason
    assert corrupt.path.endswith("26-495.trans.txt") and corrupt.line == 1
    assert "26-495-0000.flac" in corrupt.reason and "not a readable audio file" in corrupt.reason
    assert missing.line == 3 and "no such file" in missing.reason


@pytest.fixture
def cv(tmp_path, tone):
    root = tmp_path / "cv-corpus" / "en"
    clips = root / "clips"
    tone(clips / "common_voice_en_1.mp3", 0.60, 48000)
    tone(clips / "common_voice_en_2.mp3", 0.90, 48000)
    tone(clips / "common_voice_en_3.mp3", 0.45, 48000)
    (clips / "common_voice_en_4.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(40))
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    lines = [
        'abc123\tcommon_voice_en_2.mp3\t"Hello," he said "twice.\t2\t0\t\t\t\ten\t\n',  # opening quote
        "abc123\tcommon_voice_en_1.mp3\tIt's 5\" long, isn't it?\t2\t1\tthirties\tmale\t\ten\t\n",
        "def456\tcommon_voice_en_4.mp3\tA corrupt clip.\t2\t0\t\t\t\ten\t\n",
        "def456\tcommon_voice_en_9.mp3\tA missing clip.\t2\t0\t\t\t\ten\t\n",
        "def456\tcommon_voice_en_3.mp3\ttoo few fields\n",
    ]
    (root / "train.tsv").write_text(header + "".join(lines), encoding="utf-8")
    (root / "dev.tsv").write_text("client_id\tpath\tsentence\nzz9\tcommon_voice_en_3.mp3\tDev row.\n")
    return root


def test_commonvoice_keeps_quotes_and_reports_bad_rows(cv):
    rows, errors = commonvoice(cv)
    assert [r.id for r in rows] == ["common_voice_en_1", "common_voice_en_2"]
    one, two = rows
    assert one.text == "It's 5\" long, isn't it?" and two.text == '"Hello," he said "twice.'
    assert (one.speaker, one.lang) == ("abc123", "en")
    assert one.audio == str(cv / "clips" / "common_voice_en_1.mp3")
    assert [one.duration, two.duration] == pytest.approx([0.60, 0.90], abs=1e-3)
    errors = _one_line_errors(errors)
    assert sorted(e.line for e in errors) == [4, 5, 6]
    by_line = {e.line: e.reason for e in errors}
    assert "common_voice_en_4.mp3" in by_line[4] and "no decodable audio data" in by_line[4]
    assert "no such file" in by_line[5]
    assert "number of tab-separated fields" in by_line[6]


def test_commonvoice_other_split_without_locale(cv):
    rows, errors = commonvoice(cv, split="dev")
    assert errors == []
    assert [(r.id, r.text, r.speaker, r.lang) for r in rows] == [("common_voice_en_3", "Dev row.", "zz9", None)]
    assert rows[0].duration == pytest.approx(0.45, abs=1e-3)
    with pytest.raises(ManifestError, match="test.tsv: no such file"):
        commonvoice(cv, split="test")


def test_commonvoice_header_without_sentence(tmp_path):
    (tmp_path / "train.tsv").write_text("client_id\tpath\n")
    with pytest.raises(ManifestError, match="missing column.*sentence"):
        commonvoice(tmp_path)


def test_kaldi_without_segments(tmp_path, tone):
    audio_dir, data = tmp_path / "audio", tmp_path / "data" / "train"
    tone(audio_dir / "a.wav", 0.5)
    tone(audio_dir / "b.flac", 0.8, 8000)
    tone(audio_dir / "c.wav", 0.3)
    data.mkdir(parents=True)
    (data / "wav.scp").write_text(
        f"uttA {audio_dir / 'a.wav'}\n"
        "uttB audio/b.flac\n"  # relative to the recipe folder (base)
        f"uttC sox {audio_dir / 'c.wav'} -t wav - |\n"
        f"uttD {audio_dir / 'a.wav'}\n"  # no line in text
    )
    (data / "text").write_text("uttA hello   there\nuttB\tgood bye\nuttC piped\nuttE only in text\n")
    (data / "utt2spk").write_text("uttA spk1\nuttB spk2\nuttC spk1\n")
    rows, errors = kaldi(data, base=tmp_path)
    assert [(r.id, r.text, r.speaker, r.offset) for r in rows] == [
        ("uttA", "hello there", "spk1", 0.0),
        ("uttB", "good bye", "spk2", 0.0),
    ]
    assert rows[1].audio == str(tmp_path / "audio" / "b.flac")
    assert [r.duration for r in rows] == pytest.approx([0.5, 0.8], abs=1e-3)
    got = {(Path(e.path).name, e.line): e.reason for e in _one_line_errors(errors)}
    assert set(got) == {("wav.scp", 3), ("wav.scp", 4), ("text", 4)}
    assert "pipe" in got["wav.scp", 3]
    assert "no line in text" in got["wav.scp", 4]
    assert "not in wav.scp" in got["text", 4]


def test_kaldi_segments_give_offsets(tmp_path, tone):
    tone(tmp_path / "rec1.wav", 3.0, 8000)
    tone(tmp_path / "rec2.flac", 1.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec1 {tmp_path / 'rec1.wav'}\nrec2 {tmp_path / 'rec2.flac'}\n")
    (data / "segments").write_text(
        "s1 rec1 0.00 1.20\n"
        "s2 rec1 1.50 2.75\n"
        "s3 rec1 2.50 -1\n"  # Kaldi's "to the end"
        "s4 rec2 0.25 0.60\n"
        "s5 rec1 2.00 4.00\n"  # past the end of a 3 s recording
        "s6 recX 0.00 1.00\n"  # unknown recording
        "s7 rec2 0.5\n"  # malformed
    )
    (data / "text").write_text("".join(f"s{i} words of s{i}\n" for i in range(1, 8)))
    (data / "utt2spk").write_text("s1 A\ns2 A\ns3 B\ns4 C\n")
    rows, errors = kaldi(data)
    assert [r.id for r in rows] == ["s1", "s2", "s3", "s4"]
    assert [r.offset for r in rows] == pytest.approx([0.0, 1.5, 2.5, 0.25], abs=1e-9)
    assert [r.duration for r in rows] == pytest.approx([1.2, 1.25, 0.5, 0.35], abs=1e-3)
    assert [r.speaker for r in rows] == ["A", "A", "B", "C"]
    assert rows[3].audio == str(tmp_path / "rec2.flac") and rows[0].text == "words of s1"
    got = {e.line: e.reason for e in _one_line_errors(errors)}
    assert set(got) == {5, 6, 7} and all(e.path.endswith("segments") for e in errors)
    assert "runs past" in got[5] and "'recX' not in wav.scp" in got[6] and "bad segment" in got[7]


def test_kaldi_missing_text_file(tmp_path):
    (tmp_path / "wav.scp").write_text("u1 /x.wav\n")
    with pytest.raises(ManifestError, match="text: no such file"):
        kaldi(tmp_path)


@pytest.fixture
def plain(tmp_path, tone):
    root = tmp_path / "mine"
    tone(root / "a.wav", 0.4)
    (root / "a.txt").write_text("first  utterance\n")
    tone(root / "spk" / "b.flac", 0.7, 44100)
    (root / "spk" / "b.lab").write_text("second one")
    tone(root / "spk" / "a.ogg", 0.5, 22050)  # same stem as a.wav, other folder: its own id
    (root / "spk" / "a.txt").write_text("third\nline two\n")
    tone(root / "d.mp3", 0.9, 16000)
    (root / "d.txt").write_text("mp3 row")
    tone(root / "c.ogg", 0.3)  # no transcript
    (root / "e.wav").write_bytes(CORRUPT)
    (root / "e.txt").write_text("corrupt audio")
    tone(root / "f.wav", 0.2)
    (root / "f.txt").write_text("  \n")  # empty transcript
    (root / "notes.txt").write_text("not a transcript of anything")
    return root


def test_folder(plain):
    rows, errors = folder(plain)
    assert [r.id for r in rows] == ["a", "d", "spk/a", "spk/b"]
    got = _by_id(rows)
    assert got["spk/a"].text == "third line two" and got["spk/b"].text == "second one"
    assert got["a"].text == "first utterance" and got["spk/b"].audio == str(plain / "spk" / "b.flac")
    assert [r.duration for r in rows] == pytest.approx([0.4, 0.9, 0.5, 0.7], abs=1e-3)
    got = {Path(e.path).name: e.reason for e in _one_line_errors(errors)}
    assert set(got) == {"c.ogg", "e.wav", "f.txt"}
    assert "no transcript" in got["c.ogg"] and "not a readable audio file" in got["e.wav"]
    assert "empty transcript" in got["f.txt"]


def test_prepare_writes_a_manifest_that_reads_back(plain, tmp_path):
    out = tmp_path / "manifests" / "mine.jsonl"
    count, errors = prepare("folder", plain, out)
    assert count == 4 and len(errors) == 3
    rows, read_errors = read_manifest(out, check_audio=True)
    assert read_errors == []
    assert rows == folder(plain)[0]
    assert '"audio": "../mine/' not in out.read_text()  # outside the manifest folder: stored absolute


def test_prepare_passes_options(cv, tmp_path):
    count, errors = prepare("commonvoice", cv, tmp_path / "dev.jsonl", split="dev")
    assert (count, errors) == (1, [])


def test_prepare_rejects_bad_requests(tmp_path, plain):
    with pytest.raises(CeasrError, match="unknown corpus layout 'timit'; choose one of librispeech"):
        prepare("timit", plain, tmp_path / "m.jsonl")
    with pytest.raises(CeasrError, match="no such directory"):
        prepare("folder", tmp_path / "nope", tmp_path / "m.jsonl")
    with pytest.raises(CeasrError, match="folder importer: .*split"):
        prepare("folder", plain, tmp_path / "m.jsonl", split="dev")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CeasrError, match="no usable utterances"):
        prepare("librispeech", tmp_path / "empty", tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()
    assert set(IMPORTERS) == {"librispeech", "commonvoice", "kaldi", "folder"}
