"""The robustness report: corrupted audio measured from the files, and `ceasr evaluate --noise ...` end to end."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import torch
from ddp_worker import make_corpus, tiny_config

from ceasr.audio import load as load_audio
from ceasr.data.manifest import Utterance, write_manifest
from ceasr.errors import ConfigError
from ceasr.robustness import Condition, condition_grid, corrupt_manifest
from conftest import ceasr_cli


def power(x) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    return root, make_corpus(root / "wav", 6)


@pytest.mark.parametrize("noise", ["white", "babble"])
def test_corrupted_files_have_the_snr_and_repeat_from_a_seed(corpus, tmp_path, noise):
    _, rows = corpus
    out = corrupt_manifest(rows, Condition(noise=noise, snr_db=10.0), tmp_path / "a", seed=5)
    assert [r.id for r in out] == [r.id for r in rows]
    for clean, noisy in zip(rows, out):
        x, y = load_audio(clean.audio), load_audio(noisy.audio)
        assert len(x) == len(y)
        assert 10 * math.log10(power(x) / power(y - x)) == pytest.approx(10.0, abs=0.5)
    again = corrupt_manifest(rows, Condition(noise=noise, snr_db=10.0), tmp_path / "b", seed=5)
    other = corrupt_manifest(rows, Condition(noise=noise, snr_db=10.0), tmp_path / "c", seed=6)
    for a, b, c in zip(out, again, other):
        assert open(a.audio, "rb").read() == open(b.audio, "rb").read()
        assert open(a.audio, "rb").read() != open(c.audio, "rb").read()


def test_gain_and_reverb_conditions(corpus, tmp_path):
    _, rows = corpus
    quiet = corrupt_manifest(rows, Condition(gain_db=-20.0), tmp_path)
    for clean, q in zip(rows, quiet):
        ratio = 10 * math.log10(power(load_audio(q.audio)) / power(load_audio(clean.audio)))
        assert ratio == pytest.approx(-20.0, abs=0.1)
    reverb = corrupt_manifest(rows, Condition(rir="synthetic"), tmp_path)
    x, y = load_audio(rows[0].audio), load_audio(reverb[0].audio)
    assert len(x) == len(y) and power(y) == pytest.approx(power(x), rel=0.01)
    assert corrupt_manifest(rows, Condition(), tmp_path) == rows  # clean: the original audio


def test_unreadable_rows_are_reported_and_skipped(corpus, tmp_path, capsys):
    _, rows = corpus
    bad = [*rows[:2], Utterance(str(tmp_path / "missing.wav"), "one", "gone"), rows[2]]
    out = corrupt_manifest(bad, Condition(noise="pink", snr_db=5.0), tmp_path)
    assert [r.id for r in out] == [rows[0].id, rows[1].id, rows[2].id]
    assert "missing.wav: no such file" in capsys.readouterr().err


def test_condition_grid_and_bad_values():
    grid = condition_grid(["white", "babble"], ["clean", "10", "0"], [-30.0, 0.0, 6.0], "synthetic")
    assert [c.name for c in grid] == [
        "clean", "white 10 dB", "white 0 dB", "babble 10 dB", "babble 0 dB", "gain -30 dB", "gain +6 dB",
        "reverb synthetic",
    ]
    with pytest.raises(ConfigError, match="loud"):
        condition_grid(["white"], ["loud"], [], None)
    with pytest.raises(ConfigError, match="/no/such/rirs"):
        Condition(rir="/no/such/rirs")


@pytest.mark.slow
def test_robustness_cli_end_to_end(corpus, tmp_path):
    from ceasr.train.loop import train

    root, rows = corpus
    torch.set_num_threads(1)
    for seed in (0, 1):
        train(tiny_config(max_steps=2, seed=seed), rows, rows[:2], tmp_path / f"m{seed}", progress=False)
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, rows)
    a, b, out = tmp_path / "m0/model", tmp_path / "m1/model", tmp_path / "report"
    r = ceasr_cli("evaluate", "--model", a, "--model", b, "--manifest", manifest, "--noise", "white,babble",
                  "--snr", "clean,10,0", "--gain", "-30,6", "--rir", "synthetic", "--out-dir", out)
    assert r.returncode == 0, r.stderr[-2000:]
    scores = json.loads((out / "robustness.json").read_text())
    assert len(scores) == 8 * 2  # clean, 2 noises x 2 SNRs, 2 gains, reverb; two models
    assert {s["model"] for s in scores} == {"m0/model", "m1/model"}
    assert all(s["N"] == sum(len(u.text.split()) for u in rows) for s in scores)
    with open(out / "robustness.csv") as f:
        assert len(list(csv.DictReader(f))) == 16
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "babble 0 dB" in r.stdout and "WER% m0/model" in r.stdout
    # The same corrupted audio through plain `ceasr evaluate` gives the same WER.
    single = ceasr_cli("evaluate", "--model", a, "--manifest", out / "audio/babble_0_dB/manifest.jsonl",
                       "--out", tmp_path / "single.jsonl")
    wer = float(re.search(r"^WER=([0-9.]+)", single.stdout, re.M).group(1))
    want = next(s for s in scores if s["model"] == "m0/model" and s["condition"] == "babble 0 dB")
    assert wer == pytest.approx(want["wer"], abs=1e-4)


def test_bad_robustness_flags_are_one_line(tmp_path):
    r = ceasr_cli("evaluate", "--model", tmp_path, "--manifest", tmp_path / "m.jsonl", "--noise", "white",
                  "--gain", "loud", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--gain" in r.stderr
