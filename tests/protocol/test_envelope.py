"""Signed envelopes: every way an envelope can be wrong is refused with its own error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import encoding
from protocol.envelope import (
    MAX_LIFETIME_MS,
    MAX_SKEW_MS,
    SIGNING_DOMAIN,
    ReplayCache,
    max_envelope_size,
    open_envelope,
    seal,
)
from protocol.errors import (
    BadSignature,
    EnvelopeRejected,
    Expired,
    InvalidLifetime,
    MalformedMessage,
    NotYetValid,
    OversizedMessage,
    ProtocolError,
    Replayed,
    SenderMismatch,
    UnexpectedKind,
    UnknownKind,
    UnsupportedVersion,
    UntrustedSender,
)
from protocol.identity import Identity
from protocol.messages import Claim, Message, MessageKind, TaskOffer
from protocol.tasks import TaskKind
from tests.protocol.strategies import messages

NOW = 1_700_000_000_000
ALICE = Identity.from_seed(b"a" * 32)
MALLORY = Identity.from_seed(b"m" * 32)
OFFER = TaskOffer(
    task_id="t-1", job_id="j-1", task_kind=TaskKind.SEARCH, payload_sha256="ab" * 32, offer_expires_ms=NOW
)


def fields(raw: bytes) -> dict[str, object]:
    value = encoding.decode(raw, limit=10_000_000)
    assert isinstance(value, dict)
    return value


def resign(f: dict[str, object], identity: Identity) -> bytes:
    f = dict(f)
    f.pop("sig", None)
    f["sig"] = identity.sign(SIGNING_DOMAIN + encoding.encode(f))
    return encoding.encode(f)


def test_valid_envelope_opens_with_sender_and_message() -> None:
    raw = seal(ALICE, OFFER, now_ms=NOW)
    opened = open_envelope(raw, now_ms=NOW, replay_cache=ReplayCache(), expect={MessageKind.TASK_OFFER})
    assert opened.message == OFFER
    assert opened.sender == ALICE.public_key
    assert opened.sender_peer_id == ALICE.peer_id


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_kind_seals_and_opens(message: Message) -> None:
    raw = seal(ALICE, message, now_ms=NOW)
    assert open_envelope(raw, now_ms=NOW, replay_cache=ReplayCache()).message == message


def test_tampered_body_is_bad_signature() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["body"] = encoding.encode(OFFER.model_copy(update={"task_id": "t-2"}).model_dump())
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


def test_tampered_expiry_is_bad_signature() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["expires_at"] = int(f["expires_at"]) + 1000  # type: ignore[call-overload]
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


def test_swapped_sender_is_bad_signature() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["sender"] = MALLORY.public_key
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


def test_signature_by_wrong_key_is_bad_signature() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["sig"] = MALLORY.sign(SIGNING_DOMAIN + encoding.encode({k: v for k, v in f.items() if k != "sig"}))
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


@pytest.mark.parametrize("sig", [b"", b"\x00" * 63, b"\x00" * 64, b"\x00" * 65])
def test_truncated_or_zero_signature_is_bad_signature(sig: bytes) -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["sig"] = sig
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


def test_replay_is_refused_and_first_delivery_accepted() -> None:
    cache = ReplayCache()
    raw = seal(ALICE, OFFER, now_ms=NOW)
    open_envelope(raw, now_ms=NOW, replay_cache=cache)
    with pytest.raises(Replayed):
        open_envelope(raw, now_ms=NOW + 10, replay_cache=cache)


def test_forged_envelope_does_not_consume_the_nonce() -> None:
    cache = ReplayCache()
    raw = seal(ALICE, OFFER, now_ms=NOW)
    f = fields(raw)
    f["sig"] = b"\x01" * 64
    with pytest.raises(BadSignature):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=cache)
    assert len(cache) == 0
    assert open_envelope(raw, now_ms=NOW, replay_cache=cache).message == OFFER


def test_replay_cache_forgets_after_expiry_and_respects_capacity() -> None:
    cache = ReplayCache(capacity=3)
    for i in range(5):
        cache.check_and_add(b"s" * 32, bytes([i]) * 16, expires_at=NOW + i, now_ms=NOW)
    assert len(cache) == 3
    cache.prune(NOW + 10 + MAX_SKEW_MS)
    assert len(cache) == 0


def test_expired_envelope_is_refused() -> None:
    raw = seal(ALICE, OFFER, now_ms=NOW, ttl_ms=1000)
    open_envelope(raw, now_ms=NOW + 1000 + MAX_SKEW_MS, replay_cache=None)
    with pytest.raises(Expired):
        open_envelope(raw, now_ms=NOW + 1001 + MAX_SKEW_MS, replay_cache=None)


def test_envelope_from_the_future_is_refused_beyond_skew() -> None:
    raw = seal(ALICE, OFFER, now_ms=NOW + MAX_SKEW_MS)
    open_envelope(raw, now_ms=NOW, replay_cache=None)
    raw = seal(ALICE, OFFER, now_ms=NOW + MAX_SKEW_MS + 1)
    with pytest.raises(NotYetValid):
        open_envelope(raw, now_ms=NOW, replay_cache=None)


def test_overlong_or_negative_lifetime_is_refused() -> None:
    with pytest.raises(InvalidLifetime):
        seal(ALICE, OFFER, now_ms=NOW, ttl_ms=MAX_LIFETIME_MS + 1)
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["expires_at"] = NOW - 1
    with pytest.raises(InvalidLifetime):
        open_envelope(resign(f, ALICE), now_ms=NOW, replay_cache=None)


def test_untrusted_sender_is_refused() -> None:
    raw = seal(MALLORY, OFFER, now_ms=NOW)
    with pytest.raises(UntrustedSender):
        open_envelope(raw, now_ms=NOW, replay_cache=None, trusted={ALICE.public_key})
    assert open_envelope(seal(ALICE, OFFER, now_ms=NOW), now_ms=NOW, replay_cache=None, trusted={ALICE.public_key})


def test_sender_must_match_transport_peer() -> None:
    claim = Claim(task_id="t-1", attempt=0, free_slots=1)
    raw = seal(MALLORY, claim, now_ms=NOW)
    with pytest.raises(SenderMismatch):
        open_envelope(raw, now_ms=NOW, replay_cache=None, transport_peer_id=ALICE.peer_id)
    assert open_envelope(raw, now_ms=NOW, replay_cache=None, transport_peer_id=MALLORY.peer_id)


def test_unexpected_kind_on_channel_is_refused() -> None:
    raw = seal(ALICE, Claim(task_id="t", attempt=0, free_slots=1), now_ms=NOW)
    with pytest.raises(UnexpectedKind):
        open_envelope(raw, now_ms=NOW, replay_cache=None, expect={MessageKind.TASK_OFFER})


def test_unknown_kind_and_version_are_refused() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    with pytest.raises(UnknownKind):
        open_envelope(resign({**f, "kind": "exploit"}, ALICE), now_ms=NOW, replay_cache=None)
    with pytest.raises(UnsupportedVersion):
        open_envelope(resign({**f, "v": 2}, ALICE), now_ms=NOW, replay_cache=None)


def test_oversized_envelope_is_refused_before_parsing() -> None:
    raw = b"\x80" + b"\x00" * max_envelope_size({MessageKind.TASK_OFFER})
    with pytest.raises(OversizedMessage):
        open_envelope(raw, now_ms=NOW, replay_cache=None, expect={MessageKind.TASK_OFFER})


def test_oversized_body_inside_small_limit_kind_is_refused() -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    f["body"] = encoding.encode({"kind": "claim", "pad": "x" * 3000})
    f["kind"] = "claim"
    with pytest.raises(OversizedMessage):
        open_envelope(resign(f, ALICE), now_ms=NOW, replay_cache=None)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: f.pop("nonce"),
        lambda f: f.update(extra=1),
        lambda f: f.update(nonce=b"short"),
        lambda f: f.update(sender=b"x" * 31),
        lambda f: f.update(issued_at="yesterday"),
        lambda f: f.update(v=True),
    ],
)
def test_malformed_envelopes_are_refused(mutate: object) -> None:
    f = fields(seal(ALICE, OFFER, now_ms=NOW))
    mutate(f)  # type: ignore[operator]
    with pytest.raises(MalformedMessage):
        open_envelope(encoding.encode(f), now_ms=NOW, replay_cache=None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_open_envelope_raises_only_protocol_errors_on_garbage(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        open_envelope(data, now_ms=NOW, replay_cache=ReplayCache())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 600), st.integers(1, 255))
def test_any_single_byte_flip_is_refused(pos: int, flip: int) -> None:
    raw = bytearray(seal(ALICE, OFFER, now_ms=NOW, nonce=b"n" * 16))
    pos %= len(raw)
    raw[pos] ^= flip
    with pytest.raises((EnvelopeRejected, MalformedMessage, ProtocolError)):
        open_envelope(bytes(raw), now_ms=NOW, replay_cache=None)
