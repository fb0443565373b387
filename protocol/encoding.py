"""Canonical msgpack: one value, one byte string, one digest.

Rules (both encoder and decoder enforce them):
- maps have `str` keys only, written in sorted order (by UTF-8 bytes);
- allowed values: None, bool, int (64-bit range), finite float (always
  float64), str, bytes, list; tuples encode as lists;
- nothing else (no NaN/inf, no sets, no ext types, no timestamps).

`decode` checks the byte limit *before* parsing, parses with msgpack's own
length caps, and then re-encodes to prove the input was canonical, so two
different byte strings can never decode to the same signed value.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgpack

from protocol.errors import MalformedMessage, NonCanonicalEncoding, OversizedMessage, UnencodableValue

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, (bool, bytes)):
        return value
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)  # StrEnum -> its value
    if isinstance(value, int):
        value = int(value)
        if not INT_MIN <= value <= INT_MAX:
            raise UnencodableValue(f"integer {value} is outside the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnencodableValue(f"float {value!r} has no canonical encoding")
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise UnencodableValue(f"map key {key!r} is not a string")
        return {k: _canonical(value[k]) for k in sorted(value, key=lambda s: s.encode())}
    raise UnencodableValue(f"type {type(value).__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """The canonical bytes of `value` (see module rules)."""
    # msgpack writes dicts in insertion order, so sorting in _canonical fixes the order.
    packed: bytes = msgpack.packb(_canonical(value), use_bin_type=True, use_single_float=False)
    return packed


def digest(value: Any) -> bytes:
    """sha256 of the canonical encoding."""
    return hashlib.sha256(encode(value)).digest()


def decode(data: bytes, *, limit: int, what: str = "message") -> Any:
    """Parse canonical msgpack of at most `limit` bytes, or raise a DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessage(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limit:
        raise OversizedMessage(what, len(data), limit)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many unrelated types on bad input
        raise MalformedMessage(f"{what} is not valid msgpack: {exc}") from None
    try:
        canonical = encode(value)
    except UnencodableValue as exc:
        raise MalformedMessage(f"{what} holds a value with no canonical form: {exc}") from None
    except RecursionError:
        raise MalformedMessage(f"{what} is nested too deeply") from None
    if canonical != data:
        raise NonCanonicalEncoding(f"{what} is not in canonical encoding (key order or number width)")
    return value
