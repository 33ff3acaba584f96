"""Real-time factor and WER of a trained ceasr model side by side with PocketSphinx, per file at batch size 1.

Run: ``.venv/bin/python bench/rtf.py --model DIR --manifest TEST.jsonl [--files 60] [--threads 2]``

Files of ``--min-seconds``..``--max-seconds`` are picked from the manifest, evenly spread over its rows
(deterministic). ceasr's RTF covers features + encoder + decoding from a float array (model load and file
reading excluded), for CTC greedy, CTC prefix beam (beam 4), attention beam search (beam 4, CTC weight
0.3) and attention rescoring of the CTC prefix beam's 8-best (CTC weight 0.5). PocketSphinx 5.1.1 (en-us
acoustic model) runs in its own venv (``.venv-peers``) on the same samples written as PCM16 wav, once with
its general en-us LM and once with a JSGF grammar of the default domain (digit strings of 1-7 words, the 61
command phrases); its timing covers ``process_raw`` from PCM bytes in memory (model load excluded).
Systems alternate within each of ``--rounds`` rounds; a file's RTF is its median over rounds, and the table
gives the median and p90 over files and the corpus WER (S, D, I, N) on text normalized by ceasr's normalizer
for every system. The last line is the headline: ceasr greedy RTF.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO, format_table, header, load_average, median, p90, pin_threads, wait_for_quiet, write_json,
)

import ceasr  # noqa: E402
from ceasr.audio import load as load_audio, save as save_audio  # noqa: E402
from ceasr.data.domain import DIGIT_WORDS, MAX_DIGITS, command_phrases  # noqa: E402
from ceasr.data.manifest import Utterance, read_manifest  # noqa: E402
from ceasr.errors import CeasrError  # noqa: E402
from ceasr.evaluate import real_time_factors  # noqa: E402
from ceasr.metrics import ErrorCounts, corpus_errors  # noqa: E402
from ceasr.text.normalize import normalize  # noqa: E402

PEER_PYTHON = REPO / ".venv-peers/bin/python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers/pocketsphinx_decode.py"
ATTENTION_LIMIT = 0.02  # the RTF above which the attention row gets a note

# name -> decode options (``Recognizer.with_decode`` fields) and torch threads (None: --threads).
CEASR_SYSTEMS = {
    "ceasr ctc_greedy": ({"method": "ctc_greedy"}, None),
    "ceasr ctc_prefix_beam (beam 4)": ({"method": "ctc_prefix_beam", "beam_size": 4}, None),
    "ceasr attention (beam 4, ctc 0.3)": ({"method": "attention", "beam_size": 4, "ctc_weight": 0.3}, None),
    "ceasr attention_rescoring (beam 8, ctc 0.5)": (
        {"method": "attention_rescoring", "beam_size": 8, "ctc_weight": 0.5}, None),
    "ceasr ctc_greedy, 1 thread": ({"method": "ctc_greedy"}, 1),
}
HEADLINE = "ceasr ctc_greedy"
ATTENTION = "ceasr attention (beam 4, ctc 0.3)"


def pick_rows(manifest: str, count: int, lo: float, hi: float) -> list[Utterance]:
    """``count`` rows with lo <= duration <= hi, evenly spaced over the manifest's qualifying rows."""
    rows, errors = read_manifest(manifest)
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    fits = [r for r in rows if r.duration is not None and lo <= r.duration <= hi]
    if not fits:
        raise CeasrError(f"{manifest}: no rows between {lo} and {hi} s (with a duration field)")
    idx = np.unique(np.linspace(0, len(fits) - 1, min(count, len(fits))).round().astype(int))
    return [fits[i] for i in idx]


def jsgf_grammar() -> str:
    """A JSGF grammar of the default domain: a digit string of 1..MAX_DIGITS words, or a command phrase."""
    digit = " | ".join(DIGIT_WORDS)
    digits = " ".join(["<digit>"] + ["[<digit>]"] * (MAX_DIGITS - 1))
    commands = " |\n    ".join(command_phrases())
    return (
        "#JSGF V1.0;\ngrammar ceasr_demo;\npublic <utterance> = <digits> | <command>;\n"
        f"<digit> = {digit};\n<digits> = {digits};\n<command> =\n    {commands};\n"
    )


def ceasr_texts(recognizer, waves: list[np.ndarray]) -> list[str]:
    """One untimed pass at batch size 1: the hypotheses, and the warm-up of this decoder."""
    return [recognizer.transcribe_batch([w])[0].text for w in waves]


def run_peer(wav_paths: list[str], extra: list[str], env: dict) -> tuple[list[float], list[str]]:
    """Per-file RTF and hypothesis from one PocketSphinx process (it warms up on two files first)."""
    proc = subprocess.run(
        [str(PEER_PYTHON), str(PEER_SCRIPT), *extra], input=json.dumps(wav_paths),
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise CeasrError(f"{PEER_SCRIPT.name} failed (exit {proc.returncode}): {tail[0]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [r["seconds"] / r["audio_seconds"] for r in rows], [r["hyp"] for r in rows]


def measure(recognizers: dict, peers: dict, waves, wav_paths, rounds: int, threads: int, env: dict):
    """Per-system lists (one per round) of per-file RTFs, and each system's hypotheses.

    ceasr decoders first make one untimed pass for the hypotheses; each timed pass also warms up on two
    files (``real_time_factors``). Within a round every system runs once, so load drifts hit all of them.
    """
    rtfs: dict[str, list[list[float]]] = {name: [] for name in [*recognizers, *peers]}
    texts: dict[str, list[str]] = {}
    for name, (rec, n) in recognizers.items():
        torch.set_num_threads(n or threads)
        texts[name] = ceasr_texts(rec, waves)
    for r in range(rounds):
        for name, (rec, n) in recognizers.items():
            torch.set_num_threads(n or threads)
            rtfs[name].append(real_time_factors(rec, waves))
        for name, extra in peers.items():
            values, texts[name] = run_peer(wav_paths, extra, env)
            rtfs[name].append(values)
        print(f"# round {r + 1}/{rounds} done, load average {load_average()}", file=sys.stderr)
    torch.set_num_threads(threads)
    return rtfs, texts


def summarize(rtfs: dict, texts: dict, rows: list[Utterance]) -> dict[str, dict]:
    """Median and p90 over files of each file's median RTF over rounds; corpus WER on normalized text."""
    refs = [normalize(r.text, r.lang) for r in rows]
    out = {}
    for name, rounds in rtfs.items():
        per_file = np.median(np.asarray(rounds), axis=0)  # (files,)
        hyps = [normalize(h, r.lang) for h, r in zip(texts[name], rows)]
        errors: ErrorCounts = corpus_errors(refs, hyps)
        out[name] = {
            "rtf_median": median(per_file), "rtf_p90": p90(per_file), "wer": errors.rate,
            "S": errors.S, "D": errors.D, "I": errors.I, "N": errors.N, "rtf_per_file": per_file.tolist(),
        }
    return out


def print_table(summary: dict[str, dict], reference: str | None) -> None:
    head = ["system", "median RTF", "p90 RTF", f"x faster than {reference or '-'}", "WER %", "S", "D", "I", "N"]
    rows = []
    for name, s in summary.items():
        speed = summary[reference]["rtf_median"] / s["rtf_median"] if reference else float("nan")
        rows.append([name, f"{s['rtf_median']:.4f}", f"{s['rtf_p90']:.4f}", f"{speed:.1f}",
                     f"{100 * s['wer']:.2f}", s["S"], s["D"], s["I"], s["N"]])
    print(format_table(head, rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a ceasr model directory")
    parser.add_argument("--manifest", required=True, help="test manifest (JSONL)")
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (PocketSphinx is single-threaded)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="ceasr rows only")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES",
                        help="first wait up to this long for the 1-min load average to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", help="JSON results (default: <model dir>.rtf.json next to the model)")
    return parser.parse_args()


def headline(summary: dict, threads: int, peer: str | None) -> str:
    s = summary[HEADLINE]
    line = f"headline: ceasr ctc_greedy median RTF {s['rtf_median']:.4f} ({threads} threads, batch 1, " \
           f"WER {100 * s['wer']:.2f} %)"
    if peer:
        p = summary[peer]
        line += f"; {p['rtf_median'] / s['rtf_median']:.0f}x faster than {peer} " \
                f"(RTF {p['rtf_median']:.3f}, WER {100 * p['wer']:.2f} %)"
    return line


def main() -> None:
    args = parse_args()
    env = pin_threads(args.threads)
    rows = pick_rows(args.manifest, args.files, args.min_seconds, args.max_seconds)
    base = ceasr.load_model(args.model)
    sr = base.sample_rate
    waves = [load_audio(r.audio, offset=r.offset, duration=r.duration if r.offset else None, sample_rate=sr)
             for r in rows]
    recognizers = {name: (base.with_decode(**opts), n) for name, (opts, n) in CEASR_SYSTEMS.items()}
    with tempfile.TemporaryDirectory(prefix="ceasr-bench-rtf-") as tmp:
        # The peer gets the very samples ceasr decodes, as the 16 kHz PCM16 wav it reads.
        wav_paths = [str(Path(tmp) / f"{i:04d}.wav") for i in range(len(waves))]
        for path, w in zip(wav_paths, waves):
            save_audio(path, w, sr)
        grammar = Path(tmp) / "domain.gram"
        grammar.write_text(jsgf_grammar())
        peers = {} if args.no_peers else {
            "PocketSphinx en-us LM": [], "PocketSphinx JSGF grammar": ["--jsgf", str(grammar)]}
        if args.wait_quiet > 0:
            wait_for_quiet(args.max_load, 60 * args.wait_quiet)
        load = load_average()
        rtfs, texts = measure(recognizers, peers, waves, wav_paths, args.rounds, args.threads, env)
    summary = summarize(rtfs, texts, rows)
    audio = sum(len(w) for w in waves) / sr
    print(header(args.threads, load, f"PocketSphinx single-threaded; {len(rows)} files of "
                                     f"{args.min_seconds:g}-{args.max_seconds:g} s ({audio:.0f} s) from "
                                     f"{args.manifest}, {args.rounds} alternating rounds"))
    peer = None if args.no_peers else "PocketSphinx en-us LM"
    print_table(summary, peer)
    att = summary[ATTENTION]["rtf_median"]
    if att > ATTENTION_LIMIT:
        print(f"note: attention decoding RTF {att:.3f} is over {ATTENTION_LIMIT}")
    model_dir = Path(args.model).resolve()
    out = Path(args.out) if args.out else model_dir.with_name(model_dir.name + ".rtf.json")
    write_json(out, {"model": str(Path(args.model).resolve()), "manifest": str(args.manifest),
                     "threads": args.threads, "rounds": args.rounds, "load_before": load,
                     "files": [r.id for r in rows], "audio_seconds": audio, "systems": summary,
                     "hypotheses": texts})
    print(headline(summary, args.threads, peer))


if __name__ == "__main__":
    try:
        main()
    except CeasrError as e:  # a bad model, manifest, config or peer: one line, no traceback
        sys.exit(f"error: {e}")
