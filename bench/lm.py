"""Language models in decoding: WER with/without LMs (clean and noisy test audio), speed vs pyctcdecode, hotwords.

Run: ``.venv/bin/python bench/lm.py [--model runs/demo/model] [--data runs/demo/data] [--snr 5] [--trials 15]``

LMs are trained on the train transcripts: a word 3-gram (modified Kneser-Ney) and a Transformer over the
model's BPE tokens. Test and dev audio get white noise at ``--snr`` dB through ``ceasr.robustness``. The CTC
log-probabilities of every utterance are computed once; every system searches the same ones at beam
``--beam``: ceasr's prefix beam search (no LM; with the 3-gram fused; its n-best rescored by the
Transformer LM) and pyctcdecode with kenlm on the same ARPA file (its own venv, ``.venv-lm``). Each
system's LM weight and length bonus are tuned on the noisy dev set (Optuna for ceasr, a grid for
pyctcdecode). Speed is search seconds over audio seconds, per file; the full pipeline RTF (features, encoder,
search) is measured for prefix beam + 3-gram at batch size 1. Hotwords: sentences with words absent from the
training text, synthesized offline, decoded with and without boosting them. The last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, median, pin_threads, write_json  # noqa: E402

import ceasr  # noqa: E402
from ceasr.audio import load as load_audio  # noqa: E402
from ceasr.config import LMConfig, TrainConfig  # noqa: E402
from ceasr.data.manifest import read_manifest  # noqa: E402
from ceasr.decode import Fusion, ctc_prefix_beam_search, rescore  # noqa: E402
from ceasr.decode import PRUNE_LOG_PROB  # noqa: E402
from ceasr.decode.hotwords import Hotwords  # noqa: E402
from ceasr.evaluate import real_time_factors  # noqa: E402
from ceasr.lm import load_lm, read_texts, train_lm  # noqa: E402
from ceasr.metrics import corpus_errors  # noqa: E402
from ceasr.text.normalize import normalize  # noqa: E402

PEER_PYTHON = REPO / ".venv-lm/bin/python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers/pyctcdecode_decode.py"
NEW_WORDS = ("nora", "sonata", "atlas", "orion", "delta", "laser")
TEMPLATES = ("call {w}", "open {w} now", "{w} one two", "play {w}")


def log_probs_of(recognizer, rows) -> tuple[list[torch.Tensor], list[str], float]:
    """Per-utterance CTC log-probs (T', V), normalized references, audio seconds."""
    lps, refs, seconds = [], [], 0.0
    with torch.inference_mode():
        for r in rows:
            wave = load_audio(r.audio, sample_rate=recognizer.sample_rate)
            seconds += len(wave) / recognizer.sample_rate
            x = torch.from_numpy(wave)[None]
            feats, lens = recognizer.fbank(x, torch.tensor([len(wave)]))
            enc, enc_lens = recognizer.model.encode(feats, lens)
            lps.append(recognizer.model.ctc_log_probs(enc)[0, : int(enc_lens[0])].double())
            refs.append(normalize(r.text, r.lang))
    return lps, refs, seconds


def search(lps, tokenizer, beam: int, fusion: Fusion | None, rescorer: Fusion | None = None):
    """Texts and per-utterance seconds of prefix beam search (fused, or rescoring its n-best)."""
    import time

    texts, secs = [], []
    for lp in lps:
        start = time.perf_counter()
        nbest = ctc_prefix_beam_search(lp, beam, top_k=beam, min_log_prob=PRUNE_LOG_PROB, fusion=fusion)
        best = rescore(nbest, rescorer, fusion.length_bonus if fusion else 0.0) if rescorer else nbest[0]
        secs.append(time.perf_counter() - start)
        texts.append(normalize(tokenizer.decode(list(best.tokens))))
    return texts, secs


def tune(objective, trials: int, seed: int = 0) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({"lm_weight": 0.5, "length_bonus": 1.0})
    study.optimize(lambda t: objective(t.suggest_float("lm_weight", 0.0, 2.0),
                                       t.suggest_float("length_bonus", -1.0, 4.0)), n_trials=trials)
    return study.best_params


def peer(lps, labels, arpa: str, alpha: float, beta: float, beam: int, env) -> tuple[list[str], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lp.npz"
        np.savez(path, labels=np.array(labels), **{f"lp{i}": lp.float().numpy() for i, lp in enumerate(lps)})
        proc = subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), str(path), arpa, str(alpha), str(beta), str(beam)],
                              capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"pyctcdecode failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return [normalize(t) for t in out["texts"]], out["seconds"]


def wer(refs, hyps):
    return corpus_errors(refs, hyps)


def hotword_rows(out: Path, train_texts: set[str]) -> list:
    """Synthesize sentences with words absent from the training text (cached)."""
    from ceasr.data.synth import synthesize

    words = [w for w in NEW_WORDS if not any(w in t.split() for t in train_texts)]
    folder = out / "hotwords"
    if not (folder / "train.jsonl").exists():
        text = folder / "sentences.txt"
        folder.mkdir(parents=True, exist_ok=True)
        text.write_text("".join(t.format(w=w) + "\n" for w in words for t in TEMPLATES))
        synthesize(folder, hours=0.04, seed=1, text_file=text, jobs=2, progress=False)
    rows = [r for s in ("train", "dev", "test") for r in read_manifest(folder / f"{s}.jsonl")[0]]
    return rows, words


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "runs/demo/model"))
    ap.add_argument("--data", default=str(REPO / "runs/demo/data"))
    ap.add_argument("--out", default="runs/bench-lm")
    ap.add_argument("--snr", type=float, default=5.0)
    ap.add_argument("--noise", default="white")
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--lm-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    env = pin_threads(args.threads)
    load = load_average()
    out, data = Path(args.out), Path(args.data)
    rec = ceasr.load_model(args.model)
    tok = rec.tokenizer
    pieces = tuple(tok.id_to_piece(i) for i in range(tok.vocab_size))
    if not (out / "word3/lm.json").exists():
        train_lm(LMConfig(order=3), read_texts([data / "train.jsonl"]), out / "word3", heldout=read_texts([data / "dev.jsonl"]))
    if not (out / "transformer/lm.json").exists():
        cfg = LMConfig(type="transformer", units="tokens", train=TrainConfig(lr=2e-3, warmup_steps=100, max_steps=args.lm_steps,
                                                                             checkpoint_every=200))
        train_lm(cfg, read_texts([data / "train.jsonl"]), out / "transformer", tokenizer=tok,
                 heldout=read_texts([data / "dev.jsonl"]))
    ngram, neural = load_lm(out / "word3", backend="python"), load_lm(out / "transformer")
    ppl = {k: json.loads((out / k / "lm.json").read_text())["heldout"]["perplexity"] for k in ("word3", "transformer")}
    arpa = str((out / "word3/lm.arpa").resolve())
    labels = ["", "▁⁇▁", "⁇⁇"] + list(pieces[3:])  # blank, then unk and sos/eos (never emitted by CTC)

    conds = {"clean": None}
    try:
        from ceasr.robustness import Condition, corrupt_manifest

        conds[f"{args.noise} {args.snr:g} dB"] = Condition(noise=args.noise, snr_db=args.snr)
    except ImportError:
        print("# ceasr.robustness not available: clean audio only", file=sys.stderr)
    sets = {}
    for name, cond in conds.items():
        for split in ("dev", "test"):
            rows = read_manifest(data / f"{split}.jsonl")[0]
            if cond is not None:
                rows = corrupt_manifest(rows, cond, out / "audio" / split, seed=0)
            sets[(name, split)] = log_probs_of(rec, rows)
    tune_set = sets[(list(conds)[-1], "dev")]

    def fused(lm_w, beta):
        return Fusion(pieces, ngram, lm_w, beta)

    def resc(lm_w, beta):
        return Fusion(pieces, neural, lm_w, beta)

    def dev_wer(make, rescoring):
        def objective(lm_w, beta):
            if rescoring:
                hyps, _ = search(tune_set[0], tok, args.beam, Fusion((), length_bonus=beta), make(lm_w, beta))
            else:
                hyps, _ = search(tune_set[0], tok, args.beam, make(lm_w, beta))
            return wer(tune_set[1], hyps).rate
        return objective

    best_ng = tune(dev_wer(fused, False), args.trials)
    best_tr = tune(dev_wer(resc, True), args.trials)
    grid = [(a, b) for a in (0.3, 0.6, 1.0) for b in (0.0, 1.5, 3.0)]
    peer_dev = {g: wer(tune_set[1], peer(tune_set[0], labels, arpa, *g, args.beam, env)[0]).rate for g in grid}
    best_peer = min(peer_dev, key=peer_dev.get)

    rows_out, summary = [], {}
    for name in conds:
        lps, refs, seconds = sets[(name, "test")]
        systems = {
            "prefix beam, no LM": search(lps, tok, args.beam, None),
            "prefix beam + 3-gram fusion": search(lps, tok, args.beam, fused(best_ng["lm_weight"], best_ng["length_bonus"])),
            "prefix beam + Transformer rescoring": search(
                lps, tok, args.beam, Fusion((), length_bonus=best_tr["length_bonus"]),
                resc(best_tr["lm_weight"], best_tr["length_bonus"])),
            "pyctcdecode + kenlm 3-gram": peer(lps, labels, arpa, *best_peer, args.beam, env),
        }
        base = wer(refs, systems["prefix beam, no LM"][0]).rate
        for sys_name, (hyps, secs) in systems.items():
            e = wer(refs, hyps)
            summary[(name, sys_name)] = e.rate
            rows_out.append([name, sys_name, f"{e.rate:.4f}", f"{(base - e.rate) / max(base, 1e-9):+.1%}", e.S, e.D, e.I,
                             e.N, f"{sum(secs) / seconds:.4f}", f"{median(secs) * 1000:.1f}"])

    # Full pipeline RTF (features + encoder + prefix beam + 3-gram), batch size 1, 60 clean test files.
    test_rows = read_manifest(data / "test.jsonl")[0][::5][:60]
    waves = [load_audio(r.audio, sample_rate=rec.sample_rate) for r in test_rows]
    full = rec.with_decode(method="ctc_prefix_beam", beam_size=args.beam, lm=str(out / "word3"),
                           lm_weight=best_ng["lm_weight"], length_penalty=best_ng["length_bonus"])
    full_rtf = median(real_time_factors(full, waves))

    hot_rows, words = hotword_rows(out, {normalize(r.text) for r in read_manifest(data / "train.jsonl")[0]})
    words = [w for w in words if tok.unk_id not in tok.encode(w)]  # spellable with the model's pieces
    hlps, hrefs, _ = log_probs_of(rec, hot_rows)
    hot = Hotwords([(tok.encode(w), 3.0) for w in words])
    f_plain, f_hot = fused(best_ng["lm_weight"], best_ng["length_bonus"]), None
    f_hot = Fusion(pieces, ngram, best_ng["lm_weight"], best_ng["length_bonus"], hot)
    recall = {}
    for label, f in (("without boosting", f_plain), ("with boosting", f_hot)):
        hyps, _ = search(hlps, tok, args.beam, f)
        found = sum(sum(1 for w in words if w in r.split() and w in h.split()) for r, h in zip(hrefs, hyps))
        total = sum(sum(1 for w in words if w in r.split()) for r in hrefs)
        recall[label] = found / max(total, 1)
    clean_lps, clean_refs, _ = sets[("clean", "test")]
    wer_hot_clean = wer(clean_refs, search(clean_lps, tok, args.beam, f_hot)[0]).rate

    print(header(args.threads, load, f"beam {args.beam}, LMs trained on the train transcripts"))
    print(f"# held-out perplexity: word 3-gram {ppl['word3']:.2f} (per word), Transformer {ppl['transformer']:.2f} "
          f"(per BPE token); tuned on noisy dev: 3-gram lambda={best_ng['lm_weight']:.2f} beta={best_ng['length_bonus']:.2f}, "
          f"Transformer lambda={best_tr['lm_weight']:.2f} beta={best_tr['length_bonus']:.2f}, pyctcdecode alpha,beta={best_peer}")
    print(format_table(["audio", "system", "WER", "rel. to no LM", "S", "D", "I", "N", "search RTF", "median ms/utt"],
                       rows_out))
    print(f"\nfull pipeline RTF (features+encoder+prefix beam+3-gram, batch 1, {len(waves)} files, median): {full_rtf:.4f}")
    print(f"hotwords {', '.join(words)} (absent from training text), {len(hot_rows)} synthesized sentences: recall "
          f"without boosting {recall['without boosting']:.1%}, with boosting {recall['with boosting']:.1%}; "
          f"clean test WER with the boost list loaded {wer_hot_clean:.4f} vs "
          f"{summary[('clean', 'prefix beam + 3-gram fusion')]:.4f} without")
    noisy = list(conds)[-1]
    base, ng = summary[(noisy, "prefix beam, no LM")], summary[(noisy, "prefix beam + 3-gram fusion")]
    write_json(out / "bench-lm.json", {"rows": rows_out, "recall": recall, "full_rtf": full_rtf})
    print(f"{noisy}: 3-gram fusion WER {ng:.4f} vs {base:.4f} without LM ({(base - ng) / max(base, 1e-9):+.1%} relative)")


if __name__ == "__main__":
    main()
