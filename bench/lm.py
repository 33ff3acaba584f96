"""Language models in decoding: WER with/without LMs (clean and noisy test audio), speed vs pyctcdecode, hotwords.

Run: ``OMP_NUM_THREADS=1 python bench/lm.py [--model runs/demo/model] [--data runs/demo/data] [--noises white pink
babble] [--snr 5] [--trials 20] [--dev-every 2]``

LMs are trained on the train transcripts: a word 3-gram (modified Kneser-Ney) and a Transformer over the
model's BPE tokens. Dev and test audio get each noise at ``--snr`` dB through ``ceasr.robustness``. The CTC
log-probabilities of every utterance are computed once; every system searches the same ones at beam
``--beam``: ceasr's prefix beam search (no LM; with the 3-gram fused, scoring words only at their ends as
before and with partial words scored; with the Transformer LM fused, and rescoring the n-best) and
pyctcdecode with kenlm on the same ARPA file (its own venv, ``.venv-lm``). Each system's LM weight and
length bonus are tuned once on the dev set of every condition pooled (Optuna for ceasr, a grid for
pyctcdecode); test is never tuned on.
Speed is search seconds over audio seconds, per file; the full pipeline RTF (features, encoder, search) is
measured for prefix beam + 3-gram at batch size 1.

Hotwords: the teens (thirteen .. nineteen) never occur in the training text, but the model's BPE pieces spell
them ("▁four t e en") and it knows most of their sound (four, six, seven, nine, ten). Sentences with them are synthesized
with the corpus's own voice split (seed 0), and only the dev and test voices (never heard in training) are
used: the boost is chosen on the dev voices, recall is reported on the test voices, with and without
boosting, and so is the WER of the ordinary test sentences (no hotword) with the boost list loaded. The last
line is the headline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, median, pin_threads, write_json  # noqa: E402

import ceasr  # noqa: E402
from ceasr.audio import load as load_audio  # noqa: E402
from ceasr.config import LMConfig, TrainConfig  # noqa: E402
from ceasr.data.manifest import read_manifest  # noqa: E402
from ceasr.decode import PRUNE_LOG_PROB, Fusion, ctc_prefix_beam_search, rescore  # noqa: E402
from ceasr.decode.hotwords import Hotwords  # noqa: E402
from ceasr.evaluate import real_time_factors  # noqa: E402
from ceasr.lm import load_lm, read_texts, train_lm  # noqa: E402
from ceasr.metrics import corpus_errors  # noqa: E402
from ceasr.robustness import Condition, corrupt_manifest  # noqa: E402
from ceasr.text.normalize import normalize  # noqa: E402
from ceasr.text.tokenizer import pieces  # noqa: E402

PEER_PYTHON = REPO / ".venv-lm/bin/python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers/pyctcdecode_decode.py"
HOTWORDS = ("thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TEMPLATES = ("set a timer for {w} minutes", "go forward {w} meters", "go backward {w} meters", "{w}")
BOOSTS = (1.0, 2.0, 3.0, 4.0, 6.0)  # ceasr: per token
PEER_BOOSTS = (3.0, 10.0, 30.0)  # pyctcdecode's hotword_weight (its default is 10)


def log_probs_of(recognizer, rows, cache: Path) -> tuple[list[torch.Tensor], list[str], float]:
    """Per-utterance CTC log-probs (T', V), normalized references, audio seconds (cached in ``cache``)."""
    if cache.exists():
        return torch.load(cache)
    lps, refs, seconds = [], [], 0.0
    with torch.inference_mode():
        for r in rows:
            wave = load_audio(r.audio, sample_rate=recognizer.sample_rate)
            seconds += len(wave) / recognizer.sample_rate
            feats, lens = recognizer.fbank(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
            enc, enc_lens = recognizer.model.encode(feats, lens)
            lps.append(recognizer.model.ctc_log_probs(enc)[0, : int(enc_lens[0])].double())
            refs.append(normalize(r.text, r.lang))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save((lps, refs, seconds), cache)
    return lps, refs, seconds


def search(lps, tokenizer, beam: int, fusion: Fusion | None, rescorer: Fusion | None = None):
    """Texts and per-utterance seconds of prefix beam search (fused, or rescoring its n-best)."""
    texts, secs = [], []
    for lp in lps:
        start = time.perf_counter()
        nbest = ctc_prefix_beam_search(lp, beam, top_k=beam, min_log_prob=PRUNE_LOG_PROB, fusion=fusion)
        best = rescore(nbest, rescorer, fusion.length_bonus if fusion else 0.0) if rescorer else nbest[0]
        secs.append(time.perf_counter() - start)
        texts.append(normalize(tokenizer.decode(list(best.tokens))))
    return texts, secs


def tune(objective, trials: int, seed: int = 0) -> dict:
    """Optuna TPE over lambda in [0, 2] and beta in [-1, 4]; the first trial is (0.5, 1.0). The best
    parameters and their dev WER."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({"lm_weight": 0.5, "length_bonus": 1.0})
    study.optimize(lambda t: objective(t.suggest_float("lm_weight", 0.0, 2.0),
                                       t.suggest_float("length_bonus", -1.0, 4.0)), n_trials=trials)
    return {**study.best_params, "dev_wer": study.best_value}


def peer(lps, labels, arpa: str, alpha: float, beta: float, beam: int, env,
         hotword_weight: float | None = None) -> tuple[list[str], list[float]]:
    """pyctcdecode + kenlm on the same log-probs, in its own venv (with :data:`HOTWORDS` boosted by
    ``hotword_weight`` when given)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lp.npz"
        np.savez(path, labels=np.array(labels), **{f"lp{i}": lp.float().numpy() for i, lp in enumerate(lps)})
        cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), str(path), arpa, str(alpha), str(beta), str(beam)]
        if hotword_weight is not None:
            (Path(tmp) / "hot.json").write_text(json.dumps({"words": HOTWORDS, "weight": hotword_weight}))
            cmd.append(str(Path(tmp) / "hot.json"))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"pyctcdecode failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return [normalize(t) for t in out["texts"]], out["seconds"]


def hotword_rows(out: Path, data: Path) -> dict[str, list]:
    """Dev- and test-voice sentences with the hotwords, synthesized with the corpus's voice split (cached)."""
    from ceasr.data.synth import synthesize

    train = read_manifest(data / "train.jsonl")[0]
    seen = {w for r in train for w in normalize(r.text).split()}
    if seen & set(HOTWORDS):
        raise SystemExit(f"hotwords {sorted(seen & set(HOTWORDS))} occur in the training text")
    folder = out / "hotwords"
    if not (folder / "test.jsonl").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sentences.txt").write_text("".join(t.format(w=w) + "\n" for w in HOTWORDS for t in TEMPLATES))
        seed = json.loads((data / "synth.json").read_text()).get("seed", 0) if (data / "synth.json").exists() else 0
        synthesize(folder, hours=0.35, seed=seed, text_file=folder / "sentences.txt", jobs=1, progress=False)
    rows = {s: read_manifest(folder / f"{s}.jsonl")[0] for s in ("dev", "test")}
    train_voices = {r.speaker for r in train}
    heard = {r.speaker for s in rows.values() for r in s} & train_voices
    if heard:
        raise SystemExit(f"hotword sentences use training voices: {sorted(heard)[:3]}")
    return rows


def recall(refs, hyps) -> tuple[int, int]:
    """(hotword occurrences recognized, occurrences in the references), counted per word and utterance."""
    found = sum(min(r.split().count(w), h.split().count(w)) for r, h in zip(refs, hyps) for w in HOTWORDS)
    return found, sum(r.split().count(w) for r in refs for w in HOTWORDS)


def model_key(model: str) -> str:
    weights = Path(model) / "model.safetensors"
    stamp = f"{Path(model).resolve()}|{weights.stat().st_mtime_ns if weights.exists() else 0}"
    return hashlib.sha1(stamp.encode()).hexdigest()[:10]


def train_lms(out: Path, data: Path, tok, lm_steps: int) -> None:
    texts, heldout = read_texts([data / "train.jsonl"]), read_texts([data / "dev.jsonl"])
    if not (out / "word3/lm.json").exists():
        train_lm(LMConfig(order=3), texts, out / "word3", heldout=heldout, progress=False)
    if not (out / "transformer/lm.json").exists():
        cfg = LMConfig(type="transformer", units="tokens",
                       train=TrainConfig(lr=2e-3, warmup_steps=100, max_steps=lm_steps, checkpoint_every=200))
        train_lm(cfg, texts, out / "transformer", tokenizer=tok, heldout=heldout, progress=False)


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: the recognizer's pieces, the beam, the peer's setup, the cached sets."""

    tok: object
    pieces: tuple[str, ...]
    beam: int
    env: dict
    labels: list[str]
    arpa: str
    sets: dict  # (condition, split) -> (log-probs, references, audio seconds)

    dev_every: int = 1

    def pooled(self, split: str):
        """Log-probs and references of ``split`` in every condition, concatenated (dev: every
        ``dev_every``-th utterance)."""
        k = self.dev_every if split == "dev" else 1
        parts = [v for (_, s), v in self.sets.items() if s == split]
        return [lp for p in parts for lp in p[0][::k]], [r for p in parts for r in p[1][::k]]

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.sets))

    def ceasr(self, make):
        """``make() -> (fusion, rescorer)`` as a decoder: log-probs -> (texts, seconds)."""
        return lambda lps: search(lps, self.tok, self.beam, *make())

    def peer(self, alpha: float, beta: float, hotword_weight: float | None = None):
        return lambda lps: peer(lps, self.labels, self.arpa, alpha, beta, self.beam, self.env, hotword_weight)


def ceasr_systems(pieces, ngram, neural) -> dict:
    """name -> make(lambda, beta) -> (fusion, rescorer) for :func:`search`."""
    return {
        "3-gram fusion, whole words only": lambda w, b: (Fusion(pieces, ngram, w, b, oov_penalty=0.0), None),
        "3-gram fusion, partial words scored": lambda w, b: (Fusion(pieces, ngram, w, b), None),
        "3-gram fusion, partial + look-ahead": lambda w, b: (Fusion(pieces, ngram, w, b, lookahead=True), None),
        "Transformer LM fusion": lambda w, b: (Fusion(pieces, neural, w, b), None),
        "Transformer LM rescoring": lambda w, b: (Fusion((), length_bonus=b), Fusion(pieces, neural, w, b)),
    }


def choose_boost(bench: Bench, decoder, candidates, hot_dev) -> float | None:
    """The boost with the best hotword recall on dev voices whose pooled dev WER (sentences without
    hotwords) is at most 0.5 point above no boosting; None when no boost raises the recall."""
    dev_lps, dev_refs = bench.pooled("dev")
    base_wer = corpus_errors(dev_refs, decoder(None)(dev_lps)[0]).rate
    choice, best = None, recall(hot_dev[1], decoder(None)(hot_dev[0])[0])[0]
    for boost in candidates:
        found = recall(hot_dev[1], decoder(boost)(hot_dev[0])[0])[0]
        if found > best and corpus_errors(dev_refs, decoder(boost)(dev_lps)[0]).rate <= base_wer + 0.005:
            choice, best = boost, found
    return choice


def hotword_study(bench: Bench, hot: dict, ngram, tuned: dict, best_peer) -> dict:
    """Per system: the boost chosen on dev voices, test recall and test WER without hotwords, +/- boosting."""
    def ceasr(lm: bool):
        w, b = (tuned["lm_weight"], tuned["length_bonus"]) if lm else (0.0, 0.0)

        def decoder(boost):
            hw = Hotwords([(bench.tok.encode(h), boost) for h in HOTWORDS]) if boost else None
            return bench.ceasr(lambda: (Fusion(bench.pieces, ngram if lm else None, w, b, hw), None))
        return decoder

    systems = {"ceasr, no LM": (ceasr(False), BOOSTS), "ceasr + 3-gram": (ceasr(True), BOOSTS),
               "pyctcdecode + 3-gram": (lambda w: bench.peer(*best_peer, w), PEER_BOOSTS)}
    out = {}
    for name, (decoder, candidates) in systems.items():
        boost = choose_boost(bench, decoder, candidates, hot["dev"])
        row = {"boost": boost, "recall": [recall(hot["test"][1], decoder(x)(hot["test"][0])[0]) for x in (None, boost)]}
        row["wer"] = {c: [corpus_errors(bench.sets[(c, "test")][1], decoder(x)(bench.sets[(c, "test")][0])[0]).rate
                          for x in (None, boost)] for c in bench.conditions()}
        out[name] = row
        print(f"# hotwords {name}: {row}", file=sys.stderr, flush=True)
    decoder = systems["ceasr + 3-gram"][0]
    clean, noisy = bench.conditions()[0], bench.conditions()[1]
    out["curve"] = [(boost, recall(hot["test"][1], decoder(boost)(hot["test"][0])[0]),
                     *(corpus_errors(bench.sets[(c, "test")][1], decoder(boost)(bench.sets[(c, "test")][0])[0]).rate
                       for c in (clean, noisy))) for boost in BOOSTS]
    return out


def wer_table(bench: Bench, systems: dict) -> tuple[list, dict]:
    """Test WER and search speed of every system in every condition."""
    table, summary = [], {}
    for cond in bench.conditions():
        lps, refs, seconds = bench.sets[(cond, "test")]
        results = {name: decoder(lps) for name, decoder in systems.items()}
        base = corpus_errors(refs, results["prefix beam, no LM"][0]).rate
        for name, (hyps, secs) in results.items():
            e = corpus_errors(refs, hyps)
            summary[(cond, name)] = e.rate
            table.append([cond, name, f"{e.rate:.4f}", f"{(base - e.rate) / max(base, 1e-9):+.1%}", e.S, e.D, e.I,
                          e.N, f"{sum(secs) / seconds:.4f}", f"{median(secs) * 1000:.1f}"])
    return table, summary


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "runs/demo/model"))
    ap.add_argument("--data", default=str(REPO / "runs/demo/data"))
    ap.add_argument("--out", default="runs/bench-lm")
    ap.add_argument("--snr", type=float, default=5.0)
    ap.add_argument("--noises", nargs="*", default=["white", "pink", "babble"])
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--dev-every", type=int, default=2, help="tune on every k-th dev utterance of each condition")
    ap.add_argument("--lm-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def load_sets(rec, data: Path, out: Path, key: str, conds: dict) -> dict:
    sets = {}
    for name, cond in conds.items():
        for split in ("dev", "test"):
            rows = corrupt_manifest(read_manifest(data / f"{split}.jsonl")[0], cond, out / "audio" / split, seed=0)
            slug = "clean" if cond.clean else cond.slug
            sets[(name, split)] = log_probs_of(rec, rows, out / "cache" / key / f"{slug}-{split}.pt")
    return sets


def main() -> None:
    args = parse_args()
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON}: missing; the pyctcdecode peer needs its own venv: python -m venv .venv-lm && "
                         ".venv-lm/bin/pip install pyctcdecode==0.5.0 kenlm==0.3.0")
    env = pin_threads(args.threads)
    load = load_average()
    out, data = Path(args.out), Path(args.data)
    rec, key = ceasr.load_model(args.model), model_key(args.model)
    tok = rec.tokenizer
    vocab = pieces(tok)
    train_lms(out, data, tok, args.lm_steps)
    ngram, neural = load_lm(out / "word3", backend="python"), load_lm(out / "transformer")
    ppl = {k: json.loads((out / k / "lm.json").read_text())["heldout"]["perplexity"] for k in ("word3", "transformer")}
    labels = ["", "▁⁇▁", "⁇⁇"] + list(vocab[3:])  # blank, then unk and sos/eos (never emitted by CTC)
    conds = {"clean": Condition(), **{f"{n} {args.snr:g} dB": Condition(noise=n, snr_db=args.snr) for n in args.noises}}
    bench = Bench(tok, vocab, args.beam, env, labels, str((out / "word3/lm.arpa").resolve()),
                  load_sets(rec, data, out, key, conds), args.dev_every)
    hot = {s: log_probs_of(rec, rows, out / "cache" / key / f"hotwords-{s}.pt")
           for s, rows in hotword_rows(out, data).items()}

    dev_lps, dev_refs = bench.pooled("dev")
    makers = ceasr_systems(vocab, ngram, neural)
    tuned = {}
    for name, make in makers.items():
        tuned[name] = tune(lambda w, b, make=make: corpus_errors(dev_refs, bench.ceasr(lambda: make(w, b))(dev_lps)[0]).rate,
                           args.trials)
        print(f"# tuned {name}: {tuned[name]}", file=sys.stderr, flush=True)
    grid = [(a, b) for a in (0.3, 0.6, 1.0) for b in (0.0, 1.5, 3.0)]
    peer_dev = {g: corpus_errors(dev_refs, bench.peer(*g)(dev_lps)[0]).rate for g in grid}
    best_peer = min(peer_dev, key=peer_dev.get)
    print(f"# tuned pyctcdecode: {best_peer} dev WER {peer_dev[best_peer]:.4f}", file=sys.stderr, flush=True)

    systems = {"prefix beam, no LM": bench.ceasr(lambda: (None, None))}
    for name, make in makers.items():
        systems[name] = bench.ceasr(lambda make=make, p=tuned[name]: make(p["lm_weight"], p["length_bonus"]))
    systems["pyctcdecode + kenlm 3-gram"] = bench.peer(*best_peer)
    table, summary = wer_table(bench, systems)

    best = tuned["3-gram fusion, partial words scored"]
    test_rows = read_manifest(data / "test.jsonl")[0][::5][:60]
    waves = [load_audio(r.audio, sample_rate=rec.sample_rate) for r in test_rows]
    full = rec.with_decode(method="ctc_prefix_beam", beam_size=args.beam, lm=str(out / "word3"),
                           lm_weight=best["lm_weight"], length_penalty=best["length_bonus"])
    full_rtf = median(real_time_factors(full, waves))
    hw = hotword_study(bench, hot, ngram, best, best_peer)
    report(args, load, ppl, tuned, (best_peer, peer_dev[best_peer]), table, full_rtf, len(waves), hw, summary, list(conds), out,
           len(hot["test"][1]))


def report(args, load, ppl, tuned, best_peer, table, full_rtf, n_waves, hw, summary, conds, out, n_hot) -> None:
    print(header(args.threads, load, f"beam {args.beam}, LMs trained on the train transcripts"))
    print(f"# held-out perplexity: word 3-gram {ppl['word3']:.2f} (per word), Transformer {ppl['transformer']:.2f} "
          f"(per BPE token); lambda, beta tuned on every {args.dev_every}th utterance of the dev sets of all "
          f"{len(conds)} conditions pooled ({args.trials} Optuna trials):")
    for name, p in tuned.items():
        print(f"#   {name}: lambda={p['lm_weight']:.2f} beta={p['length_bonus']:.2f} (dev WER {p['dev_wer']:.4f})")
    print(f"#   pyctcdecode: alpha, beta = {best_peer[0]} (dev WER {best_peer[1]:.4f})")
    print(format_table(["audio", "system", "WER", "rel. to no LM", "S", "D", "I", "N", "search RTF", "median ms/utt"],
                       table))
    print(f"\nfull pipeline RTF (features+encoder+prefix beam+3-gram, batch 1, {n_waves} clean test files, median): "
          f"{full_rtf:.4f}")
    print(f"\nhotwords {', '.join(HOTWORDS)} (absent from the training text), {n_hot} test-voice sentences; "
          "boost chosen on dev voices:")
    rows = []
    curve = hw.pop("curve")
    for name, r in hw.items():
        (f0, n), (f1, _) = r["recall"]
        wer = [f"{a:.4f} -> {b:.4f}" for a, b in r["wer"].values()]
        rows.append([name, "-" if r["boost"] is None else f"{r['boost']:g}", f"{f0 / max(n, 1):.1%}",
                     f"{f1 / max(n, 1):.1%}", *wer])
    print(format_table(["system", "boost", "recall without", "recall with",
                        *(f"WER {c} (no hotwords)" for c in conds)], rows))
    print("ceasr + 3-gram on test, every boost tried: "
          + "; ".join(f"boost {b:g}: recall {f}/{n}, WER {conds[0]} {c:.4f}, {conds[1]} {w:.4f}"
                      for b, (f, n), c, w in curve))
    hw["curve"] = curve
    write_json(out / "bench-lm.json", {"rows": table, "tuned": tuned, "peer": best_peer, "hotwords": hw,
                                       "full_rtf": full_rtf})
    noisy = [c for c in conds if c != "clean"]
    for system in ("3-gram fusion, partial words scored", "Transformer LM fusion"):
        rel = {c: 1 - summary[(c, system)] / max(summary[(c, "prefix beam, no LM")], 1e-9) for c in noisy}
        print(f"{system} vs no LM, relative WER cut: " + ", ".join(f"{c} {v:+.1%}" for c, v in rel.items()))


if __name__ == "__main__":
    main()
