"""`ceasr command`, `ceasr listen`, `ceasr evaluate-commands` end to end on a tiny random model."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import ceasr_cli

from ceasr.audio import save as save_audio
from ceasr.config import ExperimentConfig, ModelConfig
from ceasr.data.domain import command_phrases
from ceasr.modeldir import export_model
from ceasr.models.asr import build_model
from ceasr.text.tokenizer import CharTokenizer


def run(*args, stdin: bytes | None = None):
    return ceasr_cli(*args, check=False, stdin=stdin)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random tiny model directory whose tokenizer spells the default set, and three noise files."""
    tmp = tmp_path_factory.mktemp("cmd")
    torch.manual_seed(0)
    tok = CharTokenizer.train(command_phrases())
    cfg = ExperimentConfig(model=ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64,
                                             subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64))
    model = build_model(cfg.model, cfg.features.n_mels, tok.vocab_size)
    export_model(model, cfg, tok, tmp / "model")
    rng = np.random.default_rng(0)
    wavs = []
    for i, seconds in enumerate([0.8, 1.2, 0.3]):
        path = tmp / f"n{i}.wav"
        save_audio(path, 0.1 * rng.standard_normal(round(seconds * 16000)).astype(np.float32))
        wavs.append(path)
    return tmp, tmp / "model", wavs


def test_command_lines_json_and_threshold(setup):
    tmp, model, wavs = setup
    phrases = set(command_phrases())
    out = run("command", "--model", model, "--threshold", "0", *wavs)
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.splitlines()]
    assert [f[0] for f in lines] == [str(w) for w in wavs]
    assert all(f[1] in phrases and 0.0 <= float(f[2]) <= 1.0 for f in lines)  # threshold 0 accepts all
    out = run("command", "--model", model, "--threshold", "1.5", "--format", "json", wavs[0], tmp / "none.wav")
    assert out.returncode == 0
    row = json.loads(out.stdout)
    assert row["phrase"] is None and row["best"] in phrases and "intent" not in row  # above 1: all rejected
    assert out.stderr.strip().endswith("none.wav: no such file")


def test_jit_gives_the_same_lines(setup):
    _, model, wavs = setup
    eager = run("command", "--model", model, "--threshold", "0", "--format", "json", *wavs)
    traced = run("command", "--model", model, "--threshold", "0", "--format", "json", "--jit", *wavs)
    assert eager.returncode == traced.returncode == 0, traced.stderr
    for a, b in zip(eager.stdout.splitlines(), traced.stdout.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        assert a["best"] == b["best"] and abs(a["confidence"] - b["confidence"]) < 1e-3


def test_int8_flag_gives_what_the_int8_api_gives(setup):
    from ceasr.commands.recognize import load_command_recognizer

    _, model, wavs = setup
    out = run("command", "--model", model, "--threshold", "0", "--format", "json", "--jit", "--int8", *wavs)
    assert out.returncode == 0, out.stderr
    crec = load_command_recognizer(model, threshold=0.0, int8=True)
    for line, wav in zip(out.stdout.splitlines(), wavs, strict=True):
        row, ref = json.loads(line), crec.recognize(wav)
        assert row["best"] == ref.command.text and abs(row["confidence"] - ref.confidence) < 1e-3


def test_stationary_noise_gets_confidence_zero_unless_the_level_check_is_off(setup):
    tmp, model, wavs = setup  # steady white noise: its 10 ms levels span ~1.6 dB
    bursts = 0.1 * np.random.default_rng(1).standard_normal(16000) * np.repeat([1.0, 0.05] * 5, 1600)
    save_audio(tmp / "bursts.wav", bursts.astype(np.float32))  # levels span 26 dB, like syllables
    files = [*wavs, tmp / "bursts.wav"]

    def confidences(*flags):
        out = run("command", "--model", model, "--threshold", "0.5", *flags, *files)
        assert out.returncode == 0, out.stderr
        return [float(line.split("\t")[2]) for line in out.stdout.splitlines()]

    default = confidences()
    assert default[:3] == [0.0, 0.0, 0.0] and default[3] > 0.0
    off = confidences("--min-spread-db", "0")
    assert all(c > 0.0 for c in off) and off[3] == default[3]
    out = run("command", "--model", model, "--min-spread-db", "-1", *wavs)
    assert out.returncode != 0 and "min_spread_db=-1.0: must be >= 0" in out.stderr


def test_bad_command_set_is_one_line(setup):
    tmp, model, wavs = setup
    (tmp / "bad.commands").write_text("go (left | right\n")
    out = run("command", "--model", model, "--commands", tmp / "bad.commands", wavs[0])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ceasr command: error: {tmp / 'bad.commands'}:1: '(' without its ')'"]


def test_listen_and_evaluate_commands(setup):
    tmp, model, wavs = setup
    pcm = (0.01 * np.random.default_rng(1).standard_normal(3 * 16000) * 32767).astype("<i2").tobytes()
    out = run("listen", "--model", model, "--threshold", "1.5", stdin=pcm)
    assert out.returncode == 0 and out.stdout == "", out.stderr  # nothing passes a threshold above 1
    for name, text in (("in", "stop"), ("oog", "hello there"), ("noise", "")):
        rows = [json.dumps({"audio": str(w), "text": text}) for w in wavs[:2]]
        (tmp / f"{name}.jsonl").write_text("\n".join(rows + ['{"audio": 1}']) + "\n")
    out = run("evaluate-commands", "--model", model, "--in-grammar", tmp / "in.jsonl", "--out-of-grammar",
              tmp / "oog.jsonl", "--noise-only", tmp / "noise.jsonl", "--threshold", "1.5", "--out", tmp / "ev")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "in-grammar=2 out-of-grammar=2 noise=2 skipped=3" in text
    assert text.splitlines()[-1].startswith("accuracy=")
    assert "FRR=100.00% FAR=0.00% noise-accepted=0.00%" in text
    assert (tmp / "ev" / "commands_det.png").stat().st_size > 1000
    results = [json.loads(line) for line in (tmp / "ev" / "commands-results.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in results] == ["in", "in", "oog", "oog", "noise", "noise"]


@pytest.mark.parametrize("exact_limit", [2000, 0])  # exact scoring, and the trie beam
def test_attention_weight_multiplies_in_the_decoders_phrase_probability(setup, exact_limit):
    """confidence(a) = confidence(0) * min(1, p_att / (1 - eps) ** (L + 1)) ** a, p_att by a full decoder
    forward of the chosen phrase (the recognizer takes it out of the joint score); the filler is not a word of
    this tokenizer's, so the default is a = 0."""
    from ceasr.audio import load as load_audio
    from ceasr.commands.recognize import load_command_recognizer

    _, model_dir, wavs = setup
    fields = {"min_spread_db": 0.0, "exact_limit": exact_limit}
    base = load_command_recognizer(model_dir, attention_weight=0.0, **fields)
    weighted = load_command_recognizer(model_dir, attention_weight=0.5, **fields)
    auto = load_command_recognizer(model_dir, **fields)
    eps = base.recognizer.cfg.model.label_smoothing
    for path in wavs[:2]:
        wave = load_audio(path)
        r0, r1 = base.recognize(wave), weighted.recognize(wave)
        assert r1.command == r0.command and 0.0 < r0.confidence
        assert auto.recognize(wave).confidence == r0.confidence
        enc, _, _ = base.encode([wave])
        seq = base.recognizer.tokenizer.encode(r0.command.text)
        dec = base.model.decoder
        with torch.inference_mode():
            logp = dec(enc, torch.tensor([enc.shape[1]]), torch.tensor([[base.model.sos_id, *seq]]))
            logp = logp.log_softmax(-1)[0]
        att = sum(float(logp[i, t]) for i, t in enumerate([*seq, base.model.eos_id]))
        want = r0.confidence * min(1.0, math.exp(att) / (1 - eps) ** (len(seq) + 1)) ** 0.5
        assert r1.confidence == pytest.approx(want, rel=1e-4)
        assert r1.confidence < r0.confidence  # a random decoder is far from sure of any phrase


def test_attention_weight_default_follows_the_filler_word():
    """0.25 when the tokenizer spells the negatives' filler as one known token, 0 when it spells it in pieces or
    as the unknown token, and 0 without a decoder whatever the tokenizer."""
    from ceasr.commands.negatives import FILLER
    from ceasr.commands.recognize import AUTO_ATTENTION_WEIGHT, attention_weight
    from ceasr.config import CommandConfig, TokenizerConfig
    from ceasr.text.tokenizer import BpeTokenizer

    phrases = command_phrases()
    bpe = TokenizerConfig(kind="bpe", vocab_size=120)
    trained_on_fillers = BpeTokenizer.train(phrases * 3 + [f"turn on the {FILLER}", f"{FILLER} the door"] * 40, bpe)
    assert len(trained_on_fillers.encode(FILLER)) == 1
    plain = CharTokenizer.train(phrases)
    no_z = BpeTokenizer.train([p for p in phrases if "z" not in p] * 3, TokenizerConfig(kind="bpe", vocab_size=80))
    assert no_z.unk_id in no_z.encode(FILLER)
    cfg = CommandConfig()
    small = ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64, subsampling_channels=8,
                        decoder_layers=1, decoder_ff_dim=64)
    with_decoder = build_model(small, 80, trained_on_fillers.vocab_size)
    ctc_only = build_model(dataclasses.replace(small, ctc_weight=1.0, decoder_layers=0), 80,
                           trained_on_fillers.vocab_size)
    assert attention_weight(cfg, with_decoder, trained_on_fillers) == AUTO_ATTENTION_WEIGHT
    assert attention_weight(cfg, with_decoder, plain) == 0.0
    assert attention_weight(cfg, with_decoder, no_z) == 0.0
    assert attention_weight(cfg, ctc_only, trained_on_fillers) == 0.0
    assert attention_weight(dataclasses.replace(cfg, attention_weight=0.7), with_decoder, plain) == 0.7


def test_negative_attention_weight_is_one_line(setup):
    _, model, wavs = setup
    out = run("command", "--model", model, "--attention-weight", "-1", wavs[0])
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "ceasr command: error: commands.attention_weight=-1.0: must be >= 0 (0 turns it off)"]
