"""Content-addressed blob folder for payloads too large to keep in SQLite rows.

Owns: writing bytes under their sha256, and refusing to hand back bytes that
no longer match their name.
Must not: know what the bytes mean (task payloads, documents...), or delete
anything a database row may still reference (garbage collection, if ever
needed, is the store's job because only it knows the references).

Layout: `<root>/<first two hex digits>/<full hex digest>`; temporary files
live in `<root>/tmp/` on the same filesystem so the final rename is atomic.

Crash safety: a blob is written to a temp file, fsynced, renamed into place,
and the directory is fsynced. A crash leaves either no file under the digest
name or the complete one; stray temp files are removed on the next open.
Callers write the blob *before* committing the row that references it, so a
committed row never points at a missing blob (an orphan blob is harmless).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from protocol.digests import sha256_hex

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """Base of blob-store failures."""


class BlobMissing(BlobError, KeyError):
    """No blob is stored under that digest."""


class BlobCorrupted(BlobError):
    """The stored bytes no longer hash to their name (disk or tampering)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Immutable bytes keyed by their sha256 hex digest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Leftovers of writes cut short by a crash: never renamed, so never referenced.
        for stale in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def path(self, digest: str) -> Path:
        if not _HEX64.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store `data` durably and return its digest (a no-op if an intact copy exists)."""
        digest = sha256_hex(data)
        final = self.path(digest)
        if final.is_file():
            try:
                self.get(digest)
                return digest
            except BlobCorrupted:
                pass  # rewrite a damaged copy with the good bytes
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=digest[:8] + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(final.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes stored under `digest`; BlobMissing or BlobCorrupted otherwise."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(digest) from None
        actual = sha256_hex(data)
        if actual != digest:
            raise BlobCorrupted(f"blob {digest} reads back as {actual} ({len(data)} bytes)")
        return data
