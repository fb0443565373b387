"""Signed envelopes: who sent a message, when it is valid, and proof of both.

Wire form (canonical msgpack map):
    v, kind, sender (32-byte Ed25519 key), nonce (16 bytes), issued_at,
    expires_at (unix ms), body (canonical bytes of the message), sig (64 bytes)
The signature covers `SIGNING_DOMAIN + encode(every field but sig)`.

`open_envelope` is the only way in. It checks, in this order, so that cheap
checks run first and nothing unverified can consume replay-cache space:
    size -> outer shape -> version -> kind (known, expected) -> body size ->
    lifetime -> signature -> clock window -> trust -> transport peer ->
    body schema -> replay
Each failure raises its own `protocol.errors` type.

Version rule: `v` must equal PROTOCOL_VERSION exactly. Any change to a message
schema bumps it; peers on another version are refused with UnsupportedVersion
(and the network layer puts the version in its topic names, so they do not
even meet on gossip).
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from protocol import encoding
from protocol.errors import (
    BadSignature,
    Expired,
    InvalidLifetime,
    MalformedMessage,
    NotYetValid,
    OversizedMessage,
    Replayed,
    SchemaViolation,
    SenderMismatch,
    UnencodableValue,
    UnexpectedKind,
    UnknownKind,
    UnsupportedVersion,
    UntrustedSender,
)
from protocol.identity import PUBLIC_KEY_LEN, SIGNATURE_LEN, Identity, peer_id_from_public_key, verify_signature
from protocol.messages import BODY_LIMITS, MESSAGE_TYPES, Message, MessageKind

PROTOCOL_VERSION = 1
SIGNING_DOMAIN = b"dataswarm/envelope/v1\x00"
NONCE_LEN = 16
ENVELOPE_OVERHEAD = 512
"""Upper bound on the bytes an envelope adds around its body."""
MAX_SKEW_MS = 30_000
"""How far a sender's clock may run ahead of ours before we call it NotYetValid."""
MAX_LIFETIME_MS = 15 * 60_000
"""Longest allowed expires_at - issued_at; bounds how long the replay cache must remember."""
DEFAULT_TTL_MS = 60_000

_FIELDS = frozenset({"v", "kind", "sender", "nonce", "issued_at", "expires_at", "body", "sig"})


@dataclass(frozen=True)
class Opened:
    """A verified envelope and its typed message."""

    sender: bytes
    kind: MessageKind
    nonce: bytes
    issued_at: int
    expires_at: int
    message: Message
    body: bytes
    """The canonical body bytes, as signed (digest them for provenance)."""
    raw: bytes
    """The whole envelope as received, signature included."""

    @property
    def sender_peer_id(self) -> str:
        return peer_id_from_public_key(self.sender)


@dataclass
class ReplayCache:
    """Remembers (sender, nonce) pairs until the envelope they came in expires.

    Pure data: the caller passes `now_ms`. Memory is bounded by `capacity`; when
    full, the entries closest to expiry are dropped first (they are the ones an
    attacker has the least time left to replay).
    """

    capacity: int = 1_000_000
    skew_ms: int = MAX_SKEW_MS
    _seen: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    _by_expiry: list[tuple[int, bytes, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._seen)

    def prune(self, now_ms: int) -> None:
        while self._by_expiry and self._by_expiry[0][0] + self.skew_ms < now_ms:
            exp, sender, nonce = heapq.heappop(self._by_expiry)
            if self._seen.get((sender, nonce)) == exp:
                del self._seen[(sender, nonce)]

    def check_and_add(self, sender: bytes, nonce: bytes, expires_at: int, now_ms: int) -> None:
        """Record the pair, or raise Replayed if it was recorded before."""
        self.prune(now_ms)
        key = (sender, nonce)
        if key in self._seen:
            raise Replayed(f"nonce {nonce.hex()} from {peer_id_from_public_key(sender)} was already seen")
        while len(self._seen) >= self.capacity and self._by_expiry:
            exp, s, n = heapq.heappop(self._by_expiry)
            if self._seen.get((s, n)) == exp:
                del self._seen[(s, n)]
        self._seen[key] = expires_at
        heapq.heappush(self._by_expiry, (expires_at, sender, nonce))


def max_envelope_size(kinds: Collection[MessageKind] | None = None) -> int:
    """The largest envelope accepted when expecting `kinds` (all kinds if None)."""
    selected = kinds if kinds else BODY_LIMITS.keys()
    return max(BODY_LIMITS[k] for k in selected) + ENVELOPE_OVERHEAD


def _signed_part(fields: dict[str, Any]) -> bytes:
    return SIGNING_DOMAIN + encoding.encode({k: v for k, v in fields.items() if k != "sig"})


def seal(
    identity: Identity,
    message: Message,
    *,
    now_ms: int,
    ttl_ms: int = DEFAULT_TTL_MS,
    nonce: bytes | None = None,
) -> bytes:
    """Sign `message` and return the envelope bytes ready for the wire."""
    kind = MessageKind(message.kind)
    body = encoding.encode(message.model_dump(mode="python"))
    limit = BODY_LIMITS[kind]
    if len(body) > limit:
        raise OversizedMessage(f"{kind} body", len(body), limit)
    if not 0 < ttl_ms <= MAX_LIFETIME_MS:
        raise InvalidLifetime(f"ttl {ttl_ms} ms is outside (0, {MAX_LIFETIME_MS}] ms")
    fields: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": kind.value,
        "sender": identity.public_key,
        "nonce": nonce if nonce is not None else secrets.token_bytes(NONCE_LEN),
        "issued_at": now_ms,
        "expires_at": now_ms + ttl_ms,
        "body": body,
    }
    fields["sig"] = identity.sign(_signed_part(fields))
    return encoding.encode(fields)


def _outer(data: bytes, expect: Collection[MessageKind] | None) -> dict[str, Any]:
    value = encoding.decode(data, limit=max_envelope_size(expect), what="envelope")
    if not isinstance(value, dict):
        raise MalformedMessage(f"envelope must be a map, got {type(value).__name__}")
    missing, extra = _FIELDS - value.keys(), value.keys() - _FIELDS
    if missing or extra:
        raise MalformedMessage(f"envelope fields wrong: missing {sorted(missing)}, unexpected {sorted(extra)}")
    types = {"v": int, "kind": str, "sender": bytes, "nonce": bytes, "issued_at": int, "expires_at": int}
    for name, typ in (types | {"body": bytes, "sig": bytes}).items():
        if not isinstance(value[name], typ) or isinstance(value[name], bool):
            raise MalformedMessage(f"envelope field {name!r} must be {typ.__name__}")
    if len(value["sender"]) != PUBLIC_KEY_LEN:
        raise MalformedMessage(f"sender key must be {PUBLIC_KEY_LEN} bytes, got {len(value['sender'])}")
    if len(value["nonce"]) != NONCE_LEN:
        raise MalformedMessage(f"nonce must be {NONCE_LEN} bytes, got {len(value['nonce'])}")
    if len(value["sig"]) != SIGNATURE_LEN:
        raise BadSignature(f"signature must be {SIGNATURE_LEN} bytes, got {len(value['sig'])}")
    return value


def open_envelope(
    data: bytes,
    *,
    now_ms: int,
    replay_cache: ReplayCache | None,
    expect: Collection[MessageKind] | None = None,
    trusted: Collection[bytes] | None = None,
    transport_peer_id: str | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
) -> Opened:
    """Verify and decode an envelope, or raise the specific ProtocolError.

    expect: kinds acceptable on this channel (its size limit applies before parsing).
    trusted: if given, the sender key must be in it.
    transport_peer_id: if given, the sender must be that (Noise-authenticated) peer.
    replay_cache: None only for offline re-checks of already-accepted envelopes.
    """
    f = _outer(data, expect)
    if f["v"] != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"protocol version {f['v']} is not supported (this peer speaks {PROTOCOL_VERSION})")
    try:
        kind = MessageKind(f["kind"])
    except ValueError:
        raise UnknownKind(f"unknown message kind {f['kind']!r}") from None
    if expect and kind not in expect:
        raise UnexpectedKind(f"{kind} is not expected here (expected {sorted(k.value for k in expect)})")
    if len(f["body"]) > BODY_LIMITS[kind]:
        raise OversizedMessage(f"{kind} body", len(f["body"]), BODY_LIMITS[kind])
    issued, expires = f["issued_at"], f["expires_at"]
    if not 0 < expires - issued <= MAX_LIFETIME_MS:
        raise InvalidLifetime(f"lifetime {expires - issued} ms is outside (0, {MAX_LIFETIME_MS}] ms")
    if not verify_signature(f["sender"], f["sig"], _signed_part(f)):
        raise BadSignature(f"signature does not verify for sender {peer_id_from_public_key(f['sender'])}")
    if issued > now_ms + max_skew_ms:
        raise NotYetValid(f"issued {issued - now_ms} ms in the future (skew window {max_skew_ms} ms)")
    if now_ms > expires + max_skew_ms:
        raise Expired(f"expired {now_ms - expires} ms ago", kind=kind.value)
    if trusted is not None and f["sender"] not in trusted:
        raise UntrustedSender(f"sender {peer_id_from_public_key(f['sender'])} is not trusted")
    if transport_peer_id is not None and peer_id_from_public_key(f["sender"]) != transport_peer_id:
        raise SenderMismatch(f"signed by {peer_id_from_public_key(f['sender'])} but sent by peer {transport_peer_id}")
    message = decode_body(kind, f["body"])
    if replay_cache is not None:
        replay_cache.check_and_add(f["sender"], f["nonce"], expires, now_ms)
    return Opened(
        sender=f["sender"],
        kind=kind,
        nonce=f["nonce"],
        issued_at=issued,
        expires_at=expires,
        message=message,
        body=f["body"],
        raw=bytes(data),
    )


def decode_body(kind: MessageKind, body: bytes) -> Message:
    """Canonical body bytes -> typed message of `kind`, or a DecodeError."""
    value = encoding.decode(body, limit=BODY_LIMITS[kind], what=f"{kind} body")
    if not isinstance(value, dict):
        raise MalformedMessage(f"{kind} body must be a map")
    if value.get("kind") != kind.value:
        raise SchemaViolation(f"body kind {value.get('kind')!r} does not match envelope kind {kind.value!r}")
    try:
        message: Message = MESSAGE_TYPES[kind].model_validate(value)  # type: ignore[assignment]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise SchemaViolation(f"{kind} field {where}: {first['msg']} ({exc.error_count()} error(s))") from None
    try:
        encoding.encode(message.model_dump(mode="python"))
    except UnencodableValue as exc:
        # Lax validation reads strings as numbers ("1e999" -> inf, forty digits -> a 133-bit int) that have no
        # canonical form: the message could never be digested or sealed again (found by bench/fuzz.py).
        raise SchemaViolation(f"{kind} holds a value with no canonical form: {str(exc)[:200]}") from None
    return message


def encode_message(message: Message) -> bytes:
    """Canonical bytes of a message body (no envelope): what digests are taken over."""
    return encoding.encode(message.model_dump(mode="python"))
