"""Training throughput with and without on-the-fly waveform augmentation, side by side; and what each step costs.

Run: ``.venv/bin/python bench/augment.py [--manifest runs/demo/data/train.jsonl] [--utterances 400]``

Three set-ups train the demo config's model on the same utterances, with the same batches, alternating in
each of ``--rounds`` rounds of ``--steps`` optimizer steps: no waveform augmentation (cached features),
the demo's augmentation in the training process (``train.num_workers=0``), and the same in one DataLoader
worker process (``num_workers=1``, the demo's setting). Throughput is training utterances per wall-clock
second over a round's steps after its first (which includes the worker's start-up, once per epoch in
training); the table gives the median over rounds. A second table gives each augmentation's own cost in ms
per utterance (median over the utterances), including the feature extraction an augmented item needs again.
The last line is the headline: how much slower training is with augmentation in a worker.
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


def variants(cfg) -> dict[str, object]:
    tc = cfg.train
    return {
        "no waveform augmentation": dataclasses.replace(
            cfg, augment=dataclasses.replace(cfg.augment, enabled=False)),
        "augmentation in the training process": dataclasses.replace(
            cfg, train=dataclasses.replace(tc, num_workers=0)),
        "augmentation in 1 DataLoader worker": dataclasses.replace(
            cfg, train=dataclasses.replace(tc, num_workers=1)),
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
    from ceasr.features import Fbank

    fbank = Fbank(cfg.features).eval()
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
    base = median(rates["no waveform augmentation"])
    table = [[name, f"{median(v):.1f}", f"{100 * (base / median(v) - 1):+.1f}%"] for name, v in rates.items()]
    waves = runs["augmentation in 1 DataLoader worker"].train_set.waves
    print(format_table(["each augmentation alone, per utterance", "ms"], augmentation_costs(cfg, waves[:100])))
    print()
    print(format_table([f"training ({args.rounds} rounds x {args.steps} steps)", "utt/s", "time vs none"], table))
    worker = median(rates["augmentation in 1 DataLoader worker"])
    print(f"augmentation (1 DataLoader worker) makes training {100 * (base / worker - 1):+.1f}% slower "
          f"({worker:.1f} vs {base:.1f} utt/s)")


if __name__ == "__main__":
    main()
