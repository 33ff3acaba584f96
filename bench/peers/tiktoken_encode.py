"""Encode texts with OpenAI's own Whisper tokenizer (tiktoken + ``multilingual.tiktoken``), for
bench/whisper_tokenizer.py. Runs in its own venv (.venv-whisper), never imports ceasr.

Reads a JSON list of strings; prints a JSON list of id lists. The ranks file comes from the openai-whisper
source distribution (``whisper/assets/multilingual.tiktoken``); the pattern is the one openai-whisper's
``tokenizer.get_encoding`` uses.
"""

import argparse
import base64
import json

import tiktoken

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", required=True, help="multilingual.tiktoken")
    ap.add_argument("--texts", required=True, help="JSON list of strings")
    args = ap.parse_args()
    with open(args.ranks) as f:
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in f if line.strip())}
    enc = tiktoken.Encoding(name="multilingual", explicit_n_vocab=len(ranks), pat_str=PATTERN,
                            mergeable_ranks=ranks, special_tokens={})
    with open(args.texts) as f:
        texts = json.load(f)
    print(json.dumps([enc.encode(t) for t in texts]))


if __name__ == "__main__":
    main()
