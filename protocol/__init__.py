"""dataswarm's wire protocol, without I/O (in the manner of h11).

Message types, canonical encoding, signed envelopes, identities and the task
state rules. Pure functions and data: no sockets, no threads, no clock reads.
Time is always passed in as integer unix milliseconds.
"""

from protocol.encoding import decode, digest, encode
from protocol.envelope import PROTOCOL_VERSION, Opened, ReplayCache, decode_body, encode_message, open_envelope, seal
from protocol.identity import Identity, peer_id_from_public_key, public_key_from_peer_id, verify_signature
from protocol.messages import (
    Claim,
    CoordinatorAnnounce,
    Grant,
    Message,
    MessageKind,
    NodeStatus,
    Receipt,
    Reject,
    Result,
    TaskOffer,
)
from protocol.tasks import DecodingParams, TaskKind

__all__ = [
    "PROTOCOL_VERSION",
    "Claim",
    "CoordinatorAnnounce",
    "DecodingParams",
    "Grant",
    "Identity",
    "Message",
    "MessageKind",
    "NodeStatus",
    "Opened",
    "Receipt",
    "Reject",
    "ReplayCache",
    "Result",
    "TaskKind",
    "TaskOffer",
    "decode",
    "decode_body",
    "digest",
    "encode",
    "encode_message",
    "open_envelope",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "seal",
    "verify_signature",
]
