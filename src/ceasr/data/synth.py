"""The default corpus: utterances synthesized offline by the installed TTS engines, split by voice.

``synthesize(out_dir)`` writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` and 16 kHz mono 16-bit WAV
files under ``out_dir/audio/<split>/``. Everything is drawn from seeded RNGs (utterance ``k`` of a split gets
its own RNG from ``(seed, split, k)``), so a seed gives the same texts, voices, prosody and audio bytes
whatever the number of worker processes.

Voices are split before any audio is made (see :func:`split_voices`): a speaker, and every voice sharing its
timbre, lives in exactly one split, so dev and test measure unseen voices.

``lang`` picks the language: English (the default), Mandarin (``zh``) or both with code-switched utterances
(``zh-en``, see :mod:`ceasr.data.bilingual`). A mixed utterance is made by synthesizing each language's stretch
with a voice of that language (one timbre, the espeak-ng variant, for both) and joining the stretches with
short pauses; ``{split}.stretches.jsonl`` records where each stretch starts and ends. This module plans and
collects; :mod:`ceasr.data.render` turns one planned utterance into a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ceasr.data.domain import DOMAINS, TextSource, command_phrases, read_text_file
from ceasr.data.manifest import Utterance, write_manifest
from ceasr.data.render import Job, postprocess, render
from ceasr.data.voices import ENGINES, Voice
from ceasr.errors import CeasrError
from ceasr.io import atomic_write_text
from ceasr.text.script import text_language

__all__ = ["DOMAINS", "ENGINES", "SynthSummary", "Voice", "command_phrases", "postprocess", "split_voices",
           "synthesize"]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# Raised whenever the same arguments come to give other files, so a stamped corpus is made anew. 2 (2026-12-07):
# festival's three recorded speakers give two to train and none to dev (was one each). 3 (2026-12-07): the
# training splits draw digit strings twice as often (TRAIN_DOMAINS; dev and test unchanged).
CORPUS_VERSION = 3
# The default text domains of each language ``synthesize`` speaks, drawn uniformly from the tuple (a domain
# named twice is drawn twice as often). zh-en: English, Mandarin and mixed; English counts twice, as it has
# three engines and ~900 voices to generalize over against Mandarin's one voice in ~100 variants.
LANG_DOMAINS = {
    "en": ("digits", "commands"),
    "zh": ("zh_digits", "zh_commands"),
    "zh-en": ("digits", "commands", "digits", "commands", "zh_digits", "zh_commands", "mixed_commands"),
}
# The training split's draws where they differ from LANG_DOMAINS (dev and test keep those, so they measure the
# same mix): digit strings twice as often, where nearly all errors were (README: "Digit strings drawn twice as
# often in training", "Mandarin digit strings drawn twice as often in training").
TRAIN_DOMAINS = {
    "en": ("digits", "commands", "digits"),
    "zh-en": ("digits", "commands", "digits", "commands", "zh_digits", "zh_commands", "zh_digits", "mixed_commands"),
}
SPLIT_SHARES = {"train": 0.78, "dev": 0.10, "test": 0.12}  # of each engine's voice groups
MEAN_SECONDS_GUESS = 1.8  # first estimate of an utterance's length; later rounds use the measured mean
MAX_ROUNDS = 20
PAD_SECONDS = (0.1, 0.2)  # silence left before and after the speech
PEAK_DBFS = (-12.0, -1.0)
# A white-noise floor under every file, as any microphone has: TTS engines emit exact digital zeros, whose
# log-mel energy is the float floor (about -16), a value real recordings never show.
NOISE_DBFS = (-80.0, -60.0)


@dataclass
class SplitStats:
    utterances: int = 0
    seconds: float = 0.0
    voices: int = 0  # distinct speakers with at least one utterance


@dataclass
class SynthSummary:
    """What :func:`synthesize` wrote; ``failures`` holds one line per utterance a TTS call failed on."""

    out_dir: Path
    engines: tuple[str, ...]
    splits: dict[str, SplitStats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.splits.values())

    def __str__(self) -> str:
        lines = [f"{'split':<6} {'utterances':>10} {'hours':>7} {'voices':>6}"]
        for name, s in self.splits.items():
            lines.append(f"{name:<6} {s.utterances:>10} {s.seconds / 3600:>7.3f} {s.voices:>6}")
        total = sum(s.utterances for s in self.splits.values())
        lines.append(f"{'total':<6} {total:>10} {self.seconds / 3600:>7.3f}")
        lines.append(f"engines: {', '.join(self.engines)}; failed TTS calls: {len(self.failures)}; "
                     f"wall time {self.wall_seconds:.1f} s; written to {self.out_dir}")
        return "\n".join(lines)


# The engines of the default corpus (Debian main's). The recorded voices of MBROLA, RHVoice and Pico are
# opt-in (``engines=["all"]`` or by name): measured 2026-12-01, adding them to the demo corpus at the demo's
# step budget raised the test WER on the same held-out voices from 15.1 % to 21.4 % (README).
DEFAULT_ENGINES = ("espeak-ng", "flite", "festival")


def installed_engines(engines: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The engines to use: ``engines`` checked against :data:`ENGINES` and the system; ``None``: the installed
    ones of :data:`DEFAULT_ENGINES`; ``["all"]``: every installed engine."""
    if engines is None or list(engines) == ["all"]:
        wanted = DEFAULT_ENGINES if engines is None else tuple(ENGINES)
        found = [name for name in wanted if ENGINES[name].available()]
        if not found:
            raise CeasrError(f"no TTS engine installed (looked for {', '.join(wanted)}); "
                             "on Debian: apt-get install espeak-ng flite")
        return found
    for name in engines:
        if name not in ENGINES:
            raise CeasrError(f"unknown TTS engine {name!r}; known: {', '.join(ENGINES)}")
        if not ENGINES[name].available():
            raise CeasrError(f"TTS engine {name!r} is not installed")
    return list(dict.fromkeys(engines))


def _split_counts(n: int, held_out: bool) -> dict[str, int]:
    """How many of an engine's ``n`` voice groups go to each split: test gets at least one when n >= 2, dev at
    least one when n >= 4. An engine of three recorded speakers (festival) keeps two for training: such a voice
    is worth more there than in dev, which the ~900 espeak-ng timbres fill."""
    if held_out:
        return {"train": 0, "dev": 0, "test": n}
    if n < 4:
        return {"train": n - (n >= 2), "dev": 0, "test": int(n >= 2)}
    test = max(1, round(n * SPLIT_SHARES["test"]))
    dev = max(1, round(n * SPLIT_SHARES["dev"]))
    return {"train": n - test - dev, "dev": dev, "test": test}


def split_voices(voices: list[Voice], seed: int = 0, holdout_engine: str | None = None) -> dict[str, list[Voice]]:
    """Assign voice groups to splits, engine by engine, after a seeded shuffle.

    Each engine's groups are shared ~78/10/12 % so every split gets each engine where it has >= 4 groups;
    ``holdout_engine``'s voices all go to test. A group another engine already placed (the same recorded
    speaker in flite and festival) stays where it is, so no speaker is in two splits.
    """
    rng = np.random.default_rng([seed, 7919])
    where: dict[str, str] = {}  # group -> split
    for engine in sorted({v.engine for v in voices}, key=lambda e: (e != holdout_engine, e)):
        groups = sorted({v.group for v in voices if v.engine == engine} - set(where))
        groups = [groups[i] for i in rng.permutation(len(groups))]
        counts = _split_counts(len(groups), engine == holdout_engine)
        bounds = np.cumsum([0] + [counts[name] for name in SPLITS])
        for name, lo, hi in zip(SPLITS, bounds, bounds[1:]):
            where.update(dict.fromkeys(groups[lo:hi], name))
    return {name: [v for v in voices if where[v.group] == name] for name in SPLITS}


class _Planner:
    """Draws jobs split by split: utterance ``k`` of a split gets its own RNG; voices of an engine are used in
    turn (a seeded order) so every voice of a split is heard before any is heard twice."""

    def __init__(self, splits: dict[str, list[Voice]], sources: dict[str, TextSource], seed: int, out_dir: Path):
        """``sources``: each split's text source."""
        self.sources, self.seed, self.out_dir = sources, seed, out_dir
        self.by_engine: dict[str, dict[str, list[Voice]]] = {}
        for i, (name, voices) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, 104729, i])
            engines = sorted({v.engine for v in voices})
            self.by_engine[name] = {e: [voices[j] for j in rng.permutation(len(voices)) if voices[j].engine == e]
                                    for e in engines}
        self.next_k = dict.fromkeys(splits, 0)
        self.turns = {(s, e): 0 for s, engines in self.by_engine.items() for e in engines}

    def can_plan(self, split: str) -> bool:
        return bool(self.by_engine[split])

    def plan(self, split: str, n: int) -> list[Job]:
        return [self._one(split) for _ in range(n)]

    def _rng(self, split: str) -> tuple[str, np.random.Generator]:
        """The next utterance id of ``split`` and its own RNG."""
        k = self.next_k[split]
        self.next_k[split] += 1
        return f"{split}-{k:06d}", np.random.default_rng([self.seed, SPLITS.index(split), k])

    def _english_voice(self, split: str, rng: np.random.Generator) -> Voice:
        """An engine drawn by share, then that engine's next voice in turn."""
        engines = list(self.by_engine[split])
        weights = np.array([ENGINES[e].share for e in engines])
        engine = engines[int(rng.choice(len(engines), p=weights / weights.sum()))]
        voices = self.by_engine[split][engine]
        voice = voices[self.turns[split, engine] % len(voices)]
        self.turns[split, engine] += 1
        return voice

    def _one(self, split: str) -> Job:
        uid, rng = self._rng(split)
        voice = self._english_voice(split, rng)
        return self._job(uid, split, voice, self.sources[split](rng), rng)

    def _job(self, uid: str, split: str, voice: Voice, text: str, rng: np.random.Generator, **extra) -> Job:
        """The job with its prosody, padding and levels drawn from ``rng`` (after the voice and text)."""
        return Job(id=uid, split=split, voice=voice, text=text, prosody=ENGINES[voice.engine].prosody(rng),
                   pad=tuple(round(float(p), 3) for p in rng.uniform(*PAD_SECONDS, size=2)),
                   peak_db=round(float(rng.uniform(*PEAK_DBFS)), 2),
                   noise_db=round(float(rng.uniform(*NOISE_DBFS)), 2),
                   path=str(self.out_dir / "audio" / split / f"{uid}.wav"), **extra)


def synthesize(
    out_dir: str | Path,
    hours: float = 0.5,
    seed: int = 0,
    domains: tuple[str, ...] | None = None,
    text_file: str | Path | None = None,
    engines: tuple[str, ...] | list[str] | None = None,
    holdout_engine: str | None = None,
    jobs: int = 2,
    progress: bool = True,
    lang: str = "en",
) -> SynthSummary:
    """Synthesize about ``hours`` of audio into ``out_dir`` (manifests ``{train,dev,test}.jsonl`` + ``audio/``).

    Texts come from ``domains`` (see :data:`ceasr.data.domain.DOMAINS`; default: ``LANG_DOMAINS[lang]``, and
    ``TRAIN_DOMAINS[lang]`` for the training split where it has one), or from the lines of ``text_file``
    (normalized for ``lang``). ``lang`` is "en", "zh" or "zh-en" (see above).
    ``engines`` defaults to the installed ones of :data:`DEFAULT_ENGINES` (``["all"]``: every installed one);
    ``holdout_engine`` puts all of that engine's voices in test.
    Splits get audio in proportion to their voices; each stops at the first utterance that reaches its share.
    ``jobs`` worker processes run the TTS calls. A failing call is logged, counted and skipped.
    """
    started = time.perf_counter()
    if not hours > 0:
        raise CeasrError(f"hours must be positive, got {hours}")
    if jobs < 1:
        raise CeasrError(f"jobs must be at least 1, got {jobs}")
    if lang not in LANG_DOMAINS:
        raise CeasrError(f"unknown language {lang!r} for synthesis; known: {', '.join(LANG_DOMAINS)}")
    names = corpus_engines(engines, lang)
    if holdout_engine is not None and holdout_engine not in names:
        raise CeasrError(f"holdout engine {holdout_engine!r} is not among the engines used ({', '.join(names)})")
    given_domains = bool(domains)
    domains = (domains,) if isinstance(domains, str) else tuple(domains or LANG_DOMAINS[lang])
    source = TextSource(lines=read_text_file(text_file, lang)) if text_file is not None else TextSource(domains)
    sources = dict.fromkeys(SPLITS, source)
    if text_file is None and not given_domains and lang in TRAIN_DOMAINS:
        sources["train"] = TextSource(TRAIN_DOMAINS[lang])
    out_dir = Path(out_dir).resolve()  # write_manifest stores paths relative to the resolved folder
    voices, mandarin = corpus_voices(names, lang)
    splits = split_voices(voices + mandarin, seed, holdout_engine)
    if not splits["train"]:
        raise CeasrError(f"no voice left for training: every voice of {', '.join(names)} is held out")
    targets = {s: hours * 3600 * len(splits[s]) / len(voices + mandarin) for s in SPLITS}
    summary = SynthSummary(out_dir, tuple(names))
    if lang == "en":
        planner = _Planner(splits, sources, seed, out_dir)
    else:
        from ceasr.data.bilingual import BilingualPlanner  # it builds on this module

        planner = BilingualPlanner(splits, set(mandarin), sources, seed, out_dir)
    made = _render_all(planner, targets, jobs, progress, summary.failures)
    for split in SPLITS:
        rows, stretches = _keep_until(made[split], targets[split])
        write_manifest(out_dir / f"{split}.jsonl", rows)
        if lang != "en":
            atomic_write_text(out_dir / f"{split}.stretches.jsonl", stretches)
        _remove_stale(out_dir / "audio" / split, split, rows)
        summary.splits[split] = SplitStats(len(rows), sum(r.duration for r in rows), len({r.speaker for r in rows}))
    summary.wall_seconds = time.perf_counter() - started
    return summary


def corpus_engines(engines: tuple[str, ...] | list[str] | None, lang: str = "en") -> list[str]:
    """The engines ``synthesize`` uses for ``lang``: :func:`installed_engines`, espeak-ng alone by default for
    Mandarin (the only engine here that speaks it)."""
    return installed_engines(engines if lang != "zh" else (engines or ["espeak-ng"]))


def corpus_voices(names: list[str], lang: str = "en") -> tuple[list[Voice], list[Voice]]:
    """The English and the Mandarin voices that ``synthesize`` splits for ``lang`` with the engines ``names``
    (what is installed decides them, so they are part of what makes a corpus for a seed)."""
    voices = [v for name in names for v in ENGINES[name].voices()] if lang != "zh" else []
    return voices, (_mandarin_voices(names) if lang != "en" else [])


def voice_digest(lang: str = "en") -> str:
    """A short digest of the voices the default engines offer for ``lang``: it changes when a voice is installed
    or removed, and with it the corpus a seed gives."""
    english, mandarin = corpus_voices(corpus_engines(None, lang), lang)
    ids = "\n".join(sorted(v.id for v in english + mandarin))
    return f"{len(english + mandarin)}:{hashlib.sha256(ids.encode()).hexdigest()[:12]}"


def _mandarin_voices(names: list[str]) -> list[Voice]:
    """espeak-ng's Mandarin voices; a CeasrError when espeak-ng is not among the engines or has none."""
    voices = ENGINES["espeak-ng"].mandarin_voices() if "espeak-ng" in names else []
    if not voices:
        raise CeasrError("Mandarin needs espeak-ng with a Mandarin voice (espeak-ng --voices=zh lists none "
                         "that reads Chinese characters, or espeak-ng is not among the engines)")
    return voices


def _render_all(planner: _Planner, targets: dict[str, float], jobs: int, progress: bool,
                failures: list[str]) -> dict[str, list[tuple[Job, float, list]]]:
    """Render in rounds until every split has its target seconds: each round plans what the remaining
    seconds need at the mean length measured so far (plus 5 %), so a run takes two or three rounds."""
    made: dict[str, list[tuple[Job, float, list]]] = {s: [] for s in SPLITS}
    mean, produced = MEAN_SECONDS_GUESS, 0.0
    total = math.ceil(sum(targets.values()))
    # Counted in whole seconds of audio, so the rate reads as seconds of audio per wall second.
    bar_args = dict(total=total, desc="synthesizing", unit="s", disable=not progress, delay=0.5,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s of audio "
                               "[{elapsed}<{remaining}, {rate_fmt}]")
    # The pool forks before tqdm starts its monitor thread.
    with (Pool(jobs) if jobs > 1 else nullcontext()) as pool, tqdm(**bar_args) as bar:
        for _ in range(MAX_ROUNDS):
            batch = []
            for split, target in targets.items():
                remaining = target - sum(seconds for _, seconds, _ in made[split])
                if remaining > 0 and planner.can_plan(split):
                    batch += planner.plan(split, math.ceil(remaining / mean * 1.05))
            if not batch:
                break
            by_id = {job.id: job for job in batch}
            chunk = max(1, len(batch) // (8 * jobs))
            results = pool.imap_unordered(render, batch, chunk) if pool else map(render, batch)
            for uid, seconds, error, spans in results:
                if error is not None:
                    log.warning("skipped %s", error)
                    failures.append(error)
                    continue
                made[by_id[uid].split].append((by_id[uid], seconds, spans))
                produced += seconds
                bar.update(min(total, int(produced)) - bar.n)
            lengths = [seconds for triples in made.values() for _, seconds, _ in triples]
            if not lengths:
                raise CeasrError(f"no utterance could be synthesized; first failure: {failures[0]}")
            mean = float(np.mean(lengths))
    failures.sort()
    return made


def _keep_until(made: list[tuple[Job, float, list]], target: float) -> tuple[list[Utterance], str]:
    """Utterances in plan order up to the first that reaches ``target`` seconds; the rest are deleted, so the
    result does not depend on how the rounds fell. Also their stretches as JSON lines: per utterance, each
    one-language stretch's language, text, and start and end in seconds."""
    rows, lines, total = [], [], 0.0
    for job, seconds, spans in sorted(made, key=lambda triple: triple[0].id):
        if total >= target:
            Path(job.path).unlink(missing_ok=True)
            continue
        total += seconds
        rows.append(Utterance(audio=job.path, text=job.text, id=job.id, duration=round(seconds, 4),
                              speaker=job.voice.id, lang=job.lang))
        texts = [text for text, _ in job.stretches] or [job.text]
        stretches = [{"lang": text_language(t), "text": t, "start": a, "end": b} for t, (a, b) in zip(texts, spans)]
        lines.append(json.dumps({"id": job.id, "stretches": stretches}, ensure_ascii=False) + "\n")
    return rows, "".join(lines)


def _remove_stale(folder: Path, split: str, rows: list[Utterance]) -> None:
    """Delete audio an earlier, larger run left in ``folder`` under this run's naming, so the folder holds
    exactly the manifest's files."""
    keep = {Path(row.audio).name for row in rows}
    for path in folder.glob(f"{split}-*.wav"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
