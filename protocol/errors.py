"""Typed errors for everything `protocol/` refuses.

Every refusal has its own class so callers (and tests) can tell *why* a
message was dropped without parsing strings. All derive from `ProtocolError`.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error raised by `protocol/`."""


# --- decoding -------------------------------------------------------------


class DecodeError(ProtocolError):
    """Bytes could not be turned into a valid typed message."""


class OversizedMessage(DecodeError):
    """The input is larger than the limit for its kind; nothing was parsed."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class MalformedMessage(DecodeError):
    """The bytes are not canonical msgpack of the expected shape."""


class NonCanonicalEncoding(MalformedMessage):
    """Valid msgpack, but not the one canonical encoding (keys unsorted, etc.)."""


class SchemaViolation(DecodeError):
    """Well-formed msgpack whose content fails the message schema."""


class UnknownKind(DecodeError):
    """The message kind is not one this protocol version defines."""


class UnexpectedKind(DecodeError):
    """A valid message of a kind the receiver did not ask for on this channel."""


class UnsupportedVersion(DecodeError):
    """The envelope speaks a protocol version this code does not implement."""


class UnencodableValue(ProtocolError):
    """A value has no canonical encoding (NaN, a set, a non-string map key...)."""


# --- envelopes --------------------------------------------------------------


class EnvelopeRejected(ProtocolError):
    """A well-formed envelope that must not be acted on."""


class BadSignature(EnvelopeRejected):
    """The signature does not verify against the sender key over the bytes."""


class Expired(EnvelopeRejected):
    """`now` is past the envelope's expires_at (plus the allowed skew)."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        """The signed envelope's message kind: a stale Result is a replay, a stale Claim may be a slow clock."""


class NotYetValid(EnvelopeRejected):
    """issued_at lies further in the future than the clock-skew window allows."""


class Replayed(EnvelopeRejected):
    """This (sender, nonce) pair was already accepted."""


class InvalidLifetime(EnvelopeRejected):
    """expires_at is before issued_at, or the lifetime exceeds the maximum."""


class UntrustedSender(EnvelopeRejected):
    """The signer is valid but not in the receiver's trusted set."""


class SenderMismatch(EnvelopeRejected):
    """The signer is not the peer the transport authenticated."""


# --- identity ---------------------------------------------------------------


class KeyFileError(ProtocolError):
    """A key file is missing, corrupt, or readable by others."""


# --- task / lease state ------------------------------------------------------


class IllegalTransition(ProtocolError):
    """An event that a state table (`protocol.state`, `coordinator.job_states`) does not allow in the
    current state; `machine` names the table (replica, task, lease, job)."""

    def __init__(self, state: str, event: str, *, machine: str = "task") -> None:
        super().__init__(f"event {event!r} is not allowed in {machine} state {state!r}")
        self.state = state
        self.event = event
        self.machine = machine
