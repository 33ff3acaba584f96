"""The demo's corpus step: synthesized once per (hours, seed, language, held-out engine, installed voices), then
reused."""

import hashlib
import json

import ceasr.data.synth
from ceasr.data.voices import Voice
from ceasr.demo import ensure_corpus


def test_a_corpus_is_reused_only_when_its_stamp_matches(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ceasr.data.synth, "voice_digest", lambda lang: "2:abc")

    def fake_synthesize(out_dir, **kw):
        calls.append(kw)
        (out_dir / "test.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (out_dir / "test.jsonl").write_text("")
        return "synthesized"

    monkeypatch.setattr(ceasr.data.synth, "synthesize", fake_synthesize)
    data = tmp_path / "data"
    ensure_corpus(data, 1.0, 0)
    ensure_corpus(data, 1.0, 0)  # the same corpus: reused
    assert len(calls) == 1
    assert json.loads((data / "synth.json").read_text()) == {"hours": 1.0, "seed": 0, "voices": "2:abc",
                                                             "version": ceasr.data.synth.CORPUS_VERSION}
    ensure_corpus(data, 1.0, 0, holdout_engine="flite")  # another split: synthesized anew
    ensure_corpus(data, 1.0, 0, holdout_engine="flite")
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")
    assert [c["holdout_engine"] for c in calls] == [None, "flite", "flite"]
    assert [c["seed"] for c in calls] == [0, 0, 1]
    assert json.loads((data / "synth.json").read_text()) == {"hours": 1.0, "seed": 1, "holdout_engine": "flite",
                                                             "version": ceasr.data.synth.CORPUS_VERSION,
                                                             "voices": "2:abc"}
    (data / "synth.json").write_text(json.dumps({"hours": 1.0, "seed": 1, "holdout_engine": "flite"}))
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")  # made by an older ceasr: synthesized anew
    assert len(calls) == 4
    monkeypatch.setattr(ceasr.data.synth, "voice_digest", lambda lang: "3:def")  # a voice was installed
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")
    assert len(calls) == 5
    (data / "synth.json").write_text('{"hours": 1.0, "se')  # cut short: counts as no stamp, not a traceback
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")
    assert len(calls) == 6 and json.loads((data / "synth.json").read_text())["voices"] == "3:def"


class _FakeEngine:
    def __init__(self, names):
        self.names = names

    def voices(self):
        return [Voice("fake", n, group=n) for n in self.names]


def test_the_voice_digest_counts_and_hashes_the_sorted_voice_ids(monkeypatch):
    monkeypatch.setattr(ceasr.data.synth, "installed_engines", lambda engines=None: ["fake"])
    monkeypatch.setitem(ceasr.data.synth.ENGINES, "fake", _FakeEngine(["b", "a"]))
    by_hand = hashlib.sha256(b"fake:a\nfake:b").hexdigest()[:12]
    assert ceasr.data.synth.voice_digest("en") == f"2:{by_hand}"
    monkeypatch.setitem(ceasr.data.synth.ENGINES, "fake", _FakeEngine(["a", "b", "c"]))
    assert ceasr.data.synth.voice_digest("en").startswith("3:")
