"""PocketSphinx peer for bench/rtf.py; runs in its own venv (.venv-peers), never imported by ceasr.

Reads a JSON list of 16 kHz mono PCM16 wav paths on stdin; decodes each at batch size 1 with the en-us
acoustic model, either with its general n-gram LM or with a JSGF grammar (--jsgf FILE); prints JSON lines
{"path", "seconds", "audio_seconds", "hyp"} with model loading and a warm-up kept out of the timings.
PocketSphinx is single-threaded. A file it cannot use is reported in one line on stderr (exit status 1).
"""

import argparse
import json
import sys
import time
import wave

from pocketsphinx import Decoder


def read_pcm(path):
    """The raw PCM16 bytes of a 16 kHz mono wav and its duration in seconds."""
    try:
        with wave.open(path, "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
                raise ValueError(
                    f"need 16 kHz mono 16-bit, got {w.getframerate()} Hz, {w.getnchannels()} channel(s), "
                    f"{8 * w.getsampwidth()}-bit"
                )
            return w.readframes(w.getnframes()), w.getnframes() / 16000
    except (OSError, EOFError, ValueError, wave.Error) as e:
        sys.exit(f"{path}: {e}")  # one line on stderr, exit status 1


def decode(decoder, pcm):
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jsgf", help="a JSGF grammar file instead of the general LM")
    parser.add_argument("--warmup", type=int, default=2, help="files decoded once, untimed, first")
    args = parser.parse_args()
    options = {"samprate": 16000, "logfn": "/dev/null"}
    if args.jsgf:
        options["jsgf"] = args.jsgf
    decoder = Decoder(**options)
    paths = json.load(sys.stdin)
    audio = [read_pcm(p) for p in paths]
    for pcm, _ in audio[: args.warmup]:
        decode(decoder, pcm)
    for path, (pcm, seconds) in zip(paths, audio):
        start = time.perf_counter()
        hyp = decode(decoder, pcm)
        row = {"path": path, "seconds": time.perf_counter() - start, "audio_seconds": seconds, "hyp": hyp}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
