"""Training throughput with and without augmentation, side by side; and what each augmentation costs.

Run: ``.venv/bin/python bench/augment.py [--manifest runs/demo/data/train.jsonl] [--utterances 400]``

Four set-ups train the demo config's model on the same utterances, with the same batches, alternating in
each of ``--rounds`` rounds of ``--steps`` optimizer steps: no augmentation (cached features), the demo's
feature-domain augmentation (``feat_augment``, in the training step), and the ``augment:`` section's
waveform augmentation in the training process (``train.num_workers=0``) and in one DataLoader worker
process (``num_workers=1``). Throughput is training utterances per wall-clock
second over a round's steps after its first (which includes the worker's start-up, once per epoch in
training); the table gives the median over rounds. A second table gives each augmentation's own cost in ms
per utterance (median over the utterances), including the feature extraction an augmented item needs again.
The last line is the headline: how much slower training is with the feature-domain augmentation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, median, pin_threads  # noqa: E402

from ceasr.config import load_config  # noqa: E402
from ceasr.data import augment as aug  # noqa: E402
from ceasr.data.manifest import load_rows  # noqa: E402
from ceasr.demo import demo_config_path  # noqa: E402
from ceasr.train import distributed  # noqa: E402
from ceasr.train.loop import _groups, _setup, batches, train_step  # noqa: E402


NONE, FEATS, WORKER = "no augmentation", "feature-domain (feat_augment)", "waveform, 1 DataLoader worker"


def variants(cfg) -> dict[str, object]:
    off = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, enabled=False),
                              feat_augment=dataclasses.replace(cfg.feat_augment, enabled=False))
    wave = dataclasses.replace(off, augment=dataclasses.replace(cfg.augment, enabled=True))
    return {
        NONE: off,
        FEATS: dataclasses.replace(off, feat_augment=dataclasses.replace(cfg.feat_augment, enabled=True)),
        "waveform, in the training process": dataclasses.replace(
            wave, train=dataclasses.replace(cfg.train, num_workers=0)),
        WORKER: dataclasses.replace(wave, train=dataclasses.replace(cfg.train, num_workers=1)),
    }


def one_round(run, epoch: int, steps: int) -> float:
    """Utterances per second over ``steps`` steps of epoch ``epoch``, the first step excluded."""
    run.sampler.set_epoch(epoch)
    count, start = 0, None
    for k, group in enumerate(_groups(batches(run), 1)):
        if k == steps + 1:
            break
        train_step(run, group, k + 1)
        if k == 0:
            start = time.perf_counter()
        else:
            count += sum(len(b) for b in group)
    return count / (time.perf_counter() - start)


def augmentation_costs(cfg, waves: list[np.ndarray]) -> list[list]:
    """ms per utterance of each augmentation alone and of the features an augmented item needs again."""
    from ceasr.data import feat_augment as fa
    from ceasr.features import Fbank

    fbank = Fbank(cfg.features).eval()
    fc = cfg.feat_augment
    bank = fa.FeatAugment(fc, cfg.features)
    centers = fa.mel_centers(cfg.features)
    feats = {id(w): fbank(torch.from_numpy(w)[None], torch.tensor([len(w)]))[0][0] for w in waves}
    rng = np.random.default_rng(0)
    c = cfg.augment
    rir = aug.synthetic_rir(float(np.mean(c.rt60)), rng)
    steps = {
        "speed perturbation (soxr)": lambda w: aug.speed_perturb(w, 1.1),
        f"reverberation (synthetic RIR, RT60 {np.mean(c.rt60):.2f} s)": lambda w: aug.reverberate(w, rir),
        "white noise at an SNR": lambda w: aug.mix_at_snr(w, aug.colored_noise("white", len(w), rng), 10),
        "pink noise at an SNR": lambda w: aug.mix_at_snr(w, aug.colored_noise("pink", len(w), rng), 10),
        "babble (5 talkers) at an SNR": lambda w: aug.mix_at_snr(w, aug.babble(waves, len(w), rng, 5), 10),
        "gain with clipping": lambda w: aug.apply_gain(w, 6.0),
        "fbank features again": lambda w: fbank(torch.from_numpy(w)[None], torch.tensor([len(w)])),
        "features: VTLP warp": lambda w: feats[id(w)] @ fa.warp_matrix(centers, 1.1, fa.top_freq(cfg.features)).T,
        f"features: reverberation (RT60 {np.mean(fc.rt60):.2f} s)":
            lambda w: fa.reverberate(feats[id(w)], float(np.mean(fc.rt60)), 5.0),
        "features: pink noise at an SNR":
            lambda w: fa.add_noise(feats[id(w)], fa.loop_frames(bank.noise["pink"], 0, len(feats[id(w)])), 10.0),
        "features: gain": lambda w: fa.apply_gain(feats[id(w)], -20.0),
    }
    rows = []
    with torch.no_grad():
        for name, fn in steps.items():
            times = []
            for w in waves:
                t0 = time.perf_counter()
                fn(w)
                times.append(time.perf_counter() - t0)
            rows.append([name, f"{1e3 * median(times):.2f}"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default=str(REPO / "runs/demo/data/train.jsonl"))
    p.add_argument("--utterances", type=int, default=300)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    load = load_average()
    pin_threads(args.threads)
    rows = load_rows(args.manifest)[: args.utterances]
    cfg = load_config(demo_config_path())
    print(header(args.threads, load, f"{len(rows)} utterances of {args.manifest}, demo config"))
    d = distributed.setup()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, vcfg) in enumerate(variants(cfg).items()):
            runs[name] = _setup(vcfg, rows, [], Path(tmp) / str(k), False, d, False)
        rates = {name: [] for name in runs}
        for r in range(args.rounds):
            for name, run in runs.items():
                rates[name].append(one_round(run, r, args.steps))
    base = median(rates[NONE])
    table = [[name, f"{median(v):.1f}", f"{100 * (base / median(v) - 1):+.1f}%"] for name, v in rates.items()]
    waves = runs[WORKER].train_set.waves
    print(format_table(["each augmentation alone, per utterance", "ms"], augmentation_costs(cfg, waves[:100])))
    print()
    print(format_table([f"training ({args.rounds} rounds x {args.steps} steps)", "utt/s", "time vs none"], table))
    worker, feats = median(rates[WORKER]), median(rates[FEATS])
    print(f"waveform augmentation (1 DataLoader worker): {100 * (base / worker - 1):+.1f}% training time")
    print(f"feature-domain augmentation (the demo config's settings) makes training "
          f"{100 * (base / feats - 1):+.1f}% slower "
          f"({feats:.1f} vs {base:.1f} utt/s)")


if __name__ == "__main__":
    main()
