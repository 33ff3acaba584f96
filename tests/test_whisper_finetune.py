"""``ceasr finetune`` on a tiny random Whisper: the loss goes down, the keep rule and layer decay hold."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ceasr.errors import ConfigError
from ceasr.data.manifest import Utterance
from ceasr.losses import cross_entropy
from ceasr.train.checkpoint import latest_checkpoint
from ceasr.whisper.config import WhisperFinetuneConfig
from ceasr.whisper.convert import convert_whisper
from ceasr.whisper.finetune import _batch, finetune, param_groups
from ceasr.whisper.selection import EpochReport, keep_rule
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
    losses = [e.train_loss for e in result.epochs[1:] if e.merge == 1.0]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert [(e.epoch, e.merge) for e in result.epochs[5:]] == [(4, r) for r in cfg.merge_ratios]
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert result.kept == keep_rule(result.epochs, cfg.max_forgetting)
    assert report["kept_epoch"] == result.kept_epoch and report["kept_merge"] == result.kept_report.merge
    assert [e["kept"] for e in report["epochs"]].count(True) == 1
    assert result.kept_report.dev_wer <= result.epochs[0].dev_wer
    assert "epoch" in result.table().splitlines()[0] and result.table().splitlines()[-1].startswith("kept epoch")


def test_keep_rule_on_hand_made_reports():
    r = [EpochReport(0, None, 50.0, 10.0), EpochReport(1, 1.0, 20.0, 10.5), EpochReport(2, 0.5, 10.0, 12.0),
         EpochReport(3, 0.4, 15.0, 11.0)]
    assert keep_rule(r, 1.0) == 3  # epoch 2 is best on dev but forgot 2 points
    assert keep_rule(r, 2.0) == 2
    assert keep_rule(r[:1] + [EpochReport(1, 1.0, 60.0, 20.0)], 1.0) == 0  # nothing better: keep the pretrained
    no_general = [dataclasses.replace(x, general_wer=None) for x in r]
    assert keep_rule(no_general, 1.0) == 2
    # Merges of epoch 3 with the pretrained weights: the half merge ties epoch 3's dev WER and wins the tie on
    # general WER; the quarter merge is better on dev and kept.
    merges = [EpochReport(3, None, 15.0, 10.0, merge=0.5), EpochReport(3, None, 14.0, 10.2, merge=0.25)]
    assert keep_rule(r + merges[:1], 1.0) == 4
    same = [EpochReport(3, None, 15.0, 10.0, merge=0.7), merges[0]]
    assert keep_rule(r + same, 1.0) == 5  # a full tie: the smaller ratio
    assert keep_rule(r + merges, 1.0) == 5
    assert keep_rule(r + [dataclasses.replace(merges[1], general_wer=11.5)], 1.0) == 3  # forgot too much
    assert [x.name for x in r[:1] + merges] == ["0", "3x0.5", "3x0.25"]


def test_merge_weights_interpolates_floats_only():
    from ceasr.modeldir import merge_weights

    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor([1])}
    b = {"w": torch.tensor([4.0, -2.0]), "n": torch.tensor([5])}
    out = merge_weights(a, b, 0.25)
    assert out["w"].tolist() == [1.0, 1.0] and out["n"].tolist() == [5]


def test_a_kept_merge_is_exported_as_the_interpolated_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import ceasr.whisper.finetune as ft

    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig(merge_ratios=(0.3,))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=2, warmup_steps=0),
                              batch_size=2, patience=10)
    monkeypatch.setattr(ft, "keep_rule", lambda reports, _: len(reports) - 1)  # the newest candidate
    result = ft.finetune(base, rows, rows, tmp_path / "ft", cfg, progress=False)
    assert (result.kept_epoch, result.kept_report.merge) == (2, 0.3)
    pretrained = load_file(str(base / "model.safetensors"))
    last = load_file(str(latest_checkpoint(tmp_path / "ft") / "model.safetensors"))
    exported = load_file(str(result.model_dir / "model.safetensors"))
    assert not torch.equal(last["decoder.ln.weight"], pretrained["decoder.ln.weight"])
    for name, w in exported.items():
        torch.testing.assert_close(w, 0.7 * pretrained[name] + 0.3 * last[name], msg=name)
    with pytest.raises(ConfigError, match="merge ratios"):
        ft.finetune(base, rows, rows, tmp_path / "bad", WhisperFinetuneConfig(merge_ratios=(1.0,)), progress=False)


def _keep_by_name(pick: str, names: list):
    """A keep rule for tests: the newest candidate during training, the one named ``pick`` at the end; the
    names it was last offered land in ``names``."""
    def rule(reports, _):
        names[:] = [r.name for r in reports]
        return names.index(pick) if pick in names else len(reports) - 1
    return rule


@pytest.mark.parametrize("pick", ["2-3", "2-3x0.3"])
def test_the_mean_of_the_last_epochs_is_a_candidate_and_what_merges_start_from(tmp_path, monkeypatch, pick):
    from safetensors.torch import load_file

    import ceasr.whisper.finetune as ft
    from ceasr.train.checkpoint import list_checkpoints

    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig(merge_ratios=(0.3,))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=3, warmup_steps=0,
                                                             average_last=2), batch_size=2, patience=10)
    names = []
    monkeypatch.setattr(ft, "keep_rule", _keep_by_name(pick, names))
    result = ft.finetune(base, rows, rows, tmp_path / "ft", cfg, progress=False)
    assert names == ["0", "1", "2", "3", "2-3", "2-3x0.3"]
    mean = result.epochs[4]
    assert (mean.epoch, mean.averaged, mean.merge, mean.train_loss) == (3, 2, 1.0, None)
    # The checkpoints of epochs 2 and 3 (steps 4 and 6: two batches an epoch) outlive keep_last=1.
    epoch2, epoch3 = (load_file(str(p / "model.safetensors")) for p in list_checkpoints(tmp_path / "ft")[-2:])
    pretrained = load_file(str(base / "model.safetensors"))
    exported = load_file(str(result.model_dir / "model.safetensors"))
    share = 1.0 if pick == "2-3" else 0.3
    assert not torch.equal(epoch2["decoder.ln.weight"], epoch3["decoder.ln.weight"])
    for name, w in exported.items():
        expected = (1 - share) * pretrained[name] + share * (epoch2[name] + epoch3[name]) / 2
        torch.testing.assert_close(w, expected, msg=name)
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert report["kept_name"] == pick
    with pytest.raises(ConfigError, match="average_last"):
        bad = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, average_last=0))
        ft.finetune(base, rows, rows, tmp_path / "bad", bad, progress=False)


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
    done = ceasr_cli("finetune", "--model", tmp_path / "nope", "--train", tmp_path / "m.jsonl", "--dev",
                     tmp_path / "m.jsonl", "--out", tmp_path / "out", "--merge-ratios", "0.5,1.5", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "[1.5]" in done.stderr, done.stderr


def _tiny_base(tmp_path):
    tok = tiny_tokenizer()
    pt = write_openai(tiny_model(tok.get_vocab_size(), seed=3), tok, tmp_path / "src" / "tiny.pt")
    return convert_whisper(pt, tmp_path / "base", language="en")


def test_factorized_cross_attention_equals_the_decoder_with_its_gradients(tmp_path):
    from ceasr.whisper.factorized import teacher_forced_logits

    model, _, tok = load_whisper_dir(_tiny_base(tmp_path))
    model.train()
    torch.manual_seed(1)
    audio = torch.randn(3, model.cfg.n_audio_ctx, model.cfg.n_audio_state)
    tokens, labels = _batch(tok, tok.prompt("en"), [tok.encode(" one two"), tok.encode(" go"), tok.encode(" stop")])
    ref = model.decoder(tokens, audio)[0]
    cross_entropy(ref, labels).backward()
    ref_grads = {n: p.grad.clone() for n, p in model.decoder.named_parameters()}
    model.zero_grad()
    ours = teacher_forced_logits(model.decoder, tokens, audio)
    cross_entropy(ours, labels).backward()
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    for name, p in model.decoder.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_encoder_cache_holds_the_encoder_output_and_follows_weights_and_audio(tmp_path):
    from ceasr.audio import load
    from ceasr.whisper.audio import windows
    from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest
    from ceasr.whisper.examples import prepare

    base = _tiny_base(tmp_path)
    model, _, tok = load_whisper_dir(base)
    rows = _rows(tmp_path)
    cache = EncoderCache(tmp_path / "cache", encoder_digest(model))
    cfg = WhisperFinetuneConfig()
    first = prepare(rows, model, tok, cfg, "t", False, cache)
    with torch.no_grad():
        ref = model.encode(windows(load(rows[1].audio), 80))[0]
    torch.testing.assert_close(cache.get(rows[1]).float(), ref, rtol=1e-2, atol=1e-2)  # stored in float16
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(rows)
    # A second pass reads the cache: a poisoned entry shows up in the prepared inputs.
    cache.put(rows[0], torch.full_like(first.inputs[0], 7.0))
    again = prepare(rows, model, tok, cfg, "t", False, cache)
    assert bool((again.inputs[0] == 7).all()) and torch.equal(again.inputs[1:], first.inputs[1:])
    # Rewritten audio misses; so does an encoder with other weights.
    sf.write(rows[0].audio, np.zeros(8000, dtype=np.float32), 16000)
    assert cache.get(rows[0]) is None and cache.get(rows[1]) is not None
    with torch.no_grad():
        model.encoder.ln_post.bias.add_(1.0)
    assert encoder_digest(model) != cache.digest


def test_lr_find_ramps_geometrically_restores_the_weights_and_sets_the_lr(tmp_path):
    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=1, warmup_steps=0),
                              batch_size=len(rows), lr_find_steps=12, lr_find_min=1e-5, lr_find_max=1e-1,
                              encoder_cache=str(tmp_path / "cache"))
    result = finetune(base, rows, rows, tmp_path / "ft", cfg, progress=False)
    lines = (tmp_path / "ft" / "lr_find.csv").read_text().splitlines()[1:]
    lrs = [float(x.split(",")[1]) for x in lines]
    losses = [float(x.split(",")[2]) for x in lines]
    assert lrs == pytest.approx([1e-5 * 1e4 ** (s / 11) for s in range(len(lrs))], rel=1e-5)
    # Step 1 sees the untouched model on every utterance (one batch of all of them).
    assert losses[0] == pytest.approx(_teacher_forced_loss(base, rows), rel=1e-4)
    report = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert result.lr == report["lr_find"]["suggested"] == report["config"]["train"]["lr"]
    assert 1e-5 <= result.lr <= 1e-1


def test_lr_find_steps_every_group_at_its_scale_and_puts_the_weights_back():
    from ceasr.whisper.lr_find import whisper_lr_find

    model = tiny_model(320, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head, rest = [model.decoder.ln.weight], [model.decoder.blocks[0].mlp[0].weight]
    optimizer = torch.optim.SGD([{"params": head, "lr": 1.0}, {"params": rest, "lr": 0.5}], lr=1.0)
    seen = []

    def step(idx):
        seen.append(([g["lr"] for g in optimizer.param_groups], list(idx)))
        optimizer.zero_grad()
        loss = sum((p - 3.0).pow(2).sum() for p in head + rest)
        loss.backward()
        optimizer.step()
        return loss.item()

    result = whisper_lr_find(model, step, n_train=5, batch_size=2, optimizer=optimizer, lo=1e-4, hi=1e-2,
                             steps=5, progress=False)
    expected = [(x, x / 2) for x in (1e-4, 10 ** -3.5, 1e-3, 10 ** -2.5, 1e-2)]
    assert [tuple(lrs) for lrs, _ in seen] == [pytest.approx(e) for e in expected]
    assert result.losses[-1] < result.losses[0]  # it did train
    assert all(len(idx) == 2 for _, idx in seen) and {i for _, idx in seen[:2] for i in idx} <= set(range(5))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_finetune_cli_rejects_a_bad_lr_in_one_line(tmp_path):
    import subprocess

    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "one"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "ceasr.cli", "finetune", "--model", str(tmp_path),
                           "--train", str(tmp_path / "m.jsonl"), "--dev", str(tmp_path / "m.jsonl"),
                           "--out", str(tmp_path / "out"), "--lr", "fast"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--lr" in done.stderr, done.stderr


def test_encoder_lower_then_finish_is_the_encoder():
    model = tiny_model(320, seed=4).eval()
    mel = torch.randn(2, 80, 2 * model.cfg.n_audio_ctx, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model.encode(mel)
        for split in range(len(model.encoder.blocks) + 1):
            torch.testing.assert_close(model.encoder.finish(model.encoder.lower(mel, split), split), full)


def test_training_the_top_encoder_block_on_cached_states_below_it(tmp_path):
    """Block 1 of 2 and the final LayerNorm train with the decoder; the stem and block 0 stay bitwise; the cache
    holds block 0's output, under a digest that ignores the trained part."""
    from safetensors.torch import load_file

    from ceasr.audio import load
    from ceasr.whisper.audio import windows
    from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest

    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig(train_encoder_layers=1, merge_ratios=(), encoder_cache=str(tmp_path / "cache"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=2, warmup_steps=0),
                              batch_size=2, patience=10)
    finetune(base, rows, rows, tmp_path / "ft", cfg, progress=False)
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(latest_checkpoint(tmp_path / "ft") / "model.safetensors"))
    changed = {k for k in before if k.startswith("encoder.") and not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("encoder.blocks.1.", "encoder.ln_post.")) for k in changed), changed
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))

    model, _, _ = load_whisper_dir(base)
    cache = EncoderCache(tmp_path / "cache", encoder_digest(model, 1))
    with torch.no_grad():
        want = model.encoder.lower(windows(load(rows[2].audio), 80), 1)[0]
        model.encoder.blocks[1].mlp[0].weight.add_(1.0)  # the trained block is not part of the digest
    torch.testing.assert_close(cache.get(rows[2]).float(), want, rtol=1e-2, atol=1e-2)  # float16
    assert encoder_digest(model, 1) == cache.digest != encoder_digest(model)
    with pytest.raises(ConfigError, match="train_encoder_layers=3"):
        finetune(base, rows, rows, tmp_path / "bad", WhisperFinetuneConfig(train_encoder_layers=3), progress=False)
    with pytest.raises(ConfigError, match="frozen encoder"):
        finetune(base, rows, rows, tmp_path / "bad",
                 WhisperFinetuneConfig(train_encoder_layers=1, freeze_encoder=False), progress=False)


def test_merge_cli_writes_the_interpolated_model_and_rejects_what_it_cannot_merge(tmp_path):
    from safetensors.torch import load_file, save_file

    tok = tiny_tokenizer()
    base = _tiny_base(tmp_path)
    tuned = convert_whisper(write_openai(tiny_model(tok.get_vocab_size(), seed=4), tok, tmp_path / "t" / "tiny.pt"),
                            tmp_path / "tuned", language="en")
    out = tmp_path / "merged"
    ceasr_cli("merge", "--base", base, "--tuned", tuned, "--ratio", "0.25", "--out", out)
    a, b, m = (load_file(str(d / "model.safetensors")) for d in (base, tuned, out))
    assert m.keys() == b.keys()
    for name in m:  # 0.75 * base + 0.25 * tuned, computed in float64 by numpy
        want = 0.75 * a[name].double().numpy() + 0.25 * b[name].double().numpy()
        np.testing.assert_allclose(m[name].double().numpy(), want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert (out / "config.json").read_text() == (tuned / "config.json").read_text()
    model, _, _ = load_whisper_dir(out)  # a model directory like any other
    assert torch.equal(model.state_dict()["decoder.ln.weight"], m["decoder.ln.weight"])

    for ratio, want in (("0", a), ("1", b)):
        ceasr_cli("merge", "--base", base, "--tuned", tuned, "--ratio", ratio, "--out", out)
        assert all(torch.equal(load_file(str(out / "model.safetensors"))[k], want[k]) for k in want)

    bad = ceasr_cli("merge", "--base", base, "--tuned", tuned, "--ratio", "1.5", "--out", out, check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "1.5" in bad.stderr, bad.stderr
    bad = ceasr_cli("merge", "--base", tmp_path / "nope", "--tuned", tuned, "--ratio", "0.5", "--out", out, check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr, bad.stderr
    b["decoder.ln.weight"] = torch.ones(3)  # another shape: not fine-tuned from this base
    save_file(b, str(tuned / "model.safetensors"))
    bad = ceasr_cli("merge", "--base", base, "--tuned", tuned, "--ratio", "0.5", "--out", out, check=False)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "decoder.ln.weight" in bad.stderr, bad.stderr


def test_finetuning_on_short_windows_trains_there_and_saves_the_window(tmp_path, capsys):
    """``audio_ctx`` 50 (1 s windows): the encoder sees (M, 100) windows, a longer utterance is skipped with
    one line, the encoder cache keys on the window, and the model directory decodes with the same window."""
    from ceasr.audio import load
    from ceasr.whisper.audio import windows
    from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest

    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(24000, dtype=np.float32), 16000)
    cfg = WhisperFinetuneConfig(audio_ctx=50, encoder_cache=str(tmp_path / "cache"), merge_ratios=())
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=3, warmup_steps=0),
                              batch_size=1, patience=10)
    train = rows + [Utterance(str(long), "one", id="long", lang="en")]
    result = finetune(base, train, rows, tmp_path / "ft", cfg, progress=False)
    assert result.skipped == 1 and "long.wav: longer than the 1 s window" in capsys.readouterr().err
    model, dir_cfg, _ = load_whisper_dir(result.model_dir)
    assert dir_cfg.decode.audio_ctx == 50
    digest = encoder_digest(model, None, 100)
    assert digest != encoder_digest(model)
    assert encoder_digest(model, None, 3000) == encoder_digest(model)  # 30 s entries keep their names
    with torch.no_grad():
        want = model.encode(windows(load(rows[2].audio), 80, frames=100))[0]
    got = EncoderCache(tmp_path / "cache", digest).get(rows[2])
    assert got.shape == (50, 16)
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)  # float16 on disk
    losses = [e.train_loss for e in result.epochs[1:]]
    assert losses[-1] < losses[0]


def test_speed_versions_are_the_audio_played_faster_and_slower_and_are_cached(tmp_path):
    """A sine played twice as fast is the sine at twice the frequency for half as long (a closed form, not
    the resampler): the 2x version of ``one`` (300 Hz, 1 s) is the log-mel of a 600 Hz, 0.5 s sine. The 0.5x
    version (2 s) does not fit the 1.5 s window, so that version is the recorded one. Versions are cached
    under their own names, the recorded entries under the names they always had."""
    from ceasr.whisper.audio import windows
    from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest
    from ceasr.whisper.examples import prepare

    base = _tiny_base(tmp_path)
    model, _, tok = load_whisper_dir(base)
    rows = _rows(tmp_path)
    mels = prepare(rows, model, tok, WhisperFinetuneConfig(freeze_encoder=False), "t", False, frames=150,
                   speeds=(2.0, 0.5))
    assert mels.versions.shape == (4, 2, 80, 150)
    t = np.arange(8000) / 16000
    want = windows((0.3 * np.sin(2 * np.pi * 600 * t)).astype(np.float32), 80, frames=150)[0]
    torch.testing.assert_close(mels.versions[0, 0, :, 2:48].float(), want[:, 2:48], rtol=0, atol=0.02)
    assert not torch.allclose(mels.versions[0, 0].float(), mels.inputs[0].float(), atol=0.1)
    assert torch.equal(mels.versions[:, 1], mels.inputs)  # slowed past the window
    assert torch.equal(mels.pick([2, 0, 1], [0, 1, 2]), torch.stack(
        [mels.inputs[2], mels.versions[0, 0], mels.versions[1, 1]]).float())

    cache = EncoderCache(tmp_path / "cache", encoder_digest(model))
    frozen = prepare(rows, model, tok, WhisperFinetuneConfig(), "t", False, cache, speeds=(2.0,))
    with torch.no_grad():
        want_enc = model.encode(windows((0.3 * np.sin(2 * np.pi * 600 * t)).astype(np.float32), 80))[0]
    torch.testing.assert_close(frozen.versions[0, 0].float(), want_enc, rtol=0.05, atol=0.05)
    torch.testing.assert_close(cache.get(rows[0], "speed=2").float(), frozen.versions[0, 0].float())
    torch.testing.assert_close(cache.get(rows[0]).float(), frozen.inputs[0].float())
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2 * len(rows)
    cache.put(rows[3], torch.full_like(frozen.inputs[0], 7.0), "speed=2")  # a second pass reads the cache
    again = prepare(rows, model, tok, WhisperFinetuneConfig(), "t", False, cache, speeds=(2.0,))
    assert bool((again.versions[3, 0] == 7).all()) and torch.equal(again.inputs, frozen.inputs)


def test_each_epoch_trains_on_one_version_of_every_utterance_drawn_at_random(tmp_path, monkeypatch):
    """With speeds, every step's utterances come each in a version 0..V; the batch order is the same draw as
    without speeds (the versions are drawn after it), so runs without speeds are unchanged."""
    import ceasr.whisper.finetune as ft

    seen = []
    real_step = ft._step

    def spy(model, ex, idx, prompt, tok, cfg, optimizer, version=None):
        seen.append((len(ex.targets), list(idx), version))
        return real_step(model, ex, idx, prompt, tok, cfg, optimizer, version)

    monkeypatch.setattr(ft, "_step", spy)
    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path) * 3  # 12 utterances
    cfg = WhisperFinetuneConfig(merge_ratios=(), speeds=(0.9, 1.1), batch_size=4, patience=10)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-3, max_epochs=2, warmup_steps=0))
    finetune(base, rows, rows[:2], tmp_path / "ft", cfg, progress=False)
    versions = [v for _, _, vs in seen for v in vs]
    assert len(seen) == 6 and len(versions) == 24 and set(versions) == {0, 1, 2}
    gen = torch.Generator().manual_seed(cfg.train.seed)
    first = torch.randperm(12, generator=gen).tolist()
    assert [i for _, idx, _ in seen[:3] for i in idx] == first
    drawn = torch.randint(0, 3, (12,), generator=gen).tolist()
    assert [v for _, _, vs in seen[:3] for v in vs] == [drawn[i] for i in first]

    seen.clear()
    finetune(base, rows, rows[:2], tmp_path / "ft0", dataclasses.replace(cfg, speeds=()), progress=False)
    assert [i for _, idx, _ in seen[:3] for i in idx] == first and all(v is None for *_, v in seen)
    with pytest.raises(ConfigError, match=r"speeds \[1.0\]"):
        finetune(base, rows, rows, tmp_path / "bad", WhisperFinetuneConfig(speeds=(1.0,)), progress=False)
    done = ceasr_cli("finetune", "--model", base, "--train", tmp_path / "m.jsonl", "--dev", tmp_path / "m.jsonl",
                     "--out", tmp_path / "out", "--speeds", "0.9,fast", check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--speeds" in done.stderr, done.stderr


@pytest.mark.parametrize("pick", ["soup2", "soup2x0.3"])
def test_a_soup_of_runs_is_the_candidate_and_what_merges_start_from(tmp_path, monkeypatch, pick):
    """``runs=2``: run 1 is the single run (same seed, bitwise), run 2 another batch order; the soup is the
    mean of their last epochs, the merge is of the soup; the runs' epochs are reported but only the
    pretrained model, the soup and its merges are candidates."""
    from safetensors.torch import load_file

    import ceasr.whisper.finetune as ft
    from ceasr.train.checkpoint import list_checkpoints

    base = _tiny_base(tmp_path)
    rows = _rows(tmp_path)
    cfg = WhisperFinetuneConfig(merge_ratios=(0.3,), runs=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e-2, max_epochs=2, warmup_steps=0),
                              batch_size=2, patience=10)
    names = []
    monkeypatch.setattr(ft, "keep_rule", _keep_by_name(pick, names))
    result = ft.finetune(base, rows, rows, tmp_path / "ft", cfg, progress=False)
    assert names == ["0", "soup2", "soup2x0.3"]  # what the keep rule chose from at the end
    assert [e.name for e in result.epochs] == ["0", "r1:1", "r1:2", "r2:1", "r2:2", "soup2", "soup2x0.3"]
    assert result.kept_report.name == pick
    soup = result.epochs[5]
    assert (soup.soup, soup.run, soup.epoch, soup.train_loss) == (2, 0, 2, None)
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text())["kept_name"] == pick

    def weights(run_dir, i):
        return load_file(str(list_checkpoints(run_dir)[i] / "model.safetensors"))

    single = ft.finetune(base, rows, rows, tmp_path / "one", dataclasses.replace(cfg, runs=1), progress=False)
    assert single.epochs[-2].name == "2"
    one, run1 = weights(tmp_path / "one", -1), weights(tmp_path / "ft" / "run1", -1)
    run2 = weights(tmp_path / "ft" / "run2", -1)
    assert all(torch.equal(one[k], run1[k]) for k in one)
    assert not torch.equal(run1["decoder.ln.weight"], run2["decoder.ln.weight"])
    pretrained = load_file(str(base / "model.safetensors"))
    exported = load_file(str(result.model_dir / "model.safetensors"))
    share = 1.0 if pick == "soup2" else 0.3
    for name, w in exported.items():
        expected = (1 - share) * pretrained[name] + share * (run1[name] + run2[name]) / 2
        torch.testing.assert_close(w, expected, msg=name)
    with pytest.raises(ConfigError, match="runs=0"):
        ft.finetune(base, rows, rows, tmp_path / "bad", WhisperFinetuneConfig(runs=0), progress=False)
