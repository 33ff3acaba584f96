"""pyctcdecode (with kenlm) on log-probabilities ceasr wrote: runs in its own venv (.venv-lm), not ceasr's.

Usage: ``python pyctcdecode_decode.py LOGPROBS.npz ARPA ALPHA BETA BEAM [HOTWORDS.json]`` with labels and
per-utterance (T, V) log-probs in the npz (``labels``, ``lp0``, ``lp1``, ...); the optional JSON file holds
``{"words": [...], "weight": W}`` for pyctcdecode's hotword boosting. Prints JSON: texts and per-utterance
search seconds (decoder construction and LM load excluded; one warm-up decode first).
"""

import json
import sys
import time

import numpy as np
from pyctcdecode import build_ctcdecoder


def main() -> None:
    path, arpa, alpha, beta, beam = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    data = np.load(path)
    labels = [str(x) for x in data["labels"]]
    lps = [data[f"lp{i}"] for i in range(len(data.files) - 1)]
    words = None
    if arpa != "-":
        with open(arpa, encoding="utf-8") as f:
            text = f.read()
        section = text.split("\\1-grams:")[1].split("\\2-grams:")[0]
        words = [ln.split("\t")[1] for ln in section.strip().splitlines() if ln.count("\t") >= 1]
        words = [w for w in words if w not in ("<s>", "</s>", "<unk>")]
    decoder = build_ctcdecoder(labels, kenlm_model_path=None if arpa == "-" else arpa, unigrams=words,
                               alpha=alpha, beta=beta)
    hot = {}
    if len(sys.argv) > 6:
        with open(sys.argv[6], encoding="utf-8") as f:
            spec = json.load(f)
        hot = {"hotwords": spec["words"], "hotword_weight": float(spec["weight"])}
    decoder.decode(lps[0], beam_width=beam, **hot)
    texts, seconds = [], []
    for lp in lps:
        start = time.perf_counter()
        texts.append(decoder.decode(lp, beam_width=beam, **hot))
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"texts": texts, "seconds": seconds}))


if __name__ == "__main__":
    main()
