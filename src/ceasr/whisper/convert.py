"""Whisper checkpoints from disk (no network) to a ceasr model directory.

Three sources, told apart by what is on disk (:data:`FORMATS`, tried in order):

- ``openai``: an OpenAI ``.pt`` file (``{"dims": ..., "model_state_dict": ...}``); its names are ceasr's.
  It carries no tokenizer: a ``tokenizer.json`` beside it or given with ``tokenizer=`` is used.
- ``hf``: a Hugging Face folder (``config.json`` with ``model_type: whisper``, ``model.safetensors``,
  ``tokenizer.json``; ``generation_config.json``'s suppressed tokens if present).
- ``ct2``: a faster-whisper / CTranslate2 folder (``model.bin``, ``config.json``, ``tokenizer.json``,
  ``vocabulary.txt``), read by :mod:`ceasr.whisper.ct2`; int8 and float16 weights become float32.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from ceasr.errors import CeasrError
from ceasr.models.whisper import Whisper
from ceasr.whisper.config import WhisperConfig, WhisperModelDirConfig
from ceasr.whisper.ct2 import read_ct2
from ceasr.whisper.tokenizer import WhisperTokenizer, read_tokenizer_json

Loaded = tuple[dict[str, torch.Tensor], WhisperConfig, WhisperTokenizer]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CeasrError(f"{path}: cannot read JSON ({getattr(e, 'msg', None) or e})") from None


def load_openai(src: Path, tokenizer: Path | None = None) -> Loaded:
    """An OpenAI ``.pt`` checkpoint and a ``tokenizer.json`` (given, or beside the checkpoint)."""
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt or foreign file
        raise CeasrError(f"{src}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise CeasrError(f"{src}: not an OpenAI Whisper checkpoint (no dims / model_state_dict)")
    tok_path = tokenizer or src.with_name("tokenizer.json")
    if not tok_path.is_file():
        raise CeasrError(f"{src}: an OpenAI checkpoint holds no tokenizer; pass --tokenizer PATH/tokenizer.json")
    return dict(ckpt["model_state_dict"]), WhisperConfig(**ckpt["dims"]), read_tokenizer_json(tok_path)


def _hf_block(src: str, dst: str, cross: bool) -> dict[str, str]:
    names = {
        "self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
        "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln", "fc1": "mlp.0", "fc2": "mlp.2",
        "final_layer_norm": "mlp_ln",
    }
    if cross:
        names.update({
            "encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
            "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
            "encoder_attn_layer_norm": "cross_attn_ln",
        })
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in names.items()}


def load_hf(src: Path, tokenizer: Path | None = None) -> Loaded:
    """A Hugging Face Whisper folder (``WhisperForConditionalGeneration`` or ``WhisperModel`` weights)."""
    c = _read_json(src / "config.json")
    cfg = WhisperConfig(
        n_mels=c["num_mel_bins"], n_audio_ctx=c["max_source_positions"], n_audio_state=c["d_model"],
        n_audio_head=c["encoder_attention_heads"], n_audio_layer=c["encoder_layers"], n_vocab=c["vocab_size"],
        n_text_ctx=c["max_target_positions"], n_text_state=c["d_model"],
        n_text_head=c["decoder_attention_heads"], n_text_layer=c["decoder_layers"],
    )
    weights = {k.removeprefix("model."): v for k, v in load_file(str(src / "model.safetensors")).items()}
    prefixes = {"encoder.conv1": "encoder.conv1", "encoder.conv2": "encoder.conv2",
                "encoder.embed_positions": "encoder.positional_embedding", "encoder.layer_norm": "encoder.ln_post",
                "decoder.embed_tokens": "decoder.token_embedding", "decoder.layer_norm": "decoder.ln"}
    for i in range(cfg.n_audio_layer):
        prefixes.update(_hf_block(f"encoder.layers.{i}", f"encoder.blocks.{i}", cross=False))
    for i in range(cfg.n_text_layer):
        prefixes.update(_hf_block(f"decoder.layers.{i}", f"decoder.blocks.{i}", cross=True))
    state = {}
    for name, value in weights.items():
        module, _, leaf = name.rpartition(".")
        if name == "decoder.embed_positions.weight":
            state["decoder.positional_embedding"] = value
        elif name == "encoder.embed_positions.weight":
            state["encoder.positional_embedding"] = value
        elif module in prefixes:
            state[f"{prefixes[module]}.{leaf}"] = value
    gen = src / "generation_config.json"
    g = _read_json(gen) if gen.is_file() else {}
    tok = read_tokenizer_json(tokenizer or src / "tokenizer.json", g.get("suppress_tokens") or (),
                              g.get("begin_suppress_tokens") or ())
    return state, cfg, tok


def _ct2_attention(v: dict, src: str, dst: str, fused: str) -> dict[str, torch.Tensor]:
    """Split CTranslate2's fused projections: ``linear_0`` is q|k|v (self) or q with ``linear_1`` = k|v (cross)."""
    out = {}
    if fused == "qkv":
        q, k, val = v[f"{src}/linear_0/weight"].chunk(3)
        qb, _, vb = v[f"{src}/linear_0/bias"].chunk(3)  # the key bias is zero: Whisper's keys have none
        last = "linear_1"
    else:
        q, qb = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k, val = v[f"{src}/linear_1/weight"].chunk(2)
        _, vb = v[f"{src}/linear_1/bias"].chunk(2)
        last = "linear_2"
    out.update({f"{dst}.query.weight": q, f"{dst}.query.bias": qb, f"{dst}.key.weight": k,
                f"{dst}.value.weight": val, f"{dst}.value.bias": vb,
                f"{dst}.out.weight": v[f"{src}/{last}/weight"], f"{dst}.out.bias": v[f"{src}/{last}/bias"]})
    return out


def _ct2_norm(v: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": v[f"{src}/gamma"], f"{dst}.bias": v[f"{src}/beta"]}


def _ct2_block(v: dict, src: str, dst: str, cross: bool) -> dict[str, torch.Tensor]:
    out = {**_ct2_attention(v, f"{src}/self_attention", f"{dst}.attn", "qkv"),
           **_ct2_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln"),
           **_ct2_norm(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")}
    for i, j in (("0", "0"), ("1", "2")):
        out[f"{dst}.mlp.{j}.weight"] = v[f"{src}/ffn/linear_{i}/weight"]
        out[f"{dst}.mlp.{j}.bias"] = v[f"{src}/ffn/linear_{i}/bias"]
    if cross:
        out.update(_ct2_attention(v, f"{src}/attention", f"{dst}.cross_attn", "q+kv"))
        out.update(_ct2_norm(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln"))
    return out


def _count_layers(v: dict, side: str) -> int:
    return len({m.group(1) for name in v if (m := re.match(rf"{side}/layer_(\d+)/", name))})


def load_ct2(src: Path, tokenizer: Path | None = None) -> Loaded:
    """A faster-whisper / CTranslate2 folder."""
    spec, v = read_ct2(src / "model.bin")
    if spec != "WhisperSpec":
        raise CeasrError(f"{src / 'model.bin'}: a CTranslate2 {spec}, not a Whisper model")
    emb, conv1 = v["decoder/embeddings/weight"], v["encoder/conv1/weight"]
    cfg = WhisperConfig(
        n_mels=conv1.shape[1], n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=conv1.shape[0], n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=_count_layers(v, "encoder"), n_vocab=emb.shape[0],
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0], n_text_state=emb.shape[1],
        n_text_head=int(v["decoder/num_heads"]), n_text_layer=_count_layers(v, "decoder"),
    )
    state = {"encoder.positional_embedding": v["encoder/position_encodings/encodings"],
             "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
             "decoder.token_embedding.weight": emb,
             **_ct2_norm(v, "encoder/layer_norm", "encoder.ln_post"), **_ct2_norm(v, "decoder/layer_norm", "decoder.ln")}
    for conv in ("conv1", "conv2"):
        state[f"encoder.{conv}.weight"] = v[f"encoder/{conv}/weight"]
        state[f"encoder.{conv}.bias"] = v[f"encoder/{conv}/bias"]
    for i in range(cfg.n_audio_layer):
        state.update(_ct2_block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False))
    for i in range(cfg.n_text_layer):
        state.update(_ct2_block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True))
    c = _read_json(src / "config.json") if (src / "config.json").is_file() else {}
    tok = read_tokenizer_json(tokenizer or src / "tokenizer.json", c.get("suppress_ids") or (),
                              c.get("suppress_ids_begin") or ())
    return state, cfg, tok


def detect_format(src: Path) -> str:
    """``openai`` for a file, ``ct2`` for a folder with ``model.bin``, ``hf`` for one with ``model.safetensors``."""
    if src.is_file():
        return "openai"
    if (src / "model.bin").is_file():
        return "ct2"
    if (src / "model.safetensors").is_file():
        return "hf"
    raise CeasrError(f"{src}: not a Whisper checkpoint (a .pt file, or a folder with model.bin or model.safetensors)")


FORMATS: dict[str, Callable[[Path, Path | None], Loaded]] = {"openai": load_openai, "hf": load_hf, "ct2": load_ct2}


def load_checkpoint(src: str | Path, tokenizer: str | Path | None = None) -> tuple[Whisper, WhisperTokenizer]:
    """A float32 :class:`Whisper` in eval mode and its tokenizer, from any of :data:`FORMATS`."""
    src = Path(src)
    if not src.exists():
        raise CeasrError(f"{src}: no such file or folder")
    state, cfg, tok = FORMATS[detect_format(src)](src, Path(tokenizer) if tokenizer else None)
    model = Whisper(cfg)
    state = {k: v.float() for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CeasrError(f"{src}: weights do not fit Whisper {cfg} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), tok


def convert_whisper(src: str | Path, out: str | Path, tokenizer: str | Path | None = None, language: str = "") -> Path:
    """Write a ceasr model directory (config.json, model.safetensors, tokenizer/) from a Whisper checkpoint."""
    import dataclasses

    from ceasr.modeldir import export_model

    model, tok = load_checkpoint(src, tokenizer)
    cfg = WhisperModelDirConfig(model=model.cfg)
    if language:
        cfg = dataclasses.replace(cfg, decode=dataclasses.replace(cfg.decode, language=language))
    return export_model(model, cfg, tok, out)
