"""LR finder rule, speaker-disjoint folds, loss gradients in closed form, the classifier, and the three verbs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from ddp_worker import make_corpus, tiny_config

from ceasr.config import load_config
from ceasr.data.manifest import Utterance, write_manifest
from ceasr.errors import ConfigError
from ceasr.tune.folds import speaker_folds, train_indices
from ceasr.tune.loss_study import CLASSIFIER_LOSSES, logit_grad
from ceasr.tune.lr_find import exp_lrs, suggest_lr


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _synthetic_curve(steep_at: float, rise_at: float, n: int = 300, noise: float = 0.0, transient: float = 0.0):
    """Loss against x = log10(lr) on [-6, 0]: a tanh descent centred at ``steep_at`` plus an exponential rise,
    plus (``transient``) an initial drop that is steepest at the very first point, as from fresh weights."""
    lrs = exp_lrs(1e-6, 1.0, n)
    x = np.log10(lrs)
    loss = _analytic(x, steep_at, rise_at, transient)[0]
    loss += noise * np.random.default_rng(0).standard_normal(n)
    return lrs, x, loss


def _analytic(x, steep_at, rise_at, transient=0.0):
    """(loss, d ln(loss) / dx) in closed form."""
    loss = 3.0 - np.tanh(2.0 * (x - steep_at)) + np.exp(3.0 * (x - rise_at)) + transient * np.exp(-4.0 * (x + 6.0))
    d = -2.0 / np.cosh(2.0 * (x - steep_at)) ** 2 + 3.0 * np.exp(3.0 * (x - rise_at))
    d = d - 4.0 * transient * np.exp(-4.0 * (x + 6.0))
    return loss, d / loss


def _expected(steep_at, rise_at, transient=0.0):
    """The rule on the noise-free analytic curve, from its derivative on a dense grid (independent of ceasr):
    the steepest relative descent of the last descent into the minimum, bounded by the minimum's LR / 10."""
    dense = np.linspace(-6.0, 0.0, 600001)
    loss, rel = _analytic(dense, steep_at, rise_at, transient)
    i_min = int(np.argmin(loss))
    i = i_min
    while rel[i - 1] <= rel[i] or rel[i] > -0.2:  # walk back down the slope to its (first) steepest point
        i -= 1
    return min(10.0 ** dense[i], 10.0 ** dense[i_min] / 10.0), 10.0 ** dense[i], 10.0 ** dense[i_min]


@pytest.mark.parametrize(
    "steep_at, rise_at, transient", [(-4.0, -0.5, 0.0), (-1.8, -0.8, 0.0), (-3.0, -0.5, 20.0)]
)  # the valley's steepest point wins / min/10 wins / a steep initial transient is not the valley
def test_lr_suggestion_on_a_known_curve(steep_at, rise_at, transient):
    lrs, x, loss = _synthetic_curve(steep_at, rise_at, transient=transient)
    want, want_steep, want_min = _expected(steep_at, rise_at, transient)
    step = 6.0 / (len(lrs) - 1)  # one point, in decades
    got, steep, at_min, _ = suggest_lr(lrs, loss)
    assert abs(np.log10(steep) - np.log10(want_steep)) <= 3 * step  # the smoothing widens the descent a little
    assert abs(np.log10(at_min) - np.log10(want_min)) <= 3 * step  # and may move a flat minimum a little
    assert abs(np.log10(got) - np.log10(want)) <= 3 * step
    assert lrs[0] <= got <= lrs[-1]
    if transient:  # the suggestion lies inside the known steep region of the real descent, |x - steep_at| < 0.3
        assert abs(np.log10(got) - steep_at) < 0.3
        assert np.argmin(np.gradient(loss, x)) == 0  # while the globally steepest point is the first one


def test_lr_suggestion_survives_noise_and_stays_in_range():
    lrs, _, loss = _synthetic_curve(-3.0, -0.5, noise=0.15, transient=20.0)
    want = _expected(-3.0, -0.5, 20.0)[0]
    got = suggest_lr(lrs, loss)[0]
    assert abs(np.log10(got) - np.log10(want)) < 0.35
    # A curve that only rises: the minimum is the first point, min/10 is below the range, so it is clamped.
    rising = np.linspace(1.0, 5.0, 50)
    got = suggest_lr(exp_lrs(1e-4, 1e-1, 50), rising)[0]
    assert got == pytest.approx(1e-4)


def test_speaker_folds_never_share_a_speaker():
    rows = [Utterance(audio=f"{i}.wav", text="x", id=str(i), speaker=f"s{i % 7}") for i in range(40)]
    rows += [Utterance(audio=f"n{i}.wav", text="x", id=f"n{i}") for i in range(6)]  # no speaker
    folds = speaker_folds(rows, 3, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(len(rows)))  # each row held out exactly once
    for held in folds:
        dev = {rows[i].speaker for i in held if rows[i].speaker}
        train = {rows[i].speaker for i in train_indices(len(rows), held) if rows[i].speaker}
        assert not dev & train
    # Speaker-less rows are groups of their own, so they spread over the folds instead of sticking together.
    assert sum(any(rows[i].speaker is None for i in f) for f in folds) >= 2
    assert max(map(len, folds)) - min(map(len, folds)) <= 6  # balanced up to one speaker's size
    with pytest.raises(ConfigError, match="speakers"):
        speaker_folds(rows[:3], 5)


@pytest.mark.parametrize("name", list(CLASSIFIER_LOSSES))
def test_logit_gradients_match_autograd(name):
    g = torch.Generator().manual_seed(0)
    logits = (3.0 * torch.randn(5, 7, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([0, 3, 6, 2, 2])
    (CLASSIFIER_LOSSES[name](logits, labels) / 5).backward()
    torch.testing.assert_close(logit_grad(name, logits.detach(), labels), logits.grad)
    if name == "ce":  # the textbook form: softmax - onehot, per example
        want = (logits.detach().softmax(-1) - torch.nn.functional.one_hot(labels, 7)) / 5
        torch.testing.assert_close(logits.grad, want)


def test_mse_gradient_vanishes_when_confidently_wrong():
    from ceasr.tune.loss_study import wrong_confidence_grad

    ce = [wrong_confidence_grad("ce", q, 61) for q in (0.5, 0.99, 0.9999)]
    mse = [wrong_confidence_grad("mse", q, 61) for q in (0.5, 0.99, 0.9999)]
    assert ce[-1] == pytest.approx(np.sqrt(2.0), rel=1e-3)  # ||p - y|| -> sqrt(2)
    assert mse[2] < mse[1] < mse[0] and mse[2] < 1e-5


def test_classifier_batched_equals_per_item():
    from ceasr.config import ModelConfig
    from ceasr.models.classifier import build_classifier

    cfg = ModelConfig(d_model=16, n_heads=2, encoder_layers=1, ff_dim=32, conv_kernel=3, subsampling_channels=4,
                      dropout=0.0)
    torch.manual_seed(0)
    model = build_classifier(cfg, 20, 5).eval()
    x = torch.randn(3, 40, 20)
    lens = torch.tensor([40, 23, 9])
    batched = model(x, lens)
    assert batched.shape == (3, 5)
    for b in range(3):
        alone = model(x[b : b + 1, : lens[b]], lens[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-4, atol=1e-5)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ceasr.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 utterances by 4 speakers, a tiny config as YAML."""
    import yaml

    from ceasr.config import to_dict

    root = tmp_path_factory.mktemp("tune")
    rows = [dataclasses.replace(r, speaker=f"s{i % 4}") for i, r in enumerate(make_corpus(root / "wav", 12))]
    write_manifest(root / "train.jsonl", rows)
    write_manifest(root / "dev.jsonl", rows[:4])
    (root / "tiny.yaml").write_text(yaml.safe_dump(to_dict(tiny_config(max_steps=3))))
    return root


@pytest.mark.slow
def test_lr_find_writes_curve_and_a_suggestion_in_range(corpus, tmp_path):
    out = tmp_path / "lr"
    r = _cli("lr-find", "--config", corpus / "tiny.yaml", "--train", corpus / "train.jsonl", "--out", out,
             "--min", "1e-4", "--max", "1", "--steps", "20")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("suggested_lr=")
    assert 1e-4 <= float(last.split("=")[1]) <= 1.0
    lines = (out / "lr_find.csv").read_text().splitlines()
    assert lines[0] == "step,lr,loss,smoothed" and 3 <= len(lines) - 1 <= 20
    lrs = [float(line.split(",")[1]) for line in lines[1:]]
    np.testing.assert_allclose(lrs, exp_lrs(1e-4, 1.0, 20)[: len(lrs)], rtol=1e-4)  # the exponential ramp
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_tune_resumes_without_repeating_and_best_yaml_trains(corpus, tmp_path):
    out = tmp_path / "tune"
    common = ["tune", "--config", corpus / "tiny.yaml", "--train", corpus / "train.jsonl", "--folds", "2",
              "--optimizers", "sgd,adam", "--lrs", "1e-3,1e-2", "--steps", "2", "--out", out, "--no-prune"]
    first = _cli(*common, "--trials", "2")
    assert first.returncode == 0, first.stderr
    assert "2 trials in the study (2 run now)" in first.stdout
    rows = (out / "tune.csv").read_text().splitlines()
    before = {tuple(line.split(",")[2:4]) for line in rows[1:]}
    second = _cli(*common)  # resumes: the grid has 4 points, 2 are done
    assert second.returncode == 0, second.stderr
    assert "4 trials in the study (2 run now)" in second.stdout
    rows = (out / "tune.csv").read_text().splitlines()
    header, body = rows[0].split(","), [line.split(",") for line in rows[1:]]
    assert {"fold0_loss", "fold1_wer", "mean_loss", "std_loss", "steps", "seconds"} <= set(header)
    params = [tuple(r[2:4]) for r in body]
    assert len(params) == 4 and len(set(params)) == 4 and before <= set(params)  # nothing repeated
    best = min(body, key=lambda r: float(r[header.index("mean_loss")]))
    last = second.stdout.strip().splitlines()[-1]
    assert last == f"best optimizer={best[2]} lr={float(best[3]):.3g} dev_loss={float(best[header.index('mean_loss')]):.4f}"
    cfg = load_config(out / "best.yaml")
    assert cfg.train.optimizer == best[2] and cfg.train.lr == pytest.approx(float(best[3]), rel=1e-5)
    assert cfg.model == load_config(corpus / "tiny.yaml").model
    train = _cli("train", "--config", out / "best.yaml", "--train", corpus / "train.jsonl", "--dev",
                 corpus / "dev.jsonl", "--out", tmp_path / "exp")
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "exp/model/model.safetensors").is_file()
    assert f'"optimizer": "{best[2]}"' in (tmp_path / "exp/model/config.json").read_text()


@pytest.mark.slow
def test_studies_write_their_tables_and_plots(tmp_path):
    from ceasr.data.domain import command_phrases
    from ceasr.tune.studies import OPTIMIZER_STUDY, StudyOptions, study_losses, study_optimizers

    rows = make_corpus(tmp_path / "wav", 8)
    phrases = command_phrases()
    commands = [dataclasses.replace(r, text=phrases[i % 3]) for i, r in enumerate(rows)]
    cfg = tiny_config(max_steps=2)
    opts = StudyOptions(steps=2, lrs=(1e-3, 1e-2), seeds=2, eval_every=1)
    line = study_losses(cfg, commands, commands[:3], opts, tmp_path / "losses", "cmd")
    assert line.startswith("best ce: lr=")
    md = (tmp_path / "losses/losses.md").read_text().splitlines()
    assert [row.split("|")[1].strip() for row in md if row.startswith("| ") and "best lr" not in row] == [
        "ce", "mse", "rmse"]
    line = study_optimizers(cfg, rows, rows[:2], dataclasses.replace(opts, lrs=(1e-2,)), tmp_path / "opt", "cmd")
    assert line.startswith("best optimizer=")
    md = (tmp_path / "opt/optimizers.md").read_text()
    for name in OPTIMIZER_STUDY:
        assert f"| {name} | 0.01 |" in md
    for png in (tmp_path / "losses/losses.png", tmp_path / "opt/optimizers.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_study_sweep_extends_until_the_best_lr_is_bracketed():
    from ceasr.tune.studies import MAX_EXTEND, bracketed_sweep
    from ceasr.tune.session import ShortRun

    def runner(best_lr):
        calls = []

        def run_at(lr):
            calls.append(lr)
            return ShortRun(train_loss=[(np.log10(lr) - np.log10(best_lr)) ** 2])

        return run_at, calls

    key = lambda r: r.train_loss[0]  # noqa: E731
    run_at, calls = runner(3e-3)  # inside the sweep: nothing added
    assert list(bracketed_sweep((1e-2, 1e-3, 3e-3), run_at, key)) == [1e-3, 3e-3, 1e-2] and len(calls) == 3
    run_at, calls = runner(0.1)  # above: 3e-2, then 9e-2 (the best, bracketed by 3e-2 and nothing; limit hit)
    sweep = bracketed_sweep((1e-3, 3e-3, 1e-2), run_at, key)
    assert list(sweep) == pytest.approx([1e-3, 3e-3, 1e-2, 3e-2, 9e-2]) and len(calls) == 3 + MAX_EXTEND
    run_at, calls = runner(1e-3)  # below: 1e-3 is added, still at the edge, so 3.3e-4 too, which brackets it
    sweep = bracketed_sweep((3e-3, 1e-2), run_at, key)
    assert list(sweep) == pytest.approx([1e-3 / 3, 1e-3, 3e-3, 1e-2])
    assert min(sweep, key=lambda lr: key(sweep[lr])) == pytest.approx(1e-3)


class _AlwaysPrune:
    """An Optuna trial stand-in whose pruner always says prune: shows when the objective asks."""

    def __init__(self):
        self.reported, self.attrs = [], {}

    def suggest_categorical(self, name, choices):
        return choices[0]

    def suggest_float(self, name, lo, hi, log=False):
        return lo

    def report(self, value, step):
        self.reported.append(step)

    def should_prune(self):
        return True

    def set_user_attr(self, key, value):
        self.attrs[key] = value


@pytest.mark.parametrize("warmup, pruned_at", [(-1, 3), (0, 1), (3, 4)])  # -1: the first fold (2 steps)
def test_tune_never_prunes_during_the_warmup(corpus, warmup, pruned_at):
    import optuna

    from ceasr.data.manifest import load_rows
    from ceasr.tune.search import Objective, TuneOptions, make_splits
    from ceasr.tune.session import prepare

    cfg = load_config(corpus / "tiny.yaml")
    prepared = prepare(cfg, load_rows(corpus / "train.jsonl"), progress=False)
    opts = TuneOptions(optimizers=("sgd",), lrs=(1e-3,), steps=2, eval_every=1, prune_warmup=warmup)
    trial = _AlwaysPrune()
    with pytest.raises(optuna.TrialPruned):
        Objective(cfg, prepared, make_splits(prepared, None, 2, 0), opts)(trial)
    assert trial.reported[-1] == pruned_at  # the first report past the warm-up (steps counted over folds)
