"""Identities: the peer ID matches libp2p's, and key files are private and checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from protocol.errors import KeyFileError
from protocol.identity import Identity, peer_id_from_public_key, public_key_from_peer_id, verify_signature
from protocol.keyfile import load_identity, load_or_create_identity, save_identity


def test_peer_id_is_the_one_libp2p_derives_from_the_same_key() -> None:
    for _ in range(5):
        identity = Identity.generate()
        libp2p_id = ID.from_pubkey(create_new_key_pair(identity.seed).public_key).to_base58()
        assert identity.peer_id == libp2p_id
        assert public_key_from_peer_id(libp2p_id) == identity.public_key


def test_peer_id_parsing_refuses_other_ids() -> None:
    with pytest.raises(ValueError):
        public_key_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")  # an RSA-style sha256 ID
    with pytest.raises(ValueError):
        public_key_from_peer_id("not base58 0OIl")
    with pytest.raises(ValueError):
        peer_id_from_public_key(b"short")


def test_signatures_verify_only_for_the_signer_and_data() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"data")
    assert verify_signature(a.public_key, sig, b"data")
    assert not verify_signature(b.public_key, sig, b"data")
    assert not verify_signature(a.public_key, sig, b"Data")
    assert not verify_signature(a.public_key, sig[:-1], b"data")


def test_key_file_is_written_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    identity = Identity.generate()
    save_identity(identity, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_identity(path).peer_id == identity.peer_id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_identity(Identity.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_identity(path)


def test_corrupt_and_missing_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="corrupt"):
        load_identity(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_identity(tmp_path / "absent.key")


def test_load_or_create_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "c.key"
    first = load_or_create_identity(path)
    assert load_or_create_identity(path).peer_id == first.peer_id
