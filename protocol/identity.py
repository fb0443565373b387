"""Ed25519 identities and the libp2p peer ID derived from them.

One key signs envelopes *and* authenticates the Noise channel, so the peer a
transport reports and the key that signed a message can be compared directly:
`peer_id_from_public_key(envelope.sender) == transport_peer_id`.

The peer ID is computed here by the libp2p spec (identity multihash of the
protobuf-encoded public key, base58btc) rather than by importing libp2p, which
keeps `protocol/` free of I/O dependencies; a test checks it against libp2p.
"""

from __future__ import annotations

from dataclasses import dataclass

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64

# libp2p PublicKey protobuf: field 1 (KeyType) varint Ed25519=1, field 2 (Data) 32 bytes.
_PB_ED25519_PREFIX = bytes([0x08, 0x01, 0x12, PUBLIC_KEY_LEN])
# identity multihash: code 0x00, length 36 (the protobuf is short enough to inline).
_MH_IDENTITY_PREFIX = bytes([0x00, len(_PB_ED25519_PREFIX) + PUBLIC_KEY_LEN])


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer ID string ("12D3KooW...") for a raw Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    return base58.b58encode(_MH_IDENTITY_PREFIX + _PB_ED25519_PREFIX + public_key).decode()


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Inverse of `peer_id_from_public_key`; ValueError for non-Ed25519 or malformed IDs."""
    try:
        raw = base58.b58decode(peer_id)
    except ValueError as exc:
        raise ValueError(f"peer ID {peer_id!r} is not base58: {exc}") from None
    prefix = _MH_IDENTITY_PREFIX + _PB_ED25519_PREFIX
    if len(raw) != len(prefix) + PUBLIC_KEY_LEN or not raw.startswith(prefix):
        raise ValueError(f"peer ID {peer_id!r} is not an inlined Ed25519 key")
    return raw[len(prefix) :]


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A signing identity: an Ed25519 private key and what derives from it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity from a 32-byte seed (tests, reproducible fixtures)."""
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        """The 32 raw private bytes (what libp2p's ed25519 key pair is built from)."""
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, data: bytes) -> Identity:
        """Parse a PKCS#8 PEM Ed25519 key; ValueError with the reason otherwise."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"expected an Ed25519 key, found {type(key).__name__}")
        return cls(key)
