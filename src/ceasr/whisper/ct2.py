"""CTranslate2's ``model.bin`` (binary versions 5 and 6), read and written without CTranslate2.

Layout, all little-endian: ``u32 version``, ``str spec_name``, ``u32 revision``, ``u32 n``, then ``n``
variables ``str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, bytes``, then ``u32 m`` aliases
``str alias, str target``. A ``str`` is ``u16 length`` (including a final NUL), UTF-8 bytes, NUL. dtype ids:
0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. An int8 weight ``X/weight`` comes with a float
``X/weight_scale`` (one per output row): the float weight is ``int8 / scale``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from ceasr.errors import CeasrError

DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
_IDS = {v: k for k, v in DTYPES.items()}
VERSIONS = (5, 6)


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise CeasrError(f"{self.path}: truncated CTranslate2 model (needs {self.pos + n} bytes, has {len(self.data)})")
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def u(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.u("H")))
        return raw[:-1].decode("utf-8")


def read_ct2(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """``(spec_name, {name: tensor})`` of a ``model.bin``; aliases become entries sharing their target.

    int8 weights are dequantized to float32 with their ``weight_scale``; other dtypes keep theirs.
    """
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    version = r.u("I")
    if version not in VERSIONS:
        raise CeasrError(f"{path}: CTranslate2 binary version {version} is not supported (known: {VERSIONS})")
    spec = r.string()
    r.u("I")  # the spec's revision
    variables: dict[str, torch.Tensor] = {}
    for _ in range(r.u("I")):
        name = r.string()
        shape = [r.u("I") for _ in range(r.u("B"))]
        dtype_id = r.u("B")
        if dtype_id not in DTYPES:
            raise CeasrError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        raw = bytearray(r.take(r.u("I")))
        variables[name] = torch.frombuffer(raw, dtype=DTYPES[dtype_id]).reshape(shape) if raw else torch.empty(shape)
    for _ in range(r.u("I")):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return spec, _dequantize(variables)


def _dequantize(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(name + "_scale")
        if value.dtype == torch.int8 and scale is not None:
            value = value.float() / scale.float().reshape(-1, *([1] * (value.dim() - 1)))
        out[name] = value
    return out


def write_ct2(path: str | Path, spec: str, revision: int, variables: dict[str, torch.Tensor | int],
              aliases: dict[str, str] = {}) -> None:  # noqa: B006 (read only)
    """Write a ``model.bin`` (version 6). Python ints become int16 scalars, as CTranslate2's own attributes."""
    out = bytearray()

    def string(s: str) -> None:
        raw = s.encode("utf-8")
        out.extend(struct.pack("<H", len(raw) + 1) + raw + b"\0")

    out.extend(struct.pack("<I", 6))
    string(spec)
    out.extend(struct.pack("<II", revision, len(variables)))
    for name, value in variables.items():
        t = torch.tensor(value, dtype=torch.int16) if isinstance(value, (int, np.integer)) else value.contiguous()
        string(name)
        out.extend(struct.pack("<B", t.dim()) + b"".join(struct.pack("<I", d) for d in t.shape))
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        out.extend(struct.pack("<BI", _IDS[t.dtype], len(raw)) + raw)
    out.extend(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        string(alias)
        string(target)
    from ceasr.io import atomic_write_bytes

    atomic_write_bytes(path, bytes(out))
