"""train-lm, evaluate --lm/--hotwords and tune-decode through the CLI, on a tiny untrained model and tones.

Recognition quality is not the point (bench/lm.py measures it): these check the plumbing against counts
the test knows (utterances, marks) and the one-line errors.
"""

import json

import pytest
import torch

from ceasr.config import ExperimentConfig, ModelConfig
from ceasr.models.asr import build_model
from ceasr.modeldir import export_model
from ceasr.text.tokenizer import CharTokenizer
from conftest import ceasr_cli as cli

TEXTS = ["go left", "go right", "stop now", "turn left now", "go"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_tone

    root = tmp_path_factory.mktemp("lmcli")
    torch.manual_seed(0)
    tok = CharTokenizer.train(TEXTS)
    cfg = ExperimentConfig(model=ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64,
                                             subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64))
    export_model(build_model(cfg.model, cfg.features.n_mels, tok.vocab_size), cfg, tok, root / "model")
    rows = []
    for i, text in enumerate(TEXTS * 2):
        write_tone(root / f"a{i}.wav", seconds=0.6 + 0.1 * i, freq=200 + 50 * i)
        rows.append(json.dumps({"audio": f"a{i}.wav", "text": text, "id": f"u{i}"}))
    (root / "dev.jsonl").write_text("\n".join(rows) + "\n")
    (root / "text.txt").write_text("\n".join(TEXTS * 3) + "\n")
    (root / "hot.txt").write_text("turn left\t4\n")
    cli("train-lm", "--text", root / "text.txt", "--out", root / "lm", "--order", "2")
    return root


def test_evaluate_with_lm_marks_each_utterance(setup):
    r = cli("evaluate", "--model", setup / "model", "--manifest", setup / "dev.jsonl", "--method", "ctc_prefix_beam",
            "--lm", setup / "lm", "--lm-weight", "2", "--hotwords", setup / "hot.txt", "--out", setup / "res.jsonl")
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("WER=") and any(x.startswith("without LM/hotwords: WER=") for x in lines)
    results = [json.loads(x) for x in (setup / "res.jsonl").read_text().splitlines()]
    assert len(results) == 2 * len(TEXTS)
    for x in results:
        assert x["lm"] in ("same", "fixed", "broke", "changed")
        assert (x["lm"] == "same") == (x["hyp"] == x["hyp_without_lm"])
    marks = next(x for x in lines if x.startswith("LM/hotwords changed"))
    assert sum(int(kv.split("=")[1]) for kv in marks.split(": ")[1].split()) == len(results)


def test_tune_decode_writes_a_config_evaluate_accepts(setup):
    out = setup / "decode.json"
    r = cli("tune-decode", "--model", setup / "model", "--lm", setup / "lm", "--manifest", setup / "dev.jsonl",
            "--trials", "3", "--out", out)
    assert "best: lm_weight=" in r.stdout
    best = json.loads(out.read_text())["decode"]
    assert best["method"] == "ctc_prefix_beam" and best["lm"] == str(setup / "lm")
    assert 0.0 <= best["lm_weight"] <= 2.0 and best["beam_size"] in (4, 8, 16)
    r = cli("evaluate", "--model", setup / "model", "--manifest", setup / "dev.jsonl", "--decode-config", out,
            "--out", setup / "res2.jsonl")
    assert r.stdout.strip().splitlines()[-1].startswith("WER=")


def test_lm_errors_are_one_line(setup):
    r = cli("evaluate", "--model", setup / "model", "--manifest", setup / "dev.jsonl", "--lm", setup / "nolm",
            check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nolm" in r.stderr
    r = cli("train-lm", "--text", setup / "missing.txt", "--out", setup / "x", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.txt" in r.stderr
    r = cli("train-lm", "--text", setup / "text.txt", "--out", setup / "x", "--set", "colour=red", check=False)
    assert r.returncode == 2 and "bad --set" in r.stderr
