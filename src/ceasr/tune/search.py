"""``ceasr tune``: optimizer and learning-rate search with Optuna, on a dev set or speaker-disjoint folds.

Each trial trains ``steps`` steps from fresh weights (the one training loop, in process) on every fold and
scores the mean final dev loss. Intermediate dev losses go to a median pruner, which stops a trial whose loss
is worse than the median of earlier trials at the same point, but only after a warm-up (by default the whole
first fold, or half the steps with one dev set), so a slow starter is not cut off before it can catch up. The study lives in an Optuna storage (a SQLite
file in the output folder unless ``storage`` names another RDB URL), so it can be resumed or shared: a
resumed study runs only the trials still missing, never the finished ones again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ceasr.config import ExperimentConfig, to_dict
from ceasr.data.dataset import AsrDataset
from ceasr.errors import ConfigError
from ceasr.io import atomic_write_text
from ceasr.train.optim import OPTIMIZERS
from ceasr.tune.folds import speaker_folds, train_indices
from ceasr.tune.session import Point, Prepared, asr_evaluate, short_run, subset

SAMPLERS = ("grid", "tpe")
DEFAULT_TPE_TRIALS = 20


@dataclass(frozen=True)
class TuneOptions:
    optimizers: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # spans the SGD family's and Adam's ranges
    steps: int = 200
    eval_every: int = 0  # 0: four evaluations per fold
    sampler: str = "grid"
    trials: int = 0  # total wanted in the study; 0: the grid's size (grid) or DEFAULT_TPE_TRIALS (tpe)
    jobs: int = 1
    prune: bool = True
    prune_warmup: int = -1  # training steps of a trial (counted over its folds) before pruning; -1: automatic
    seed: int = 0
    study_name: str = "ceasr-tune"
    storage: str | None = None  # an Optuna RDB URL; None: sqlite in the output folder


def check_options(opts: TuneOptions) -> None:
    """Reject bad flags before any data is read."""
    unknown = [o for o in opts.optimizers if o not in OPTIMIZERS]
    if unknown or not opts.optimizers:
        raise ConfigError(f"--optimizers: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(OPTIMIZERS)}")
    if not opts.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in opts.lrs):
        raise ConfigError(f"--lrs: needs positive learning rates, got {', '.join(map(str, opts.lrs)) or '(none)'}")
    if opts.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: unknown {opts.sampler!r}; known: {', '.join(SAMPLERS)}")
    if opts.steps < 1 or opts.jobs < 1 or opts.trials < 0:
        raise ConfigError("--steps and --jobs must be at least 1, --trials at least 0")


def make_splits(prepared: Prepared, dev_set: AsrDataset | None, folds: int, seed: int) -> list[tuple]:
    """``[(train_set, dev_set), ...]``: the given dev set, or ``folds`` speaker-disjoint folds of the data."""
    if dev_set is not None:
        return [(prepared.dataset, dev_set)]
    rows = prepared.dataset.rows
    out = []
    for held in speaker_folds(rows, folds, seed):
        out.append((subset(prepared.dataset, train_indices(len(rows), held)), subset(prepared.dataset, held)))
    return out


def prune_warmup(opts: TuneOptions, n_splits: int) -> int:
    """Steps a trial trains (over its folds, in order) before it may be pruned: ``opts.prune_warmup`` when
    given, else the whole first fold with several folds, or half the steps with one dev set."""
    if opts.prune_warmup >= 0:
        return opts.prune_warmup
    return opts.steps if n_splits > 1 else opts.steps // 2


class Objective:
    """One trial: the sampled optimizer and LR trained on every split; value = mean final dev loss."""

    def __init__(self, cfg: ExperimentConfig, prepared: Prepared, splits: list[tuple], opts: TuneOptions):
        self.cfg, self.prepared, self.splits, self.opts = cfg, prepared, splits, opts
        self.eval_every = opts.eval_every or max(1, opts.steps // 4)
        self.warmup = prune_warmup(opts, len(splits))

    def __call__(self, trial) -> float:
        import optuna

        optimizer = trial.suggest_categorical("optimizer", list(self.opts.optimizers))
        lr = trial.suggest_float("lr", min(self.opts.lrs), max(self.opts.lrs), log=True)
        train = dataclasses.replace(
            self.cfg.train, optimizer=optimizer, lr=lr, max_steps=self.opts.steps, seed=self.opts.seed
        )
        cfg = dataclasses.replace(self.cfg, train=train)
        losses, seconds = [], 0.0
        for k, (train_set, dev_set) in enumerate(self.splits):

            def report(point: Point, k=k) -> None:
                trial.report(point.loss, k * self.opts.steps + point.step)
                past_warmup = k * self.opts.steps + point.step > self.warmup
                if self.opts.prune and past_warmup and trial.should_prune():
                    trial.set_user_attr("seconds", seconds + point.seconds)
                    raise optuna.TrialPruned()

            result = short_run(cfg, self.prepared, train_set, dev_set, self.eval_every, asr_evaluate("end"), report)
            seconds += result.seconds
            last = result.last
            loss = last.loss if last is not None and not result.diverged and math.isfinite(last.loss) else math.inf
            trial.set_user_attr(f"fold{k}_loss", loss)
            trial.set_user_attr(f"fold{k}_wer", last.metric if last is not None and math.isfinite(loss) else None)
            losses.append(loss)
            if not math.isfinite(loss):  # diverged: no point training the other folds
                break
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("steps", self.opts.steps)
        return float(np.mean(losses)) if all(map(math.isfinite, losses)) else math.inf


def open_study(opts: TuneOptions, out_dir: Path, n_existing_hint: int = 0):
    """Create or load the study (``load_if_exists``), with the sampler and pruner ``opts`` ask for."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = opts.storage or f"sqlite:///{(out_dir / 'tune.db').resolve()}"
    if opts.sampler == "grid":
        sampler = optuna.samplers.GridSampler(
            {"optimizer": list(opts.optimizers), "lr": sorted(opts.lrs)}, seed=opts.seed
        )
    else:
        # Seeded by how many trials exist, so a resumed study draws new points instead of repeating them.
        sampler = optuna.samplers.TPESampler(seed=opts.seed + n_existing_hint)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4) if opts.prune else optuna.pruners.NopPruner()
    try:
        return optuna.create_study(
            storage=storage, sampler=sampler, pruner=pruner, study_name=opts.study_name,
            direction="minimize", load_if_exists=True,
        )
    except (ValueError, ImportError) as e:  # a malformed URL, or a driver that is not installed
        raise ConfigError(f"--storage {storage}: {e}") from None


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def run_search(cfg: ExperimentConfig, prepared: Prepared, splits: list[tuple], opts: TuneOptions, out_dir: Path):
    """Run the trials still missing from the study in ``out_dir``; return the study."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(opts, out_dir)
    done = finished_count(study)
    if opts.sampler == "tpe":
        study = open_study(opts, out_dir, n_existing_hint=len(study.trials))
    grid = len(opts.optimizers) * len(opts.lrs)
    wanted = opts.trials or (grid if opts.sampler == "grid" else DEFAULT_TPE_TRIALS)
    if wanted > done:
        study.optimize(
            Objective(cfg, prepared, splits, opts), n_trials=wanted - done, n_jobs=opts.jobs,
            show_progress_bar=True, gc_after_trial=True,
        )
    return study


def best_config(cfg: ExperimentConfig, optimizer: str, lr: float) -> ExperimentConfig:
    """``cfg`` with the winning optimizer and learning rate; everything else (steps, schedule) as given."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer=optimizer, lr=lr))


def write_best_yaml(cfg: ExperimentConfig, path: Path) -> None:
    import yaml

    text = "# written by `ceasr tune`: the input config with the best optimizer and learning rate\n"
    atomic_write_text(path, text + yaml.safe_dump(to_dict(cfg), sort_keys=False))


@dataclass(frozen=True)
class TuneResult:
    optimizer: str
    lr: float
    dev_loss: float
    trials: int  # finished trials in the study
    new_trials: int  # of which this call ran


def tune(cfg: ExperimentConfig, train_rows, dev_rows, folds: int, opts: TuneOptions, out_dir, command: str = "",
         progress: bool = True) -> TuneResult:
    """Search, then write ``tune.csv``, ``tune.md``, ``tune.png`` and ``best.yaml`` into ``out_dir``.

    ``dev_rows`` (when given) is the one dev set; otherwise ``folds`` speaker-disjoint folds of ``train_rows``.
    """
    from ceasr.errors import CeasrError
    from ceasr.tune import report
    from ceasr.tune.session import featurize, prepare

    check_options(opts)
    if not dev_rows and folds < 2:
        raise ConfigError("tune: give --dev or --folds K (K >= 2)")
    out_dir = Path(out_dir)
    prepared = prepare(cfg, train_rows, progress)
    dev_set = featurize(prepared, dev_rows, progress) if dev_rows else None
    splits = make_splits(prepared, dev_set, folds, opts.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = finished_count(open_study(opts, out_dir))
    study = run_search(cfg, prepared, splits, opts, out_dir)
    rows = report.trial_rows(study, len(splits))
    report.write_csv(rows, out_dir / "tune.csv")
    report.write_md(rows, out_dir / "tune.md", command)
    report.plot_tune(rows, out_dir / "tune.png", len(splits))
    best = report.best_row(rows)
    if best is None:
        raise CeasrError(f"tune: no trial finished with a finite dev loss (see {out_dir / 'tune.csv'})")
    write_best_yaml(best_config(cfg, best["optimizer"], best["lr"]), out_dir / "best.yaml")
    done = finished_count(study)
    return TuneResult(best["optimizer"], best["lr"], best["mean_loss"], done, done - before)
