"""The recorded-voice engines from Debian contrib/non-free (MBROLA, RHVoice, Pico): voices, prosody, splits."""

from __future__ import annotations

import numpy as np
import pytest

from ceasr.data import synth
from ceasr.data.render import loud_span
from ceasr.data.voices import ENGINES, Voice

EXTRA = ("mbrola", "rhvoice", "pico")
RATE_KEY = {"mbrola": "rate", "rhvoice": "rate", "pico": "speed"}  # the prosody entry that sets the tempo


def installed(name: str):
    return pytest.mark.skipif(not ENGINES[name].available(),
                              reason=f"{name} not installed (Debian contrib/non-free; see the Makefile)")


def speech_seconds(wave: np.ndarray, rate: int) -> float:
    """Seconds from the first to the last loud 10 ms frame, at the engine's own rate."""
    start, stop = loud_span(wave if rate == 16000 else np.interp(
        np.arange(0, len(wave), rate / 16000), np.arange(len(wave)), wave).astype(np.float32))
    return (stop - start) / 16000


@pytest.mark.parametrize("name", EXTRA)
def test_engine_speaks_and_its_rate_sets_the_tempo(name):
    if not ENGINES[name].available():
        pytest.skip(f"{name} not installed (Debian contrib/non-free; see the Makefile)")
    engine = ENGINES[name]
    voice = engine.voices()[0]
    prosody = engine.prosody(np.random.default_rng(0))
    slow = dict(prosody, **{RATE_KEY[name]: 80 if name != "mbrola" else 120})
    fast = dict(prosody, **{RATE_KEY[name]: 160 if name != "mbrola" else 240})
    text = "go forward ten meters and turn on the lights"
    wave_slow, rate = engine.render(voice, text, slow)
    wave_fast, rate_fast = engine.render(voice, text, fast)
    assert rate == rate_fast and wave_slow.dtype == np.float32 and np.abs(wave_slow).max() > 0.05
    # Nine words: about 0.25-0.6 s each at the slow rate; twice the rate, clearly shorter.
    slow_s, fast_s = speech_seconds(wave_slow, rate), speech_seconds(wave_fast, rate)
    assert 1.5 < slow_s < 6.0
    assert 0.4 < fast_s / slow_s < 0.8


@installed("rhvoice")
def test_rhvoice_alan_is_flite_awb_and_stays_in_its_split():
    voices = {v.name: v for v in ENGINES["rhvoice"].voices()}
    assert voices["alan"].group == "speaker:awb" and voices["slt"].group == "speaker:slt"
    flite = [Voice("flite", "awb", "", "speaker:awb"), Voice("flite", "slt", "", "speaker:slt")]
    flite += [Voice("flite", f"v{i}", "", f"speaker:v{i}") for i in range(5)]
    for seed in range(4):
        where = {v.id: split for split, vs in synth.split_voices(flite + list(voices.values()), seed).items()
                 for v in vs}
        assert where["rhvoice:alan"] == where["flite:awb"] and where["rhvoice:slt"] == where["flite:slt"]


@installed("mbrola")
def test_mbrola_lists_only_installed_voices_one_group_each():
    voices = ENGINES["mbrola"].voices()
    assert all(v.name.startswith("mb-") and v.group == "mbrola:" + v.name[3:].removesuffix("-en") for v in voices)
    assert len({v.group for v in voices}) == len(voices)


def test_adding_engines_leaves_the_old_engines_splits_as_they_were():
    """Engines are placed in name order, and the new ones sort after espeak-ng, festival and flite: a corpus
    made with them keeps every old voice in the split it had, so old test sets stay held out."""
    old = [Voice("espeak-ng", "en", f"v{i}", f"espeak-ng:+v{i}") for i in range(40)]
    old += [Voice("flite", n, "", f"speaker:{n}") for n in ("awb", "kal", "rms", "slt")]
    old += [Voice("festival", n, "", f"speaker:{n}") for n in ("kal", "ked")]
    new = [Voice("mbrola", f"mb-x{i}", "", f"mbrola:x{i}") for i in range(20)]
    new += [Voice("rhvoice", n, "", f"speaker:{n}") for n in ("awb", "bdl", "clb", "slt")]
    new += [Voice("pico", n, "", f"pico:{n}") for n in ("en-GB", "en-US")]
    for seed in range(3):
        before = synth.split_voices(old, seed)
        after = synth.split_voices(old + new, seed)
        for split in before:
            assert [v for v in after[split] if v in old] == before[split]
        where = {v.id: split for split, vs in after.items() for v in vs}
        assert where["rhvoice:awb"] == where["flite:awb"]


def test_default_engines_are_debian_mains_and_all_adds_the_installed_rest():
    default = synth.installed_engines()
    assert default and set(default) <= set(synth.DEFAULT_ENGINES)
    everything = synth.installed_engines(["all"])
    assert everything[: len(default)] == default
    assert set(everything) - set(default) == {n for n in EXTRA if ENGINES[n].available()}
