"""A minimal reader for the header of a GGUF file: magic, version and metadata.

Owns: telling a GGUF file from anything else, and reading the few metadata
values the node needs *before* it loads a model (architecture, context length,
layer and head counts for the KV-cache estimate, whether a chat template is
present). It never reads tensor data and never imports llama_cpp, so model
resolution and `doctor` stay cheap and safe on a file that may not be a model.

Format (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): little
endian; b"GGUF", u32 version, u64 tensor count, u64 metadata count, then
(string key, u32 type, value) triples. Strings are u64 length + UTF-8 bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GGUF_MAGIC = b"GGUF"

# Value type ids from the GGUF spec, with their struct format for scalars.
_SCALARS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9

# A hostile or corrupt header must not make us allocate gigabytes.
_MAX_KEY_BYTES = 1 << 16
_MAX_STRING_BYTES = 1 << 24  # chat templates are a few KiB; 16 MiB is generous
_MAX_KV = 1 << 16
_MAX_ARRAY = 1 << 24


class GGUFError(ValueError):
    """The file is not a readable GGUF model; the message says what is wrong."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the node needs to know about a model file without loading it."""

    version: int
    architecture: str
    name: str
    context_length: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    vocab_size: int
    has_chat_template: bool

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        """Size of the f16 K and V caches for `n_ctx` positions (0 if the header lacks the counts)."""
        if not (self.block_count and self.embedding_length and self.head_count):
            return 0
        kv_heads = self.head_count_kv or self.head_count
        per_layer = 2 * n_ctx * (self.embedding_length * kv_heads // self.head_count) * bytes_per_value
        return self.block_count * per_layer


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read the header of `path`. Raises GGUFError for a file that is not a GGUF model."""
    try:
        with path.open("rb") as f:
            return _read(f, path)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (struct.error, UnicodeDecodeError, EOFError) as exc:
        raise GGUFError(f"{path} has a truncated or corrupt GGUF header ({exc})") from None


def _read(f: BinaryIO, path: Path) -> GGUFInfo:
    magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    (version,) = _unpack(f, "<I")
    if version < 2:
        raise GGUFError(f"{path} is GGUF version {version}; llama.cpp needs version 2 or later")
    _n_tensors, n_kv = _unpack(f, "<QQ")
    if n_kv > _MAX_KV:
        raise GGUFError(f"{path} claims {n_kv} metadata entries, which is not plausible")
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = _read_string(f, _MAX_KEY_BYTES)
        (vtype,) = _unpack(f, "<I")
        meta[key] = _read_value(f, vtype, key)

    arch = str(meta.get("general.architecture", ""))

    def arch_int(suffix: str) -> int:
        value = meta.get(f"{arch}.{suffix}", 0)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    vocab = meta.get("tokenizer.ggml.tokens")
    return GGUFInfo(
        version=version,
        architecture=arch,
        name=str(meta.get("general.name", "")),
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv"),
        vocab_size=arch_int("vocab_size") or (vocab if isinstance(vocab, int) else 0),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
    )


def _unpack(f: BinaryIO, fmt: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError("unexpected end of file")
    return struct.unpack(fmt, data)


def _read_string(f: BinaryIO, limit: int) -> str:
    (n,) = _unpack(f, "<Q")
    if n > limit:
        raise GGUFError(f"GGUF string of {n} bytes exceeds the {limit}-byte limit")
    data = f.read(n)
    if len(data) != n:
        raise EOFError("unexpected end of file")
    return data.decode("utf-8")


def _read_value(f: BinaryIO, vtype: int, key: str) -> object:
    if vtype in _SCALARS:
        return _unpack(f, _SCALARS[vtype])[0]
    if vtype == _STRING:
        return _read_string(f, _MAX_STRING_BYTES)
    if vtype == _ARRAY:
        (item_type,) = _unpack(f, "<I")
        (n,) = _unpack(f, "<Q")
        if n > _MAX_ARRAY:
            raise GGUFError(f"GGUF array {key!r} of {n} items is not plausible")
        if item_type in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[item_type]), 1)
        elif item_type == _STRING:
            for _ in range(n):
                (length,) = _unpack(f, "<Q")
                f.seek(length, 1)
        else:
            raise GGUFError(f"GGUF array {key!r} has unsupported item type {item_type}")
        return n  # arrays are summarised by their length; nothing here needs their items
    raise GGUFError(f"GGUF metadata {key!r} has unknown value type {vtype}")
