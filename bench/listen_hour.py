"""`ceasr listen` on an hour of audio: memory stays bounded, detections and latency hold up over the whole stream.

Builds one long 16 kHz stream from the held-out test clips of the commands bench (in-grammar commands,
out-of-grammar speech, noise-only clips, each after a 0.5-3 s gap of low noise, in a shuffled order that
repeats until ``--minutes`` are filled) and pipes it as raw PCM into ``ceasr listen --format json`` as fast
as the process reads, as a user piping a recorder into it would (only faster). Meanwhile the process's
resident memory (``VmRSS``) is sampled against the stream time fed so far. Reports the memory at a few
points and its growth over the second half, the stream's real-time factor (wall time over audio time), the
commands found, the false detections and the latency after the end of speech in stream time (``emitted``
minus the clip's speech end: what the spotter waits for; compute time adds the RTF's share on top).

    python bench/listen_hour.py --model runs/demo/model --corpus runs/demo/data --data runs/commands-data \
        [--minutes 60] [--threads 2] [--plot docs/img/listen-rss.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commands import lay, load_sets, quiet_gap, score_detections  # noqa: E402
from common import REPO, format_table, header, load_average, pin_threads, write_json  # noqa: E402

from ceasr.commands import load_command_set  # noqa: E402

SR = 16000
CHUNK = SR // 10  # 100 ms of s16le per write


def build_stream(sets: dict, seconds: float, seed: int) -> tuple[list[np.ndarray], list[tuple]]:
    """Parts (float32 arrays) filling ``seconds`` and each clip's span ``(kind, text, start, end, speech_end)``."""
    rng = np.random.default_rng(seed)
    pool = [(kind, clip) for kind in ("in", "oog", "noise") for clip in sets[kind]]
    parts, spans, pos = [], [], 0
    while pos < seconds * SR:
        for i in rng.permutation(len(pool)):
            kind, (_, text, wave) = pool[i]
            pos = lay(parts, spans, pos, kind, text, wave, quiet_gap(rng, 0.5, 3.0))
            if pos >= seconds * SR:
                break
    parts.append(np.zeros(SR, np.float32))
    return parts, spans


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(cmd: list[str], env: dict, parts: list[np.ndarray]) -> tuple[list[dict], list[tuple[float, float]], float]:
    """Pipe ``parts`` into ``cmd``; return its JSON detections, (stream seconds fed, RSS MB) samples, wall s."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    fed = [0]  # samples written so far
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def feed() -> None:
        try:
            for part in parts:
                pcm = (np.clip(part, -1.0, 1.0) * 32767).astype("<i2").tobytes()
                for i in range(0, len(pcm), 2 * CHUNK):
                    chunk = pcm[i : i + 2 * CHUNK]
                    proc.stdin.write(chunk)
                    fed[0] += len(chunk) // 2
            proc.stdin.close()
        except BrokenPipeError:  # ceasr listen stopped early: its exit code says why
            pass

    def sample() -> None:
        while not done.is_set():
            mb = rss_mb(proc.pid)
            if mb is not None:
                samples.append((fed[0] / SR, mb))
            done.wait(0.1)

    start = time.perf_counter()
    writer, sampler = threading.Thread(target=feed), threading.Thread(target=sample)
    writer.start()
    sampler.start()
    found = [json.loads(line) for line in proc.stdout]
    writer.join()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"ceasr listen exited with {code}")
    return found, samples, wall


def rss_at(samples: list[tuple[float, float]], t: float) -> float:
    """The last RSS sample taken at or before ``t`` seconds of stream (the first one if none is)."""
    before = [mb for s, mb in samples if s <= t]
    return before[-1] if before else samples[0][1]


def plot(samples: list[tuple[float, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([s / 60 for s, _ in samples], [mb for _, mb in samples], lw=1)
    ax.set_xlabel("stream time fed (minutes)")
    ax.set_ylabel("resident memory (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True, help="folder with the demo corpus's test.jsonl")
    p.add_argument("--data", default="runs/commands-data", help="bench/commands_data.py output")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", nargs="*", default=[], help="more `ceasr listen` options, e.g. --jit")
    p.add_argument("--plot", default=str(REPO / "docs/img/listen-rss.png"))
    p.add_argument("--out", default=str(REPO / "runs/listen-hour.json"))
    args = p.parse_args()
    env = pin_threads(args.threads)
    load = load_average()
    sets = load_sets(Path(args.corpus), Path(args.data), "test", load_command_set("default"))
    parts, spans = build_stream(sets, 60 * args.minutes, args.seed)
    seconds = sum(len(x) for x in parts) / SR
    ceasr = str(Path(sys.executable).parent / "ceasr")
    cmd = [ceasr, "listen", "--model", args.model, "--commands", "default", "--input", "-", "--format", "json",
           *args.extra]
    print(f"# {seconds / 60:.1f} min of stream, {len(spans)} clips; {' '.join(cmd[1:])}", file=sys.stderr)
    found, samples, wall = run(cmd, env, parts)
    result = score_detections([(d["start"], d["end"], d["phrase"], d["emitted"]) for d in found], spans)
    marks = [m for m in (1, 10, 30, 60, 120) if m * 60 < seconds - 30] + [round(seconds / 60, 1)]
    second_half = [mb for s, mb in samples if s >= seconds / 2]
    result.update({
        "minutes": seconds / 60, "wall_s": wall, "rtf": wall / seconds,
        "rss_mb": {f"{m:g} min": rss_at(samples, 60 * m) for m in marks},
        "rss_max_mb": max(mb for _, mb in samples),
        "rss_growth_second_half_mb": (max(second_half) - min(second_half)) if second_half else float("nan"),
        "command": " ".join(cmd[1:]),
    })
    print(header(args.threads, load, f"{seconds / 60:.1f} min of stream piped into `ceasr listen`"))
    print(format_table(["stream minutes", *result["rss_mb"], "max", "growth over 2nd half"],
                       [["RSS (MB)", *(f"{v:.0f}" for v in result["rss_mb"].values()), f"{result['rss_max_mb']:.0f}",
                         f"{result['rss_growth_second_half_mb']:.1f}"]]))
    print(f"commands found {result['found']}/{result['commands']} ({result['wrong']} as a wrong phrase), "
          f"false detections {result['false']} among {result['non_commands']} other clips, latency after speech end "
          f"median {1000 * result['latency_median']:.0f} ms / p90 {1000 * result['latency_p90']:.0f} ms, "
          f"wall {wall:.0f} s, stream RTF {result['rtf']:.4f}")
    write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M"), **result})
    plot(samples, Path(args.plot), f"ceasr listen, {seconds / 60:.0f} min of stream, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
