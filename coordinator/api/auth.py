"""Requester API tokens: issue, list, revoke, verify; and who submitted which job.

Owns: the token file `<data_dir>/api_tokens.db` (SQLite, mode 0600). Only the
sha256 of a token is stored: a token is 32 random bytes, so a fast hash is
enough (there is nothing to brute-force, unlike a password), and a stolen file
grants nothing. The plain token is shown once, when it is created.
Must not: touch the coordinator's own database (coordinator.db), or know HTTP
(the app maps a missing token to 401 and a weak one to 403).

Scopes, each including the ones before it:
- `read`: the read endpoints when they are not open (the API listens beyond loopback);
- `write`: submit jobs and cancel the jobs this token submitted;
- `admin`: cancel any job.

Called from the CLI (`dataswarm coordinator token create`) while the
coordinator may be running: SQLite's own locking makes that safe.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

TOKEN_FILE = "api_tokens.db"
TOKEN_PREFIX = "dsw_"
MAX_NAME_CHARS = 100
NAME_PATTERN = re.compile(r"^[\w .@+-]{1,100}$")


class TokenError(ValueError):
    """A token request that cannot be done; the message says what to change."""


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        order = (Scope.READ, Scope.WRITE, Scope.ADMIN)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    name: str
    scope: Scope
    created_ms: int
    revoked: bool = False


@dataclass(frozen=True)
class IssuedToken:
    info: TokenInfo
    secret: str
    """The bearer token itself: shown once, never stored."""


def token_sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tokens (
        token_id    TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        scope       TEXT NOT NULL,
        sha256      TEXT NOT NULL UNIQUE,
        created_ms  INTEGER NOT NULL,
        revoked     INTEGER NOT NULL DEFAULT 0
    )""",
    # Which token submitted a job: a write token may cancel only its own jobs.
    """CREATE TABLE IF NOT EXISTS job_owners (
        job_id      TEXT PRIMARY KEY,
        token_id    TEXT NOT NULL
    )""",
)


class TokenStore:
    """The token file. Thread-safe; each call is one short transaction (the API runs them in a thread)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / TOKEN_FILE
        fresh = not self.path.exists()
        if fresh:
            # Create it 0600 before SQLite opens it, so the hashes are never world-readable.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._lock:
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, name: str, scope: Scope | str = Scope.WRITE, *, now_ms: int | None = None) -> IssuedToken:
        name = name.strip()
        if not NAME_PATTERN.match(name):
            raise TokenError(
                f"token name {name!r} must be 1-{MAX_NAME_CHARS} letters, digits, spaces or . @ + - _ "
                "(say who it is for, e.g. 'alice laptop')"
            )
        try:
            scope = Scope(scope)
        except ValueError:
            raise TokenError(f"scope {scope!r} is not one of {', '.join(s.value for s in Scope)}") from None
        token_id = secrets.token_hex(4)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        info = TokenInfo(token_id, name, scope, now_ms if now_ms is not None else int(time.time() * 1000))
        with self._lock:
            self._conn.execute(
                "INSERT INTO tokens (token_id, name, scope, sha256, created_ms) VALUES (?, ?, ?, ?, ?)",
                (info.token_id, info.name, info.scope.value, token_sha256(secret), info.created_ms),
            )
        return IssuedToken(info, secret)

    def verify(self, secret: str) -> TokenInfo | None:
        """The live token whose hash matches `secret`, else None (unknown or revoked)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT token_id, name, scope, created_ms, revoked FROM tokens WHERE sha256 = ?",
                (token_sha256(secret),),
            ).fetchone()
        if row is None or row[4]:
            return None
        return TokenInfo(str(row[0]), str(row[1]), Scope(row[2]), int(row[3]))

    def tokens(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT token_id, name, scope, created_ms, revoked FROM tokens ORDER BY created_ms, token_id"
            ).fetchall()
        return [TokenInfo(str(r[0]), str(r[1]), Scope(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by its id; False if there is no such live token."""
        with self._lock:
            cur = self._conn.execute("UPDATE tokens SET revoked = 1 WHERE token_id = ? AND revoked = 0", (token_id,))
        return cur.rowcount == 1

    def set_owner(self, job_id: str, token_id: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO job_owners (job_id, token_id) VALUES (?, ?)", (job_id, token_id))

    def jobs_of(self, token_id: str) -> set[str]:
        """The jobs `token_id` submitted through the API."""
        with self._lock:
            rows = self._conn.execute("SELECT job_id FROM job_owners WHERE token_id = ?", (token_id,)).fetchall()
        return {str(r[0]) for r in rows}

    def owner(self, job_id: str) -> str | None:
        """The token that submitted `job_id` through the API (None: submitted otherwise, e.g. the CLI)."""
        with self._lock:
            row = self._conn.execute("SELECT token_id FROM job_owners WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])


# --- what the CLI calls ---------------------------------------------------------------------


def create_token(data_dir: Path, name: str, scope: Scope | str = Scope.WRITE) -> IssuedToken:
    """Issue a token for the coordinator whose data_dir is `data_dir`; print `.secret` once."""
    with TokenStore(data_dir) as store:
        return store.create(name, scope)


def list_tokens(data_dir: Path) -> list[TokenInfo]:
    with TokenStore(data_dir) as store:
        return store.tokens()


def revoke_token(data_dir: Path, token_id: str) -> bool:
    with TokenStore(data_dir) as store:
        return store.revoke(token_id)
