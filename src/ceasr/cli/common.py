"""Pieces the verb modules share: comma lists, decode flags, robustness flags, model labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from ceasr.errors import ConfigError


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or "" -> []."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def floats(value: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated numbers, got {value!r}") from None


def decode_overrides(args) -> list[str]:
    """``--decode-config FILE``, then ``--method``/``--beam-size``/``--lm``/... and ``--decode k=v`` flags,
    as ``decode.k=v`` config overrides (later ones win)."""
    items = []
    if args.decode_config:
        from ceasr.tune_decode import read_decode_config

        items += read_decode_config(args.decode_config)
    for flag, field in (("lm", "lm"), ("lm_weight", "lm_weight"), ("hotwords", "hotwords")):
        if getattr(args, flag) is not None:
            items.append(f"decode.{field}={getattr(args, flag)}")
    items += [f"decode.{kv}" for kv in split_list(args.decode)]
    if args.method:
        items.append(f"decode.method={args.method}")
    if args.beam_size:
        items.append(f"decode.beam_size={args.beam_size}")
    return items


def add_decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", help="ctc_greedy | ctc_prefix_beam | attention | attention_rescoring")
    p.add_argument("--beam-size", type=int)
    p.add_argument("--decode", help="decode config fields, e.g. ctc_weight=0.5,length_penalty=0.2")
    p.add_argument("--decode-config", help="a decode config file written by ceasr tune-decode")
    p.add_argument("--lm", help="language model directory (ceasr train-lm) or ARPA file of words")
    p.add_argument("--lm-weight", type=float, help="lambda: score = acoustic + lambda * LM + beta * tokens")
    p.add_argument("--hotwords", help="phrases to boost, one a line: 'phrase' or 'phrase<TAB>boost'")


def add_speed_flags(p: argparse.ArgumentParser, jit: bool = False) -> None:
    """``--jit``/``--no-jit`` (trace the encoder: :meth:`ceasr.api.Recognizer.traced`) and ``--int8`` (the
    encoder's Linear layers in int8: :meth:`ceasr.api.Recognizer.int8`); ``jit``: whether tracing is on by
    default, for ceasr's own models (the default is then None: on, but off for a Whisper model, which runs
    untraced)."""
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None if jit else False,
                   help="trace the encoder with TorchScript: about a quarter less encoder time per call, after "
                        f"about a second of tracing (default: {'on; off for a Whisper model' if jit else 'off'})")
    p.add_argument("--int8", action="store_true",
                   help="run the encoder's Linear layers in int8 (dynamic quantization; a Whisper model's every "
                        "Linear layer): about a third less encoder time on a CPU, results within int8 rounding "
                        "(default: off)")


def model_labels(paths: list[str]) -> list[str]:
    """Short distinct names for the models: the directory name, with its parent's when names clash."""
    names = [Path(p).resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(p).resolve().parent.name}/{Path(p).resolve().name}" for p in paths]


def attach_lists(argv: list[str]) -> list[str]:
    """``--gain -30,6`` as ``--gain=-30,6``: argparse would take a value starting with '-' for a flag."""
    out = []
    for arg in argv:
        if out and out[-1] in ("--gain", "--snr") and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out
