"""Key files on disk: PKCS#8 PEM, mode 0600, refused when corrupt or too open.

This is the one module in `protocol/` that touches the file system: both the
node and the coordinator (and the CLI's `keys` command) must load keys by the
same rules, and the rules are part of the trust model. It does no network or
clock I/O.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from protocol.errors import KeyFileError
from protocol.identity import Identity


def save_identity(identity: Identity, path: Path) -> None:
    """Write the key so that only the owner can read it, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by umask; be explicit
        os.write(fd, identity.to_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_identity(path: Path) -> Identity:
    """Read a key file, refusing one that others can read or that does not parse."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist: create one with `dataswarm keys generate`") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):o}): run `chmod 600 {path}`"
        )
    try:
        return Identity.from_pem(path.read_bytes())
    except ValueError as exc:
        raise KeyFileError(f"key file {path} is corrupt: {exc}") from None


def load_or_create_identity(path: Path) -> Identity:
    """The identity at `path`, generating and saving a new one if none exists."""
    if not path.exists():
        save_identity(Identity.generate(), path)
    return load_identity(path)
