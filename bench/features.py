"""Feature extraction throughput: ceasr's batched torch Fbank vs kaldi-native-fbank, side by side.

Run: ``.venv/bin/python bench/features.py [--batch 16] [--repeats 15]``

The same random-length utterances (1-3 s of noise, 16 kHz) go through ceasr's :class:`~ceasr.features.Fbank`
as one padded batch and through kaldi-native-fbank one utterance at a time (its interface; its Python
binding holds the GIL, so a thread pool does not speed it up). Runs alternate, after a warm-up, and the
table gives the median seconds of audio per wall-clock second. The last line is the headline ratio
(ceasr at 2 threads / kaldi-native-fbank).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import kaldi_native_fbank as knf
import numpy as np
import torch

from ceasr.config import FeatureConfig
from ceasr.features import INT16_SCALE, Fbank


def make_audio(batch: int, seed: int = 0) -> list[np.ndarray]:
    """``batch`` utterances of 1-3 s of noise in [-1, 1]."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(16000, 48000, size=batch)
    return [np.clip(rng.standard_normal(n) * 0.1, -1, 1).astype(np.float32) for n in lens]


def ceasr_runner(waves: list[np.ndarray]):
    """A closure computing the whole batch with ceasr's Fbank (at the current torch thread count)."""
    fbank = Fbank(FeatureConfig())
    lens = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)

    def run():
        with torch.inference_mode():
            fbank(batch, lens)

    return run


def knf_runner(waves: list[np.ndarray]):
    """A closure computing every utterance with kaldi-native-fbank (int16 scale, as ceasr uses)."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.mel_opts.num_bins = 80
    scaled = [w * INT16_SCALE for w in waves]  # scaling is outside the timed region for knf

    def run():
        for w in scaled:
            fb = knf.OnlineFbank(opts)
            fb.accept_waveform(16000, w)
            fb.input_finished()
            np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    waves = make_audio(args.batch)
    audio_seconds = sum(len(w) for w in waves) / 16000
    # name -> (torch threads, runner); knf is single-threaded whatever torch is set to.
    runners = {
        "ceasr Fbank, batched, 2 threads": (2, ceasr_runner(waves)),
        "ceasr Fbank, batched, 1 thread": (1, ceasr_runner(waves)),
        "kaldi-native-fbank, per utterance": (1, knf_runner(waves)),
    }
    for threads, run in runners.values():  # warm-up: allocator, MKL, first-call overheads
        torch.set_num_threads(threads)
        run()
    speeds = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, (threads, run) in runners.items():  # alternate: drifts in machine load hit every row
            torch.set_num_threads(threads)
            start = time.perf_counter()
            run()
            speeds[name].append(audio_seconds / (time.perf_counter() - start))
    torch.set_num_threads(2)

    medians = {name: statistics.median(v) for name, v in speeds.items()}
    peer = medians["kaldi-native-fbank, per utterance"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}, {os.cpu_count()} CPUs, load average {load} "
          f"(other jobs skew multi-threaded rows most), torch {torch.__version__}, knf {knf.__version__}")
    print(f"# {args.batch} utterances, {audio_seconds:.1f} s of audio, {args.repeats} alternating repeats")
    print(f"{'extractor':<36} {'audio s / wall s (median)':>26} {'min':>8} {'max':>8} {'vs knf':>7}")
    for name, value in medians.items():
        print(f"{name:<36} {value:>26.0f} {min(speeds[name]):>8.0f} {max(speeds[name]):>8.0f} "
              f"{value / peer:>7.2f}")
    print(f"headline: ceasr Fbank (batch {args.batch}, 2 threads) / kaldi-native-fbank = "
          f"{medians['ceasr Fbank, batched, 2 threads'] / peer:.2f}x")


if __name__ == "__main__":
    main()
