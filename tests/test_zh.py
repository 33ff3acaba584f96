"""Chinese–English text: normalization, script units, the bilingual tokenizer, mixed error rate."""

from __future__ import annotations

import pytest

from ceasr.config import TokenizerConfig
from ceasr.errors import ConfigError
from ceasr.metrics import ErrorCounts, corpus_errors, language_errors, mixed_errors
from ceasr.text.normalize import NORMALIZERS, normalize
from ceasr.text.script import piece_language, runs, text_language, units
from ceasr.text.tokenizer import BilingualTokenizer, load_tokenizer, train_tokenizer
from ceasr.text.zh import normalize_zh, zh_cardinal


@pytest.mark.parametrize("text, expected", [
    ("打開 燈", "打开灯"),  # traditional -> simplified, spaces between characters go
    ("請設置５分鐘的計時器。", "请设置五分钟的计时器"),  # full-width, traditional, punctuation
    ("把Volume調高一點！", "把 volume 调高一点"),  # English glued to Chinese gets one space, lowercased
    ("打开「灯」、然后？", "打开灯然后"),
    ("我 在 家 ， Hello  World。", "我在家 hello world"),
    ("ＡＢＣ　我", "abc 我"),
    ("我有25个苹果", "我有二十五个苹果"),
    ("温度3.5度", "温度三点五度"),
    ("50%的人", "百分之五十的人"),
    ("2024年", "二零二四年"),
    ("电话 007", "电话零零七"),
    ("1,000,000人", "一百万人"),
    ("播放mp3", "播放 mp three"),
    ("幺二三 一二三 两个", "幺二三一二三两个"),  # Chinese numerals are kept as written
    ("don't 打开", "don't 打开"),
])
def test_normalize_zh(text, expected):
    assert normalize_zh(text) == expected
    assert normalize(text, "zh-TW") == normalize(text, "zh_CN") == expected


def test_zh_registered():
    assert NORMALIZERS["zh"] is normalize_zh


@pytest.mark.parametrize("n, expected", [
    (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"),
    (110, "一百一十"), (1005, "一千零五"), (2024, "二千零二十四"), (10050, "一万零五十"),
    (100000, "十万"), (150000, "十五万"),
    (1010000, "一百零一万"), (10001000, "一千万一千"), (99_999_999, "九千九百九十九万九千九百九十九"),
])
def test_zh_cardinal(n, expected):
    assert zh_cardinal(n) == expected


def test_zh_cardinal_range():
    with pytest.raises(ValueError):
        zh_cardinal(100_000_000)
    assert normalize_zh("123456789") == "一二三四五六七八九"  # past the cardinal range: digit by digit


def test_units_and_languages():
    assert units("打开lights 吧") == ["打", "开", "lights", "吧"]
    assert units("把 volume 调高") == ["把", "volume", "调", "高"]
    assert runs("把 volume 调高 now") == [("zh", "把"), ("en", "volume"), ("zh", "调高"), ("en", "now")]
    assert [text_language(t) for t in ("打开灯", "turn on", "打开 lights", "")] == ["zh", "en", "mixed", ""]
    assert [piece_language(p) for p in ("灯", "▁lig", "▁", "<unk>")] == ["zh", "en", "", "en"]


MIXED = ["打开 lights", "播放 music", "把 volume 调高", "下一首 song", "前进十米",
         "turn on the lights", "what time is it", "设置五分钟的 timer", "关闭 fan", "现在几点"]


@pytest.fixture(scope="module")
def bilingual():
    return BilingualTokenizer.train(MIXED * 2, TokenizerConfig(kind="bilingual", vocab_size=60))


@pytest.mark.parametrize("text", MIXED + ["打开 the lights 现在", "lights 打开 volume 关闭 fan"])
def test_bilingual_round_trip(bilingual, text):
    ids = bilingual.encode(text)
    assert 1 not in ids  # nothing unknown
    assert bilingual.decode(ids) == text


def test_bilingual_glued_english(bilingual):
    # English glued to Chinese encodes like its normalized, spaced form and decodes to it.
    assert bilingual.encode("打开lights吧") == bilingual.encode("打开 lights 吧")
    assert bilingual.decode(bilingual.encode("把volume调高")) == "把 volume 调高" == normalize_zh("把volume调高")


def test_bilingual_language_tags(bilingual):
    ids = bilingual.encode("把 volume 调高")
    pieces = [bilingual.id_to_piece(i) for i in ids]
    langs = [bilingual.language(i) for i in ids]
    assert pieces[0] == "把" and pieces[-2:] == ["调", "高"]
    assert "".join(pieces[1:-2]) == "▁volume"
    assert langs == ["zh"] + ["en"] * (len(ids) - 3) + ["zh", "zh"]
    assert [bilingual.language(i) for i in (0, 1, 2)] == ["", "", ""]
    # One vocabulary: BPE ids below the first character id, characters after, no overlap.
    chars = sorted({c for t in MIXED for lang, s in runs(t) if lang == "zh" for c in s})
    assert bilingual.chars == chars
    assert bilingual.vocab_size == bilingual.offset + len(chars)
    assert all(bilingual.language(i) == "en" for i in range(3, bilingual.offset))


def test_bilingual_unknown_and_english_free(bilingual):
    assert bilingual.encode("新 lights") == [1] + bilingual.encode("lights")
    zh_only = BilingualTokenizer.train(["打开灯", "关闭风扇"])
    assert zh_only.bpe is None and zh_only.vocab_size == 3 + len(set("打开灯关闭风扇"))
    assert zh_only.decode(zh_only.encode("打开风扇")) == "打开风扇"
    assert zh_only.encode("打开 the fan") == zh_only.encode("打开") + [1, 1]


def test_bilingual_save_load(bilingual, tmp_path):
    bilingual.save(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, BilingualTokenizer)
    for text in MIXED:
        assert again.encode(text) == bilingual.encode(text)
    assert [again.id_to_piece(i) for i in range(again.vocab_size)] == \
        [bilingual.id_to_piece(i) for i in range(bilingual.vocab_size)]
    trained = train_tokenizer(TokenizerConfig(kind="bilingual", vocab_size=60), MIXED * 2)
    assert trained.encode("打开 lights") == bilingual.encode("打开 lights")  # deterministic


def test_bilingual_bad_files(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"kind": "bilingual", "chars": ["ab"], "model": null}')
    with pytest.raises(ConfigError, match="Chinese characters"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": "bilingual", "chars": ["灯"], "model": "bpe.model"}')
    with pytest.raises(ConfigError, match="bpe.model"):
        load_tokenizer(tmp_path)


def test_mer_hand_computed():
    # ref units: 打 开 lights 吧 (N=4); hyp: 打 开 light 吧 吧 -> lights/light S, one 吧 inserted.
    counts, ali = mixed_errors("打开 lights 吧", "打开light吧吧")
    assert counts == ErrorCounts(S=1, D=0, I=1, N=4)
    assert ali[:3] == [("打", "打"), ("开", "开"), ("lights", "light")]
    # ref 把 volume 调 高 (N=4); hyp 把 调 低: volume deleted, 高->低 substituted.
    assert mixed_errors("把 volume 调高", "把 调 低")[0] == ErrorCounts(S=1, D=1, I=0, N=4)
    # Spaces between Chinese characters never count.
    assert mixed_errors("现在几点", "现 在 几 点")[0] == ErrorCounts(N=4)


def test_language_parts_hand_computed():
    ref, hyp = "把 volume 调高 please", "把 volume up 调低"
    # Chinese part: 把 调 高 vs 把 调 低 -> S=1 of 3; English part: volume please vs volume up -> S=1 of 2.
    assert language_errors(ref, hyp, "zh")[0] == ErrorCounts(S=1, N=3)
    assert language_errors(ref, hyp, "en")[0] == ErrorCounts(S=1, N=2)
    # Mixed: 把 volume 调 高 please vs 把 volume up 调 低: up inserted, 高->低, please deleted.
    assert mixed_errors(ref, hyp)[0] == ErrorCounts(S=1, D=1, I=1, N=5)
    refs, hyps = ["打开 lights", "前进十米"], ["打开 light", "前进四米"]
    assert corpus_errors(refs, hyps, "mixed") == ErrorCounts(S=2, N=7)
    assert corpus_errors(refs, hyps, "zh") == ErrorCounts(S=1, N=6)
    assert corpus_errors(refs, hyps, "en") == ErrorCounts(S=1, N=1)


def test_evaluate_scores_mixed_manifests():
    from ceasr.data.manifest import Utterance
    from ceasr.evaluate import score

    rows = [Utterance("a.wav", "打開 Lights", "1", lang="zh"), Utterance("b.wav", "前進10米", "2", lang="zh-CN"),
            Utterance("c.wav", "Turn on the lights", "3", lang="en")]
    hyps = ["打开 light", "前进十 米", "turn on the 的 lights"]
    report = score(rows, hyps)
    m = report.mixed
    assert m.mer == ErrorCounts(S=1, I=1, N=3 + 4 + 4)
    assert m.by_language == {"mixed": ErrorCounts(S=1, N=3), "zh": ErrorCounts(N=4), "en": ErrorCounts(I=1, N=4)}
    assert m.zh_chars == ErrorCounts(I=1, N=6) and m.en_words == ErrorCounts(S=1, N=5)
    assert m.language_correct == 2  # the third hypothesis is mixed, its reference English
    lines = report.summary_lines().splitlines()
    assert lines[-1] == "MER=0.1818 S=1 D=0 I=1 N=11"
    assert "zh utterances: CER=0.0000 S=0 D=0 I=0 N=4" in lines
    assert "language tag accuracy=0.6667 (2/3 utterances)" in lines
    assert report.results[1]["hyp_lang"] == "zh" and report.results[2]["lang"] == "en"
    english = score(rows[2:], ["turn on the lights"])
    assert english.mixed is None and english.summary_lines().splitlines()[-1].startswith("WER=0.0000")


def test_commonvoice_zh_cn_through_the_importer(tmp_path, tone):
    from ceasr.data.importers import commonvoice

    root = tmp_path / "cv-corpus" / "zh-CN"
    tone(root / "clips" / "common_voice_zh-CN_1.mp3", 0.5, 48000)
    (root / "train.tsv").write_text(
        "client_id\tpath\tsentence\tlocale\n"
        "u1\tcommon_voice_zh-CN_1.mp3\t請把音量調到３０，謝謝！\tzh-CN\n", encoding="utf-8")
    rows, errors = commonvoice(root)
    assert not errors and rows[0].lang == "zh-CN"
    assert normalize(rows[0].text, rows[0].lang) == "请把音量调到三十谢谢"
