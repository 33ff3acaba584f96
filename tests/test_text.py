"""Text: normalization against hand-written cases; tokenizers' round trips, specials, save/load, training."""

from __future__ import annotations

import json

import pytest

from ceasr.config import TokenizerConfig
from ceasr.errors import ConfigError
from ceasr.text.normalize import NORMALIZERS, cardinal, normalize, normalize_en, ordinal
from ceasr.text.tokenizer import (
    TOKENIZERS,
    BpeTokenizer,
    CharTokenizer,
    load_tokenizer,
    pieces,
    train_tokenizer,
)

ENGLISH_CASES = [
    ("Don't STOP!", "don't stop"),
    ("Go forward 42 meters.", "go forward forty two meters"),
    ("In 2024, we left.", "in two thousand twenty four we left"),
    ("Set a timer for 5 minutes", "set a timer for five minutes"),
    ("It's 3.5 km", "it's three point five km"),
    ("0.25", "zero point two five"),
    ("100", "one hundred"),
    ("110 and 1,000 and 12,345", "one hundred ten and one thousand and twelve thousand three hundred forty five"),
    ("999999", "nine hundred ninety nine thousand nine hundred ninety nine"),
    ("1000000", "one zero zero zero zero zero zero"),  # past 999,999: digit by digit
    ("call 5551234", "call five five five one two three four"),
    ("007", "zero zero seven"),  # a leading zero: digit by digit
    ("mp3 and B2B", "mp three and b two b"),  # digits glued to letters: digit by digit
    ("the 1st, 2nd, 3rd and 21st", "the first second third and twenty first"),
    ("11th 12th 40th 100th", "eleventh twelfth fortieth one hundredth"),
    ("state-of-the-art", "state of the art"),
    ("well—maybe", "well maybe"),
    ("'quoted' text", "quoted text"),
    ("It’s fine", "it's fine"),
    ("50% & more", "fifty percent and more"),
    ("  lots   of\tspace\n", "lots of space"),
    ("Café Zoë", "café zoë"),
    ("v1.2.3", "v one two three"),
    ("", ""),
]


@pytest.mark.parametrize("text, expected", ENGLISH_CASES)
def test_normalize_en(text, expected):
    assert normalize_en(text) == expected
    assert normalize(text) == expected  # English is the default


def test_cardinal_and_ordinal_words():
    assert cardinal(0) == "zero"
    assert cardinal(15) == "fifteen"
    assert cardinal(90) == "ninety"
    assert cardinal(305) == "three hundred five"
    assert cardinal(20_019) == "twenty thousand nineteen"
    assert cardinal(700_000) == "seven hundred thousand"
    assert [ordinal(n) for n in (5, 8, 9, 30)] == ["fifth", "eighth", "ninth", "thirtieth"]
    with pytest.raises(ValueError):
        cardinal(1_000_000)


def test_normalize_passes_cjk_through():
    assert normalize("你好，世界！Hello World。") == "你好 世界 hello world"
    assert normalize("打开「灯」、然后？") == "打开 灯 然后"
    assert normalize("ＡＢＣ　１２") == "abc twelve"  # full-width forms fold to ASCII first


def test_normalize_languages():
    assert set(NORMALIZERS) >= {"en"}
    assert normalize("Two Cats", "en-US") == normalize("Two Cats", "en_GB") == "two cats"
    # A language without its own normalizer keeps its digits and loses case and punctuation.
    assert normalize("Straße 12, Ärger!", "de") == "straße 12 ärger"
    assert normalize("Привет, 3 кота!", "ru") == "привет 3 кота"
    # Chinese has its own (tests/test_zh.py): digits become Chinese numerals, spaces between characters go.
    assert normalize("打开 lights，3 个", "zh-CN") == "打开 lights 三个"


SENTENCES = [
    "go forward ten meters",
    "set a timer for five minutes",
    "turn left and stop",
    "call five five five one two three four",
    "set the volume to forty two percent",
    "don't stop",
]


@pytest.fixture(scope="module")
def bpe():
    return BpeTokenizer.train(SENTENCES * 3, TokenizerConfig(kind="bpe", vocab_size=60))


@pytest.fixture(scope="module")
def char():
    return CharTokenizer.train(SENTENCES + ["你好 世界"])


def test_special_ids_are_fixed(bpe, char):
    for tok in (bpe, char):
        assert (tok.blank_id, tok.unk_id, tok.sos_id, tok.eos_id) == (0, 1, 2, 2)
        assert [tok.id_to_piece(i) for i in range(3)] == ["<blank>", "<unk>", "<sos/eos>"]
        assert all(i >= 3 for s in SENTENCES for i in tok.encode(s))
        assert tok.decode([0, 2] + tok.encode("turn left") + [2, 0]) == "turn left"


def test_pieces_lists_every_token_by_id(char):
    # The char tokenizer's pieces are known: the specials, then "▁" and the sorted characters.
    chars = sorted(set("".join(SENTENCES + ["你好 世界"])) - {" "})
    assert pieces(char) == ("<blank>", "<unk>", "<sos/eos>", "\u2581", *chars)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_round_trip(kind, bpe, char):
    tok = {"bpe": bpe, "char": char}[kind]
    for s in SENTENCES + ["stop", "left left left"]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert "".join(tok.id_to_piece(i) for i in ids).replace("\u2581", " ").strip() == s


def test_char_tokenizer_pieces(char):
    ids = char.encode("你好 go")
    assert [char.id_to_piece(i) for i in ids] == ["你", "好", "\u2581", "g", "o"]
    assert char.decode(ids) == "你好 go"
    assert char.vocab_size == 3 + len(set("".join(SENTENCES + ["你好世界"])) - {" "}) + 1  # + "▁"


def test_unknown_characters_map_to_unk(bpe, char):
    assert char.encode("gq") == [char.encode("g")[0], 1]  # "q" never seen
    assert 1 in bpe.encode("go 你")
    assert bpe.decode(bpe.encode("go 你")).split() == ["go"]


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_save_load_gives_identical_ids(kind, bpe, char, tmp_path):
    tok = {"bpe": bpe, "char": char}[kind]
    tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
    for s in SENTENCES + ["你好 qz"]:
        assert loaded.encode(s) == tok.encode(s)
    ids = range(tok.vocab_size)
    assert [loaded.id_to_piece(i) for i in ids] == [tok.id_to_piece(i) for i in ids]
    assert not [p for p in (tmp_path / "tok").iterdir() if p.name.endswith(".tmp")]


def test_training_is_deterministic():
    cfg = TokenizerConfig(kind="bpe", vocab_size=50)
    a = train_tokenizer(cfg, iter(SENTENCES))
    b = train_tokenizer(cfg, list(SENTENCES))
    assert a.model_proto == b.model_proto
    assert a.vocab_size <= 50
    c1 = train_tokenizer(TokenizerConfig(kind="char"), SENTENCES)
    c2 = train_tokenizer(TokenizerConfig(kind="char"), reversed(SENTENCES))
    assert c1.pieces == c2.pieces
    assert isinstance(c1, TOKENIZERS["char"]) and isinstance(a, TOKENIZERS["bpe"])


def test_bpe_merges_frequent_words():
    tok = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=200), SENTENCES * 5)
    assert len(tok.encode("set a timer for five minutes")) < len("set a timer for five minutes")


def test_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        train_tokenizer(TokenizerConfig(kind="wordpiece"), SENTENCES)
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=10), SENTENCES)
    with pytest.raises(ConfigError, match="no text"):
        train_tokenizer(TokenizerConfig(kind="bpe"), ["", "  "])
    with pytest.raises(ConfigError, match="no text"):
        train_tokenizer(TokenizerConfig(kind="char"), [])
    with pytest.raises(ConfigError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text(json.dumps({"kind": "bpe"}))
    (tmp_path / "bad" / "bpe.model").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="bpe.model"):
        load_tokenizer(tmp_path / "bad")
