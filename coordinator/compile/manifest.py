"""manifest.json: the coordinator's signed statement of what the dataset directory holds.

Owns: the manifest format, signing it and checking its signature.
Contents: format tag, job id, creation time, the row count, the Merkle root of
the rows (merkle.py: RFC 6962, leaf = canonical msgpack of the row), the sha256
and size of every other file in the directory, the spec and the request, and
the coordinator's peer id and Ed25519 public key.
Signature: Ed25519 by the coordinator over
    MANIFEST_DOMAIN + canonical_msgpack(manifest without "signature")
where the manifest is taken *as JSON values* (what a verifier re-reads), so
the bytes signed are reproducible from the file alone. The domain tag keeps a
manifest signature from ever being valid as an envelope signature, and back.
Must not: look at the files themselves (compiler.py and verify_dir.py do).
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinator.compile.merkle import TREE_NAME
from protocol import encoding
from protocol.errors import UnencodableValue
from protocol.identity import Identity, peer_id_from_public_key, verify_signature
from protocol.tasks import Sha256Hex

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "dataswarm-dataset/1"
MANIFEST_DOMAIN = b"dataswarm/manifest/v1\x00"
LEAF_ENCODING = "canonical-msgpack"
MAX_MANIFEST_BYTES = 4_000_000


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Sha256Hex
    bytes: int = Field(ge=0)


class CoordinatorKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    peer_id: Annotated[str, Field(min_length=1, max_length=128)]
    public_key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """Raw Ed25519 public key, hex."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["dataswarm-dataset/1"]
    job_id: str
    created_at_ms: int = Field(ge=0)
    rows: int = Field(ge=0)
    merkle_root: Sha256Hex
    merkle_tree: Literal["rfc6962-sha256"] = "rfc6962-sha256"
    leaf_encoding: Literal["canonical-msgpack"] = "canonical-msgpack"
    files: dict[str, FileEntry]
    """Every file but manifest.json, by path relative to the directory (forward slashes)."""
    spec: dict[str, Any]
    request: str
    coordinator: CoordinatorKey
    signature: str
    """base64 Ed25519 signature (see module docstring)."""


def signing_bytes(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return MANIFEST_DOMAIN + encoding.encode(body)


def build_manifest(
    *,
    identity: Identity,
    job_id: str,
    created_at_ms: int,
    rows: int,
    merkle_root: bytes,
    files: dict[str, FileEntry],
    spec: dict[str, Any],
    request: str,
) -> dict[str, Any]:
    """The signed manifest as a JSON-ready dict."""
    body: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "job_id": job_id,
        "created_at_ms": created_at_ms,
        "rows": rows,
        "merkle_root": merkle_root.hex(),
        "merkle_tree": TREE_NAME,
        "leaf_encoding": LEAF_ENCODING,
        "files": {name: entry.model_dump() for name, entry in sorted(files.items())},
        "spec": spec,
        "request": request,
        "coordinator": {"peer_id": identity.peer_id, "public_key": identity.public_key.hex()},
    }
    # Sign what a verifier will re-read: the JSON round trip fixes every value's type.
    body = json.loads(json.dumps(body, allow_nan=False))
    body["signature"] = base64.b64encode(identity.sign(signing_bytes(body))).decode()
    return body


def signature_problem(manifest: dict[str, Any]) -> str | None:
    """Why the manifest's signature does not hold, or None. `manifest` is the parsed JSON."""
    coordinator = manifest.get("coordinator")
    if not isinstance(coordinator, dict):
        return "no coordinator key"
    try:
        public_key = bytes.fromhex(str(coordinator.get("public_key")))
        signature = base64.b64decode(str(manifest.get("signature")), validate=True)
    except ValueError:
        return "coordinator.public_key or signature is not well-formed"
    try:
        peer_id = peer_id_from_public_key(public_key)
    except ValueError as exc:
        return f"coordinator.public_key: {exc}"
    if coordinator.get("peer_id") != peer_id:
        return f"coordinator.peer_id {coordinator.get('peer_id')!r} is not the peer id of the public key ({peer_id})"
    try:
        data = signing_bytes(manifest)
    except UnencodableValue as exc:
        return f"manifest holds a value with no canonical encoding ({exc})"
    if not verify_signature(public_key, signature, data):
        return f"signature does not verify for coordinator {peer_id}: the manifest was changed after signing"
    return None
