"""Offline TTS engines for the synthetic corpus: which voices each has, how to vary them, how to call them.

espeak-ng also speaks Mandarin (:meth:`Espeak.mandarin_voices`) for the bilingual corpus.

Beyond Debian main's espeak-ng, flite and festival, three engines from Debian's contrib and non-free sections
add recorded (natural) voices: MBROLA diphone voices driven by espeak-ng (:class:`Mbrola`), RHVoice's
HTS voices built from CMU ARCTIC and other speakers (:class:`Rhvoice`) and SVOX Pico (:class:`Pico`).

An engine is an object with ``name``, ``share`` (its weight when a split's utterances are shared between
engines), ``available()``, ``voices()``, ``prosody(rng)`` and ``render(voice, text, prosody) -> (wave, rate)``.
:data:`ENGINES` names them. What is installed is detected at run time; nothing is downloaded.

A :class:`Voice` is one speaker: engine + voice + variant. Its ``group`` is the unit that is kept in a single
split: voices that share a timbre (one espeak-ng variant across accents, flite's ``kal`` at 8 and 16 kHz)
share a group, so a test speaker's timbre is never heard in training.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

TIMEOUT = 60.0  # seconds for one TTS call; a hung engine fails that utterance, not the run


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # the engine's own voice name: "en-us", "slt"
    variant: str = ""  # espeak-ng variant ("f3", "klatt"); "" for none
    group: str = ""  # voices of one group go to the same split

    @property
    def id(self) -> str:
        """The speaker id stored in manifests, e.g. ``espeak-ng:en-us+f3`` or ``flite:slt``."""
        return f"{self.engine}:{self.name}" + (f"+{self.variant}" if self.variant else "")


def _run(cmd: list[str], stdin: str | None = None) -> bytes:
    """Run a TTS command, return its stdout; raises RuntimeError with the engine's own message on failure."""
    try:
        done = subprocess.run(cmd, input=stdin.encode() if stdin else None, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{cmd[0]} timed out after {TIMEOUT:.0f} s") from None
    except OSError as e:
        raise RuntimeError(f"cannot run {cmd[0]} ({e.strerror or e})") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        message = next((line for line in lines if "error" in line.lower()), lines[-1])
        raise RuntimeError(f"{cmd[0]} exited with {done.returncode}: {message}")
    return done.stdout


def _read_wav(data: bytes, what: str) -> tuple[np.ndarray, int]:
    """WAV bytes to ((T,) float32, rate); espeak-ng's streamed header has no length, soundfile copes."""
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise RuntimeError(f"{what} wrote no readable audio ({len(data)} bytes: {e})") from None
    return wave.mean(axis=1), rate


def _render_to_file(voice: Voice, command, stdin: str | None = None) -> tuple[np.ndarray, int]:
    """Run the engine command ``command(out_path, tmp_dir)`` that writes a WAV file (in a fresh temporary
    folder), and read that file."""
    with tempfile.TemporaryDirectory(prefix=f"ceasr-{voice.engine}-") as tmp:
        out = Path(tmp, "out.wav")  # pico2wave wants a name ending in .wav
        _run(command(out, Path(tmp)), stdin=stdin)
        if not out.exists():
            raise RuntimeError(f"{voice.id} wrote no audio")
        return _read_wav(out.read_bytes(), voice.id)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


class Espeak:
    """espeak-ng: every English accent it has (MBROLA voices aside) times every voice variant."""

    name = "espeak-ng"
    share = 0.7

    def available(self) -> bool:
        return shutil.which(self.name) is not None

    def voices(self) -> list[Voice]:
        variants = [""] + _espeak_variants()
        return [Voice(self.name, accent, variant, f"{self.name}:+{variant}")
                for accent in _espeak_accents() for variant in variants]

    def mandarin_voices(self) -> list[Voice]:
        """Mandarin voices (every variant of each usable Mandarin voice); a variant's group is the one its
        English voices have, so one timbre stays in one split across both languages."""
        variants = [""] + _espeak_variants()
        return [Voice(self.name, name, variant, f"{self.name}:+{variant}")
                for name in _espeak_mandarin() for variant in variants]

    def prosody(self, rng: np.random.Generator) -> dict:
        # rate in words per minute, pitch 0..99 (50 is the voice's own), amplitude kept low enough not to clip,
        # gap between words in units of 10 ms.
        return {"rate": int(rng.integers(130, 201)), "pitch": int(rng.integers(25, 76)),
                "amplitude": int(rng.integers(40, 91)), "gap": int(rng.integers(0, 4))}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        spec = voice.name + (f"+{voice.variant}" if voice.variant else "")
        return _read_wav(_run(_espeak_command(spec, prosody), stdin=text), voice.id)


def _espeak_command(spec: str, prosody: dict) -> list[str]:
    """espeak-ng speaking stdin to a WAV on stdout with ``prosody``'s rate, pitch and, when given, amplitude
    and word gap."""
    cmd = ["espeak-ng", "-v", spec, "-s", str(prosody["rate"]), "-p", str(prosody["pitch"])]
    for flag, key in (("-a", "amplitude"), ("-g", "gap")):
        if key in prosody:
            cmd += [flag, str(prosody[key])]
    return cmd + ["--stdout", "--stdin"]


@cache
def _espeak_voice_rows(lang: str) -> list[list[str]]:
    """The rows of ``espeak-ng --voices=LANG`` split into fields (language, name, ..., file in field 4)."""
    return [line.split() for line in _run(["espeak-ng", f"--voices={lang}"]).decode().splitlines()[1:]]


@cache
def _espeak_accents() -> list[str]:
    """English accents (``en-us``, ``en-gb-scotland``, ...) from ``espeak-ng --voices=en``.

    MBROLA voices (files ``mb/...``) are left out: they are the :class:`Mbrola` engine's (the mbrola program
    and its voice data).
    """
    accents = {row[1] for row in _espeak_voice_rows("en")
               if len(row) >= 5 and row[1].startswith("en") and not row[4].startswith("mb/")}
    return sorted(accents)


MANDARIN_PROBE = "打开"


@cache
def _espeak_mandarin() -> list[str]:
    """Mandarin voices from ``espeak-ng --voices=zh`` (``cmn...``; MBROLA ones left out) that read Chinese
    characters themselves. Some espeak-ng releases (1.51) ship a ``cmn`` voice that turns characters into
    tone-numbered pinyin and reads that as English; a probe (``-x``, phonemes only) shows it as a switch to
    ``(en)``, and such a voice is skipped. Its sibling ``cmn-latn-pinyin`` reads characters correctly."""
    names = sorted({row[1] for row in _espeak_voice_rows("zh")
                    if len(row) >= 5 and row[1].startswith("cmn") and not row[4].startswith("mb/")})
    return [n for n in names if "(en)" not in _run(["espeak-ng", "-q", "-x", "-v", n, MANDARIN_PROBE]).decode()]


@cache
def _espeak_variants() -> list[str]:
    """Variant file names (``f3``, ``klatt``, ``m7``, ...) from ``espeak-ng --voices=variant``."""
    names = set()
    for line in _run(["espeak-ng", "--voices=variant"]).decode().splitlines():
        _, found, rest = line.partition("!v/")
        name = rest.split("  ")[0].strip()
        if found and re.fullmatch(r"[A-Za-z0-9_-]+", name):  # "Mr serious" has a space; a voice id cannot
            names.add(name)
    return sorted(names)


def _speaker_group(name: str) -> str:
    """The recorded speaker behind a flite or festival voice: flite's ``kal16`` and festival's ``kal_diphone``
    are both ``speaker:kal``; ``cmu_us_slt_arctic_hts`` and flite's ``slt`` are both ``speaker:slt``."""
    name = name.removeprefix("cmu_us_")
    return "speaker:" + re.sub(r"[0-9]+$", "", name.split("_")[0])


class Flite:
    """flite's built-in voices; limited-domain voices (``awb_time`` can only tell the time) are left out."""

    name = "flite"
    share = 0.3

    def available(self) -> bool:
        return shutil.which(self.name) is not None

    def voices(self) -> list[Voice]:
        out = _run([self.name, "-lv"]).decode()
        names = out.partition(":")[2].split()
        return [Voice(self.name, n, "", _speaker_group(n)) for n in sorted(names) if not n.endswith("_time")]

    def prosody(self, rng: np.random.Generator) -> dict:
        # duration_stretch > 1 speaks slower; f0_shift scales the pitch contour (rms ignores it).
        return {"duration_stretch": _uniform(rng, 0.8, 1.25), "f0_shift": _uniform(rng, 0.85, 1.2)}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        # flite knows the whole wave before writing, so its header is complete even on a pipe.
        cmd = [self.name, "-voice", voice.name, "--setf", f"duration_stretch={prosody['duration_stretch']}",
               "--setf", f"f0_shift={prosody['f0_shift']}", "-t", text, "-o", "/dev/stdout"]
        return _read_wav(_run(cmd), voice.id)


FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/local/share/festival/voices")
FESTIVAL_ENGLISH = ("english", "us", "british")


class Festival:
    """festival with whatever English voices are installed (Debian's ``festvox-*`` packages)."""

    name = "festival"
    share = 0.3

    def available(self) -> bool:
        return shutil.which(self.name) is not None and bool(self.voices())

    def voices(self) -> list[Voice]:
        found = {p.name for base in FESTIVAL_VOICE_DIRS for lang in FESTIVAL_ENGLISH
                 for p in Path(base, lang).glob("*") if p.is_dir()}
        return [Voice(self.name, n, "", _speaker_group(n)) for n in sorted(found)]

    def prosody(self, rng: np.random.Generator) -> dict:
        return {"duration_stretch": _uniform(rng, 0.8, 1.25)}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        def command(out: Path, tmp: Path) -> list[str]:
            script = tmp / "say.scm"
            script.write_text(f"(voice_{voice.name})\n"
                              f"(Parameter.set 'Duration_Stretch {prosody['duration_stretch']})\n"
                              f'(set! utt (utt.synth (Utterance Text "{text}")))\n'
                              f'(utt.save.wave utt "{out}" \'riff)\n')
            # Batch mode, unlike --pipe, exits non-zero on a Scheme error (an unknown voice, say).
            return [self.name, "-b", str(script)]

        return _render_to_file(voice, command)


MBROLA_DIRS = ("/usr/share/mbrola", "/usr/local/share/mbrola")


class Mbrola:
    """MBROLA's recorded diphone voices, driven by espeak-ng (``-v mb-us1``): the US and British voices and
    the other languages' voices that espeak-ng maps to English (``mb-de1-en``: English with a German
    speaker's diphones). Only voices whose data is installed (Debian's ``mbrola-*`` packages) are listed."""

    name = "mbrola"
    share = 0.3

    def available(self) -> bool:
        return shutil.which("mbrola") is not None and shutil.which("espeak-ng") is not None and bool(self.voices())

    def voices(self) -> list[Voice]:
        if shutil.which("espeak-ng") is None:
            return []
        return [Voice(self.name, name, "", f"mbrola:{data}") for name, data in _mbrola_voices()]

    def prosody(self, rng: np.random.Generator) -> dict:
        return {"rate": int(rng.integers(130, 201)), "pitch": int(rng.integers(25, 76))}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        return _read_wav(_run(_espeak_command(voice.name, prosody), stdin=text), voice.id)


@cache
def _mbrola_voices() -> list[tuple[str, str]]:
    """``(espeak-ng voice, MBROLA voice data)`` pairs, e.g. ``("mb-de1-en", "de1")``, for the English MBROLA
    voices of ``espeak-ng --voices=en`` whose data folder exists."""
    found = []
    for row in _espeak_voice_rows("en"):
        if len(row) >= 5 and row[4].startswith("mb/"):
            name = row[4].removeprefix("mb/")
            data = name.removeprefix("mb-").removesuffix("-en")
            if any(Path(base, data).exists() for base in MBROLA_DIRS):
                found.append((name, data))
    return sorted(set(found))


RHVOICE_DIRS = ("/usr/share/RHVoice/voices", "/usr/local/share/RHVoice/voices")
# RHVoice's voices built from CMU ARCTIC recordings, by ARCTIC speaker: "Alan" is awb, whom flite also
# speaks, so both stay in one split.
RHVOICE_SPEAKERS = {"alan": "awb"}


class Rhvoice:
    """RHVoice's English voices (Debian's ``rhvoice-english``: alan, bdl, clb, slt, evgeniy-eng, lyubov)."""

    name = "rhvoice"
    share = 0.2

    def available(self) -> bool:
        return shutil.which("RHVoice-test") is not None and bool(self.voices())

    def voices(self) -> list[Voice]:
        found = set()
        for base in RHVOICE_DIRS:
            for info in Path(base).glob("*/voice.info"):
                if "language=English" in info.read_text(errors="replace"):
                    found.add(info.parent.name)
        return [Voice(self.name, n, "", _speaker_group(RHVOICE_SPEAKERS.get(n, n))) for n in sorted(found)]

    def prosody(self, rng: np.random.Generator) -> dict:
        # rate and pitch in percent of the voice's own
        return {"rate": int(rng.integers(90, 141)), "pitch": int(rng.integers(80, 121))}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        return _render_to_file(voice, lambda out, _: ["RHVoice-test", "-p", voice.name, "-r", str(prosody["rate"]),
                                                      "-t", str(prosody["pitch"]), "-o", str(out)], stdin=text)


class Pico:
    """SVOX Pico (Debian's ``libttspico-utils``): its two English voices, en-US and en-GB."""

    name = "pico"
    share = 0.1
    LANGS = ("en-GB", "en-US")

    def available(self) -> bool:
        return shutil.which("pico2wave") is not None

    def voices(self) -> list[Voice]:
        return [Voice(self.name, n, "", f"pico:{n}") for n in self.LANGS] if self.available() else []

    def prosody(self, rng: np.random.Generator) -> dict:
        # Pico's markup levels, in percent of the voice's own
        return {"speed": int(rng.integers(80, 126)), "pitch": int(rng.integers(85, 121))}

    def render(self, voice: Voice, text: str, prosody: dict) -> tuple[np.ndarray, int]:
        marked = f"<speed level='{prosody['speed']}'><pitch level='{prosody['pitch']}'>{text}</pitch></speed>"
        return _render_to_file(voice, lambda out, _: ["pico2wave", "-l", voice.name, "-w", str(out), marked])


# Names sort in this order too: split_voices places engines by name, so adding engines after these three
# leaves the three's splits as they were.
ENGINES = {"espeak-ng": Espeak(), "flite": Flite(), "festival": Festival(), "mbrola": Mbrola(),
           "rhvoice": Rhvoice(), "pico": Pico()}
