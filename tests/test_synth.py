"""The synthetic corpus: determinism, speaker-disjoint splits, audio format, text domains, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ceasr.data import domain, synth
from ceasr.data.voices import ENGINES, Voice
from ceasr.errors import CeasrError

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")),
                                reason="needs espeak-ng and flite (apt-get install espeak-ng flite)")

DIGITS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
# Written out by hand from the command list, independently of domain.COMMAND_TEMPLATES.
COMMAND_WORDS = DIGITS - {"zero", "oh"} | set(
    "go forward backward meter meters turn left right around stop start cancel yes no on off the lights fan "
    "heater radio television volume up down play pause music next previous song open close door window "
    "garage set a timer for minute minutes what time is it ten".split())


def read_rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synth.synthesize(out, hours=0.01, seed=3, jobs=2, progress=False)


def test_same_seed_same_corpus_whatever_the_jobs(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again"
    synth.synthesize(again, hours=0.01, seed=3, jobs=1, progress=False)
    for split in synth.SPLITS:
        assert (again / f"{split}.jsonl").read_bytes() == (out / f"{split}.jsonl").read_bytes()
    files = sorted(p.relative_to(out) for p in out.rglob("*.wav"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.wav"))
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_another_seed_gives_other_texts(corpus, tmp_path):
    out, _ = corpus
    other = tmp_path / "other"
    synth.synthesize(other, hours=0.003, seed=4, jobs=2, progress=False)
    texts = [r["text"] for r in read_rows(other, "train")]
    assert texts != [r["text"] for r in read_rows(out, "train")][: len(texts)]


def test_summary_matches_manifests_and_hours(corpus):
    out, summary = corpus
    total = 0.0
    for split in synth.SPLITS:
        rows = read_rows(out, split)
        assert rows, split
        stats = summary.splits[split]
        assert stats.utterances == len(rows)
        assert stats.seconds == pytest.approx(sum(r["duration"] for r in rows))
        assert stats.voices == len({r["speaker"] for r in rows})
        total += stats.seconds
    # Each split stops at the first utterance past its share, so it overshoots by less than one utterance.
    assert 36.0 <= total <= 36.0 + 3 * 5.0
    assert not summary.failures
    assert "train" in str(summary) and "total" in str(summary)


def test_rows_audio_format_and_durations(corpus):
    out, _ = corpus
    for split in synth.SPLITS:
        for row in read_rows(out, split):
            assert set(row) == {"id", "audio", "text", "duration", "speaker", "lang"}
            assert row["lang"] == "en" and row["speaker"].split(":")[0] in ENGINES
            assert not Path(row["audio"]).is_absolute() and row["audio"].startswith(f"audio/{split}/")
            wave, rate = sf.read(out / row["audio"], always_2d=True)
            assert sf.info(out / row["audio"]).subtype == "PCM_16"
            assert rate == 16000 and wave.shape[1] == 1
            assert row["duration"] == pytest.approx(len(wave) / 16000, abs=1e-4)
            peak_db = 20 * np.log10(np.abs(wave).max())
            assert -12.1 <= peak_db <= -0.9  # normalized to a random peak in [-12, -1] dBFS (+ the noise floor)
            assert np.sqrt(np.mean(wave**2)) > 1e-3


def test_splits_are_disjoint_by_speaker(corpus):
    out, _ = corpus
    speakers = {split: {r["speaker"] for r in read_rows(out, split)} for split in synth.SPLITS}
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]


def test_split_voices_by_timbre_with_every_engine_in_every_split():
    voices = [v for name in ("espeak-ng", "flite") for v in ENGINES[name].voices()]
    assert len({v.id for v in voices}) == len(voices) > 300  # 8 accents x ~100 variants, plus flite
    splits = synth.split_voices(voices, seed=0)
    assert sum(len(v) for v in splits.values()) == len(voices)
    groups = {name: {v.group for v in vs} for name, vs in splits.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["dev"]
    assert not groups["dev"] & groups["test"]
    # An espeak-ng variant heard in test is never heard in train, whatever the accent.
    variants = {name: {v.variant for v in vs if v.engine == "espeak-ng"} for name, vs in splits.items()}
    assert not variants["train"] & variants["test"]
    for name, vs in splits.items():
        assert {v.engine for v in vs} == {"espeak-ng", "flite"}, name
    assert 0.7 < len(splits["train"]) / len(voices) < 0.85
    # The same recorded speaker at two rates (flite kal, kal16) stays in one split.
    where = {v.id: name for name, vs in splits.items() for v in vs}
    assert where["flite:kal"] == where["flite:kal16"]


def test_split_voices_keeps_a_shared_speaker_in_one_split():
    voices = [Voice("flite", "slt", "", "speaker:slt"), Voice("festival", "cmu_us_slt_arctic_hts", "", "speaker:slt")]
    voices += [Voice("flite", f"v{i}", "", f"speaker:v{i}") for i in range(6)]
    for seed in range(5):
        splits = synth.split_voices(voices, seed=seed, holdout_engine="festival")
        assert [v.id for v in splits["test"][:2]] == ["flite:slt", "festival:cmu_us_slt_arctic_hts"]


def test_an_engine_of_three_speakers_gives_two_to_train_and_none_to_dev():
    festival = [Voice("festival", n, "", f"speaker:{n}") for n in ("kal", "ked", "slt")]
    espeak = [Voice("espeak-ng", "en", f"v{i}", f"espeak-ng:+v{i}") for i in range(40)]
    for seed in range(4):
        splits = synth.split_voices(festival + espeak, seed)
        counts = {name: sum(v.engine == "festival" for v in vs) for name, vs in splits.items()}
        assert counts == {"train": 2, "dev": 0, "test": 1}
        assert {v.engine for v in splits["dev"]} == {"espeak-ng"}


def test_holdout_engine_only_in_test(tmp_path):
    voices = [v for name in ("espeak-ng", "flite") for v in ENGINES[name].voices()]
    splits = synth.split_voices(voices, seed=1, holdout_engine="flite")
    assert {v.id for v in splits["test"] if v.engine == "flite"} == {v.id for v in voices if v.engine == "flite"}
    assert all(v.engine != "flite" for v in splits["train"] + splits["dev"])
    synth.synthesize(tmp_path, hours=0.005, seed=1, holdout_engine="flite", jobs=2, progress=False)
    for split in ("train", "dev"):
        assert not any(r["speaker"].startswith("flite:") for r in read_rows(tmp_path, split))
    with pytest.raises(CeasrError, match="no voice left for training"):
        synth.synthesize(tmp_path, hours=0.005, engines=["flite"], holdout_engine="flite", progress=False)


def test_texts_use_the_domain_vocabulary(corpus):
    out, _ = corpus
    rows = [r for split in synth.SPLITS for r in read_rows(out, split)]
    digit_rows = [r["text"].split() for r in rows if set(r["text"].split()) <= DIGITS]
    assert digit_rows and len(digit_rows) < len(rows)  # both domains are there
    assert all(1 <= len(words) <= 7 for words in digit_rows)
    for row in rows:
        assert row["text"] == row["text"].lower().strip()
        assert set(row["text"].split()) <= DIGITS | COMMAND_WORDS, row


def test_digit_strings_cover_one_to_seven_words():
    rng = np.random.default_rng(0)
    strings = [domain.digits(rng).split() for _ in range(2000)]
    assert {len(words) for words in strings} == set(range(1, 8))
    assert set().union(*strings) == DIGITS


def test_command_phrases():
    phrases = domain.command_phrases()
    # go 2x10, turn 3, single words 5, turn on/off 2x5, volume 2, music 4, open/close 2x3, timer 10, time 1
    assert len(phrases) == len(set(phrases)) == 61
    for phrase in ("go backward one meter", "go forward ten meters", "set a timer for one minute",
                   "turn off the television", "what time is it", "close the garage", "previous song"):
        assert phrase in phrases
    rng = np.random.default_rng(1)
    assert {domain.commands(rng) for _ in range(3000)} == set(phrases)


def test_general_sentences_are_normalized_varied_and_never_commands():
    from ceasr.data.domain_general import TEMPLATES
    from ceasr.text.normalize import normalize

    rng = np.random.default_rng(0)
    sentences = [domain.DOMAINS["general"](rng) for _ in range(5000)]
    assert not set(sentences) & set(domain.command_phrases())
    assert all(normalize(s) == s for s in sentences)  # what the engine says is the transcript
    assert len(set(sentences)) > 4000
    assert len({w for s in sentences for w in s.split()}) > 350
    # every template is drawn: the fixed phrases of the last one show up
    assert set(sentences) & set(TEMPLATES[-1][0])


def test_text_file_is_the_source(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("Hello, World!\n\n   \nTurn 2 lights on.\n", encoding="utf-8")
    out = tmp_path / "out"
    synth.synthesize(out, hours=0.004, seed=0, text_file=lines, progress=False)
    texts = {r["text"] for split in synth.SPLITS for r in read_rows(out, split)}
    assert texts <= {"hello world", "turn two lights on"} and texts


@pytest.mark.parametrize("content", [None, "", "\n  \n...\n"])
def test_empty_or_missing_text_file_raises(tmp_path, content):
    path = tmp_path / "sentences.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CeasrError, match="sentences.txt"):
        synth.synthesize(tmp_path / "out", hours=0.004, text_file=path, progress=False)


def test_bad_arguments_raise(tmp_path):
    for kwargs in ({"engines": ["nope"]}, {"domains": ("poems",)}, {"hours": 0},
                   {"holdout_engine": "festival", "engines": ["flite"]}):
        with pytest.raises(CeasrError):
            synth.synthesize(tmp_path, progress=False, **kwargs)


def test_a_failing_engine_call_is_counted_and_skipped(tmp_path, monkeypatch):
    def broken(voice, text, prosody):
        raise RuntimeError("flite exited with 1: broken on purpose")

    monkeypatch.setattr(ENGINES["flite"], "render", broken)
    summary = synth.synthesize(tmp_path, hours=0.005, seed=0, jobs=1, progress=False,
                               engines=["espeak-ng", "flite"])
    assert summary.failures and all("broken on purpose" in f for f in summary.failures)
    rows = [r for split in synth.SPLITS for r in read_rows(tmp_path, split)]
    assert rows and all(r["speaker"].startswith("espeak-ng:") for r in rows)
    assert sum(s.seconds for s in summary.splits.values()) >= 18.0


def test_postprocess_trims_pads_resamples_and_normalizes():
    rate = 22050
    burst = 0.3 * np.sin(2 * np.pi * 300 * np.arange(int(0.5 * rate)) / rate)
    wave = np.concatenate([np.zeros(rate), burst, np.zeros(rate)]).astype(np.float32)  # 1 s, 0.5 s, 1 s
    out = synth.postprocess(wave, rate, pad=(0.15, 0.1), peak_db=-6.0)
    assert out.dtype == np.float32
    assert len(out) / 16000 == pytest.approx(0.15 + 0.5 + 0.1, abs=0.021)  # 10 ms frames, both ends
    assert np.abs(out).max() == pytest.approx(10 ** (-6 / 20), rel=1e-5)
    loud = np.flatnonzero(np.abs(out) > 0.05)
    assert loud[0] / 16000 == pytest.approx(0.15, abs=0.011)
    # Speech that starts at the first sample gets zeros in front, up to the pad.
    out = synth.postprocess(burst.astype(np.float32), rate, pad=(0.2, 0.2), peak_db=-1.0)
    assert len(out) / 16000 == pytest.approx(0.9, abs=0.021) and not out[:3000].any()
    with pytest.raises(ValueError, match="silence"):
        synth.postprocess(np.zeros(rate, np.float32), rate, pad=(0.1, 0.1), peak_db=-3.0)


def test_postprocess_noise_floor_has_the_asked_level_and_no_exact_zeros():
    rate = 16000
    burst = 0.3 * np.sin(2 * np.pi * 300 * np.arange(rate // 2) / rate)
    out = synth.postprocess(burst.astype(np.float32), rate, pad=(0.5, 0.5), peak_db=-6.0, noise_db=-70.0, seed=3)
    lead_in = out[: int(0.45 * rate)].astype(np.float64)  # noise only
    assert 20 * np.log10(np.sqrt(np.mean(lead_in**2))) == pytest.approx(-70.0, abs=0.5)
    assert np.mean(out == 0) < 1e-3
    again = synth.postprocess(burst.astype(np.float32), rate, pad=(0.5, 0.5), peak_db=-6.0, noise_db=-70.0, seed=3)
    assert np.array_equal(out, again)


def test_a_rerun_into_the_same_folder_leaves_only_its_own_files(tmp_path):
    synth.synthesize(tmp_path, hours=0.008, seed=0, progress=False)
    synth.synthesize(tmp_path, hours=0.003, seed=0, progress=False)
    listed = {r["audio"] for split in synth.SPLITS for r in read_rows(tmp_path, split)}
    assert listed == {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.wav")}


def test_training_domains_change_the_training_split_only(tmp_path, monkeypatch):
    """TRAIN_DOMAINS reweights what the training split says; dev and test, drawn with their own per-utterance
    seeds from LANG_DOMAINS, stay byte for byte the same."""
    plain, weighted = tmp_path / "plain", tmp_path / "weighted"
    synth.synthesize(plain, hours=0.005, seed=1, jobs=1, progress=False)
    monkeypatch.setitem(synth.TRAIN_DOMAINS, "en", ("digits",))
    synth.synthesize(weighted, hours=0.005, seed=1, jobs=1, progress=False)
    for split in ("dev", "test"):
        assert (plain / f"{split}.jsonl").read_bytes() == (weighted / f"{split}.jsonl").read_bytes()
    texts = lambda path: [json.loads(line)["text"] for line in path.read_text().splitlines()]  # noqa: E731
    train = texts(weighted / "train.jsonl")
    assert train and all(set(t.split()) <= DIGITS for t in train)
    assert any(not set(t.split()) <= DIGITS for t in texts(plain / "train.jsonl"))
    # Domains given by the caller apply to every split, the training split included.
    synth.synthesize(tmp_path / "given", hours=0.003, seed=1, jobs=1, progress=False, domains=("commands",))
    assert all(not set(t.split()) <= DIGITS for t in texts(tmp_path / "given" / "train.jsonl"))
