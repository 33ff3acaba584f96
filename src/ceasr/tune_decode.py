"""Search decode parameters (LM weight lambda, length bonus beta, beam size) for the lowest dev WER with Optuna.

The dev set is encoded once; each trial only reruns the search on the cached encoder outputs. The first
trial is the recognizer's current decode config, so the best one found is never worse on dev.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ceasr.api import Recognizer
from ceasr.audio import load as load_audio
from ceasr.config import DecodeConfig, to_dict
from ceasr.data.manifest import Utterance
from ceasr.decode import decode_encoded
from ceasr.errors import AudioError, CeasrError
from ceasr.io import atomic_write_text
from ceasr.metrics import corpus_errors
from ceasr.text.normalize import normalize


@dataclass(frozen=True)
class SearchSpace:
    """Ranges Optuna samples from (beta is ``DecodeConfig.length_penalty``)."""

    lm_weight: tuple[float, float] = (0.0, 2.0)
    length_bonus: tuple[float, float] = (-1.0, 4.0)
    beam_sizes: tuple[int, ...] = (4, 8, 16)


@dataclass(frozen=True)
class TuneResult:
    best: DecodeConfig
    best_wer: float
    start_wer: float  # of the recognizer's own decode config (the first trial)
    trials: list[dict]


def _encode_rows(recognizer: Recognizer, rows: list[Utterance], batch_size: int):
    """Encoder outputs of the readable rows in length-sorted batches: [(enc, enc_lens, refs)]."""
    waves, refs = [], []
    for utt in rows:
        try:
            dur = utt.duration if utt.offset or utt.duration else None
            waves.append(load_audio(utt.audio, offset=utt.offset, duration=dur, sample_rate=recognizer.sample_rate))
            refs.append(normalize(utt.text, utt.lang))
        except AudioError as e:
            print(f"skipped: {e}", file=sys.stderr)
    if not waves:
        raise CeasrError("tune-decode: no readable dev utterance")
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    batches = []
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            lens = torch.tensor([len(waves[i]) for i in idx])
            audio = torch.zeros(len(idx), int(lens.max()))
            for j, i in enumerate(idx):
                audio[j, : len(waves[i])] = torch.from_numpy(np.asarray(waves[i], dtype=np.float32))
            feats, feat_lens = recognizer.fbank(audio.to(recognizer.device), lens.to(recognizer.device))
            enc, enc_lens = recognizer.model.encode(feats, feat_lens)
            batches.append((enc, enc_lens, [refs[i] for i in idx]))
    return batches


def dev_wer(recognizer: Recognizer, batches, cfg: DecodeConfig) -> float:
    """Corpus WER of decoding the cached batches with ``cfg``."""
    refs, hyps = [], []
    with torch.inference_mode():
        for enc, enc_lens, batch_refs in batches:
            found = decode_encoded(recognizer.model, enc, enc_lens, cfg, recognizer.scorers)
            hyps += [normalize(recognizer.tokenizer.decode(list(h.tokens))) for h in found]
            refs += batch_refs
    return corpus_errors(refs, hyps).rate


def tune_decode(
    recognizer: Recognizer, rows: list[Utterance], trials: int = 30, space: SearchSpace = SearchSpace(),
    seed: int = 0, batch_size: int = 16, progress: bool = True,
) -> TuneResult:
    """Optuna's TPE sampler over ``space`` for ``trials`` trials (the first one is the current config)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    batches = _encode_rows(recognizer, rows, batch_size)
    base = recognizer.cfg.decode
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({"lm_weight": min(max(base.lm_weight, space.lm_weight[0]), space.lm_weight[1]),
                         "length_bonus": min(max(base.length_penalty, space.length_bonus[0]), space.length_bonus[1]),
                         "beam_size": base.beam_size if base.beam_size in space.beam_sizes else space.beam_sizes[0]})
    tuned = recognizer.scorers is not None and recognizer.scorers.lm is not None

    def objective(trial) -> float:
        cfg = dataclasses.replace(
            base,
            lm_weight=trial.suggest_float("lm_weight", *space.lm_weight) if tuned else base.lm_weight,
            length_penalty=trial.suggest_float("length_bonus", *space.length_bonus),
            beam_size=trial.suggest_categorical("beam_size", list(space.beam_sizes)),
        )
        return dev_wer(recognizer, batches, cfg)

    bar = tqdm(total=trials, desc="tune-decode", unit="trial", disable=not progress, dynamic_ncols=True)
    study.optimize(objective, n_trials=trials, callbacks=[lambda study, trial: bar.update(1)])
    bar.close()
    p = study.best_params
    best = dataclasses.replace(
        base, lm_weight=p.get("lm_weight", base.lm_weight), length_penalty=p["length_bonus"], beam_size=p["beam_size"]
    )
    history = [{"number": t.number, "wer": t.value, **t.params} for t in study.trials]
    return TuneResult(best, study.best_value, study.trials[0].value, history)


def write_decode_config(cfg: DecodeConfig, path: str | Path) -> None:
    """The ``decode`` section as JSON, for ``--decode-config FILE``."""
    atomic_write_text(path, json.dumps({"decode": to_dict(cfg)}, indent=2) + "\n")


def read_decode_config(path: str | Path) -> list[str]:
    """A file written by :func:`write_decode_config` as ``decode.field=value`` overrides."""
    from ceasr.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text())
        fields = data["decode"]
        if not isinstance(fields, dict):
            raise TypeError("decode is not a mapping")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a decode config written by ceasr tune-decode ({e})") from None
    return [f"decode.{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in fields.items()]
