"""The training loop end to end on a tiny model: exact resume, export, non-finite losses, DDP equivalence."""

from __future__ import annotations

import dataclasses
import json
import socket
import types

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import ddp_worker, make_corpus, tiny_config
from safetensors.torch import load_file

from ceasr.audio import load as load_audio
from ceasr.config import FeatAugmentConfig
from ceasr.errors import CeasrError
from ceasr.features import Fbank
from ceasr.modeldir import load_model_dir
from ceasr.train import loop
from ceasr.train.loop import train

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread():
    # Tests run two at a time on two cores; more threads per process only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_same_weights(got_dir, want_dir) -> None:
    """The checkpoints at ``got_dir`` and ``want_dir`` hold the same tensors, within float rounding."""
    want, got = weights(want_dir), weights(got_dir)
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


def resume_config(max_steps: int):
    """Dropout, feature augmentation and SpecAugment on, accumulation over 2 batches: all randomness must come
    back on resume."""
    cfg = tiny_config(max_steps=max_steps, accum_steps=2, spec_augment=True, average_last=2, best_by="wer")
    feat_augment = FeatAugmentConfig(enabled=True, warp_prob=0.5, reverb_prob=0.5, noise_prob=0.5, gain_prob=0.5,
                                     tempo_prob=0.5)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dropout=0.1), feat_augment=feat_augment)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """8 steps in one go (3 steps an epoch: epoch ends at steps 3 and 6)."""
    root = tmp_path_factory.mktemp("straight")
    rows = make_corpus(root / "wav", 12)
    torch.set_num_threads(1)
    result = train(resume_config(8), rows, rows[:4], root / "exp", progress=False)
    return root, rows, result


def test_resume_gives_the_same_weights(straight, tmp_path):
    root, rows, result = straight
    assert result.steps == 8 and result.epochs == 2 and result.bad_steps == 0
    first = train(resume_config(4), rows, rows[:4], tmp_path / "exp", progress=False)
    assert first.steps == 4  # stopped in the middle of the second epoch
    state = torch.load(tmp_path / "exp/checkpoints/step-00000004/state.pt", weights_only=True)
    assert state["sampler"]["epoch"] == 1 and state["sampler"]["position"] > 0
    second = train(resume_config(8), rows, rows[:4], tmp_path / "exp", resume=True, progress=False)
    assert second.steps == 8 and second.epochs == 2
    assert_same_weights(tmp_path / "exp/checkpoints/step-00000008", root / "exp/checkpoints/step-00000008")
    assert second.best_dev_wer == result.best_dev_wer


def test_time_budget_stops_like_a_resumable_interruption(straight, tmp_path, monkeypatch, capsys):
    """A clock that advances a minute per step: ``max_minutes=3.5`` stops after step 4 (the schedule still
    planned for 8), and resuming without a budget ends with the weights of training straight through."""
    root, rows, _ = straight
    minutes = [0]
    step = loop.train_step

    def timed_step(*args):
        minutes[0] += 1
        return step(*args)

    monkeypatch.setattr(loop, "train_step", timed_step)
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: 60.0 * minutes[0]))
    cfg = resume_config(8)
    budget = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=3.5))
    first = train(budget, rows, rows[:4], tmp_path / "exp", progress=False)
    assert first.steps == 4 and (tmp_path / "exp/model/model.safetensors").is_file()
    assert "train.max_minutes=3.5 reached after step 4 of 8" in capsys.readouterr().err
    state = torch.load(tmp_path / "exp/checkpoints/step-00000004/state.pt", weights_only=True)
    assert state["extra"]["seconds"] == 240.0
    # The budget counts over resumes: 4 minutes spent, so 5.5 allows two more steps.
    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=5.5))
    assert train(more, rows, rows[:4], tmp_path / "exp", resume=True, progress=False).steps == 6
    assert train(cfg, rows, rows[:4], tmp_path / "exp", resume=True, progress=False).steps == 8
    assert_same_weights(tmp_path / "exp/checkpoints/step-00000008", root / "exp/checkpoints/step-00000008")


def test_model_dir_rebuilds_the_averaged_model(straight):
    root, rows, _ = straight
    exp = root / "exp"
    model, cfg, tokenizer = load_model_dir(exp / "model")
    assert cfg == resume_config(8)
    assert tokenizer.decode(tokenizer.encode("one two")) == "one two"
    # average_last=2: the exported weights are the mean of the last two checkpoints.
    last = sorted(p for p in (exp / "checkpoints").iterdir() if p.name.startswith("step-"))[-2:]
    assert [p.name for p in last] == ["step-00000006", "step-00000008"]
    a, b = weights(last[0]), weights(last[1])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, (a[k] + b[k]) / 2, msg=k)


def test_cmvn_is_the_training_feature_mean(straight):
    root, rows, _ = straight
    model, cfg, _ = load_model_dir(root / "exp/model")
    fbank = Fbank(cfg.features)
    frames = []
    for utt in rows:  # one utterance at a time: independent of the batched caching
        wave = torch.from_numpy(load_audio(utt.audio))[None]
        feats, _ = fbank(wave, torch.tensor([wave.shape[1]]))
        frames.append(feats[0].double().numpy())
    frames = np.concatenate(frames)
    np.testing.assert_allclose(model.normalize.mean.numpy(), frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.normalize.istd.numpy(), 1 / frames.std(0), rtol=1e-3)


def test_logs_checkpoints_and_best(straight):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _, result = straight
    exp = root / "exp"
    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/ctc", "train/att", "train/lr", "train/grad_norm", "dev/loss", "dev/wer"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))
    assert [e.step for e in events.Scalars("dev/wer")] == [3, 6]
    best = json.loads((exp / "checkpoints/best.json").read_text())
    assert best["metric"] == "wer" and best["value"] == result.best_dev_wer
    assert min(e.value for e in events.Scalars("dev/wer")) == pytest.approx(result.best_dev_wer)
    assert (exp / "checkpoints" / best["checkpoint"]).is_dir()  # pruning kept it
    assert (exp / "config.json").is_file() and (exp / "tokenizer").is_dir()


def test_fresh_run_refuses_a_used_folder(straight):
    root, rows, _ = straight
    with pytest.raises(CeasrError, match="holds checkpoints of an earlier run"):
        train(resume_config(8), rows, rows[:4], root / "exp", progress=False)


def test_nonfinite_losses_are_skipped_then_stop(tmp_path, monkeypatch, capsys):
    from ceasr.models.asr import ASRModel

    rows = make_corpus(tmp_path / "wav", 8)
    broken = tmp_path / "wav" / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    rows.append(dataclasses.replace(rows[0], audio=str(broken), id="broken"))
    calls, bad_calls = [0], {2, 3}
    forward = ASRModel.forward

    def flaky(self, *args, **kwargs):
        loss, stats = forward(self, *args, **kwargs)
        if self.training:
            calls[0] += 1
            if calls[0] in bad_calls:
                loss = loss * float("nan")
        return loss, stats

    monkeypatch.setattr(ASRModel, "forward", flaky)
    cfg = tiny_config(max_steps=4, max_bad_steps=3)
    result = train(cfg, rows, rows[:2], tmp_path / "a", progress=False)
    assert result.steps == 4 and result.bad_steps == 2 and result.skipped_utterances == 1
    err = capsys.readouterr().err
    assert sum(f"skipped: {broken}:" in line for line in err.splitlines()) == 1

    calls[0], bad_calls = 0, set(range(1, 100))
    with pytest.raises(CeasrError, match="3 consecutive non-finite losses"):
        train(cfg, rows, rows[:2], tmp_path / "b", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(tmp_path):
    # Six 0.5 s utterances, 1.5 s budget: every global batch holds 3, split 2 + 1 over the ranks, so only
    # a loss normalized by the global count (not each rank's own) gives the one-process gradient.
    rows = make_corpus(tmp_path / "wav", 6, seconds=(0.5, 0.5))
    # SGD with momentum: Adam would turn float noise in exactly-zero gradients (attention key biases) into
    # full-size steps, hiding what this test checks, that both runs compute the same gradients.
    cfg = tiny_config(max_steps=3, num_buckets=1, optimizer="momentum", lr=0.05, warmup_steps=0)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_seconds=1.5))
    single = train(cfg, rows, rows[:2], tmp_path / "one", progress=False)
    assert single.steps == 3
    mp.start_processes(
        ddp_worker, args=(2, _free_port(), cfg, rows, str(tmp_path / "two")), nprocs=2, start_method="spawn"
    )
    before = weights(tmp_path / "one/checkpoints/step-00000002")  # the end of the first epoch
    want = weights(tmp_path / "one/checkpoints/step-00000003")
    got = weights(tmp_path / "two/checkpoints/step-00000003")
    moved = max((want[k] - before[k]).abs().max().item() for k in want)
    assert moved > 1e-3  # the step is far larger than the tolerance below
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
    assert (tmp_path / "two/model/model.safetensors").is_file()


def test_collate_pads_features_and_targets():
    from ceasr.data.dataset import Item, collate

    items = [Item(torch.ones(3, 2), [5, 6], "a b", "x"), None, Item(torch.full((5, 2), 2.0), [7], "c", "y")]
    b = collate(items)  # None (an unreadable item) is dropped
    assert b.feats.shape == (2, 5, 2) and b.ids == ["x", "y"] and b.texts == ["a b", "c"]
    assert torch.equal(b.feats[0, :3], torch.ones(3, 2)) and torch.equal(b.feats[0, 3:], torch.zeros(2, 2))
    assert torch.equal(b.feats[1], torch.full((5, 2), 2.0))
    assert b.feat_lens.tolist() == [3, 5] and b.ys_lens.tolist() == [2, 1]
    assert b.ys.tolist() == [[5, 6], [7, -1]]


def test_dataset_batched_cache_equals_per_item_features(tmp_path, capsys):
    from ceasr.config import FeatureConfig, TokenizerConfig
    from ceasr.data.dataset import AsrDataset
    from ceasr.text.normalize import normalize
    from ceasr.text.tokenizer import train_tokenizer

    rows = make_corpus(tmp_path, 5, seconds=(0.3, 0.9))
    segment = dataclasses.replace(rows[0], id="seg", offset=0.1, duration=0.2)
    broken = dataclasses.replace(rows[1], id="broken", audio=str(tmp_path / "missing.wav"))
    rows = [rows[0], broken, segment, *rows[1:]]
    tok = train_tokenizer(TokenizerConfig(kind="char"), [normalize(r.text) for r in rows])
    fcfg = FeatureConfig(n_mels=40)
    ds = AsrDataset(rows, tok, fcfg, chunk=3)  # chunks of 3: items share padded Fbank calls
    kept = [r for r in rows if r.id != "broken"]
    assert ds.bad_items == 1 and [r.id for r in ds.rows] == [r.id for r in kept]
    assert capsys.readouterr().err.count("skipped: ") == 1
    fbank = Fbank(fcfg)
    for i, utt in enumerate(kept):
        wave = load_audio(utt.audio, offset=utt.offset, duration=utt.duration)
        want, _ = fbank(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
        item = ds[i]
        torch.testing.assert_close(item.feats, want[0], rtol=1e-5, atol=1e-4)
        assert ds.durations[i] == pytest.approx(wave.size / 16000)
        assert item.tokens == tok.encode(normalize(utt.text)) and item.text == normalize(utt.text)
    assert ds.durations[1] == pytest.approx(0.2)  # the segment

    lazy = AsrDataset(rows, tok, fcfg, cache_features=False)
    assert lazy.bad_items == 1 and len(lazy) == len(kept)
    torch.testing.assert_close(lazy[3].feats, ds[3].feats, rtol=1e-5, atol=1e-4)
    capsys.readouterr()
    (tmp_path / "utt004.wav").unlink()  # gone after the dataset was built: a bad item at train time
    assert lazy[len(kept) - 1] is None and lazy[len(kept) - 1] is None
    assert lazy.bad_items == 2 and capsys.readouterr().err.count("skipped: ") == 1  # reported once


def test_waveform_augmentation_trains_and_resumes_exactly(tmp_path):
    """augment.enabled: items come from a DataLoader worker, seeded by (seed, epoch, index), so a resumed run
    ends with the same weights as a straight one."""
    from ceasr.config import AugmentConfig

    rows = make_corpus(tmp_path / "wav", 8)
    augment = AugmentConfig(enabled=True, speed_prob=0.5, noise_prob=0.5, gain_prob=0.5, reverb_prob=0.5,
                            noise_kinds="white,babble")

    def cfg(max_steps):
        return dataclasses.replace(tiny_config(max_steps=max_steps, num_workers=1), augment=augment)

    straight = train(cfg(4), rows, rows[:2], tmp_path / "a", progress=False)
    assert straight.steps == 4 and straight.bad_steps == 0
    train(cfg(2), rows, rows[:2], tmp_path / "b", progress=False)
    train(cfg(4), rows, rows[:2], tmp_path / "b", resume=True, progress=False)
    assert_same_weights(tmp_path / "b/checkpoints/step-00000004", tmp_path / "a/checkpoints/step-00000004")


def test_bf16_training_goes_through_the_loop(tmp_path):
    """``train.precision=bf16`` reaches the training step: the weights after 3 steps differ from fp32's by
    bfloat16 rounding, no more, and stay fp32 in the checkpoint."""
    rows = make_corpus(tmp_path / "wav", 8)
    got = {}
    for precision in ("fp32", "bf16"):
        result = train(tiny_config(max_steps=3, precision=precision), rows, rows[:2], tmp_path / precision,
                       progress=False)
        assert result.steps == 3 and result.bad_steps == 0
        got[precision] = weights(tmp_path / precision / "checkpoints/step-00000003")
    assert got["fp32"].keys() == got["bf16"].keys()
    diffs = [(got["bf16"][k] - got["fp32"][k]).abs().max().item() for k in got["fp32"]]
    assert all(w.dtype == torch.float32 for w in got["bf16"].values())
    assert 0 < max(diffs) < 1e-2  # Adam's first steps move each weight by ~lr = 1e-3


def test_bpe_dropout_targets_resume_exactly_and_change_training(tmp_path):
    """train.bpe_dropout draws each batch's targets from a generator of the step's own: a resumed run ends with
    the weights of a straight one, and the draws do change what is trained (weights differ from p = 0)."""
    from ceasr.config import TokenizerConfig

    rows = make_corpus(tmp_path / "wav", 8)

    def cfg(max_steps, p):
        base = tiny_config(max_steps=max_steps, bpe_dropout=p)
        return dataclasses.replace(base, tokenizer=TokenizerConfig(kind="bpe", vocab_size=40))

    train(cfg(4, 0.5), rows, rows[:2], tmp_path / "a", progress=False)
    train(cfg(2, 0.5), rows, rows[:2], tmp_path / "b", progress=False)
    train(cfg(4, 0.5), rows, rows[:2], tmp_path / "b", resume=True, progress=False)
    assert_same_weights(tmp_path / "b/checkpoints/step-00000004", tmp_path / "a/checkpoints/step-00000004")
    train(cfg(4, 0.0), rows, rows[:2], tmp_path / "c", progress=False)
    with_dropout, without = (weights(tmp_path / f"{d}/checkpoints/step-00000004") for d in "ac")
    assert not torch.equal(with_dropout["ctc.weight"], without["ctc.weight"])
