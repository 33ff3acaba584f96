"""PocketSphinx peer for bench/rtf.py; runs in its own venv (.venv-peers), never imported by ceasr.

Reads a JSON list of 16 kHz mono PCM16 wav paths on stdin; decodes each at batch size 1 with the en-us
acoustic model, either with its general n-gram LM or with a JSGF grammar (--jsgf FILE); prints JSON lines
{"path", "seconds", "audio_seconds", "hyp"} with model loading and a warm-up kept out of the timings.
"""

import argparse
import json
import sys
import time
import wave

from pocketsphinx import Decoder


def read_pcm(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return w.readframes(w.getnframes()), w.getnframes() / 16000


def decode(decoder, pcm):
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jsgf", help="a JSGF grammar file instead of the general LM")
    args = parser.parse_args()
    options = {"samprate": 16000, "logfn": "/dev/null"}
    if args.jsgf:
        options["jsgf"] = args.jsgf
    decoder = Decoder(**options)
    paths = json.load(sys.stdin)
    audio = [read_pcm(p) for p in paths]
    for pcm, _ in audio[:2]:
        decode(decoder, pcm)
    for path, (pcm, seconds) in zip(paths, audio):
        start = time.perf_counter()
        hyp = decode(decoder, pcm)
        row = {"path": path, "seconds": time.perf_counter() - start, "audio_seconds": seconds, "hyp": hyp}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
