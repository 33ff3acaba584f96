"""Evaluate a recognizer on a manifest: per-utterance results as JSONL, corpus WER/CER, real-time factor."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ceasr.api import Recognizer
from ceasr.audio import load as load_audio
from ceasr.data.manifest import Utterance, read_reported
from ceasr.errors import AudioError
from ceasr.io import atomic_write_text
from ceasr.metrics import ErrorCounts, char_errors, word_errors
from ceasr.text.normalize import normalize


@dataclass
class EvalReport:
    words: ErrorCounts
    chars: ErrorCounts
    utterances: int
    skipped: int
    audio_seconds: float
    decode_seconds: float
    results_path: Path | None = None
    results: list[dict] = field(default_factory=list, repr=False)
    without_lm: ErrorCounts | None = None  # with an LM or hotwords: the same search without them
    lm_effect: dict[str, int] = field(default_factory=dict)  # per-utterance marks (see :func:`lm_effect`)

    @property
    def rtf(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)

    def summary_lines(self) -> str:
        """The report; its last line is ``WER=... S=.. D=.. I=.. N=..`` like every ceasr evaluation."""
        head = (
            f"utterances={self.utterances} skipped={self.skipped} "
            f"audio={self.audio_seconds:.1f}s rtf={self.rtf:.4f}"
        )
        where = f"\nper-utterance results: {self.results_path}" if self.results_path else ""
        if self.without_lm is not None:
            marks = " ".join(f"{k}={v}" for k, v in sorted(self.lm_effect.items()))
            where += f"\nLM/hotwords changed the output: {marks}\nwithout LM/hotwords: {self.without_lm.summary('WER')}"
        return f"{head}{where}\n{self.chars.summary('CER')}\n{self.words.summary('WER')}"


def lm_effect(without: ErrorCounts, with_lm: ErrorCounts, same_text: bool) -> str:
    """How the LM (and hotwords) changed one utterance: same, fixed (fewer word errors), broke (more), changed."""
    if same_text:
        return "same"
    if with_lm.errors != without.errors:
        return "fixed" if with_lm.errors < without.errors else "broke"
    return "changed"


def evaluate_rows(
    recognizer: Recognizer, rows: list[Utterance], batch_size: int = 16
) -> tuple[EvalReport, list[dict]]:
    """Decode every row (sorted by length, batched) and score it against its normalized reference.

    A row whose audio cannot be read is reported on stderr, counted as skipped, and the rest go on.
    """
    waves, kept, skipped = [], [], 0
    for utt in rows:
        try:
            dur = utt.duration if utt.offset or utt.duration else None
            waves.append(load_audio(utt.audio, offset=utt.offset, duration=dur, sample_rate=recognizer.sample_rate))
            kept.append(utt)
        except AudioError as e:
            print(f"skipped: {e}", file=sys.stderr)
            skipped += 1
    hyps, seconds = _transcribe_all(recognizer, waves, batch_size)
    baseline = None
    if recognizer.scorers is not None:  # the same search without LM and hotwords, to mark what they changed
        baseline, _ = _transcribe_all(recognizer.with_decode(lm="", hotwords=""), waves, batch_size)
    words, chars, results, without, effect = ErrorCounts(), ErrorCounts(), [], ErrorCounts(), {}
    for i, utt in enumerate(kept):
        ref = normalize(utt.text, utt.lang)
        hyp = normalize(hyps[i], utt.lang)
        w, _ = word_errors(ref, hyp)
        c, _ = char_errors(ref, hyp)
        words, chars = words + w, chars + c
        results.append({"id": utt.id, "ref": ref, "hyp": hyp, "S": w.S, "D": w.D, "I": w.I, "N": w.N})
        if baseline is not None:
            plain = normalize(baseline[i], utt.lang)
            w0, _ = word_errors(ref, plain)
            without = without + w0
            mark = lm_effect(w0, w, plain == hyp)
            effect[mark] = effect.get(mark, 0) + 1
            results[-1].update({"hyp_without_lm": plain, "errors_without_lm": w0.errors, "lm": mark})
    audio_seconds = sum(len(w) for w in waves) / recognizer.sample_rate
    report = EvalReport(words, chars, len(kept), skipped, audio_seconds, seconds, results=results)
    if baseline is not None:
        report.without_lm, report.lm_effect = without, effect
    return report, results


def _transcribe_all(recognizer: Recognizer, waves: list[np.ndarray], batch_size: int) -> tuple[list[str], float]:
    """Texts of ``waves`` (decoded shortest first, in batches) and the seconds it took."""
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    hyps: list[str] = [""] * len(waves)
    start = time.perf_counter()
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        for i, t in zip(idx, recognizer.transcribe_batch([waves[i] for i in idx])):
            hyps[i] = t.text
    return hyps, time.perf_counter() - start


def evaluate_manifest(
    recognizer: Recognizer, manifest: str | Path, out: str | Path | None = None, batch_size: int = 16
) -> EvalReport:
    """Evaluate a manifest; bad rows are reported and skipped. Results go to ``out`` (JSONL)."""
    rows, bad_rows = read_reported(manifest)
    report, results = evaluate_rows(recognizer, rows, batch_size)
    report.skipped += bad_rows  # broken manifest rows count as skipped too
    if out is None:
        out = Path(manifest).with_suffix(".results.jsonl")
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    report.results_path = Path(out)
    return report


def real_time_factors(recognizer: Recognizer, waves: list[np.ndarray], warmup: int = 2) -> list[float]:
    """Per-file RTF at batch size 1 (processing seconds / audio seconds), warm-up excluded."""
    for w in waves[:warmup]:
        recognizer.transcribe_batch([w])
    rtfs = []
    for w in waves:
        start = time.perf_counter()
        recognizer.transcribe_batch([w])
        rtfs.append((time.perf_counter() - start) / (len(w) / recognizer.sample_rate))
    return rtfs
