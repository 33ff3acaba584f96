"""Command recognition with a converted Whisper model: phrase scoring over the prefix trie against a full
teacher-forced forward per phrase, the decision against an exhaustive scoring of a small set, the CLI."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from ceasr.commands import parse_command_set
from ceasr.commands.recognize import load_command_recognizer
from ceasr.commands.whisper import WhisperCommandRecognizer, descend, score_sequences, start, written_forms
from ceasr.config import CommandConfig
from ceasr.errors import ConfigError
from ceasr.text.normalize import normalize
from ceasr.whisper.config import WhisperDecodeConfig, WhisperModelDirConfig
from ceasr.whisper.decoding import _Masks
from ceasr.whisper.recognizer import WhisperRecognizer
from ceasr.whisper.tokenizer import WhisperTokenizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import ceasr_cli  # noqa: E402
from whisper_fixtures import tiny_model, tiny_tokenizer  # noqa: E402

SET = "turn on the light\ngo forward (ten|two) meters\nstop\nplay\n"


@pytest.fixture(scope="module")
def tiny():
    hf = tiny_tokenizer()
    model = tiny_model(hf.get_vocab_size())
    cfg = WhisperModelDirConfig(model=model.cfg, decode=WhisperDecodeConfig(language="en", max_new_tokens=8))
    return WhisperRecognizer(model, cfg, WhisperTokenizer(hf)), hf


def _wave(seed: int) -> np.ndarray:
    """One second of noise bursts: a level that moves, so the stationary-noise check lets it through."""
    rng = np.random.default_rng(seed)
    envelope = np.repeat(rng.uniform(0.01, 0.5, 10), 1600)
    return (rng.standard_normal(16000) * envelope).astype(np.float32)


def _brute(model, enc, prompt, seq, masks, eot, end: bool = True) -> float:
    """log P(seq + eot | prompt, audio) (without eot when ``end`` is false) from one full teacher-forced
    forward, no cache."""
    tokens = torch.tensor([prompt + list(seq)])
    logits, _ = model.decoder(tokens, enc)
    total = 0.0
    for k, target in enumerate(list(seq) + [eot] * end):
        mask = masks.begin if k == 0 else masks.always
        total += float(F.log_softmax(logits[0, len(prompt) - 1 + k] + mask, dim=-1)[target])
    return total


def test_written_forms():
    assert written_forms("stop") == [" Stop.", " stop"]
    assert written_forms("set a timer for five minutes") == [" Set a timer for five minutes.",
                                                             " Set a timer for 5 minutes.",
                                                             " set a timer for five minutes"]
    assert written_forms("go forward twenty meters") == [" Go forward twenty meters.", " Go forward 20 meters.",
                                                         " go forward twenty meters"]
    assert written_forms("twenty one") == [" Twenty one.", " 20 1.", " twenty one"]


FORMS = [" Turn on the light.", " Turn on.", " Turn", " Stop.", " go"]


def _scoring(tiny, forms: list[str]):
    """(model, tokenizer, masks, English prompt, the forms as token sequences) of the tiny recognizer."""
    rec, _ = tiny
    model, tok = rec.model, rec.tokenizer
    return model, tok, _Masks(tok, model.cfg.n_vocab, rec.device, True), tok.prompt("en"), \
        [tuple(tok.encode(f)) for f in forms]


@torch.inference_mode()
def test_trie_scores_equal_a_full_forward_per_sequence(tiny):
    model, tok, masks, prompt, seqs = _scoring(tiny, FORMS)
    seqs.append(seqs[0])  # a repeat scores the same
    enc = model.encode(torch.randn(1, 80, 3000))
    got = score_sequences(model, start(model, model.decoder.init_cache(enc), prompt), seqs, masks, tok.eot)
    for seq, (lp, n) in zip(seqs, got):
        assert n == len(seq) + 1
        assert lp == pytest.approx(_brute(model, enc, prompt, seq, masks, tok.eot), abs=1e-4)


@torch.inference_mode()
def test_descent_bounds_the_best_and_the_floor_only_drops_what_falls_below_it(tiny):
    model, tok, masks, prompt, seqs = _scoring(tiny, FORMS + [" play"])
    enc = model.encode(torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(5)))
    started = start(model, model.decoder.init_cache(enc), prompt)
    full = [_brute(model, enc, prompt, s, masks, tok.eot) for s in seqs]
    bound = descend(model, started, seqs, masks, tok.eot)
    assert any(bound == pytest.approx(f, abs=1e-4) for f in full) and bound <= max(full) + 1e-4
    for floor in (bound - 3.0, bound, max(full)):
        got = score_sequences(model, started, seqs, masks, tok.eot, floor)
        for s, f, (lp, n) in zip(seqs, full, got):
            # Kept: every prefix (the sequence without its end) at or above the floor; then exact.
            kept = _brute(model, enc, prompt, s, masks, tok.eot, end=False) >= floor - 1e-4
            assert (lp > -math.inf) == kept or abs(_brute(model, enc, prompt, s, masks, tok.eot, False) - floor) < 1e-3
            if lp > -math.inf:
                assert lp == pytest.approx(f, abs=1e-4) and n == len(s) + 1
        best = int(np.argmax(full))
        assert got[best][0] == pytest.approx(full[best], abs=1e-4)  # the best is never dropped below it
    assert sum(lp == -math.inf for lp, _ in score_sequences(model, started, seqs, masks, tok.eot, max(full))) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@torch.inference_mode()
def test_decision_equals_exhaustive_scoring(tiny, seed):
    rec, _ = tiny
    commands = parse_command_set(SET)
    crec = WhisperCommandRecognizer(rec, commands, CommandConfig(threshold=0.3, no_speech_threshold=1.0))
    wave = _wave(seed)
    got = crec.recognize(wave)
    # Reference: the greedy transcript by the recognizer's own transcribe, each phrase's written forms by a
    # full forward, the best phrase and its confidence by the rule in ceasr.commands.whisper.
    model, tok = rec.model, rec.tokenizer
    masks = _Masks(tok, model.cfg.n_vocab, rec.device, True)
    prompt = tok.prompt("en")
    from ceasr.whisper.audio import windows

    enc = model.encode(windows(torch.from_numpy(wave), 80)[0][None])
    transcript = rec.transcribe(wave)
    free_text, free_ids = transcript.text, [tok.tokenizer.token_to_id(p) for p in transcript.tokens]
    assert got.free_text == free_text
    best = None
    for c in commands.commands:
        forms = [tuple(tok.encode(f)) for f in written_forms(c.text)]
        if normalize(free_text) == c.text:
            forms.append(tuple(free_ids))
        lps = [_brute(model, enc, prompt, f, masks, tok.eot) for f in forms]
        total = float(torch.logsumexp(torch.tensor(lps), 0))
        if best is None or total > best[0]:
            i = int(np.argmax(lps))
            best = (total, c, lps[i] / (len(forms[i]) + 1))
    total, command, mean = best
    ended = len(free_ids) < rec.cfg.decode.max_new_tokens  # a transcript cut at the length limit has no end
    free_lp = _brute(model, enc, prompt, free_ids, masks, tok.eot, ended)
    confidence = math.exp(min(0.0, mean - free_lp / (len(free_ids) + ended)))
    assert 0.0 < confidence < 1.0  # the case is not trivial: some form of the best phrase is possible
    if normalize(free_text) == command.text:
        confidence = 1.0
    assert got.command == command
    assert got.score == pytest.approx(total, abs=1e-3)
    assert got.confidence == pytest.approx(confidence, rel=1e-3)
    assert got.accepted == (confidence >= 0.3)


@torch.inference_mode()
def test_a_transcript_that_is_a_phrase_is_accepted_with_confidence_one(tiny):
    rec, _ = tiny
    wave = _wave(0)
    said = normalize(rec.transcribe(wave).text)
    assert said.replace(" ", "").isalpha()  # the tiny model's output for this wave spells words
    crec = WhisperCommandRecognizer(rec, parse_command_set(said + "\n"))
    got = crec.recognize(wave)
    assert got.command.text == said and got.accepted and got.confidence == pytest.approx(1.0)


@torch.inference_mode()
def test_no_speech_probability_gates_the_decision(tiny):
    rec, _ = tiny
    wave = _wave(1)
    from ceasr.whisper.audio import windows

    enc = rec.model.encode(windows(torch.from_numpy(wave), 80)[0][None])
    logits, _ = rec.model.decoder(torch.tensor([[rec.tokenizer.sot]]), enc)
    p = float(F.softmax(logits[0, 0], dim=-1)[rec.tokenizer.no_speech])
    assert rec.tokenizer.no_speech == rec.tokenizer.tokenizer.token_to_id("<|nospeech|>") and 0 < p < 1
    ungated = WhisperCommandRecognizer(rec, parse_command_set(SET), CommandConfig(threshold=0.0,
                                                                                   no_speech_threshold=1.0))
    free = ungated.recognize(wave)
    above = WhisperCommandRecognizer(rec, parse_command_set(SET), CommandConfig(threshold=0.0,
                                                                                 no_speech_threshold=p * 1.01))
    assert above.recognize(wave) == free  # p is below the threshold: no change
    below = WhisperCommandRecognizer(rec, parse_command_set(SET), CommandConfig(threshold=1e-9,
                                                                                 no_speech_threshold=p * 0.99))
    got = below.recognize(wave)
    assert got.confidence == 0.0 and not got.accepted and got.command == free.command
    with pytest.raises(ConfigError, match="no_speech_threshold"):
        WhisperCommandRecognizer(rec, parse_command_set(SET), CommandConfig(no_speech_threshold=1.5))


def test_stationary_noise_is_rejected_before_the_model(tiny):
    rec, _ = tiny
    crec = WhisperCommandRecognizer(rec, parse_command_set(SET))
    hum = (0.1 * np.sin(2 * np.pi * 100 * np.arange(16000) / 16000)).astype(np.float32)
    got = crec.recognize_batch([hum, _wave(1)])
    assert not got[0].accepted and got[0].confidence == 0.0 and got[0].free_text == ""
    assert got[1].free_text == rec.transcribe(_wave(1)).text


def test_command_cli_with_a_converted_whisper_model(tiny, tmp_path):
    from ceasr.whisper.convert import convert_whisper
    from whisper_fixtures import write_hf

    rec, hf = tiny
    write_hf(rec.model, hf, tmp_path / "hf")
    out = convert_whisper(tmp_path / "hf", tmp_path / "model", language="en")
    sf.write(tmp_path / "a.wav", _wave(2), 16000)
    (tmp_path / "set.txt").write_text(SET)
    crec = load_command_recognizer(out, str(tmp_path / "set.txt"), threshold=0.0)
    assert isinstance(crec, WhisperCommandRecognizer)
    res = ceasr_cli("command", "--model", str(out), "--commands", str(tmp_path / "set.txt"), "--threshold", "0",
                    str(tmp_path / "a.wav"), str(tmp_path / "missing.wav"), check=False)
    assert res.returncode == 0, res.stderr
    path, phrase, confidence = res.stdout.strip().split("\t")
    expected = crec.recognize(str(tmp_path / "a.wav"))
    assert path.endswith("a.wav") and phrase == expected.command.text
    assert float(confidence) == pytest.approx(expected.confidence, abs=1e-4)
    assert "missing.wav" in res.stderr and res.stderr.count("\n") == 1
    listened = ceasr_cli("listen", "--model", str(out), "--commands", str(tmp_path / "set.txt"), "--threshold", "0",
                         "--input", str(tmp_path / "a.wav"), check=False)  # tracing is off for Whisper by default
    assert listened.returncode == 0 and listened.stderr == "", listened.stderr
    assert all(len(line.split("\t")) == 4 for line in listened.stdout.splitlines()) and listened.stdout
    bad = ceasr_cli("command", "--model", str(out), "--no-speech-threshold", "2", str(tmp_path / "a.wav"),
                    check=False)
    assert bad.returncode != 0 and "no_speech_threshold=2.0: must be between 0 and 1" in bad.stderr
    assert bad.stderr.count("\n") == 1
