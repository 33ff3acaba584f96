"""Voice-command verbs: command, listen, evaluate-commands, negatives."""

from __future__ import annotations

import sys
from pathlib import Path

from ceasr.cli.common import add_speed_flags


def _cmd_command(args) -> None:
    from ceasr.commands.recognize import load_command_recognizer, recognize_files

    crec = load_command_recognizer(args.model, args.commands, args.threshold, args.jit, args.int8, args.verify,
                                   **_fields(args))
    if recognize_files(crec, args.files, fmt=args.format) == len(args.files):
        raise SystemExit(1)


def _cmd_listen(args) -> None:
    from ceasr.commands.recognize import load_command_recognizer
    from ceasr.commands.stream import CommandSpotter, file_chunks, listen, pcm_chunks
    from ceasr.modeldir import model_kind

    jit = args.jit if args.jit is not None else model_kind(args.model) != "whisper"
    crec = load_command_recognizer(args.model, args.commands, args.threshold, jit, args.int8, args.verify,
                                   **_fields(args))
    chunk = round(crec.sample_rate * args.chunk_ms / 1000)
    if args.input == "-":
        chunks = pcm_chunks(sys.stdin.buffer, chunk)
    else:
        chunks = file_chunks(args.input, chunk, crec.sample_rate)
    listen(CommandSpotter(crec), chunks, fmt=args.format)


def _cmd_evaluate_commands(args) -> None:
    from ceasr.commands.evaluate import evaluate_commands
    from ceasr.commands.recognize import load_command_recognizer

    crec = load_command_recognizer(args.model, args.commands, args.threshold, args.jit, args.int8, args.verify,
                                   **_fields(args))
    out = args.out or Path(args.model).resolve().parent / "commands-eval"
    report = evaluate_commands(crec, args.in_grammar, args.out_of_grammar, args.noise_only, out, args.target_far)
    print(report.summary_lines())


def _cmd_negatives(args) -> None:
    from ceasr.commands import load_command_set
    from ceasr.commands.negatives import FILLER, make_negatives, parse_mix

    rows, negatives, commands = make_negatives(
        args.corpus, args.out, load_command_set(args.commands), args.hours, args.texts, args.seed,
        args.filler or FILLER, mix=parse_mix(args.mix) if args.mix else None, positives=args.positives, jobs=args.jobs)
    print(f"{Path(args.out) / 'train.jsonl'}: {len(rows)} utterances of {args.corpus} + {len(negatives)} near misses "
          f"+ {len(commands)} commands ({sum(r.duration for r in negatives + commands) / 3600:.2f} h)")


def _fields(args) -> dict:
    given = {"min_spread_db": args.min_spread_db, "no_speech_threshold": args.no_speech_threshold, "gate": args.gate,
             "attention_weight": args.attention_weight}
    return {k: v for k, v in given.items() if v is not None}


def add_verbs(verbs) -> None:
    """The voice-command verbs: command, listen, evaluate-commands, negatives."""
    def common(p, jit: bool = False):
        p.add_argument("--model", required=True)
        add_speed_flags(p, jit)
        p.add_argument("--commands", default="default", help="a built-in set (default) or a command-set file")
        p.add_argument("--threshold", type=float, help="accept when confidence >= this (default: the config's)")
        p.add_argument("--min-spread-db", type=float, help="reject audio whose level spans fewer dB (stationary "
                       "noise, silence; default 5, 0 turns it off)")
        p.add_argument("--no-speech-threshold", type=float, help="Whisper models: reject when the no-speech "
                       "probability is above this (default 0.6, 1 turns it off)")
        p.add_argument("--attention-weight", type=float, help="weigh the attention decoder's probability of the "
                       "phrase into the confidence with this power (default: 0.25 for a model trained on "
                       "ceasr negatives, else 0)")
        p.add_argument("--verify", metavar="DIR", help="a second model (e.g. Whisper) that decides every clip "
                       "MODEL does not reject outright (its confidence below --gate); --threshold is its")
        p.add_argument("--gate", type=float, help="with --verify: MODEL's confidence below this rejects (default 0.05)")

    p = verbs.add_parser("command", help="recognize one command per audio file (or reject it)")
    common(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_cmd_command)

    p = verbs.add_parser("listen", help="spot commands in a long recording or a 16 kHz s16le PCM stream")
    common(p, jit=True)
    p.add_argument("--input", default="-", help="raw PCM file, audio file, or - for stdin (default)")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="read size")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_cmd_listen)

    p = verbs.add_parser("evaluate-commands", help="accuracy, FRR, FAR, DET curve and RTF of a command set")
    common(p)
    p.add_argument("--in-grammar", required=True, help="manifest of utterances whose text is in the set")
    p.add_argument("--out-of-grammar", required=True, help="manifest of other speech")
    p.add_argument("--noise-only", help="manifest of noise or silence")
    p.add_argument("--target-far", type=float, default=0.02, help="false-accept rate to calibrate for")
    p.add_argument("--out", help="folder for results and commands_det.png (default: commands-eval beside MODEL)")
    p.set_defaults(func=_cmd_evaluate_commands)

    p = verbs.add_parser("negatives", help="synthesize near misses of a command set to train a commands model on")
    p.add_argument("--corpus", required=True, help="a corpus made by ceasr synth (its train.jsonl and voices)")
    p.add_argument("--out", required=True, help="folder for train.jsonl (corpus + near misses), texts.txt, gen/")
    p.add_argument("--commands", default="default", help="a built-in set (default) or a command-set file")
    p.add_argument("--hours", type=float, default=0.7, help="of near misses by the corpus's training voices")
    p.add_argument("--texts", type=int, default=4000, help="near-miss texts to draw (some repeat)")
    p.add_argument("--seed", type=int, default=0, help="the corpus's seed (the same voice split)")
    p.add_argument("--mix", help="weights of the kinds (default: see README), e.g. swap=1,general=1")
    p.add_argument("--positives", type=float, default=0.0, help="share of the texts that are commands, each intent "
                   "as often as the others (default 0)")
    p.add_argument("--filler", help="the transcript of a run of words the corpus does not know (default: zzz; "
                   "another word needs --attention-weight given to ceasr command)")
    p.add_argument("--jobs", type=int, default=2, help="TTS worker processes")
    p.set_defaults(func=_cmd_negatives)
