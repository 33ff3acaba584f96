"""Voice commands on held-out voices: ceasr constrained recognition side by side with PocketSphinx + JSGF.

Run (after ``bench/commands_data.py --out runs/commands-data``)::

    .venv/bin/python bench/commands.py --model runs/demo/model --corpus runs/demo/data --data runs/commands-data

Test sets, all by the demo corpus's test voices (never heard in training): in-grammar = the test manifest's
command utterances; out-of-grammar = the near-miss sentences of ``oog-test.jsonl`` plus the test manifest's
digit strings; noise = ``noise-test.jsonl``. The rejection threshold is calibrated on the dev voices' sets
(dev manifest commands and digits, ``oog-dev``, ``noise-dev``) for ``--target-far``; rows are given at the
config's default threshold and at the calibrated one. PocketSphinx 5.1.1 (en-us acoustic model, single
thread, its own venv) decodes the same files with an equivalent JSGF grammar (every phrase an alternative);
it has no rejection, so a non-empty output is an accept. RTF is per file at batch size 1 (model load and a
warm-up excluded); on the test sets it alternates file by file with the same recognizer with its encoder
traced (``--jit``: the same decisions, less time), and with its encoder in int8 as well (``--jit --int8``).
Streaming, traced as ``ceasr listen`` is by default:
test clips (commands, out-of-grammar, noise) are joined by 0.5-1 s of near-silence into one stream fed in
100 ms chunks to ``CommandSpotter``; latency = stream time at which a command was printed minus the end of
its speech (energy), plus the compute time of that hop.

With ``--verify DIR`` the recognizer is a cascade (:mod:`ceasr.commands.cascade`): ``--model`` traced screens
every file with ``--gate``, ``DIR`` decides the rest; the variants and the stream are left out, and the share
of test files that reached the second stage is printed. RTF is per file: the median, and the total compute
over the total audio (which the second stage's seconds dominate).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, median, p90, pin_threads, write_json  # noqa: E402

from ceasr.audio import load as load_audio, save as save_audio  # noqa: E402
from ceasr.commands import jsgf, load_command_set  # noqa: E402
from ceasr.commands.cascade import CascadeCommandRecognizer  # noqa: E402
from ceasr.commands.calibrate import det_curve, plot_det, threshold_for_far  # noqa: E402
from ceasr.commands.recognize import CommandRecognizer, load_command_recognizer  # noqa: E402
from ceasr.commands.stream import CommandSpotter  # noqa: E402
from ceasr.commands.whisper import WhisperCommandRecognizer  # noqa: E402
from ceasr.config import CommandConfig  # noqa: E402
from ceasr.data.manifest import read_manifest  # noqa: E402
from ceasr.errors import CeasrError  # noqa: E402

PEER_SCRIPT = Path(__file__).resolve().parent / "peers/pocketsphinx_decode.py"


def load_sets(corpus: Path, data: Path, split: str, commands, limit: int | None = None) -> dict[str, list]:
    """{"in", "oog", "noise"}: lists of (id, text, wave) for one split (the first ``limit`` of each)."""
    rows, _ = read_manifest(corpus / f"{split}.jsonl")
    oog_rows, _ = read_manifest(data / f"oog-{split}.jsonl")
    noise_rows, _ = read_manifest(data / f"noise-{split}.jsonl")
    sets = {"in": [r for r in rows if commands.lookup(r.text)],
            "oog": oog_rows + [r for r in rows if not commands.lookup(r.text)], "noise": noise_rows}
    return {k: [(r.id, r.text, load_audio(r.audio)) for r in v[:limit]] for k, v in sets.items()}


def run_ceasr(recognizers: dict[str, CommandRecognizer], sets: dict) -> dict[str, dict[str, list[dict]]]:
    """Per recognizer, per set, per file: best phrase, confidence, seconds (batch 1, after a warm-up). Several
    recognizers take turns file by file, first one then the other, so a change in the machine's speed touches
    all alike."""
    for crec in recognizers.values():
        for _, _, w in sets["in"][:3]:
            crec.recognize(w)
    out = {name: {} for name in recognizers}
    for kind, items in sets.items():
        for name in recognizers:
            out[name][kind] = []
        for i, (uid, text, wave) in enumerate(tqdm(items, desc=f"ceasr {kind}", leave=False)):
            names = list(recognizers)
            for name in names[i % len(names):] + names[: i % len(names)]:
                start = time.perf_counter()
                r = recognizers[name].recognize(wave)
                out[name][kind].append({"id": uid, "ref": text, "best": r.command.text, "slots": r.command.as_dict(),
                                        "confidence": r.confidence, "seconds": time.perf_counter() - start,
                                        "audio_seconds": len(wave) / 16000})
    return out


def run_pocketsphinx(python: Path, sets: dict, commands, env: dict) -> dict[str, list[dict]]:
    with tempfile.TemporaryDirectory(prefix="ceasr-bench-cmd-") as tmp:
        grammar = Path(tmp) / "commands.gram"
        grammar.write_text(jsgf(commands))
        paths, index = [], []
        for kind, items in sets.items():
            for i, (uid, text, wave) in enumerate(items):
                paths.append(str(Path(tmp) / f"{kind}-{i:04d}.wav"))
                save_audio(paths[-1], wave)
                index.append((kind, uid, text))
        proc = subprocess.run([str(python), str(PEER_SCRIPT), "--jsgf", str(grammar)], input=json.dumps(paths),
                              capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CeasrError(f"{PEER_SCRIPT.name} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    out: dict[str, list[dict]] = {k: [] for k in sets}
    for (kind, uid, text), line in zip(index, proc.stdout.splitlines()):
        r = json.loads(line)
        out[kind].append({"id": uid, "ref": text, "best": r["hyp"], "confidence": float(bool(r["hyp"].strip())),
                          "seconds": r["seconds"], "audio_seconds": r["audio_seconds"]})
    return out


def rates(rows: dict[str, list[dict]], threshold: float) -> dict:
    acc = lambda k: np.asarray([r["confidence"] >= threshold for r in rows[k]])  # noqa: E731
    correct = np.asarray([r["best"] == r["ref"] for r in rows["in"]])
    files = [r for k in rows for r in rows[k]]
    return {"accuracy": correct.mean(), "frr": 1 - acc("in").mean(), "wrong_accepts": (acc("in") & ~correct).mean(),
            "far": acc("oog").mean(), "noise": acc("noise").mean(),
            "rtf": median([r["seconds"] / r["audio_seconds"] for r in files]),
            "rtf_total": sum(r["seconds"] for r in files) / sum(r["audio_seconds"] for r in files),
            "counts": {k: len(v) for k, v in rows.items()}}


def speech_end(wave: np.ndarray) -> float:
    """Seconds to the end of the last 10 ms frame within 30 dB of the loudest (the clip's speech end)."""
    frames = wave[: len(wave) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    return (np.flatnonzero(rms >= rms.max() * 10 ** (-30 / 20))[-1] + 1) * 0.01


def quiet_gap(rng: np.random.Generator, low_s: float, high_s: float) -> np.ndarray:
    """Low noise (RMS 0.002) lasting between ``low_s`` and ``high_s`` seconds, to put between clips."""
    return (0.002 * rng.standard_normal(int(rng.uniform(low_s, high_s) * 16000))).astype(np.float32)


def lay(parts: list, spans: list, pos: int, kind: str, text: str, wave: np.ndarray, gap: np.ndarray) -> int:
    """Append ``gap`` then the clip ``wave`` to a stream's ``parts`` (``pos`` samples so far) and the clip's
    span ``(kind, text, start, end, speech_end)`` in seconds to ``spans``; return the new length in samples."""
    parts += [gap, wave]
    start = pos + len(gap)
    spans.append((kind, text, start / 16000, (start + len(wave)) / 16000, start / 16000 + speech_end(wave)))
    return start + len(wave)


def run_stream(crec: CommandRecognizer, sets: dict, clips: int, seed: int = 0) -> dict:
    """Latency, detection and false-detection counts of the spotter on one stream of test clips."""
    rng = np.random.default_rng(seed)
    pool = [("in", x) for x in sets["in"][:clips]] + [("oog", x) for x in sets["oog"][: clips // 2]] + \
           [("noise", x) for x in sets["noise"][: clips // 4]]
    order = rng.permutation(len(pool))
    parts, spans, pos = [], [], 0
    for i in order:
        kind, (uid, text, wave) = pool[i]
        pos = lay(parts, spans, pos, kind, text, wave, quiet_gap(rng, 0.5, 1.0))
    stream = np.concatenate(parts + [np.zeros(16000, np.float32)])
    spotter, found, busy = CommandSpotter(crec), [], 0.0
    for i in range(0, len(stream), 1600):
        start = time.perf_counter()
        got = spotter.feed(stream[i : i + 1600])
        spent = time.perf_counter() - start
        busy += spent
        found += [(d, spent) for d in got]
    found += [(d, 0.0) for d in spotter.flush()]
    scored = score_detections([(d.start, d.end, d.command.text, d.emitted + spent) for d, spent in found], spans)
    return {**scored, "rtf": busy / (len(stream) / 16000), "max_buffer_s": CommandSpotter(crec).max_window / 16000}


def score_detections(found: list[tuple[float, float, str, float]], spans: list[tuple]) -> dict:
    """Detections ``(start, end, phrase, out)`` (``out``: the time it was out, in stream seconds) against the
    stream's clips ``(kind, text, start, end, speech_end)``: a detection whose middle lies within a clip (0.3 s
    either side) finds an in-grammar clip once; any other is false. Latency: ``out`` minus the speech end."""
    hits, false, wrong, latency = set(), 0, 0, []
    for start, end, phrase, out in found:
        mid = (start + end) / 2
        span = next((j for j, s in enumerate(spans) if s[2] - 0.3 <= mid <= s[3] + 0.3), None)
        if span is None or spans[span][0] != "in" or span in hits:
            false += 1
            continue
        hits.add(span)
        wrong += phrase != spans[span][1]
        latency.append(out - spans[span][4])
    n_in = sum(s[0] == "in" for s in spans)
    return {"commands": n_in, "found": len(hits), "wrong": wrong, "false": false,
            "non_commands": len(spans) - n_in, "latency_median": median(latency) if latency else float("nan"),
            "latency_p90": p90(latency) if latency else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--verify", help="a second model (e.g. a Whisper directory) deciding what --model does not gate")
    p.add_argument("--gate", type=float, help="with --verify: --model's confidence below this rejects (config's)")
    p.add_argument("--corpus", required=True, help="folder with the demo corpus's dev.jsonl and test.jsonl")
    p.add_argument("--data", default="runs/commands-data", help="bench/commands_data.py output")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target-far", type=float, default=0.02)
    p.add_argument("--also-far", type=float, default=0.10, help="a second, looser calibration target")
    p.add_argument("--stream-clips", type=int, default=60, help="command clips in the streaming run")
    p.add_argument("--peer-python", default=str(REPO / ".venv-peers/bin/python"))
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--limit", type=int, help="at most this many files per set (a quick check)")
    p.add_argument("--plot", default=str(REPO / "docs/img/commands-det.png"))
    p.add_argument("--out", default=str(REPO / "runs/commands-bench.json"))
    args = p.parse_args()
    env = pin_threads(args.threads)
    commands = load_command_set("default")
    if args.verify:  # the first stage traced, as ceasr listen runs it
        gate = {} if args.gate is None else {"gate": args.gate}
        crec = load_command_recognizer(args.model, jit=True, verify=args.verify, **gate)
    else:
        crec = load_command_recognizer(args.model)
    whisper = isinstance(crec, (WhisperCommandRecognizer, CascadeCommandRecognizer))
    corpus, data = Path(args.corpus), Path(args.data)
    dev = load_sets(corpus, data, "dev", commands, args.limit)
    test = load_sets(corpus, data, "test", commands, args.limit)
    load = load_average()
    dev_rows = run_ceasr({"ceasr": crec}, dev)["ceasr"]
    calibrated = threshold_for_far([r["confidence"] for r in dev_rows["oog"]], args.target_far)
    looser = threshold_for_far([r["confidence"] for r in dev_rows["oog"]], args.also_far)
    if whisper:  # no tracing for Whisper, and at ~2 s a file the variants and the stream are left out
        verified = getattr(crec, "verified", 0)
        rows, stream = run_ceasr({"ceasr": crec}, test), None
        if args.verify:
            files = sum(map(len, test.values()))
            print(f"cascade: gate {crec.gate:g}; {crec.verified - verified} of {files} test files reached {args.verify}")
    else:
        traced = CommandRecognizer(crec.recognizer.traced(), commands, CommandConfig())
        fast = CommandRecognizer(crec.recognizer.int8().traced(), commands, CommandConfig())
        rows = run_ceasr({"ceasr": crec, "ceasr --jit": traced, "ceasr --jit --int8": fast}, test)
        for name, what in (("ceasr --jit", "TorchScript-traced encoder"),
                           ("ceasr --jit --int8", "and the encoder in int8")):
            same = sum(a["best"] == b["best"] for k in test for a, b in zip(rows["ceasr"][k], rows[name][k]))
            print(f"{name} ({what}): the same best phrase on {same}/{sum(map(len, test.values()))} files")
        stream = run_stream(traced, test, args.stream_clips)
    if not args.no_peers:
        rows["PocketSphinx JSGF"] = run_pocketsphinx(Path(args.peer_python), test, commands, env)
    default = crec.cfg.threshold
    table = {f"ceasr, default threshold {default:.3f}": rates(rows["ceasr"], default),
             f"ceasr, dev-calibrated for FAR {100 * args.target_far:g}%: {calibrated:.3f}":
                 rates(rows["ceasr"], calibrated),
             f"ceasr, dev-calibrated for FAR {100 * args.also_far:g}%: {looser:.3f}": rates(rows["ceasr"], looser)}
    if not whisper:
        table[f"ceasr --jit, default threshold {default:.3f}"] = rates(rows["ceasr --jit"], default)
        table[f"ceasr --jit --int8, default threshold {default:.3f}"] = rates(rows["ceasr --jit --int8"], default)
    if "PocketSphinx JSGF" in rows:
        table["PocketSphinx 5.1.1 + JSGF (no rejection)"] = rates(rows["PocketSphinx JSGF"], 0.5)
    report(args, table, stream, load, test)
    conf = lambda k: [r["confidence"] for r in rows["ceasr"][k]]  # noqa: E731
    _, frr, far = det_curve(conf("in"), conf("oog"))
    points = {name: (s["frr"], s["far"]) for name, s in table.items()}
    plot_det({"ceasr constrained (test)": (frr, far)}, points, args.plot)
    write_json(args.out, {"table": table, "stream": stream, "calibrated": calibrated, "rows": rows})


def report(args, table: dict, stream: dict, load: str, test: dict) -> None:
    n = {k: len(v) for k, v in test.items()}
    print(header(args.threads, load, f"test voices: {n['in']} in-grammar, {n['oog']} out-of-grammar, "
                                     f"{n['noise']} noise clips; PocketSphinx single-threaded"))
    head = ["system", "accuracy %", "FRR %", "wrong accepts %", "FAR %", "noise accepted %", "median RTF",
            "total RTF"]
    print(format_table(head, [[name, f"{100 * s['accuracy']:.2f}", f"{100 * s['frr']:.2f}",
                               f"{100 * s['wrong_accepts']:.2f}", f"{100 * s['far']:.2f}",
                               f"{100 * s['noise']:.2f}", f"{s['rtf']:.4f}", f"{s['rtf_total']:.4f}"]
                              for name, s in table.items()]))
    if stream is None:
        print("streaming: not measured (a Whisper model)")
    else:
        print(f"streaming (default threshold, 100 ms chunks): {stream['found']}/{stream['commands']} commands "
              f"found ({stream['wrong']} as a wrong phrase), {stream['false']} false detections among "
              f"{stream['non_commands']} non-command clips, latency after speech end median "
              f"{1000 * stream['latency_median']:.0f} ms / p90 {1000 * stream['latency_p90']:.0f} ms, "
              f"stream RTF {stream['rtf']:.3f}, buffer <= {stream['max_buffer_s']:.1f} s")
    name = next(iter(table))
    s = table[name]
    print(f"headline: {name}: accuracy {100 * s['accuracy']:.2f} %, FRR {100 * s['frr']:.2f} %, "
          f"FAR {100 * s['far']:.2f} %, noise accepted {100 * s['noise']:.2f} %, RTF {s['rtf']:.4f}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        main()
    except CeasrError as e:
        sys.exit(f"error: {e}")
