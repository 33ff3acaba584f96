"""Robustness report: WER of one or more models under noise at several SNRs, gain and reverberation.

Each :class:`Condition` turns a manifest into corrupted audio once (:func:`corrupt_manifest`, written to disk
with a manifest of its own, from a seed), so every model and every decoder is scored on the very same
samples. :func:`robustness_report` runs a grid of conditions for several models and writes the table as
JSON and CSV and the curves as ``robustness.png``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ceasr.audio import load as load_audio
from ceasr.audio import save as save_audio
from ceasr.data import augment as aug
from ceasr.data.manifest import Utterance, read_manifest, write_manifest
from ceasr.errors import AudioError, ConfigError
from ceasr.io import atomic_write_text

SYNTHETIC = "synthetic"
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Condition:
    """One way to corrupt audio: additive noise at an SNR, a gain (with clipping), reverberation.

    ``noise``: a colour (white, pink, brown), ``babble`` (other utterances of the same manifest) or a folder
    of noise recordings; ``snr_db`` is required with it. ``rir``: ``synthetic`` (RT60 uniform in ``rt60``,
    direct-to-reverberant ratio uniform in ``drr_db``) or a folder of impulse responses. Reverberation comes
    first, then noise, then gain. ``Condition()`` is the clean audio.
    """

    noise: str | None = None
    snr_db: float | None = None
    gain_db: float = 0.0
    rir: str | None = None
    rt60: tuple[float, float] = (0.3, 0.8)
    drr_db: tuple[float, float] = (0.0, 10.0)

    def __post_init__(self):
        if (self.noise is None) != (self.snr_db is None):
            raise ConfigError(f"condition {self}: noise and snr_db go together")
        if self.noise is not None and self.noise not in (*aug.NOISE_COLORS, "babble") and not Path(self.noise).is_dir():
            raise ConfigError(f"noise {self.noise!r}: neither {', '.join([*aug.NOISE_COLORS, 'babble'])} nor a folder")
        if self.rir not in (None, SYNTHETIC) and not Path(self.rir).is_dir():
            raise ConfigError(f"rir {self.rir!r}: neither {SYNTHETIC!r} nor a folder")

    @property
    def clean(self) -> bool:
        return self.noise is None and self.gain_db == 0.0 and self.rir is None

    @property
    def name(self) -> str:
        """E.g. ``clean``, ``white 10 dB``, ``gain -30 dB``, ``reverb synthetic``."""
        parts = []
        if self.rir is not None:
            parts.append(f"reverb {_label(self.rir)}")
        if self.noise is not None:
            parts.append(f"{_label(self.noise)} {self.snr_db:g} dB")
        if self.gain_db != 0.0:
            parts.append(f"gain {self.gain_db:+g} dB")
        return ", ".join(parts) or "clean"

    @property
    def slug(self) -> str:
        """A folder name for the condition's audio."""
        return "".join(c if c.isalnum() or c in "+-." else "_" for c in self.name)


def _label(value: str) -> str:
    return value if value in (*aug.NOISE_COLORS, "babble", SYNTHETIC) else Path(value).name


class _Corrupter:
    """Applies one condition to the waves of a manifest (babble draws from the other waves)."""

    def __init__(self, condition: Condition, waves: list[np.ndarray], seed: int):
        c = self.c = condition
        self.waves, self.seed = waves, seed
        self.folder = aug.NoiseFolder(c.noise, SAMPLE_RATE) if c.noise is not None and Path(c.noise).is_dir() else None
        self.rirs = aug.load_rirs(c.rir, SAMPLE_RATE) if c.rir not in (None, SYNTHETIC) else None
        # The SNR and gain do not enter the seed: one noise (and room) per utterance at every level.
        self.key = zlib.crc32(f"{c.noise}|{c.rir}".encode())

    def __call__(self, k: int) -> np.ndarray:
        c, wave = self.c, self.waves[k]
        rng = np.random.default_rng([self.seed, self.key, k])
        if c.rir is not None:
            if self.rirs is not None:
                rir = self.rirs[int(rng.integers(len(self.rirs)))]
            else:
                rt60, drr = rng.uniform(*c.rt60), rng.uniform(*c.drr_db)
                rir = aug.synthetic_rir(rt60, rng, SAMPLE_RATE, drr_db=drr)
            wave = aug.reverberate(wave, rir)
        if c.noise is not None:
            others = self.waves[:k] + self.waves[k + 1 :] or [wave]
            noise = aug.make_noise(c.noise if self.folder is None else "folder", len(wave), rng, others, self.folder)
            if noise is not None:
                wave = aug.mix_at_snr(wave, noise, c.snr_db)
        return aug.apply_gain(wave, c.gain_db, clip=True)


def corrupt_manifest(
    rows: list[Utterance], condition: Condition, out_dir: str | Path, seed: int = 0
) -> list[Utterance]:
    """Write ``rows``' audio corrupted by ``condition`` under ``out_dir/<condition>/`` and return the new rows.

    Files are 16-bit WAVs named by row id, written atomically with ``manifest.jsonl`` beside them; the same
    rows, condition and seed give the same bytes, and a second call reuses what the first wrote. A row whose
    audio cannot be read is reported on stderr and left out. The clean condition returns ``rows`` as they are.
    """
    if condition.clean:
        return list(rows)
    folder = Path(out_dir) / condition.slug
    manifest, stamp = folder / "manifest.jsonl", folder / "condition.json"
    sources = [[r.id, r.audio, r.offset, r.duration] for r in rows]
    wanted = {"condition": asdict(condition), "seed": seed, "rows": sources}
    if manifest.exists() and stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(wanted)):
        return read_manifest(manifest)[0]
    waves, kept = [], []
    for r in rows:
        try:
            dur = r.duration if r.offset or r.duration else None
            waves.append(load_audio(r.audio, offset=r.offset, duration=dur, sample_rate=SAMPLE_RATE))
            kept.append(r)
        except AudioError as e:
            print(f"skipped: {e}", file=sys.stderr)
    corrupt = _Corrupter(condition, waves, seed)
    out = []
    for k, r in enumerate(kept):
        path = folder / f"{r.id}.wav"
        wave = corrupt(k)
        save_audio(path, wave, SAMPLE_RATE)
        out.append(Utterance(str(path.resolve()), r.text, r.id, 0.0, len(wave) / SAMPLE_RATE, r.speaker, r.lang))
    write_manifest(manifest, out)
    atomic_write_text(stamp, json.dumps(wanted) + "\n")
    return out


def condition_grid(noises: list[str], snrs: list[str], gains: list[float], rir: str | None) -> list[Condition]:
    """Clean; each noise at each numeric SNR; each non-zero gain; reverberation alone (if ``rir``)."""
    grid = [Condition()]
    levels = []
    for s in snrs:
        if s != "clean":
            try:
                levels.append(float(s))
            except ValueError:
                raise ConfigError(f"--snr: {s!r} is neither 'clean' nor a number of dB") from None
    grid += [Condition(noise=n, snr_db=s) for n in noises for s in levels]
    grid += [Condition(gain_db=g) for g in gains if g != 0.0]
    if rir:
        grid.append(Condition(rir=rir))
    return grid


@dataclass(frozen=True)
class Score:
    """One model under one condition."""

    model: str
    condition: str
    noise: str | None
    snr_db: float | None
    gain_db: float
    rir: str | None
    wer: float
    S: int
    D: int
    I: int  # noqa: E741 (the standard name)
    N: int
    utterances: int
    skipped: int


def robustness_report(models: dict[str, object], rows: list[Utterance], conditions: list[Condition],
                      out_dir: str | Path, seed: int = 0, progress: bool = True) -> list[Score]:
    """Score every model (label -> Recognizer) under every condition; write robustness.{json,csv,png}.

    Corrupted audio goes to ``out_dir/audio`` (reused by later runs with the same seed).
    """
    from ceasr.evaluate import evaluate_rows

    out_dir = Path(out_dir)
    scores = []
    bar = tqdm(total=len(conditions) * len(models), desc="robustness", unit="eval", disable=not progress)
    for cond in conditions:
        crows = corrupt_manifest(rows, cond, out_dir / "audio", seed)
        for label, recognizer in models.items():
            report, _ = evaluate_rows(recognizer, crows)
            w = report.words
            scores.append(Score(label, cond.name, cond.noise and _label(cond.noise), cond.snr_db, cond.gain_db,
                                cond.rir and _label(cond.rir), w.rate, w.S, w.D, w.I, w.N,
                                report.utterances, report.skipped + len(rows) - len(crows)))
            bar.update(1)
    bar.close()
    write_report(scores, out_dir)
    return scores


def format_table(scores: list[Score]) -> str:
    """WER (%) per condition (rows) and model (columns)."""
    models = list(dict.fromkeys(s.model for s in scores))
    conds = list(dict.fromkeys(s.condition for s in scores))
    wer = {(s.model, s.condition): s.wer for s in scores}
    cells = [["condition", *(f"WER% {m}" for m in models)]]
    cells += [[c, *(f"{100 * wer[m, c]:.1f}" if (m, c) in wer else "-" for m in models)] for c in conds]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join([r[0].ljust(widths[0]), *(x.rjust(w) for x, w in zip(r[1:], widths[1:]))])
                     for r in cells)


def write_report(scores: list[Score], out_dir: Path) -> None:
    """robustness.json, robustness.csv and robustness.png in ``out_dir``, each written atomically."""
    from ceasr.io import atomic_path

    rows = [asdict(s) for s in scores]
    atomic_write_text(out_dir / "robustness.json", json.dumps(rows, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "robustness.csv", buf.getvalue())
    with atomic_path(out_dir / "robustness.png") as tmp:
        plot(scores, tmp)


def plot(scores: list[Score], path: str | Path) -> None:
    """WER vs SNR (one line per noise and model; clean at the right), WER vs gain, and reverberation bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(s.model for s in scores))
    clean = {s.model: s.wer for s in scores if s.condition == "clean"}
    noisy = [s for s in scores if s.noise is not None and s.rir is None and s.gain_db == 0.0]
    gains = [s for s in scores if s.noise is None and s.rir is None and s.gain_db != 0.0]
    reverb = [s for s in scores if s.rir is not None and s.noise is None and s.gain_db == 0.0]
    panels = [p for p in ("snr", "gain", "reverb") if {"snr": noisy, "gain": gains, "reverb": reverb}[p]]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4.2), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, panel in zip(axes[0], panels):
        if panel == "snr":
            _snr_panel(ax, noisy, clean, models, styles)
        elif panel == "gain":
            for k, (m, style) in enumerate(zip(models, styles * 4)):
                pts = [(s.gain_db, s.wer) for s in gains if s.model == m] + ([(0.0, clean[m])] if m in clean else [])
                pts.sort()
                ax.plot([g for g, _ in pts], [100 * w for _, w in pts], style, marker="o", color=f"C{k}", label=m)
            ax.set(xlabel="gain (dB)", ylabel="WER (%)", title="WER vs gain")
        else:
            for k, m in enumerate(models):
                vals = [clean.get(m, float("nan"))] + [s.wer for s in reverb if s.model == m]
                names = ["clean"] + [s.condition for s in reverb if s.model == m]
                x = np.arange(len(vals)) + k * 0.8 / len(models)
                ax.bar(x, [100 * v for v in vals], width=0.8 / len(models), label=m)
                ax.set_xticks(np.arange(len(vals)) + 0.4 - 0.4 / len(models), names)
            ax.set(ylabel="WER (%)", title="reverberation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def _snr_panel(ax, noisy: list[Score], clean: dict[str, float], models: list[str], styles: list[str]) -> None:
    levels = sorted({s.snr_db for s in noisy})
    clean_x = levels[-1] + max(5.0, (levels[-1] - levels[0]) / 4 if len(levels) > 1 else 5.0)
    kinds = list(dict.fromkeys(s.noise for s in noisy))
    colors = {k: f"C{i}" for i, k in enumerate(kinds)}
    for m, style in zip(models, styles * 4):
        for kind in kinds:
            pts = sorted((s.snr_db, s.wer) for s in noisy if s.model == m and s.noise == kind)
            if m in clean:
                pts.append((clean_x, clean[m]))
            ax.plot([x for x, _ in pts], [100 * w for _, w in pts], style, marker="o", color=colors[kind],
                    label=f"{kind} ({m})")
    ax.set_xticks([*levels, clean_x], [f"{v:g}" for v in levels] + ["clean"])
    ax.set(xlabel="SNR (dB)", ylabel="WER (%)", title="WER vs SNR")
