"""The Mandarin and Chinese–English corpus: domains, voice split across languages, stretches, CLI end to end."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ceasr_cli

from ceasr.data import domain_zh, synth
from ceasr.errors import CeasrError

pytestmark = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (apt-get install espeak-ng)")

# Written out by hand from the domain, independently of domain_zh's templates.
ZH_COMMAND_CHARS = set("前进后退米左右转向停止开始取消是的不打关闭灯风扇暖气收音机电视"
                       "音量调高低播放乐暂下一首上门窗户车库设置分钟定时器现在几点"
                       "两三四五六七八九十")
MIXED_ENGLISH = set("lights fan heater radio television music volume song door window garage timer left right "
                    "play stop cancel".split())


def han(text: str) -> list[str]:
    return [c for c in text if "\u4e00" <= c <= "\u9fff"]


def test_zh_domains():
    rng = np.random.default_rng(5)
    digits = [domain_zh.zh_digits(rng) for _ in range(300)]
    assert set("".join(digits)) == set("零幺一二三四五六七八九")
    assert all(1 <= len(d) <= domain_zh.MAX_DIGITS for d in digits)
    commands = domain_zh.phrases(domain_zh.ZH_COMMAND_TEMPLATES)
    expected = {"前进十米", "左转", "打开灯", "关闭风扇", "音量调高", "播放音乐", "设置五分钟的定时器", "现在几点"}
    assert expected <= set(commands)
    assert set("".join(commands)) <= ZH_COMMAND_CHARS and " " not in "".join(commands)
    mixed = domain_zh.phrases(domain_zh.MIXED_COMMAND_TEMPLATES)
    assert {"打开 lights", "播放 music", "把 volume 调高", "下一首 song"} <= set(mixed)
    for text in mixed:
        words = re.findall(r"[a-z]+", text)
        assert words and han(text) and set(words) <= MIXED_ENGLISH, text
        # Normalized: one space around each English word, none between Chinese characters.
        assert re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", text) is None
        assert re.search(r"[\u4e00-\u9fff][a-z]|[a-z][\u4e00-\u9fff]", text) is None


def rows_of(out: Path, split: str, suffix: str = "jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.{suffix}").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zhen") / "corpus"
    # Each domain once (the default draws English twice as often), so this small corpus has Chinese in
    # every split.
    synth.synthesize(out, hours=0.015, seed=2, lang="zh-en", jobs=2, progress=False, engines=["espeak-ng", "flite"],
                     domains=("digits", "commands", "zh_digits", "zh_commands", "mixed_commands"))
    return out


def _variant(speaker: str) -> str:
    return speaker.split("+", 1)[1] if speaker.startswith("espeak-ng:") and "+" in speaker else speaker


def test_languages_voices_and_split(corpus):
    where: dict[str, str] = {}
    kinds = set()
    for split in synth.SPLITS:
        for row in rows_of(corpus, split):
            latin, chinese = re.search("[a-z]", row["text"]), han(row["text"])
            kind = "mixed" if latin and chinese else "zh" if chinese else "en"
            kinds.add(kind)
            assert row["lang"] == ("en" if kind == "en" else "zh")
            assert ("cmn" in row["speaker"]) == (kind != "en")  # Chinese text is spoken by a Mandarin voice
            group = _variant(row["speaker"])
            assert where.setdefault(group, split) == split, f"timbre {group} in {where[group]} and {split}"
    assert kinds == {"en", "zh", "mixed"}


def test_stretches_are_recorded_and_silent_between(corpus):
    checked = 0
    for split in synth.SPLITS:
        rows = {r["id"]: r for r in rows_of(corpus, split)}
        stretches = rows_of(corpus, split, "stretches.jsonl")
        assert [s["id"] for s in stretches] == list(rows)
        for entry in stretches:
            row, parts = rows[entry["id"]], entry["stretches"]
            assert " ".join(p["text"] for p in parts) == row["text"]
            assert all(0 < p["start"] < p["end"] <= row["duration"] for p in parts)
            if len(parts) == 1:
                continue
            wave, rate = sf.read(corpus / row["audio"], dtype="float32")
            speech = np.sqrt(np.mean(wave[int(parts[0]["start"] * rate):int(parts[-1]["end"] * rate)] ** 2))
            for a, b in zip(parts, parts[1:]):
                assert a["lang"] != b["lang"]
                assert 0.035 <= b["start"] - a["end"] <= 0.165  # the pause drawn between stretches
                gap = wave[int(a["end"] * rate) + 16:int(b["start"] * rate) - 16]
                assert np.sqrt(np.mean(gap ** 2)) < 0.05 * speech  # only the noise floor between stretches
                checked += 1
    assert checked > 0


def test_mandarin_only_corpus(tmp_path):
    out = tmp_path / "zh"
    summary = synth.synthesize(out, hours=0.004, seed=1, lang="zh", progress=False, jobs=1)
    assert summary.engines == ("espeak-ng",)
    rows = [r for s in synth.SPLITS for r in rows_of(out, s)]
    assert rows and all(han(r["text"]) and not re.search("[a-z]", r["text"]) for r in rows)
    assert all(r["speaker"].startswith("espeak-ng:cmn") and r["lang"] == "zh" for r in rows)


def test_user_errors(tmp_path):
    with pytest.raises(CeasrError, match="unknown language"):
        synth.synthesize(tmp_path / "x", hours=0.001, lang="fr", progress=False)
    text = tmp_path / "lines.txt"
    text.write_text("Turn on the lights\n")
    with pytest.raises(CeasrError, match="no English voice"):
        synth.synthesize(tmp_path / "y", hours=0.001, lang="zh", text_file=text, progress=False, jobs=1)


TINY = [
    "model.d_model=32", "model.n_heads=2", "model.encoder_layers=1", "model.ff_dim=64",
    "model.subsampling_channels=8", "model.decoder_layers=1", "model.decoder_ff_dim=64",
    "tokenizer.kind=bilingual", "tokenizer.vocab_size=60", "train.max_steps=3", "train.batch_seconds=20",
    "train.warmup_steps=2", "train.checkpoint_every=3", "train.average_last=1",
]


@pytest.mark.slow
def test_cli_bilingual_pipeline(corpus, tmp_path):
    ceasr_cli("train", "--train", corpus / "train.jsonl", "--dev", corpus / "dev.jsonl",
              "--out", tmp_path / "exp", *TINY)
    tok = json.loads((tmp_path / "exp/model/tokenizer/tokenizer.json").read_text())
    assert tok["kind"] == "bilingual" and tok["chars"]
    r = ceasr_cli("evaluate", "--model", tmp_path / "exp/model", "--manifest", corpus / "test.jsonl",
                  "--out", tmp_path / "res.jsonl")
    m = re.fullmatch(r"MER=(\d+\.\d{4}) S=(\d+) D=(\d+) I=(\d+) N=(\d+)", r.stdout.strip().splitlines()[-1])
    assert m, r.stdout
    refs = [row["text"] for row in rows_of(corpus, "test")]
    assert int(m.group(5)) == sum(len(han(t)) + len(re.findall(r"[a-z']+", t)) for t in refs)
    audio = corpus / rows_of(corpus, "test")[0]["audio"]
    out = json.loads(ceasr_cli("transcribe", "--model", tmp_path / "exp/model", "--format", "json", audio).stdout)
    assert len(out["token_languages"]) == len(out["tokens"])
    for piece, lang in zip(out["tokens"], out["token_languages"]):
        assert lang == ("zh" if han(piece) else "en" if re.search("[a-z]", piece) else "")
    found = {lang for lang in out["token_languages"] if lang}
    assert out["language"] == ("mixed" if len(found) == 2 else found.pop() if found else "")


def test_bilingual_draws_english_twice_as_often_and_trains_on_mandarin_digits_twice_as_often():
    from ceasr.data.domain import TextSource
    from ceasr.text.script import EN, MIXED, ZH, text_language

    digits = set("零一二三四五六七八九幺")
    for domains, want in ((synth.LANG_DOMAINS["zh-en"], (4 / 7, 2 / 7, 1 / 7, 1 / 7)),  # dev and test
                          (synth.TRAIN_DOMAINS["zh-en"], (4 / 8, 3 / 8, 1 / 8, 2 / 8))):  # train
        rng = np.random.default_rng(0)
        source = TextSource(domains)
        texts = [source(rng) for _ in range(8000)]
        counts = Counter(text_language(t) for t in texts)
        zh_digit_strings = sum(text_language(t) == ZH and set(t.replace(" ", "")) <= digits for t in texts)
        got = (counts[EN] / 8000, counts[ZH] / 8000, counts[MIXED] / 8000, zh_digit_strings / 8000)
        assert got == pytest.approx(want, abs=0.02)  # 3 sd ~ 1.7 %
