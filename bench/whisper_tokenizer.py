"""Whisper's tokenizer in ceasr against OpenAI's own (tiktoken): the same ids for the same text?

Run after bench/whisper.py (its ``fw-base`` folder holds the ``tokenizer.json`` faster-whisper ships):
``.venv/bin/python bench/whisper_tokenizer.py``

OpenAI's encoding comes from ``tiktoken`` with the ranks file of the openai-whisper source distribution
(``pip download --no-binary openai-whisper``), run in ``.venv-whisper`` (bench/peers/tiktoken_encode.py).
Texts: every transcript of the demo corpus's train split, the real recordings' transcripts, and a few
sentences in other languages, each with Whisper's leading space. Compared: the ``tokenizer.json`` as
shipped (``tokenizers`` alone) and as ceasr reads it (``read_tokenizer_json``, which restores missing merges).
The last line is the headline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, write_json  # noqa: E402
from whisper import PEER_PYTHON  # noqa: E402

from ceasr.data.manifest import load_rows  # noqa: E402
from ceasr.whisper.tokenizer import read_tokenizer_json  # noqa: E402

OPENAI_WHISPER = "openai-whisper==20250625"
OTHER = ["Ça va très bien, merci !", "Der schnelle braune Fuchs springt über den faulen Hund.",
         "把 volume 调高一点", "今日はいい天気ですね。", "The 13th of May, 2024: 75% done."]


def ranks_file(work: Path) -> Path:
    """``multilingual.tiktoken`` from the openai-whisper sdist (downloaded once); tiktoken in the peer venv."""
    out = work / "multilingual.tiktoken"
    if not out.is_file():
        subprocess.run([str(PEER_PYTHON), "-m", "pip", "install", "-q", "tiktoken"], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            "-d", tmp, OPENAI_WHISPER], check=True)
            sdist = next(Path(tmp).glob("openai_whisper-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/multilingual.tiktoken"))
                out.write_bytes(tar.extractfile(member).read())
    return out


def main() -> None:
    work = REPO / "runs/whisper-bench"
    texts = [r.text for r in load_rows(REPO / "runs/demo/data/train.jsonl")]
    texts += [r.text for r in load_rows(work / "real/real.jsonl")] + OTHER
    texts = [" " + t.strip() for t in texts]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    done = subprocess.run([str(PEER_PYTHON), str(Path(__file__).resolve().parent / "peers/tiktoken_encode.py"),
                           "--ranks", str(ranks_file(work)), "--texts", f.name],
                          capture_output=True, text=True, check=True)
    reference = json.loads(done.stdout)
    shipped = Tokenizer.from_file(str(work / "fw-base/tokenizer.json"))
    ours = read_tokenizer_json(work / "fw-base/tokenizer.json")
    systems = {"tokenizer.json as shipped (tokenizers)": lambda t: shipped.encode(t, add_special_tokens=False).ids,
               "ceasr read_tokenizer_json (merges restored)": ours.encode}
    rows, results = [], {}
    for name, encode in systems.items():
        same = [encode(t) == ref for t, ref in zip(texts, reference)]
        results[name] = sum(same)
        first = next((t for t, ok in zip(texts, same) if not ok), "")
        rows.append([name, f"{sum(same)}/{len(texts)}", repr(first)[:40]])
    print(format_table(["tokenizer", "same ids as OpenAI's tiktoken", "first text that differs"], rows))
    write_json(work / "tokenizer-parity.json", results)
    names = list(results)
    print(f"headline: same ids as tiktoken on {results[names[0]]}/{len(texts)} texts as shipped, "
          f"{results[names[1]]}/{len(texts)} as ceasr reads it")


if __name__ == "__main__":
    main()
