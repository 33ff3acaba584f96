"""Evaluate a recognizer on a manifest: per-utterance results as JSONL, corpus WER/CER, real-time factor.

When a reference holds Chinese, the report adds the mixed error rate (MER: each Chinese character and each
English word one unit), the CER of the Chinese part, the WER of the English part, the MER of each group of
utterances by reference language (on Mandarin-only it is their CER, on English-only their WER), and how often
the recognized utterance language (zh / en / mixed) is the reference's; its last line is then the MER.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ceasr.api import Recognizer
from ceasr.audio import load as load_audio
from ceasr.data.manifest import Utterance, read_reported
from ceasr.errors import AudioError
from ceasr.io import atomic_write_text
from ceasr.metrics import ErrorCounts, char_errors, language_errors, mixed_errors, word_errors
from ceasr.text.normalize import normalize
from ceasr.text.script import EN, MIXED, ZH, is_han, text_language

LANGUAGE_UNIT = {ZH: "CER", EN: "WER", MIXED: "MER"}  # what the MER of an utterance group amounts to


@dataclass
class MixedReport:
    """Chinese–English scores: MER over everything, its Chinese (CER) and English (WER) parts, MER by the
    reference's language, and utterance language tags right out of how many."""

    mer: ErrorCounts = field(default_factory=ErrorCounts)
    zh_chars: ErrorCounts = field(default_factory=ErrorCounts)
    en_words: ErrorCounts = field(default_factory=ErrorCounts)
    by_language: dict[str, ErrorCounts] = field(default_factory=dict)
    language_correct: int = 0
    utterances: int = 0

    def add(self, ref: str, hyp: str, result: dict) -> None:
        """Score one utterance, adding its MER counts and languages to ``result``."""
        counts, _ = mixed_errors(ref, hyp)
        lang, hyp_lang = text_language(ref), text_language(hyp)
        self.mer += counts
        self.zh_chars += language_errors(ref, hyp, ZH)[0]
        self.en_words += language_errors(ref, hyp, EN)[0]
        self.by_language[lang] = self.by_language.get(lang, ErrorCounts()) + counts
        self.language_correct += lang == hyp_lang
        self.utterances += 1
        result.update(lang=lang, hyp_lang=hyp_lang, MER={"S": counts.S, "D": counts.D, "I": counts.I, "N": counts.N})

    @property
    def language_accuracy(self) -> float:
        return self.language_correct / max(self.utterances, 1)

    def lines(self) -> list[str]:
        """Summary lines, the MER last."""
        out = [f"{lang or 'empty'} utterances: {c.summary(LANGUAGE_UNIT.get(lang, 'MER'))}"
               for lang, c in sorted(self.by_language.items())]
        out += [self.zh_chars.summary("CER(zh)"), self.en_words.summary("WER(en)"),
                f"language tag accuracy={self.language_accuracy:.4f} "
                f"({self.language_correct}/{self.utterances} utterances)", self.mer.summary("MER")]
        return out


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
    mixed: MixedReport | None = None  # when a reference holds Chinese

    @property
    def rtf(self) -> float:
        return self.decode_seconds / max(self.audio_seconds, 1e-9)

    def by_speaker(self) -> dict[str, ErrorCounts]:
        """Word error counts per speaker (the manifest's ``speaker``; "" when a row has none)."""
        out: dict[str, ErrorCounts] = {}
        for r in self.results:
            name = r.get("speaker", "")
            out[name] = out.get(name, ErrorCounts()) + ErrorCounts(r["S"], r["D"], r["I"], r["N"])
        return out

    def speaker_lines(self) -> list[str]:
        """A table of WER by speaker, the worst first (ties by name), as sclite's speaker report."""
        counts = self.by_speaker()
        utts = Counter(r.get("speaker", "") for r in self.results)
        width = max([len("speaker")] + [len(k or "?") for k in counts])
        lines = [f"{'speaker':<{width}} {'utts':>5} {'WER':>7} {'S':>5} {'D':>5} {'I':>5} {'N':>6}"]
        for name, c in sorted(counts.items(), key=lambda kv: (-kv[1].rate, kv[0])):
            lines.append(f"{name or '?':<{width}} {utts[name]:>5} {c.rate:>7.4f} {c.S:>5} {c.D:>5} {c.I:>5} {c.N:>6}")
        return lines

    def summary_lines(self, by_speaker: bool = False) -> str:
        """The report (with ``by_speaker``, the WER of each speaker first); its last line is ``WER=... S=.. D=..
        I=.. N=..`` like every ceasr evaluation, or ``MER=... S=.. D=.. I=.. N=..`` when the references hold
        Chinese."""
        rtf = f"{self.rtf:.4f}" if self.audio_seconds > 0 else "n/a"
        head = f"utterances={self.utterances} skipped={self.skipped} audio={self.audio_seconds:.1f}s rtf={rtf}"
        where = f"\nper-utterance results: {self.results_path}" if self.results_path else ""
        lm_lines = []
        if self.without_lm is not None:
            marks = " ".join(f"{k}={v}" for k, v in sorted(self.lm_effect.items()))
            lm_lines = [f"LM/hotwords changed the output: {marks}", f"without LM/hotwords: {self.without_lm.summary('WER')}"]
        speakers = self.speaker_lines() if by_speaker else []
        lines = [f"{head}{where}", *speakers, *lm_lines, self.chars.summary("CER"), self.words.summary("WER")]
        return "\n".join(lines + (self.mixed.lines() if self.mixed else []))


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
    report = score(kept, hyps)
    report.skipped, report.decode_seconds = skipped, seconds
    report.audio_seconds = sum(len(w) for w in waves) / recognizer.sample_rate
    if recognizer.scorers is not None:  # the same search without LM and hotwords, to mark what they changed
        baseline, _ = _transcribe_all(recognizer.with_decode(lm="", hotwords=""), waves, batch_size)
        _mark_lm_effect(report, kept, baseline)
    return report, report.results


def score(rows: list[Utterance], hyps: list[str]) -> EvalReport:
    """Score hypotheses against the rows' normalized references (each normalized by its row's language);
    the mixed Chinese–English scores are added when any reference holds a Chinese character."""
    refs = [normalize(utt.text, utt.lang) for utt in rows]
    hyps = [normalize(hyp, utt.lang) for utt, hyp in zip(rows, hyps)]
    mixed = MixedReport() if any(is_han(c) for ref in refs for c in ref) else None
    words, chars, results = ErrorCounts(), ErrorCounts(), []
    for utt, ref, hyp in zip(rows, refs, hyps):
        w, _ = word_errors(ref, hyp)
        c, _ = char_errors(ref, hyp)
        words, chars = words + w, chars + c
        results.append({"id": utt.id, "ref": ref, "hyp": hyp, "S": w.S, "D": w.D, "I": w.I, "N": w.N}
                       | ({"speaker": utt.speaker} if utt.speaker else {}))
        if mixed is not None:
            mixed.add(ref, hyp, results[-1])
    return EvalReport(words, chars, len(rows), 0, 0.0, 0.0, results=results, mixed=mixed)


def _mark_lm_effect(report: EvalReport, rows: list[Utterance], baseline: list[str]) -> None:
    """Add to each result the hypothesis without LM/hotwords and whether they fixed, broke or changed it."""
    without, effect = ErrorCounts(), {}
    for utt, result, plain in zip(rows, report.results, baseline):
        plain = normalize(plain, utt.lang)
        w0, _ = word_errors(result["ref"], plain)
        w = ErrorCounts(result["S"], result["D"], result["I"], result["N"])
        without = without + w0
        mark = lm_effect(w0, w, plain == result["hyp"])
        effect[mark] = effect.get(mark, 0) + 1
        result.update({"hyp_without_lm": plain, "errors_without_lm": w0.errors, "lm": mark})
    report.without_lm, report.lm_effect = without, effect


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
