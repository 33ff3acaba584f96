"""``ceasr evaluate-commands``: accuracy, false rejections and accepts, DET curve and real-time factor.

Three manifests: in-grammar utterances (their text is a phrase of the set), out-of-grammar speech and,
optionally, noise-only audio (its text is ignored). Each file is recognized alone (batch size 1), so the
real-time factor is the per-file one. Per-utterance results go to ``commands-results.jsonl`` and the DET
curve to ``commands_det.png`` in the output folder.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ceasr.audio import load as load_audio
from ceasr.commands.calibrate import det_curve, plot_det, threshold_for_far
from ceasr.commands.recognize import CommandRecognizer
from ceasr.data.manifest import read_reported
from ceasr.errors import AudioError
from ceasr.io import atomic_write_text
from ceasr.text.normalize import normalize

KINDS = ("in", "oog", "noise")


@dataclass
class CommandReport:
    """Counts per kind of audio and the rates derived from them, at ``threshold``."""

    threshold: float
    target_far: float
    calibrated: float  # the threshold that would meet target_far on this out-of-grammar set
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    correct: int = 0  # in-grammar: best phrase and slots equal the reference
    accepted_correct: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    det_path: Path | None = None
    results_path: Path | None = None

    def rate(self, kind: str) -> float:
        return self.accepted[kind] / max(self.counts[kind], 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.counts["in"], 1)

    @property
    def frr(self) -> float:
        return 1.0 - self.rate("in")

    @property
    def rtf(self) -> float:
        return self.seconds / max(self.audio_seconds, 1e-9)

    def summary_lines(self) -> str:
        c = self.counts
        lines = [
            f"in-grammar={c['in']} out-of-grammar={c['oog']} noise={c['noise']} skipped={self.skipped} "
            f"audio={self.audio_seconds:.1f}s rtf={self.rtf:.4f} threshold={self.threshold:.4f}",
            f"threshold for false accepts <= {100 * self.target_far:g}% on this set: {self.calibrated:.4f}",
        ]
        lines += [f"{k}: {v}" for k, v in (("results", self.results_path), ("DET curve", self.det_path)) if v]
        lines.append(
            f"accuracy={100 * self.accuracy:.2f}% ({self.correct}/{c['in']}) "
            f"accepted-correct={100 * self.accepted_correct / max(c['in'], 1):.2f}% "
            f"FRR={100 * self.frr:.2f}% FAR={100 * self.rate('oog'):.2f}% "
            f"noise-accepted={100 * self.rate('noise'):.2f}%"
        )
        return "\n".join(lines)


def _score_rows(crec: CommandRecognizer, kind: str, manifest, report: CommandReport) -> list[dict]:
    """Recognize every row of one manifest; unreadable files and (for in-grammar) texts outside the set are
    reported on stderr and skipped."""
    rows, bad = read_reported(manifest)
    report.skipped += bad
    results = []
    for utt in tqdm(rows, desc=f"{kind} {Path(manifest).name}", unit="utt", leave=False):
        ref = normalize(utt.text, utt.lang) if kind == "in" else None
        if kind == "in" and crec.commands.lookup(ref) is None:
            print(f"skipped: {utt.id}: {ref!r} is not a phrase of command set {crec.commands.name!r}",
                  file=sys.stderr)
            report.skipped += 1
            continue
        try:
            dur = utt.duration if utt.offset else None
            wave = load_audio(utt.audio, offset=utt.offset, duration=dur, sample_rate=crec.sample_rate)
        except AudioError as e:
            print(f"skipped: {e}", file=sys.stderr)
            report.skipped += 1
            continue
        start = time.perf_counter()
        result = crec.recognize(wave)
        report.seconds += time.perf_counter() - start
        report.audio_seconds += len(wave) / crec.sample_rate
        correct = kind == "in" and result.command == crec.commands.lookup(ref)
        results.append({"id": utt.id, "kind": kind, "ref": ref, **result.as_dict(), "correct": correct})
    return results


def evaluate_commands(
    crec: CommandRecognizer, in_grammar, out_of_grammar, noise_only=None, out_dir=None, target_far: float = 0.02
) -> CommandReport:
    """Evaluate ``crec`` at its threshold on the manifests; write results and the DET plot to ``out_dir``."""
    report = CommandReport(crec.cfg.threshold, target_far, 0.0)
    results = []
    for kind, manifest in zip(KINDS, (in_grammar, out_of_grammar, noise_only)):
        if manifest is not None:
            results += _score_rows(crec, kind, manifest, report)
    for r in results:
        report.counts[r["kind"]] += 1
        accepted = r["confidence"] >= report.threshold
        report.accepted[r["kind"]] += accepted
        report.correct += r["correct"]
        report.accepted_correct += r["correct"] and accepted
    conf = {k: [r["confidence"] for r in results if r["kind"] == k] for k in KINDS}
    report.calibrated = threshold_for_far(conf["oog"], target_far) if conf["oog"] else float("nan")
    if out_dir is not None:
        out_dir = Path(out_dir)
        report.results_path = out_dir / "commands-results.jsonl"
        atomic_write_text(report.results_path, "".join(json.dumps(r) + "\n" for r in results))
        if conf["in"] and conf["oog"]:
            _, frr, far = det_curve(conf["in"], conf["oog"])
            report.det_path = out_dir / "commands_det.png"
            point = {f"threshold {report.threshold:.3f}": (report.frr, report.rate("oog"))}
            plot_det({"ceasr constrained": (frr, far)}, point, report.det_path)
    return report

