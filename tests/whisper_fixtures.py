"""Tiny random Whisper models and tokenizers written in the three on-disk formats, for tests (no checkpoint).

The writers spell out each format's names by hand (OpenAI ``.pt``, Hugging Face ``model.safetensors`` +
``config.json``, CTranslate2 ``model.bin`` + ``config.json`` + ``vocabulary.txt``), independently of the
readers in ``ceasr.whisper.convert``, so a naming slip on either side shows as a mismatch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ceasr.models.whisper import Whisper
from ceasr.whisper.config import WhisperConfig
from ceasr.whisper.ct2 import write_ct2

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|fr|>", "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
CORPUS = ["one two three four five six seven eight nine zero oh", "turn on the light", "go forward ten meters",
          "stop start pause play next previous volume up down", "hello world, how are you?"] * 20


def tiny_tokenizer() -> Tokenizer:
    """A byte-level BPE (256 bytes + merges) followed by Whisper's control tokens, in Whisper's order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(SPECIALS)
    return tok


def tiny_config(n_vocab: int) -> WhisperConfig:
    return WhisperConfig(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=2,
                         n_vocab=n_vocab, n_text_ctx=64, n_text_state=16, n_text_head=2, n_text_layer=2)


def tiny_model(n_vocab: int, seed: int = 0) -> Whisper:
    """Random weights large enough that decoding emits tokens before the end token."""
    torch.manual_seed(seed)
    model = Whisper(tiny_config(n_vocab))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if p.ndim > 1 else 0.1)
    return model.eval()


def write_openai(model: Whisper, tok: Tokenizer, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(model.cfg), "model_state_dict": model.state_dict()}, path)
    tok.save(str(path.with_name("tokenizer.json")))
    return path


def _hf_layer(sd: dict, ours: str, theirs: str, cross: bool) -> dict:
    pairs = [("attn.query", "self_attn.q_proj"), ("attn.key", "self_attn.k_proj"), ("attn.value", "self_attn.v_proj"),
             ("attn.out", "self_attn.out_proj"), ("attn_ln", "self_attn_layer_norm"), ("mlp.0", "fc1"),
             ("mlp.2", "fc2"), ("mlp_ln", "final_layer_norm")]
    if cross:
        pairs += [("cross_attn.query", "encoder_attn.q_proj"), ("cross_attn.key", "encoder_attn.k_proj"),
                  ("cross_attn.value", "encoder_attn.v_proj"), ("cross_attn.out", "encoder_attn.out_proj"),
                  ("cross_attn_ln", "encoder_attn_layer_norm")]
    out = {}
    for a, b in pairs:
        for leaf in ("weight", "bias"):
            if f"{ours}.{a}.{leaf}" in sd:
                out[f"{theirs}.{b}.{leaf}"] = sd[f"{ours}.{a}.{leaf}"]
    return out


def write_hf(model: Whisper, tok: Tokenizer, folder: Path) -> Path:
    """``WhisperForConditionalGeneration`` layout: ``model.`` prefix, tied ``proj_out``."""
    c, sd = model.cfg, model.state_dict()
    w = {"model.encoder.conv1.weight": sd["encoder.conv1.weight"], "model.encoder.conv1.bias": sd["encoder.conv1.bias"],
         "model.encoder.conv2.weight": sd["encoder.conv2.weight"], "model.encoder.conv2.bias": sd["encoder.conv2.bias"],
         "model.encoder.embed_positions.weight": sd["encoder.positional_embedding"],
         "model.encoder.layer_norm.weight": sd["encoder.ln_post.weight"],
         "model.encoder.layer_norm.bias": sd["encoder.ln_post.bias"],
         "model.decoder.embed_tokens.weight": sd["decoder.token_embedding.weight"],
         "model.decoder.embed_positions.weight": sd["decoder.positional_embedding"],
         "model.decoder.layer_norm.weight": sd["decoder.ln.weight"], "model.decoder.layer_norm.bias": sd["decoder.ln.bias"],
         "proj_out.weight": sd["decoder.token_embedding.weight"].clone()}
    for i in range(c.n_audio_layer):
        w.update(_hf_layer(sd, f"encoder.blocks.{i}", f"model.encoder.layers.{i}", cross=False))
    for i in range(c.n_text_layer):
        w.update(_hf_layer(sd, f"decoder.blocks.{i}", f"model.decoder.layers.{i}", cross=True))
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in w.items()}, str(folder / "model.safetensors"))
    config = {"model_type": "whisper", "num_mel_bins": c.n_mels, "max_source_positions": c.n_audio_ctx,
              "d_model": c.n_audio_state, "encoder_attention_heads": c.n_audio_head, "encoder_layers": c.n_audio_layer,
              "vocab_size": c.n_vocab, "max_target_positions": c.n_text_ctx, "decoder_attention_heads": c.n_text_head,
              "decoder_layers": c.n_text_layer}
    (folder / "config.json").write_text(json.dumps(config))
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _ct2_layer(sd: dict, ours: str, theirs: str, cross: bool, dtype) -> dict:
    g = lambda n: sd[f"{ours}.{n}"].to(dtype)  # noqa: E731
    zeros = torch.zeros_like(g("attn.query.bias"))
    v = {f"{theirs}/self_attention/linear_0/weight": torch.cat([g("attn.query.weight"), g("attn.key.weight"),
                                                                g("attn.value.weight")]),
         f"{theirs}/self_attention/linear_0/bias": torch.cat([g("attn.query.bias"), zeros, g("attn.value.bias")]),
         f"{theirs}/self_attention/linear_1/weight": g("attn.out.weight"),
         f"{theirs}/self_attention/linear_1/bias": g("attn.out.bias"),
         f"{theirs}/self_attention/layer_norm/gamma": g("attn_ln.weight"),
         f"{theirs}/self_attention/layer_norm/beta": g("attn_ln.bias"),
         f"{theirs}/ffn/linear_0/weight": g("mlp.0.weight"), f"{theirs}/ffn/linear_0/bias": g("mlp.0.bias"),
         f"{theirs}/ffn/linear_1/weight": g("mlp.2.weight"), f"{theirs}/ffn/linear_1/bias": g("mlp.2.bias"),
         f"{theirs}/ffn/layer_norm/gamma": g("mlp_ln.weight"), f"{theirs}/ffn/layer_norm/beta": g("mlp_ln.bias")}
    if cross:
        v.update({f"{theirs}/attention/linear_0/weight": g("cross_attn.query.weight"),
                  f"{theirs}/attention/linear_0/bias": g("cross_attn.query.bias"),
                  f"{theirs}/attention/linear_1/weight": torch.cat([g("cross_attn.key.weight"),
                                                                    g("cross_attn.value.weight")]),
                  f"{theirs}/attention/linear_1/bias": torch.cat([zeros, g("cross_attn.value.bias")]),
                  f"{theirs}/attention/linear_2/weight": g("cross_attn.out.weight"),
                  f"{theirs}/attention/linear_2/bias": g("cross_attn.out.bias"),
                  f"{theirs}/attention/layer_norm/gamma": g("cross_attn_ln.weight"),
                  f"{theirs}/attention/layer_norm/beta": g("cross_attn_ln.bias")})
    return v


def write_ct2_folder(model: Whisper, tok: Tokenizer, folder: Path, dtype=torch.float32, suppress=None) -> Path:
    """A faster-whisper folder: ``model.bin`` (WhisperSpec revision 3), config.json, tokenizer, vocabulary.

    ``suppress``: ``(suppress_ids, suppress_ids_begin)`` for config.json (None: left out, so derived)."""
    c, sd = model.cfg, model.state_dict()
    g = lambda n: sd[n].to(dtype)  # noqa: E731
    v = {"decoder/embeddings/weight": g("decoder.token_embedding.weight"),
         "decoder/layer_norm/gamma": g("decoder.ln.weight"), "decoder/layer_norm/beta": g("decoder.ln.bias"),
         "decoder/num_heads": c.n_text_head, "decoder/position_encodings/encodings": g("decoder.positional_embedding"),
         "encoder/conv1/weight": g("encoder.conv1.weight"), "encoder/conv1/bias": g("encoder.conv1.bias"),
         "encoder/conv2/weight": g("encoder.conv2.weight"), "encoder/conv2/bias": g("encoder.conv2.bias"),
         "encoder/layer_norm/gamma": g("encoder.ln_post.weight"), "encoder/layer_norm/beta": g("encoder.ln_post.bias"),
         "encoder/num_heads": c.n_audio_head,
         "encoder/position_encodings/encodings": g("encoder.positional_embedding")}
    for i in range(c.n_audio_layer):
        v.update(_ct2_layer(sd, f"encoder.blocks.{i}", f"encoder/layer_{i}", False, dtype))
    for i in range(c.n_text_layer):
        v.update(_ct2_layer(sd, f"decoder.blocks.{i}", f"decoder/layer_{i}", True, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    write_ct2(folder / "model.bin", "WhisperSpec", 3, dict(sorted(v.items())),
              {"decoder/projection/weight": "decoder/embeddings/weight"})
    config = {"lang_ids": [tok.token_to_id(t) for t in ("<|en|>", "<|de|>", "<|fr|>")]}
    if suppress is not None:
        config.update(suppress_ids=list(suppress[0]), suppress_ids_begin=list(suppress[1]))
    (folder / "config.json").write_text(json.dumps(config))
    vocab = [tok.id_to_token(i) for i in range(tok.get_vocab_size())]
    (folder / "vocabulary.txt").write_text("\n".join(vocab) + "\n")
    tok.save(str(folder / "tokenizer.json"))
    return folder
