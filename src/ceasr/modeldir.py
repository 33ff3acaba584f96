"""A trained model as a directory: ``config.json``, ``model.safetensors``, ``tokenizer/``. Nothing else.

The weights include the feature normalization (CMVN) buffers, so the directory is all a user hands over.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ceasr.config import ExperimentConfig, from_dict, save_json
from ceasr.errors import CeasrError, ConfigError

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer"


def _write_dir(out_dir: str | Path, fill) -> Path:
    """Build a directory with ``fill(tmp)`` in a temporary sibling, then rename it into place (atomic)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        fill(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def export_model(model: torch.nn.Module, cfg: ExperimentConfig, tokenizer, out_dir: str | Path) -> Path:
    """Write a model directory atomically (built in a temporary sibling, then renamed into place)."""

    def fill(tmp: Path) -> None:
        save_json(cfg, tmp / CONFIG)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        tokenizer.save(tmp / TOKENIZER)

    return _write_dir(out_dir, fill)


def _check_complete(model_dir: Path) -> None:
    """Raise a one-line error unless ``model_dir`` has a config, weights and a tokenizer."""
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        if not (model_dir / name).exists():
            raise CeasrError(f"{model_dir}: not a ceasr model directory (no {name})")


def merge_weights(pretrained: dict, tuned: dict, ratio: float) -> dict:
    """``(1 - ratio) * pretrained + ratio * tuned`` for every floating-point tensor (others from ``tuned``)."""
    return {k: torch.lerp(pretrained[k].to(v.dtype), v, ratio) if v.is_floating_point() else v
            for k, v in tuned.items()}


def merge_model_dirs(base_dir: str | Path, tuned_dir: str | Path, ratio: float, out_dir: str | Path) -> Path:
    """WiSE-FT after the fact: a model directory with ``(1 - ratio) * base + ratio * tuned`` weights, and the
    config and tokenizer of ``tuned_dir`` (a model fine-tuned from ``base_dir``: same names and shapes)."""
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"merge ratio {ratio}: must be between 0 (the base model) and 1 (the tuned model)")
    weights = []
    for d in map(Path, (base_dir, tuned_dir)):
        _check_complete(d)
        weights.append(load_file(str(d / WEIGHTS)))
    base, tuned = weights
    for name in sorted(set(base) | set(tuned)):
        if name not in base or name not in tuned or base[name].shape != tuned[name].shape:
            raise CeasrError(f"{tuned_dir}: not fine-tuned from {base_dir} (weight {name!r} differs in name or shape)")
    merged = merge_weights(base, tuned, ratio)

    def fill(tmp: Path) -> None:
        shutil.copy(Path(tuned_dir) / CONFIG, tmp / CONFIG)
        save_file({k: v.contiguous() for k, v in merged.items()}, str(tmp / WEIGHTS))
        src = Path(tuned_dir) / TOKENIZER
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / TOKENIZER)

    return _write_dir(out_dir, fill)


def model_kind(model_dir: str | Path) -> str:
    """``config.json``'s ``kind`` (``"whisper"`` for converted Whisper models), ``"asr"`` when it has none."""
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise CeasrError(f"{model_dir}: not a ceasr model directory (no {CONFIG})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CeasrError(f"{path}: not valid JSON ({e.msg})") from None
    return data.get("kind", "asr") if isinstance(data, dict) else "asr"


def load_model_dir(model_dir: str | Path):
    """Rebuild ``(model, cfg, tokenizer)`` from a model directory; the model is in eval mode."""
    from ceasr.models.asr import build_model
    from ceasr.text.tokenizer import load_tokenizer, token_languages

    model_dir = Path(model_dir)
    _check_complete(model_dir)
    try:
        cfg = from_dict(ExperimentConfig, json.loads((model_dir / CONFIG).read_text()))
    except json.JSONDecodeError as e:
        raise CeasrError(f"{model_dir / CONFIG}: not valid JSON ({e.msg})") from None
    except ConfigError as e:
        raise ConfigError(f"{model_dir / CONFIG}: {e}") from None
    tokenizer = load_tokenizer(model_dir / TOKENIZER)
    model = build_model(cfg.model, cfg.features.n_mels, tokenizer.vocab_size,
                        token_languages=token_languages(tokenizer))
    model.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    return model.eval(), cfg, tokenizer
