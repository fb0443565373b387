"""The content-addressed blob folder: integrity on read, atomic writes, repair, cleanup."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.store import BlobCorrupted, BlobMissing, BlobStore


def test_put_returns_the_sha256_and_get_returns_the_bytes(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = b"document " * 1000
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.get(digest) == data
    assert blobs.path(digest).parent.name == digest[:2]
    assert blobs.put(data) == digest  # idempotent
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_a_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"the original bytes")
    blobs.path(digest).write_bytes(b"the original bytez")
    with pytest.raises(BlobCorrupted, match=digest):
        blobs.get(digest)
    # Putting the right bytes again repairs the copy.
    blobs.put(b"the original bytes")
    assert blobs.get(digest) == b"the original bytes"


def test_a_truncated_blob_is_detected_on_read(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"x" * 4096)
    with blobs.path(digest).open("r+b") as f:
        f.truncate(100)
    with pytest.raises(BlobCorrupted):
        blobs.get(digest)


def test_missing_and_malformed_digests(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(BlobMissing):
        blobs.get("0" * 64)
    assert not blobs.has("0" * 64)
    with pytest.raises(ValueError):
        blobs.get("../../etc/passwd")


def test_stale_temp_files_from_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "tmp" / "deadbeef.partial").write_bytes(b"half a wri")
    BlobStore(tmp_path / "blobs")
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    assert blobs.put(b"ok") == hashlib.sha256(b"ok").hexdigest()
