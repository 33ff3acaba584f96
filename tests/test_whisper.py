"""Whisper in ceasr without any checkpoint: a tiny random model written in three formats by the test itself."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch

from ceasr.errors import CeasrError
from ceasr.whisper import audio as wa
from ceasr.whisper.config import WhisperDecodeConfig
from ceasr.whisper.convert import convert_whisper, load_checkpoint
from ceasr.whisper.ct2 import read_ct2, write_ct2
from ceasr.whisper.decoding import beam_search, compression_ratio, decode_windows, detect_language, greedy
from ceasr.whisper.tokenizer import WhisperTokenizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from conftest import ceasr_cli
from whisper_fixtures import tiny_model, tiny_tokenizer, write_ct2_folder, write_hf, write_openai  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, hf tokenizer, folder with the three formats written from it)."""
    root = tmp_path_factory.mktemp("whisper")
    tok = tiny_tokenizer()
    model = tiny_model(tok.get_vocab_size())
    write_openai(model, tok, root / "openai" / "tiny.pt")
    write_hf(model, tok, root / "hf")
    write_ct2_folder(model, tok, root / "ct2")
    return model, tok, root


def _reference_filters(n_mels: int) -> np.ndarray:
    """Slaney mel filters bin by bin, from the formulas (an independent re-derivation of mel_filters)."""
    def mel(f):
        return 3 * f / 200 if f < 1000 else 15 + 27 * np.log(f / 1000) / np.log(6.4)

    def hz(m):
        return 200 * m / 3 if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    edges = [hz(m) for m in np.linspace(0, mel(8000.0), n_mels + 2)]
    out = np.zeros((n_mels, 201))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        for k in range(201):
            f = k * 8000 / 200
            tri = (f - lo) / (mid - lo) if f <= mid else (hi - f) / (hi - mid)
            out[i, k] = max(tri, 0.0) * 2 / (hi - lo)
    return out


def _reference_log_mel(x: np.ndarray, n_mels: int) -> np.ndarray:
    """Frame by frame with numpy's FFT: reflect pad 200, periodic Hann, power, mel, log10, floor, scale."""
    padded = np.pad(x.astype(np.float64), 200, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    frames = [padded[s : s + 400] * window for s in range(0, len(padded) - 400 + 1, 160)][:-1]
    power = np.abs(np.fft.rfft(np.stack(frames), axis=1)) ** 2  # (frames, 201)
    spec = np.log10(np.maximum(_reference_filters(n_mels) @ power.T, 1e-10))
    return (np.maximum(spec, spec.max() - 8) + 4) / 4


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_a_numpy_rederivation(n_mels):
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32)
    ours = wa.log_mel(x, n_mels).numpy()
    ref = _reference_log_mel(x, n_mels)
    assert ours.shape == ref.shape == (n_mels, 100)
    np.testing.assert_allclose(wa.mel_filters(n_mels).numpy(), _reference_filters(n_mels), atol=1e-6)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_windows_cover_long_audio_and_pad_as_each_convention():
    x = np.random.default_rng(1).standard_normal(16000 * 65).astype(np.float32) * 0.1
    zeros, silence = wa.windows(x, 80, "zeros"), wa.windows(x, 80, "silence")
    assert zeros.shape == silence.shape == (3, 80, 3000)
    # The last window holds 5 s = 500 frames of audio; "zeros" fills the rest with 0, "silence" with the floor.
    assert torch.all(zeros[2, :, 500:] == 0)
    full = wa.log_mel(x, 80, pad_seconds=30)
    assert torch.equal(silence[2], full[:, 6000:9000])
    assert torch.allclose(silence[2, :, 502:], full.min().expand(80, 2498))  # frames past the audio


def test_short_windows_cut_audio_and_encode_like_a_model_built_that_short(tiny):
    model, _, _ = tiny
    assert wa.window_frames(0) == 3000 and wa.window_frames(250) == 500
    for bad in (-1, 1501):
        with pytest.raises(CeasrError, match=f"audio_ctx={bad}"):
            wa.window_frames(bad)
    x = np.random.default_rng(3).standard_normal(int(16000 * 5.5)).astype(np.float32) * 0.1
    short = wa.windows(x, 80, "zeros", frames=500)  # 5 s windows: 500 + 50 frames of audio
    assert short.shape == (2, 80, 500) and torch.all(short[1, :, 50:] == 0)
    torch.testing.assert_close(short[0], wa.log_mel(x, 80)[:, :500])
    # The encoder over a 250-frame window is the same network built for 250 positions (its own sinusoids).
    small = type(model)(dataclasses.replace(model.cfg, n_audio_ctx=250)).eval()
    weights = {k: v for k, v in model.state_dict().items() if k != "encoder.positional_embedding"}
    assert small.load_state_dict(weights, strict=False).missing_keys == ["encoder.positional_embedding"]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(short), small.encode(short), atol=1e-5, rtol=1e-5)
        for frames in (499, 3002):  # odd, longer than the model's window
            with pytest.raises(ValueError, match="even number of mel frames up to 3000"):
                model.encode(torch.zeros(1, 80, frames))


def test_a_recognizer_with_audio_ctx_decodes_its_short_windows(tiny, tmp_path):
    import ceasr

    _, _, root = tiny
    out = convert_whisper(root / "hf", tmp_path / "m", language="en")
    wave = (np.random.default_rng(4).standard_normal(int(16000 * 2.5)) * 0.1).astype(np.float32)
    rec = ceasr.load_model(out, decode=["decode.max_new_tokens=5", "decode.audio_ctx=50"])  # 1 s windows
    tok, cfg = rec.tokenizer, rec.cfg.decode
    with torch.no_grad():
        enc = rec.model.encode(wa.windows(wave, 80, "zeros", frames=100))
    assert enc.shape[:2] == (3, 50)
    want = [greedy(rec.model, enc[i : i + 1], torch.tensor([tok.prompt("en")]), tok, cfg)[0][0] for i in range(3)]
    assert rec.transcribe(wave).text == " ".join(tok.decode(t).strip() for t in want).strip() and any(want)
    with pytest.raises(CeasrError, match="audio_ctx=2000"):
        ceasr.load_model(out, decode=["decode.audio_ctx=2000"])


def test_tokenizer_round_trips_and_control_tokens(tiny):
    _, hf, _ = tiny
    tok = WhisperTokenizer(hf)
    for text in [" go forward ten meters", " Ça va? 日本語 🙂", " \t tabs and  spaces ", ""]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.eot == hf.token_to_id("<|endoftext|>") and tok.sot == tok.eot + 1
    assert list(tok.languages) == ["en", "de", "fr"]
    assert tok.prompt("de") == [tok.sot, tok.sot + 2, tok.transcribe_id, tok.no_timestamps]
    assert tok.decode(tok.prompt("en") + tok.encode(" hi") + [tok.eot]) == " hi"
    assert all(i < tok.eot for i in tok.suppress_ids) and tok.encode('"')[0] in tok.suppress_ids
    with pytest.raises(CeasrError, match="language 'xx'"):
        tok.prompt("xx")


@pytest.mark.parametrize("fmt", ["openai/tiny.pt", "hf", "ct2"])
def test_each_format_loads_the_same_weights_and_outputs(tiny, fmt):
    model, _, root = tiny
    loaded, tok = load_checkpoint(root / fmt)
    assert loaded.cfg == model.cfg
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    mel = torch.randn(1, 80, 3000)
    tokens = torch.tensor([tok.prompt("en") + tok.encode(" one two")])
    assert torch.equal(model(mel, tokens), loaded(mel, tokens))


def test_kv_cache_steps_equal_the_full_sequence(tiny):
    model, hf, _ = tiny
    enc = model.encode(torch.randn(2, 80, 3000))
    tokens = torch.randint(0, 300, (2, 7))
    full, _ = model.decoder(tokens, enc)
    logits, cache = model.decoder(tokens[:, :3], enc)
    steps = [logits]
    for i in range(3, 7):
        step, cache = model.decoder(tokens[:, i : i + 1], cache=cache)
        steps.append(step)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # Reordering the cache follows the beams: row 1's cache continues row 1's sequence.
    swapped = cache.select(torch.tensor([1, 1]))
    nxt = torch.tensor([[5], [5]])
    a, _ = model.decoder(nxt, cache=swapped)
    b, _ = model.decoder(torch.cat([tokens[1:2], nxt[:1]], 1), enc[1:2])
    torch.testing.assert_close(a[0, -1], b[0, -1], atol=1e-5, rtol=1e-5)


def test_beams_share_one_utterances_cross_attention(tiny):
    """A batch-1 cache repeated into 3 beams keeps one copy of the audio's keys/values, and each beam's next
    logits equal decoding its whole sequence on its own."""
    model, _, _ = tiny
    enc = model.encode(torch.randn(1, 80, 3000))
    prefix = torch.randint(0, 300, (1, 4))
    _, cache = model.decoder(prefix, enc)
    beams = cache.select(torch.tensor([0, 0, 0]))
    assert beams.cross_kv[0][0].size(0) == 1 and beams.self_kv[0][0].size(0) == 3
    nxt = torch.tensor([[5], [6], [7]])
    stepped, _ = model.decoder(nxt, cache=beams)
    for i in range(3):
        alone, _ = model.decoder(torch.cat([prefix, nxt[i : i + 1]], 1), enc)
        torch.testing.assert_close(stepped[i, -1], alone[0, -1], atol=1e-5, rtol=1e-5)


def test_greedy_batched_equals_single_and_beam_one_equals_greedy(tiny):
    model, hf, _ = tiny
    tok = WhisperTokenizer(hf)
    cfg = WhisperDecodeConfig(max_new_tokens=8)
    enc = model.encode(torch.randn(2, 80, 3000))
    prompt = tok.prompt("en")
    batched = greedy(model, enc, torch.tensor([prompt] * 2), tok, cfg)
    assert any(len(t) > 0 for t, _, _ in batched)  # the random model does emit text
    for i in range(2):
        single = greedy(model, enc[i : i + 1], torch.tensor([prompt]), tok, cfg)[0]
        assert single[0] == batched[i][0]
        assert single[2] == pytest.approx(batched[i][2], abs=1e-4)
        assert beam_search(model, enc[i : i + 1], prompt, tok, dataclasses.replace(cfg, beam_size=1))[0] == single[0]
        # A wider beam never ranks its answer below the greedy one by its own criterion.
        wide = beam_search(model, enc[i : i + 1], prompt, tok, dataclasses.replace(cfg, beam_size=3))
        assert wide[2] / max(len(wide[0]), 1) >= single[2] / max(len(single[0]), 1) - 1e-4 or len(single[0]) == 8
    for toks, scores, _ in batched:
        assert all(t < tok.eot and t not in tok.suppress_ids for t in toks) and len(scores) == len(toks)


def test_language_detection_and_temperature_fallback(tiny):
    model, hf, _ = tiny
    tok = WhisperTokenizer(hf)
    mels = torch.randn(2, 80, 3000)
    enc = model.encode(mels)
    logits, _ = model.decoder(torch.full((2, 1), tok.sot), enc)
    ids = list(tok.languages.values())
    expected = [list(tok.languages)[int(i)] for i in logits[:, 0, ids].argmax(-1)]
    assert detect_language(model, enc, tok) == expected
    plain = decode_windows(model, mels, tok, WhisperDecodeConfig(max_new_tokens=8))
    assert [r.language for r in plain] == expected and all(r.temperature == 0.0 for r in plain)
    # A threshold nothing can meet makes every window try every temperature; the last one is kept.
    strict = WhisperDecodeConfig(max_new_tokens=8, temperature_fallback=True, logprob_threshold=1.0)
    assert all(r.temperature == pytest.approx(1.0) for r in decode_windows(model, mels, tok, strict))
    assert compression_ratio("ab" * 100) > 2.4 > compression_ratio("the quick brown fox")


def test_ct2_reader_handles_dtypes_aliases_and_int8_scales(tmp_path):
    w = torch.randn(4, 3)
    scale = 127 / w.abs().amax(1)
    q = torch.round(w * scale[:, None]).to(torch.int8)
    variables = {"a/weight": w.half(), "b/weight": w.to(torch.bfloat16), "c/weight": q, "c/weight_scale": scale,
                 "heads": 6, "d": w}
    write_ct2(tmp_path / "model.bin", "WhisperSpec", 3, variables, {"e": "d"})
    spec, got = read_ct2(tmp_path / "model.bin")
    assert spec == "WhisperSpec" and "c/weight_scale" not in got
    assert torch.equal(got["a/weight"], w.half()) and torch.equal(got["b/weight"], w.to(torch.bfloat16))
    torch.testing.assert_close(got["c/weight"], q.float() / scale[:, None])
    assert (got["c/weight"] - w).abs().max() <= w.abs().max() / 127
    assert int(got["heads"]) == 6 and torch.equal(got["e"], w)
    (tmp_path / "cut.bin").write_bytes((tmp_path / "model.bin").read_bytes()[:50])
    with pytest.raises(CeasrError, match="truncated"):
        read_ct2(tmp_path / "cut.bin")


def test_ct2_config_suppress_ids_are_used(tiny, tmp_path):
    model, hf, _ = tiny
    write_ct2_folder(model, hf, tmp_path / "ct2", suppress=([5, 6], [7]))
    _, tok = load_checkpoint(tmp_path / "ct2")
    assert tok.suppress_ids == (5, 6) and tok.suppress_ids_begin == (7,)


def _cli(*args, cwd=None):
    return ceasr_cli(*args, check=False, cwd=cwd)


def test_converted_directories_transcribe_alike_and_work_with_the_cli(tiny, tmp_path):
    import soundfile as sf

    import ceasr
    from ceasr.models.quantize import is_int8

    _, _, root = tiny
    wave = (np.random.default_rng(2).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    sf.write(tmp_path / "a.wav", wave, 16000)
    texts = []
    for fmt in ["openai/tiny.pt", "hf"]:
        out = convert_whisper(root / fmt, tmp_path / fmt.split("/")[0], language="en")
        texts.append(ceasr.load_model(out, decode=["decode.max_new_tokens=6"]).transcribe(wave).text)
    int8 = ceasr.load_model(out, decode=["decode.max_new_tokens=6"], int8=True)
    assert is_int8(int8.model) and int8.transcribe(wave).text  # the decoding path runs on quantized layers
    out = tmp_path / "ct2"
    done = _cli("convert", "whisper", str(root / "ct2"), str(out), "--language", "en")
    assert done.returncode == 0, done.stderr
    res = _cli("transcribe", "--model", str(out), "--decode", "max_new_tokens=6", str(tmp_path / "a.wav"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{tmp_path / 'a.wav'}\t{texts[0]}\n" and texts[0] == texts[1] and texts[0]
    jit = _cli("transcribe", "--model", str(out), "--jit", str(tmp_path / "a.wav"))  # for ceasr's own models only
    assert jit.returncode == 2 and jit.stderr.strip().endswith("--jit is for ceasr's own models; a Whisper model "
                                                              "runs as it is") and "Traceback" not in jit.stderr
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "one two", "lang": "en"}) + "\n")
    ev = _cli("evaluate", "--model", str(out), "--manifest", str(tmp_path / "m.jsonl"), "--method", "beam",
              "--beam-size", "2", "--decode", "max_new_tokens=6")
    assert ev.returncode == 0 and ev.stdout.strip().splitlines()[-1].startswith("WER="), ev.stderr
    bad = _cli("convert", "whisper", str(tmp_path / "missing"), str(tmp_path / "x"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing" in bad.stderr


def test_openai_checkpoint_without_tokenizer_is_one_clear_error(tiny, tmp_path):
    model, hf, _ = tiny
    pt = write_openai(model, hf, tmp_path / "alone" / "m.pt")
    pt.with_name("tokenizer.json").unlink()
    with pytest.raises(CeasrError, match="--tokenizer"):
        convert_whisper(pt, tmp_path / "out")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CeasrError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
