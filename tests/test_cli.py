"""The CLI's contract for user mistakes: one line on stderr naming the item and the reason, exit code 2."""


import pytest
from conftest import ceasr_cli


def run(*args, cwd=None):
    return ceasr_cli(*args, check=False, cwd=cwd)


@pytest.mark.parametrize(
    "args, words",
    [
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["synth", "--hours", "lots", "--out", "x"], "invalid float value: 'lots'"),
        (["prepare", "timit", "a", "b"], "invalid choice: 'timit'"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_bad_flags_are_one_line(args, words):
    r = run(*args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and words in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_manifest_is_one_line(tmp_path):
    r = run("train", "--train", str(tmp_path / "none.jsonl"), "--dev", str(tmp_path / "none.jsonl"),
            "--out", str(tmp_path / "exp"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"ceasr train: error: {tmp_path / 'none.jsonl'}: no such manifest"


def test_bad_override_is_one_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav", "text": "x"}\n')
    r = run("train", "--train", str(tmp_path / "m.jsonl"), "--dev", str(tmp_path / "m.jsonl"),
            "--out", str(tmp_path / "exp"), "train.lr=fast")
    assert r.returncode == 2
    assert r.stderr.strip() == "ceasr train: error: train.lr: expected float, got 'fast'"


def test_missing_model_dir_is_one_line(tmp_path):
    r = run("transcribe", "--model", str(tmp_path / "nomodel"), "a.wav")
    assert r.returncode == 2
    assert r.stderr.strip() == f"ceasr transcribe: error: {tmp_path / 'nomodel'}: not a ceasr model directory (no config.json)"
