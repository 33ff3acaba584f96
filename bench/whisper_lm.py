"""A fine-tuned Whisper with ceasr's language models and hotwords fused into its beam search.

Run after bench/whisper_finetune.py (its model and encoder cache) and bench/lm.py (its word 3-gram, trained on
the train transcripts, and its hotword sentences):
``.venv/bin/python bench/whisper_lm.py [--model runs/whisper-bench/ft-all-tok/model] [--threads 2]``

Each utterance's encoder output (in the model's own window, ``decode.audio_ctx``) comes from the encoder cache
(``runs/whisper-bench/encoder-cache``, shared with the fine-tuning runs when their encoder was frozen;
utterances not in it are encoded once and added). Systems, all English,
on the demo corpus's dev and test splits (held-out voices): greedy, beam 5, and beam 5 with the word 3-gram
fused (lambda and beta chosen on a dev grid, test never tuned on); with ``--noises``, also on the test audio
with each noise at ``--snr`` dB (``ceasr.robustness`` as in bench/lm.py, seed 0). Hotwords: the teens
(thirteen .. nineteen, absent from the training text and so from the 3-gram) in sentences spoken by dev and
test voices (bench/lm.py's); the boost is the one with the best dev recall whose dev WER on the ordinary
sentences rises at most 0.5 point; recall on test with and without boosting, and the ordinary test sentences'
WER with the boost list loaded. The last line is the headline.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, pin_threads, write_json  # noqa: E402
from lm import HOTWORDS, recall  # noqa: E402

from ceasr.api import load_scorers  # noqa: E402
from ceasr.data.manifest import load_rows  # noqa: E402
from ceasr.lm import load_lm  # noqa: E402
from ceasr.metrics import corpus_errors  # noqa: E402
from ceasr.robustness import Condition, corrupt_manifest  # noqa: E402
from ceasr.text.normalize import normalize  # noqa: E402
from ceasr.whisper.audio import window_frames  # noqa: E402
from ceasr.whisper.config import WhisperDecodeConfig, WhisperFinetuneConfig  # noqa: E402
from ceasr.whisper.decoding import decode_encoded  # noqa: E402
from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest  # noqa: E402
from ceasr.whisper.examples import encoder_split, prepare, subset  # noqa: E402
from ceasr.whisper.recognizer import load_whisper_dir  # noqa: E402

LM_WEIGHTS = (0.1, 0.25, 0.5)
LENGTH_BONUSES = (0.0, 1.0)
BOOSTS = (1.0, 2.0, 4.0, 8.0, 16.0)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "runs/whisper-bench/ft-all-tok/model"))
    ap.add_argument("--data", default=str(REPO / "runs/demo/data"))
    ap.add_argument("--lm", default=str(REPO / "runs/bench-lm-official/word3"))
    ap.add_argument("--hotwords", default=str(REPO / "runs/bench-lm-official/hotwords"),
                    help="bench/lm.py's folder of hotword sentences (dev.jsonl, test.jsonl)")
    ap.add_argument("--cache", default=str(REPO / "runs/whisper-bench/encoder-cache"))
    ap.add_argument("--dev-utts", type=int, default=100, help="dev utterances the grid and the boost are chosen on")
    ap.add_argument("--test-utts", type=int, default=0, help="0: every test and hotword sentence (fewer: a smoke run)")
    ap.add_argument("--noises", nargs="*", default=[], help="also test with these noises (white pink babble)")
    ap.add_argument("--snr", type=float, default=5.0)
    ap.add_argument("--noisy-audio", default=str(REPO / "runs/whisper-bench/noisy"),
                    help="where the noisy test audio is written (ceasr.robustness, seed 0)")
    ap.add_argument("--grid", default="", help="'lambda,beta': use these instead of the dev grid")
    ap.add_argument("--no-hotwords", action="store_true", help="skip the hotword study")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "runs/whisper-bench/whisper-lm.json"))
    return ap.parse_args()


class Sets:
    """Encoder outputs (from the encoder cache, in the model's window) and normalized references of each set."""

    def __init__(self, model, tok, cache_dir: str, frames: int):
        self.model, self.tok, self.frames = model, tok, frames
        self.cfg = dataclasses.replace(WhisperFinetuneConfig(), encoder_cache=cache_dir)
        self.cache = EncoderCache(cache_dir, encoder_digest(model, encoder_split(model, self.cfg), frames))

    def load(self, rows, name: str):
        ex = prepare(rows, self.model, self.tok, self.cfg, name, True, self.cache, self.frames)
        assert not ex.skipped, f"{name}: every utterance is readable"
        return ex.inputs, ex.refs


def decode_texts(model, tok, enc: torch.Tensor, cfg: WhisperDecodeConfig, scorers,
                 desc: str) -> tuple[list[str], float]:
    """Texts of every encoder output and the decoding seconds."""
    start, texts = time.perf_counter(), []
    for i in tqdm(range(len(enc)), desc=desc, leave=False):
        result = decode_encoded(model, enc[i : i + 1].float(), tok, cfg, scorers)[0]  # the cache keeps float16
        texts.append(normalize(tok.decode(result.tokens)))
    return texts, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    pin_threads(args.threads)
    load = load_average()
    model, dir_cfg, tok = load_whisper_dir(args.model)
    sets = Sets(model, tok, args.cache, window_frames(dir_cfg.decode.audio_ctx, model.cfg.n_audio_ctx))
    data, hot = Path(args.data), Path(args.hotwords)
    dev = sets.load(subset(load_rows(data / "dev.jsonl"), args.dev_utts), "dev")
    test_rows = subset(load_rows(data / "test.jsonl"), args.test_utts)
    test = sets.load(test_rows, "test")  # clean
    if not args.no_hotwords:
        hot_dev = sets.load(subset(load_rows(hot / "dev.jsonl"), args.test_utts), "hotword dev")
        hot_test = sets.load(subset(load_rows(hot / "test.jsonl"), args.test_utts), "hotword test")
    beam = WhisperDecodeConfig(method="beam", beam_size=args.beam, language="en")
    hot_file = Path(args.out).with_name("whisper-lm-hotwords.txt")
    hot_file.parent.mkdir(parents=True, exist_ok=True)
    lm = load_lm(args.lm)

    def run(split, cfg: WhisperDecodeConfig, desc: str):
        scorers = load_scorers(cfg, lambda: tok.word_pieces, tok.encode_words, lm)
        texts, seconds = decode_texts(model, tok, split[0], cfg, scorers, desc)
        return corpus_errors(split[1], texts), texts, seconds

    grid = []
    for w in LM_WEIGHTS if not args.grid else ():
        for b in LENGTH_BONUSES:
            e = run(dev, dataclasses.replace(beam, lm=args.lm, lm_weight=w, length_penalty=b), f"dev w={w} b={b}")[0]
            grid.append((e.rate, w, b))
            print(f"# dev grid lm_weight={w} length_penalty={b}: WER {100 * e.rate:.2f}%", file=sys.stderr, flush=True)
    _, w, b = min(grid) if grid else (None, *map(float, args.grid.split(",")))
    fused = dataclasses.replace(beam, lm=args.lm, lm_weight=w, length_penalty=b)
    fused_name = f"beam {args.beam} + word 3-gram (lambda {w}, beta {b})"
    systems = {"greedy": dataclasses.replace(beam, method="greedy"), f"beam {args.beam}": beam, fused_name: fused}
    noisy = {f"{n} {args.snr:g} dB": sets.load(corrupt_manifest(test_rows, Condition(noise=n, snr_db=args.snr),
                                                                args.noisy_audio, seed=0), f"test {n}")
             for n in args.noises}
    rows, results = [], {}
    for name, cfg in systems.items():
        e_dev = run(dev, cfg, f"dev {name}")[0]
        e, _, seconds = run(test, cfg, f"test {name}")
        results[name] = {"test": e.rate, "dev": e_dev.rate, "decode_seconds": seconds}
        rows.append([name, f"{100 * e.rate:.2f}", f"{e.S}/{e.D}/{e.I}/{e.N}", f"{100 * e_dev.rate:.2f}",
                     f"{seconds / len(test[1]):.3f}"])
        for cond, split in noisy.items():
            results[name][cond] = run(split, cfg, f"{cond} {name}")[0].rate
            rows[-1].append(f"{100 * results[name][cond]:.2f}")

    def with_boost(cfg, boost):
        if not boost:
            return cfg
        hot_file.write_text("".join(f"{h}\t{boost}\n" for h in HOTWORDS))
        return dataclasses.replace(cfg, hotwords=str(hot_file))

    hot_rows, hot_results = [], {}
    studied = [(f"beam {args.beam}", f"beam {args.beam}"), (f"beam {args.beam} + word 3-gram", fused_name)]
    for name, system in [] if args.no_hotwords else studied:
        cfg, base_dev = systems[system], results[system]["dev"]  # without the list: the table's figures
        best_boost, best_recall = None, recall(hot_dev[1], run(hot_dev, cfg, "hot dev")[1])[0]
        for boost in BOOSTS:
            found = recall(hot_dev[1], run(hot_dev, with_boost(cfg, boost), f"hot dev {boost}")[1])[0]
            ok = run(dev, with_boost(cfg, boost), f"dev {boost}")[0].rate <= base_dev + 0.005
            if ok and found > best_recall:
                best_boost, best_recall = boost, found
        recalls = [recall(hot_test[1], run(hot_test, with_boost(cfg, x), "hot test")[1]) for x in (None, best_boost)]
        wers = [results[system]["test"], run(test, with_boost(cfg, best_boost), "test")[0].rate]
        hot_results[name] = {"boost": best_boost, "recall": recalls, "test_wer": wers}
        hot_rows.append([name, str(best_boost), f"{recalls[0][0]}/{recalls[0][1]}", f"{recalls[1][0]}/{recalls[1][1]}",
                         f"{100 * wers[0]:.2f}", f"{100 * wers[1]:.2f}"])

    print(header(args.threads, load, f"{Path(args.model)}; {len(test[1])} test, {len(dev[1])} dev utterances"))
    print(format_table(["system", "test WER %", "S/D/I/N", "dev WER %", "decode s/utt",
                        *(f"test WER % {c}" for c in noisy)], rows))
    if hot_rows:
        print(f"\nhotwords {', '.join(HOTWORDS)} (absent from the training text), {len(hot_test[1])} test-voice "
              "sentences; boost chosen on dev voices:")
        print(format_table(["system", "boost", "recall without", "recall with", "test WER % without list",
                            "test WER % with list"], hot_rows))
    write_json(args.out, {"systems": results, "grid": grid, "hotwords": hot_results})
    names = list(results)
    line = (f"headline: fine-tuned Whisper test WER {100 * results[names[1]]['test']:.2f}% (beam) -> "
            f"{100 * results[names[2]]['test']:.2f}% with the word 3-gram")
    if hot_results:
        (found0, n), (found1, _) = next(iter(hot_results.values()))["recall"]
        line += f"; hotword recall {found0} -> {found1} of {n} (beam, boost list loaded)"
    print(line)


if __name__ == "__main__":
    main()
