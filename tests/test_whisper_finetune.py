"""``ceasr finetune`` on a tiny random Whisper: the loss goes down, the keep rule and layer decay hold."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ceasr.config import WhisperFinetuneConfig
from ceasr.data.manifest import Utterance
from ceasr.losses import cross_entropy
from ceasr.train.checkpoint import latest_checkpoint
from ceasr.whisper.convert import convert_whisper
from ceasr.whisper.finetune import EpochReport, _batch, _keep, finetune, param_groups
from ceasr.whisper.recognizer import load_whisper_dir

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import ceasr_cli
from whisper_fixtures import tiny_model, tiny_tokenizer, write_openai  # noqa: E402

WORDS = ["one", "two", "three", "four"]


def _rows(tmp_path) -> list[Utterance]:
    rows = []
    t = np.arange(16000) / 16000
    for i, word in enumerate(WORDS):
        path = tmp_path / f"{word}.wav"
        sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * (i + 1) * t)).astype(np.float32), 16000)
        rows.append(Utterance(str(path), word, id=word, lang="en"))
    return rows


def _teacher_forced_loss(model_dir, rows, weights=None) -> float:
    """Mean CE (no smoothing) of the references, recomputed from scratch with the model directory."""
    from safetensors.torch import load_file

    from ceasr.audio import load
    from ceasr.whisper.audio import windows

    model, _, tok = load_whisper_dir(model_dir)
    if weights is not None:
        model.load_state_dict(load_file(str(weights)))
    mels = torch.stack([windows(load(r.audio), 80)[0] for r in rows])
    tokens, labels = _batch(tok, tok.prompt("en"), [tok.encode(" " + r.text) for r in rows])
    with torch.no_grad():
        return float(cross_entropy(model(mels, tokens), labels))


def test_finetune_lowers_the_loss_and_keeps_by_the_stated_rule(tmp_path):
    tok = tiny_tokenizer()
    pt = write_openai(tiny_model(tok.get_vocab_size(), seed=3), tok, tmp_path / "src" / "tiny.pt")
    base = convert_whisper(pt, tmp_path / "base", language="en")
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=4, warmup_steps=0),
                              batch_size=1, patience=10)
    result = finetune(base, rows, rows, tmp_path / "ft", cfg, general_rows=rows[:2], progress=False)
    last = latest_checkpoint(tmp_path / "ft") / "model.safetensors"
    before, after = _teacher_forced_loss(base, rows), _teacher_forced_loss(base, rows, last)
    assert after < 0.85 * before  # 5.68 -> 4.22 when written
    losses = [e.train_loss for e in result.epochs[1:]]
    assert losses[-1] < losses[0]
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert report["kept_epoch"] == result.kept_epoch == _keep(result.epochs, cfg.max_forgetting)
    assert [e["kept"] for e in report["epochs"]].count(True) == 1
    assert result.epochs[result.kept_epoch].dev_wer <= result.epochs[0].dev_wer
    assert "epoch" in result.table().splitlines()[0] and result.table().splitlines()[-1].startswith("kept epoch")


def test_keep_rule_on_hand_made_reports():
    r = [EpochReport(0, None, 50.0, 10.0), EpochReport(1, 1.0, 20.0, 10.5), EpochReport(2, 0.5, 10.0, 12.0),
         EpochReport(3, 0.4, 15.0, 11.0)]
    assert _keep(r, 1.0) == 3  # epoch 2 is best on dev but forgot 2 points
    assert _keep(r, 2.0) == 2
    assert _keep(r[:1] + [EpochReport(1, 1.0, 60.0, 20.0)], 1.0) == 0  # nothing better: keep the pretrained
    no_general = [dataclasses.replace(x, general_wer=None) for x in r]
    assert _keep(no_general, 1.0) == 2


def test_layer_decay_and_frozen_encoder_param_groups():
    model = tiny_model(320)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    groups = param_groups(model, lr=1.0, layer_decay=0.5, weight_decay=0.1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    # Depths: conv stem, 2 encoder blocks, embeddings, 2 decoder blocks, final norm (top: lr 1).
    top = next(g for g in groups if any(p is model.decoder.ln.weight for p in g["params"]))
    emb = next(g for g in groups if any(p is model.decoder.token_embedding.weight for p in g["params"]))
    first = next(g for g in groups if any(p is model.decoder.blocks[0].mlp[0].weight for p in g["params"]))
    assert top["lr"] == 1.0 and first["lr"] == pytest.approx(0.25) and emb["lr"] == pytest.approx(0.125)
    assert emb["weight_decay"] == 0.1 and top["weight_decay"] == 0.0


def test_finetune_cli_reports_a_missing_model_in_one_line(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "one"}) + "\n")
    done = ceasr_cli("finetune", "--model", tmp_path / "nope", "--train", tmp_path / "m.jsonl",
                     "--dev", tmp_path / "m.jsonl", "--out", tmp_path / "out", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nope" in done.stderr, done.stderr
