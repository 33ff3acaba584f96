"""Measurement verbs: lr-find, tune, study."""

from __future__ import annotations

import sys
from pathlib import Path

from ceasr.cli.common import floats, split_list


def _cmd_lr_find(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.lr_find import exp_lrs, lr_find, write_lr_find
    from ceasr.tune.session import limit_rows, prepare

    cfg = load_config(args.config, args.set)
    exp_lrs(args.min, args.max, args.steps)  # bad flags fail before the data is read
    prepared = prepare(cfg, limit_rows(load_rows(args.train), args.limit))
    result = lr_find(cfg, prepared, args.min, args.max, args.steps)
    write_lr_find(result, Path(args.out))
    stop = "diverged" if result.diverged else "ran all steps"
    print(f"{len(result.lrs)} steps ({stop}); smoothed minimum at lr={result.at_minimum:.3g}, "
          f"steepest point of the valley (last descent into it) at lr={result.steepest:.3g}; "
          "rule: min(valley steepest, minimum / 10)")
    print(f"suggested_lr={result.suggested:.3g}")


def _cmd_tune(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.search import TuneOptions, tune

    cfg = load_config(args.config, args.set)
    opts = TuneOptions(
        optimizers=tuple(split_list(args.optimizers)), lrs=tuple(floats(args.lrs, "--lrs")), steps=args.steps,
        eval_every=args.eval_every, sampler=args.sampler, trials=args.trials, jobs=args.jobs,
        prune=not args.no_prune, prune_warmup=args.prune_warmup, seed=args.seed, study_name=args.study_name,
        storage=args.storage,
    )
    dev = load_rows(args.dev) if args.dev else []
    command = "ceasr " + " ".join(sys.argv[1:])
    result = tune(cfg, load_rows(args.train), dev, args.folds, opts, args.out, command=command)
    print(f"{result.trials} trials in the study ({result.new_trials} run now); results in {args.out}")
    print(f"best optimizer={result.optimizer} lr={result.lr:.3g} dev_loss={result.dev_loss:.4f}")


def _cmd_study(args) -> None:
    from ceasr.config import load_config
    from ceasr.data.manifest import load_rows
    from ceasr.tune.studies import DEFAULT_STEPS, STUDIES, StudyOptions

    cfg = load_config(args.config, args.set)
    opts = StudyOptions(
        steps=args.steps or DEFAULT_STEPS[args.kind], lrs=tuple(floats(args.lrs, "--lrs")) if args.lrs else (),
        seeds=args.seeds,
        eval_every=args.eval_every, limit_train=args.limit_train, limit_dev=args.limit_dev,
        optimizer=args.optimizer, seed=args.seed,
    )
    command = "ceasr " + " ".join(sys.argv[1:])
    line = STUDIES[args.kind](cfg, load_rows(args.train), load_rows(args.dev), opts, Path(args.out), command)
    print(line)


def add_verbs(verbs) -> None:
    p = verbs.add_parser("lr-find", help="LR range test: loss while the learning rate rises exponentially")
    p.add_argument("--config", help="YAML config (its initial weights and batches; the schedule is replaced)")
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--min", type=float, default=1e-6)
    p.add_argument("--max", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--limit", type=int, default=0, help="use the first N training rows (0: all)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_lr_find)

    p = verbs.add_parser("tune", help="search optimizer and learning rate (Optuna; dev set or speaker folds)")
    p.add_argument("--config")
    p.add_argument("--train", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dev")
    where.add_argument("--folds", type=int, default=0, help="K speaker-disjoint cross-validation folds")
    p.add_argument("--optimizers", default="sgd,momentum,adam,rmsprop")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3,1e-2,3e-2,1e-1")
    p.add_argument("--steps", type=int, default=200, help="training steps per trial and fold")
    p.add_argument("--eval-every", type=int, default=0, help="dev evaluations for pruning (0: steps / 4)")
    p.add_argument("--out", required=True)
    p.add_argument("--sampler", choices=["grid", "tpe"], default="grid")
    p.add_argument("--trials", type=int, default=0, help="trials wanted in the study (0: grid size, or 20)")
    p.add_argument("--jobs", type=int, default=1, help="trials in parallel (threads)")
    p.add_argument("--no-prune", action="store_true", help="switch off median pruning")
    p.add_argument("--prune-warmup", type=int, default=-1,
                   help="steps of a trial (over its folds) before it may be pruned (-1: first fold, or steps / 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite file OUT/tune.db)")
    p.add_argument("--study-name", default="ceasr-tune")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_tune)

    p = verbs.add_parser("study", help="measure: loss functions on a command classifier, or optimizers")
    p.add_argument("kind", choices=["losses", "optimizers"])
    p.add_argument("--config")
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=0, help="training steps per run (0: losses 1000, optimizers 300)")
    p.add_argument("--lrs", help="LR sweep (default: the study's own grid)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (optimizers study)")
    p.add_argument("--eval-every", type=int, default=0, help="dev evaluations (0: steps / 10)")
    p.add_argument("--limit-train", type=int, default=0, help="use the first N training rows (0: all)")
    p.add_argument("--limit-dev", type=int, default=0, help="use the first N dev rows (0: all)")
    p.add_argument("--optimizer", default="adam", help="optimizer of the losses study")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.set_defaults(func=_cmd_study)
