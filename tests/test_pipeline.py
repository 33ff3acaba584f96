"""End to end through the CLI: synth → train → evaluate → transcribe, on a tiny corpus and a tiny model.

The model is far too small to be accurate; these tests check the plumbing against independent counts
(reference words in the manifest, files given), not recognition quality (bench/ measures that).
"""

import json
import re

import numpy as np
import pytest

import ceasr
import ceasr.audio
from ceasr.data.manifest import read_manifest
from ceasr.text.normalize import normalize
from conftest import ceasr_cli

TINY = [
    "model.d_model=32", "model.n_heads=2", "model.encoder_layers=1", "model.ff_dim=64",
    "model.subsampling_channels=8", "model.decoder_layers=1", "model.decoder_ff_dim=64",
    "tokenizer.kind=char", "train.max_steps=4", "train.batch_seconds=20", "train.warmup_steps=2",
    "train.checkpoint_every=2", "train.average_last=2",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    ceasr_cli("synth", "--out", root / "data", "--hours", "0.01", "--engines", "espeak-ng,flite")
    ceasr_cli("train", "--train", root / "data/train.jsonl", "--dev", root / "data/dev.jsonl",
              "--out", root / "exp", *TINY)
    return root


def test_model_dir_holds_everything(trained):
    names = sorted(p.name for p in (trained / "exp/model").iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer"]


def test_evaluate_counts_every_reference_word(trained):
    manifest = trained / "data/test.jsonl"
    r = ceasr_cli("evaluate", "--model", trained / "exp/model", "--manifest", manifest,
                  "--out", trained / "res.jsonl", "--by-speaker")
    lines = r.stdout.strip().splitlines()
    last = lines[-1]
    m = re.fullmatch(r"WER=(\d+\.\d{4}) S=(\d+) D=(\d+) I=(\d+) N=(\d+)", last)
    assert m, last
    rows, _ = read_manifest(manifest)
    n_words = sum(len(normalize(u.text).split()) for u in rows)
    s, d, i, n = map(int, m.groups()[1:])
    assert n == n_words
    assert float(m.group(1)) == pytest.approx((s + d + i) / n, abs=1e-4)
    results = [json.loads(line) for line in (trained / "res.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in results) == sorted(u.id for u in rows)
    assert sum(x["S"] + x["D"] + x["I"] for x in results) == s + d + i
    # --by-speaker: one row per speaker of the manifest, their N adding up to the whole set's.
    head = next(k for k, line in enumerate(lines) if line.split()[:2] == ["speaker", "utts"])
    table = [line.split() for line in lines[head + 1 : head + 1 + len({u.speaker for u in rows})]]
    assert {t[0] for t in table} == {u.speaker for u in rows} and sum(int(t[-1]) for t in table) == n


def test_evaluate_with_no_readable_audio_is_an_error_not_a_wer(trained, tmp_path):
    rows = (trained / "data/test.jsonl").read_text().splitlines()[:3]
    manifest = tmp_path / "elsewhere.jsonl"  # audio paths are relative to the manifest: none of them exists here
    manifest.write_text("\n".join(rows) + "\n")
    r = ceasr_cli("evaluate", "--model", trained / "exp/model", "--manifest", manifest, check=False)
    assert r.returncode != 0 and "WER=" not in r.stdout
    assert r.stderr.count("skipped:") == 3 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("elsewhere.jsonl: no utterance could be evaluated (3 skipped)")


def test_transcribe_reports_bad_files_and_goes_on(trained, tmp_path):
    rows, _ = read_manifest(trained / "data/test.jsonl")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    files = [rows[0].audio, bad, rows[1].audio, tmp_path / "missing.wav"]
    r = ceasr_cli("transcribe", "--model", trained / "exp/model", *files)
    out = r.stdout.splitlines()
    assert [line.split("\t")[0] for line in out] == [rows[0].audio, rows[1].audio]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and str(bad) in errors[0] and "missing.wav" in errors[1]
    assert all("Traceback" not in e for e in errors)

    api = ceasr.load_model(trained / "exp/model")
    assert out[0].split("\t", 1)[1] == api.transcribe(rows[0].audio).text


def test_json_format_and_batch_equals_single(trained):
    rows, _ = read_manifest(trained / "data/test.jsonl")
    r = ceasr_cli("transcribe", "--model", trained / "exp/model", "--format", "json", rows[0].audio)
    row = json.loads(r.stdout)
    assert set(row) == {"path", "text", "tokens", "token_scores", "language", "token_languages"}
    assert len(row["tokens"]) == len(row["token_scores"]) == len(row["token_languages"])
    # An English model: every token is English or letterless (the char tokenizer's word-start "▁").
    assert [lang for lang in row["token_languages"]] == ["en" if p != "▁" else "" for p in row["tokens"]]
    assert row["language"] == ("en" if "en" in row["token_languages"] else "")
    assert all(s <= 0 for s in row["token_scores"])  # log-probabilities

    api = ceasr.load_model(trained / "exp/model")
    waves = [ceasr.audio.load(u.audio) for u in rows[:4]]
    assert [t.text for t in api.transcribe_batch(waves)] == [api.transcribe(w).text for w in waves]
    assert isinstance(waves[0], np.ndarray)


def test_resume_flag_continues_training(trained):
    ceasr_cli("train", "--train", trained / "data/train.jsonl", "--dev", trained / "data/dev.jsonl",
              "--out", trained / "exp", "--resume", *TINY[:-3], "train.max_steps=6", "train.checkpoint_every=2",
              "train.average_last=2")
    steps = sorted(p.name for p in (trained / "exp/checkpoints").iterdir() if p.name.startswith("step-"))
    assert steps[-1] == "step-00000006"
