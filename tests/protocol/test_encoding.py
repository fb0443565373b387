"""Canonical encoding: round trips, one byte string per value, and a decoder that only raises typed errors."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import encoding
from protocol.envelope import decode_body, encode_message
from protocol.errors import DecodeError, MalformedMessage, NonCanonicalEncoding, OversizedMessage, UnencodableValue
from protocol.messages import BODY_LIMITS, MESSAGE_TYPES, Message, MessageKind
from tests.protocol.strategies import json_value, messages

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_message_kind_round_trips_to_identical_bytes(message: Message) -> None:
    body = encode_message(message)
    decoded = decode_body(MessageKind(message.kind), body)
    assert decoded == message
    assert type(decoded) is MESSAGE_TYPES[MessageKind(message.kind)]
    # Canonical: re-encoding the decoded message gives the same bytes, hence the same digest.
    assert encode_message(decoded) == body


@given(st.dictionaries(st.text(max_size=8), json_value, max_size=6))
def test_key_order_does_not_change_bytes(value: dict[str, object]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert encoding.encode(value) == encoding.encode(reversed_value)
    assert encoding.digest(value) == encoding.digest(reversed_value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {1: "int key"}, {"s": {1, 2}}, 2**64, -(2**63) - 1])
def test_values_without_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(UnencodableValue):
        encoding.encode(value)


def test_unsorted_map_is_not_canonical() -> None:
    raw = msgpack.packb({"b": 1, "a": 2})
    with pytest.raises(NonCanonicalEncoding):
        encoding.decode(raw, limit=100)


def test_float32_is_not_canonical() -> None:
    raw = msgpack.packb(1.5, use_single_float=True)
    with pytest.raises(NonCanonicalEncoding):
        encoding.decode(raw, limit=100)


def test_wide_integer_encoding_is_not_canonical() -> None:
    raw = b"\xcd\x00\x01"  # uint16 holding 1, which canonically is a positive fixint
    with pytest.raises(NonCanonicalEncoding):
        encoding.decode(raw, limit=100)


def test_size_limit_is_checked_before_parsing() -> None:
    # A huge declared array of nils would be expensive to parse; the length check must come first.
    data = b"\xdd\xff\xff\xff\xff" + b"\xc0" * 2000
    with pytest.raises(OversizedMessage) as info:
        encoding.decode(data, limit=1000)
    assert info.value.size == len(data)


def test_ext_types_are_refused() -> None:
    raw = msgpack.packb(msgpack.ExtType(1, b"x"))
    with pytest.raises(MalformedMessage):
        encoding.decode(raw, limit=100)


def test_body_of_wrong_kind_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_body(MessageKind.CLAIM, encoding.encode({"kind": "grant"}))


@FUZZ
@given(st.binary(max_size=3000))
def test_decoder_raises_only_typed_errors_on_random_bytes(data: bytes) -> None:
    for kind in MessageKind:
        with contextlib.suppress(DecodeError):
            decode_body(kind, data)


@FUZZ
@given(messages, st.data())
def test_decoder_raises_only_typed_errors_on_mutated_messages(message: Message, data: st.DataObject) -> None:
    body = bytearray(encode_message(message))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del body[pos:]
        else:
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    kind = MessageKind(message.kind)
    try:
        decoded = decode_body(kind, bytes(body))
    except DecodeError:
        return
    # A mutation that still decodes must be a different canonical message, never a silent alias.
    assert encode_message(decoded) == bytes(body)


@pytest.mark.parametrize("kind", list(MessageKind))
def test_oversized_bodies_are_refused_for_every_kind(kind: MessageKind) -> None:
    data = encoding.encode({"kind": kind.value, "pad": "x" * BODY_LIMITS[kind]})
    with pytest.raises(OversizedMessage):
        decode_body(kind, data)
