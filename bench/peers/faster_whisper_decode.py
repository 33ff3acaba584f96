"""Run faster-whisper on files, for bench/whisper.py. Runs in its own venv (.venv-whisper), never imports ceasr.

Reads a JSON list of 16 kHz mono float32 ``.npy`` paths; prints one JSON object: per file the text and the
seconds of ``transcribe`` (the generator consumed; features included, model load and one warm-up excluded),
and, with ``--features``, the max abs difference between faster-whisper's log-mel and ceasr's (given as
``.mel.npy`` beside each input).
"""

import argparse
import json
import sys
import time

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.feature_extractor import FeatureExtractor

OPTIONS = dict(language="en", temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
               vad_filter=False, no_speech_threshold=None, log_prob_threshold=None,
               compression_ratio_threshold=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--files", required=True)
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--features", action="store_true")
    args = ap.parse_args()
    files = json.load(open(args.files))
    waves = [np.load(f) for f in files]
    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads)
    list(model.transcribe(waves[0], beam_size=args.beam_size, **OPTIONS)[0])  # warm-up
    out = {"texts": [], "seconds": []}
    for w in waves:
        start = time.perf_counter()
        segments, _ = model.transcribe(w, beam_size=args.beam_size, **OPTIONS)
        text = "".join(s.text for s in segments)
        out["seconds"].append(time.perf_counter() - start)
        out["texts"].append(text.strip())
    if args.features:
        fe = FeatureExtractor(80)
        diffs = []
        for f, w in zip(files, waves):
            ours = np.load(f.replace(".npy", ".mel.npy"))
            theirs = fe(w)[:, : ours.shape[1]]
            diffs.append(float(np.abs(ours - theirs).max()))
        out["feature_max_abs_diff"] = max(diffs)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
