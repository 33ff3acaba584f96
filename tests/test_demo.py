"""The demo's corpus step: synthesized once per (hours, seed, language, held-out engine), then reused."""

import json

import ceasr.data.synth
from ceasr.demo import ensure_corpus


def test_a_corpus_is_reused_only_when_its_stamp_matches(tmp_path, monkeypatch):
    calls = []

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
    assert json.loads((data / "synth.json").read_text()) == {"hours": 1.0, "seed": 0,
                                                             "version": ceasr.data.synth.CORPUS_VERSION}
    ensure_corpus(data, 1.0, 0, holdout_engine="flite")  # another split: synthesized anew
    ensure_corpus(data, 1.0, 0, holdout_engine="flite")
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")
    assert [c["holdout_engine"] for c in calls] == [None, "flite", "flite"]
    assert [c["seed"] for c in calls] == [0, 0, 1]
    assert json.loads((data / "synth.json").read_text()) == {"hours": 1.0, "seed": 1, "holdout_engine": "flite",
                                                             "version": ceasr.data.synth.CORPUS_VERSION}
    (data / "synth.json").write_text(json.dumps({"hours": 1.0, "seed": 1, "holdout_engine": "flite"}))
    ensure_corpus(data, 1.0, 1, holdout_engine="flite")  # made by an older ceasr: synthesized anew
    assert len(calls) == 4
