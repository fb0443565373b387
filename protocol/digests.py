"""The protocol's digests: what a task payload, a result, a row and a document text hash to.

Owns: the one definition of each digest the network compares, all lowercase
sha256 hex:
- a payload's digest is sha256 of its canonical msgpack (`payload_bytes`): what
  `TaskOffer.payload_sha256` carries, what a node checks its grant against, and
  the name the coordinator files a large payload under;
- a result's digest is sha256 of the canonical `Result` body bytes: what
  `Receipt.result_sha256` carries and the coordinator's idempotency key.
  `result_sha256` takes the message (a node recomputes it from the Result it
  sent), `body_sha256` the body bytes as signed (an opened envelope's `body`);
- a row's digest is sha256 of the canonical msgpack of `{"data", "evidence"}`;
- a document's `content_sha256` is sha256 of its text as UTF-8 (what evidence
  offsets refer to).
Must not: do I/O or hold state (sans-I/O, pure functions), or define any other
hash: the dataset's Merkle leaves are `coordinator.compile.merkle`'s.
"""

from __future__ import annotations

import hashlib

from protocol import encoding
from protocol.envelope import encode_message
from protocol.messages import Result
from protocol.tasks import JsonObject, TaskPayload


def sha256_hex(data: bytes) -> str:
    """sha256 of `data`, lowercase hex: the form every digest here takes."""
    return hashlib.sha256(data).hexdigest()


def payload_bytes(payload: TaskPayload) -> bytes:
    """Canonical bytes of a task payload (what its digest is taken over)."""
    return encoding.encode(payload.model_dump(mode="python"))


def payload_sha256(payload: TaskPayload) -> str:
    return sha256_hex(payload_bytes(payload))


def body_sha256(body: bytes) -> str:
    """A result's digest from its canonical body bytes, as signed (`Opened.body`)."""
    return sha256_hex(body)


def result_sha256(result: Result) -> str:
    """A result's digest from the message: equal to `body_sha256` of the body it is sealed with."""
    return body_sha256(encode_message(result))


def row_sha256(data: JsonObject, evidence: str) -> str:
    return encoding.digest({"data": data, "evidence": evidence}).hex()


def content_sha256(text: str) -> str:
    """A document text's digest: sha256 of the text as UTF-8."""
    return sha256_hex(text.encode("utf-8"))
