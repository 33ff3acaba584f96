"""Data for bench/commands.py: out-of-grammar speech by the default corpus's dev and test voices, and noise.

Run: ``.venv/bin/python bench/commands_data.py --out runs/commands-data [--jobs 2]``

Writes ``oog-dev.jsonl``/``oog-test.jsonl`` (near-miss English sentences outside the default command set,
spoken by the dev/test voices of ``ceasr synth``'s seed-0 voice split, the split of the demo corpus, with the
same post-processing; dev and test get disjoint sentences) and ``noise-dev.jsonl``/``noise-test.jsonl``
(white, pink and hum noise, near-silence and beeps of 0.5-3 s). Everything is seeded.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceasr.audio import save as save_audio  # noqa: E402
from ceasr.commands import load_command_set  # noqa: E402
from ceasr.data.domain import TextSource  # noqa: E402
from ceasr.data.manifest import Utterance, write_manifest  # noqa: E402
from ceasr.data.synth import ENGINES, _Planner, installed_engines, render, split_voices  # noqa: E402

_NEAR = [  # (prefix words, alternatives, suffix) combined into near misses of the default commands
    ("go", ["left", "right", "home", "up", "down", "forward", "backward", "back ten meters", "home now",
            "forward ten feet", "forward twenty meters", "backward five steps", "to bed", "away", "outside"], ""),
    ("turn", ["the page", "up the music", "on the oven", "off the computer", "the lights on", "on the light",
              "down the heat", "off the alarm", "the key", "back", "on the tap", "left at the corner"], ""),
    ("", ["walk forward ten meters", "move forward two meters", "switch on the lights", "switch off the fan",
          "volume", "volume higher", "sound up", "volume up please", "mute the volume", "louder please"], ""),
    ("play", ["the radio", "a song", "some jazz", "the next video", "the game", "it again"], ""),
    ("", ["next track", "previous page", "pause the movie", "stop music", "skip this song", "the next song"], ""),
    ("", ["open the box", "close the door please", "open a window", "close the gate", "lock the door",
          "open the fridge", "close the curtains", "open the garage door now", "shut the window"], ""),
    ("", ["set a timer", "set an alarm for ten minutes", "set a timer for ten hours",
          "set the timer for five seconds", "start a timer for five minutes", "cancel the timer",
          "set a reminder for two minutes"], ""),
    ("", ["what time is it now", "what day is it", "what is the time", "what time does it start",
          "what is it", "what time is the train"], ""),
    ("", ["yes please", "no thanks", "stop it", "start again", "cancel that", "okay", "hello", "thank you",
          "good morning", "maybe", "not now", "of course", "all right", "sure thing", "never mind"], ""),
]
_SENTENCES = """the weather is nice today
i would like a cup of coffee
where is the train station
please call my mother
how far is it to the city
the meeting starts at noon
can you hear me
my phone is on the table
we are going to the beach tomorrow
read me the news
the children are playing outside
how much does this cost
i left my keys in the car
tell me a joke
the cat is sleeping on the sofa
send a message to john
it is raining again
where did you put the book
dinner is ready
let us go for a walk
this is a test recording
the store closes at eight
could you repeat that
i need to buy some milk
the light is green
she bought a new bicycle
turn it into a story
the door was left open
open your eyes
set the table for dinner""".splitlines()
_VERBS = ["bring", "find", "clean", "fix", "check", "move", "paint", "wash", "show me", "close"]
_OBJECTS = ["the kitchen", "the car", "my shoes", "the garden", "the window frame", "the blue box",
            "the old radio", "the big door", "the heater cable", "the lights outside"]


def sentences() -> list[str]:
    """A few hundred near-miss sentences outside the default command set, in a fixed order."""
    out = [f"{p} {a} {s}".strip() for p, alts, s in _NEAR for a in alts] + _SENTENCES
    out += [f"{v} {o}" for v, o in itertools.product(_VERBS, _OBJECTS)]
    phrases = set(load_command_set("default").phrases)
    return [s for s in dict.fromkeys(" ".join(x.split()) for x in out) if s not in phrases]


def noise_clip(rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """0.5-3 s of one kind of non-speech: white, pink, hum, near-silence or beeps."""
    n = int(rng.uniform(0.5, 3.0) * sr)
    kind = rng.integers(5)
    t = np.arange(n) / sr
    if kind == 0:
        x = rng.standard_normal(n)
    elif kind == 1:  # pink: 1/f power by shaping white noise in the frequency domain
        spec = np.fft.rfft(rng.standard_normal(n))
        x = np.fft.irfft(spec / np.sqrt(np.maximum(np.arange(len(spec)), 1)), n)
    elif kind == 2:
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    elif kind == 3:
        x = rng.standard_normal(n) * 0.01
    else:
        x = np.sin(2 * np.pi * rng.uniform(300, 2000) * t) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
    peak = 10 ** (rng.uniform(-40, -6) / 20) if kind != 3 else 10 ** (-60 / 20)
    return (x / (np.abs(x).max() + 1e-9) * peak).astype(np.float32)


def write_noise(out: Path, split: str, count: int, seed: int) -> None:
    rows = []
    for i in range(count):
        rng = np.random.default_rng([seed, 31, i, split == "test"])
        path = out / "audio" / f"noise-{split}" / f"noise-{split}-{i:04d}.wav"
        wave = noise_clip(rng)
        save_audio(path, wave)
        rows.append(Utterance(str(path), "", f"noise-{split}-{i:04d}", duration=len(wave) / 16000))
    write_manifest(out / f"noise-{split}.jsonl", rows)


def synth_oog(out: Path, lines: dict[str, list[str]], jobs: int, seed: int) -> None:
    """Speak each split's sentences once, voices of that split in turn (ceasr synth's planner)."""
    voices = [v for name in installed_engines() for v in ENGINES[name].voices()]
    splits = split_voices(voices, seed)
    for split, texts in lines.items():
        planner = _Planner({split: splits[split]}, {split: TextSource(lines=texts)}, seed,
                           out / f"oog-{split}")
        todo = planner.plan(split, len(texts))
        for job, text in zip(todo, texts):  # every sentence exactly once, not drawn at random
            object.__setattr__(job, "text", text)
        rows = []
        with Pool(jobs) as pool:
            results = list(tqdm(pool.imap(render, todo), total=len(todo), desc=f"oog-{split}"))
        for job, (uid, seconds, error, _spans) in zip(todo, results):
            if error is None:
                rows.append(Utterance(job.path, job.text, f"oog-{uid}", duration=round(seconds, 4),
                                      speaker=job.voice.id, lang="en"))
            else:
                print(f"skipped: {error}", file=sys.stderr)
        write_manifest(out / f"oog-{split}.jsonl", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/commands-data")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--noise", type=int, default=100, help="noise clips per split")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    texts = sentences()
    order = np.random.default_rng(0).permutation(len(texts))
    half = len(texts) // 2
    # Each sentence twice, by two different voices of the split.
    lines = {"dev": [texts[i] for i in order[:half]] * 2, "test": [texts[i] for i in order[half:]] * 2}
    synth_oog(out, lines, args.jobs, seed=0)
    for split in ("dev", "test"):
        write_noise(out, split, args.noise, seed=0)
    print(f"{len(texts)} sentences ({half} dev, {len(texts) - half} test, each said twice), {args.noise} noise clips per split "
          f"in {out}")


if __name__ == "__main__":
    main()
