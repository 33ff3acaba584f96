"""Two-stage command recognition: a tiny random CTC model screens, a tiny random Whisper decides; the cascade's
results against running each stage by hand, and the CLI's --verify/--gate."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ceasr.api import load_model
from ceasr.commands import parse_command_set
from ceasr.commands.cascade import CascadeCommandRecognizer
from ceasr.commands.recognize import CommandRecognizer, load_command_recognizer
from ceasr.commands.whisper import WhisperCommandRecognizer
from ceasr.config import CommandConfig, ExperimentConfig, ModelConfig
from ceasr.errors import ConfigError
from ceasr.modeldir import export_model
from ceasr.models.asr import build_model
from ceasr.text.tokenizer import CharTokenizer
from ceasr.whisper.convert import convert_whisper

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import ceasr_cli  # noqa: E402
from whisper_fixtures import tiny_model, tiny_tokenizer, write_hf  # noqa: E402

SET = "turn on the light\ngo forward (ten|two) meters\nstop\nplay\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(CTC model dir, converted Whisper model dir, command-set file), all tiny and random."""
    tmp = tmp_path_factory.mktemp("cascade")
    torch.manual_seed(0)
    commands = parse_command_set(SET)
    tok = CharTokenizer.train([c.text for c in commands.commands])
    cfg = ExperimentConfig(model=ModelConfig(d_model=32, n_heads=2, encoder_layers=1, ff_dim=64,
                                             subsampling_channels=8, decoder_layers=1, decoder_ff_dim=64))
    export_model(build_model(cfg.model, cfg.features.n_mels, tok.vocab_size), cfg, tok, tmp / "ctc")
    hf = tiny_tokenizer()
    write_hf(tiny_model(hf.get_vocab_size()), hf, tmp / "hf")
    whisper = convert_whisper(tmp / "hf", tmp / "whisper", language="en")
    (tmp / "set.txt").write_text(SET)
    return tmp / "ctc", whisper, tmp / "set.txt"


def _waves(n: int) -> list[np.ndarray]:
    """Noise bursts of 1 s whose level moves (so no stage rejects them as stationary noise)."""
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        envelope = np.repeat(rng.uniform(0.01, 0.5, 10), 1600)
        out.append((rng.standard_normal(16000) * envelope).astype(np.float32))
    return out


def test_the_first_stage_gates_and_the_second_decides(dirs):
    ctc, whisper, set_file = dirs
    commands = parse_command_set(SET)
    cfg = CommandConfig(threshold=0.3, no_speech_threshold=1.0)
    first = CommandRecognizer(load_model(ctc), commands, cfg)
    second = WhisperCommandRecognizer(load_model(whisper), commands, cfg)
    waves = _waves(6)
    screened = [first.recognize(w) for w in waves]
    gate = float(np.median([r.confidence for r in screened]))  # some clips pass, some do not
    passed = [r.confidence >= gate for r in screened]
    assert 0 < sum(passed) < len(waves)
    cascade = CascadeCommandRecognizer(first, second, gate)
    got = cascade.recognize_batch(waves)
    for wave, ok, s, g in zip(waves, passed, screened, got):
        if ok:
            want = second.recognize(wave)
            assert (g.command, g.accepted, g.free_text) == (want.command, want.accepted, want.free_text)
            assert g.confidence == pytest.approx(want.confidence, rel=1e-4)
        else:  # the first stage's result, rejected with confidence 0
            assert (g.command, g.free_text, g.accepted, g.confidence) == (s.command, s.free_text, False, 0.0)
    assert cascade.verified == sum(passed)
    # A threshold for the second stage; the gate stays; at threshold 0 a gated clip is accepted too (confidence 0).
    assert cascade.with_threshold(0.0).gate == gate and cascade.with_threshold(0.0).second.cfg.threshold == 0.0
    assert all(r.accepted for r in cascade.with_threshold(0.0).recognize_batch(waves))
    with pytest.raises(ConfigError, match="gate 1.5"):
        CascadeCommandRecognizer(first, second, 1.5)
    with pytest.raises(ConfigError, match="same command set"):
        CascadeCommandRecognizer(first, WhisperCommandRecognizer(load_model(whisper), parse_command_set("stop\n")), 0.1)


def test_command_cli_with_verify(dirs, tmp_path):
    ctc, whisper, set_file = dirs
    wave = _waves(3)[2]
    sf.write(tmp_path / "a.wav", wave, 16000)
    crec = load_command_recognizer(ctc, str(set_file), threshold=0.0, verify=whisper, gate=0.0)
    assert isinstance(crec, CascadeCommandRecognizer) and crec.gate == 0.0
    want = crec.recognize(wave)
    res = ceasr_cli("command", "--model", ctc, "--verify", whisper, "--gate", "0", "--commands", set_file,
                    "--threshold", "0", tmp_path / "a.wav", check=False)
    assert res.returncode == 0, res.stderr
    path, phrase, confidence = res.stdout.strip().split("\t")
    assert phrase == want.command.text and float(confidence) == pytest.approx(want.confidence, abs=1e-4)
    assert crec.verified == 1  # gate 0: every clip goes to the second stage
    listened = ceasr_cli("listen", "--model", ctc, "--verify", whisper, "--gate", "0", "--commands", set_file,
                         "--threshold", "0", "--input", tmp_path / "a.wav", check=False)
    assert listened.returncode == 0 and listened.stderr == "", listened.stderr
    assert listened.stdout and all(len(line.split("\t")) == 4 for line in listened.stdout.splitlines())
    bad = ceasr_cli("command", "--model", ctc, "--verify", whisper, "--gate", "2", tmp_path / "a.wav", check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "gate=2.0" in bad.stderr, bad.stderr
