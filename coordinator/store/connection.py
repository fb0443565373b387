"""The store's one SQLite connection: how it is opened, locked, and written in transactions.

Owns: opening the database (WAL mode, the `synchronous` level, foreign keys,
migrations), the blob folder beside it, the lock that serialises every call,
`_tx` (one write transaction; any exception rolls it back), `atomic` (several
calls as one transaction: a `_tx` inside it is a savepoint), and `fetch_one`,
the single-row read that raises NotFound. The concept modules (jobs, tasks,
replicas, results, nodes) are mixins over this class; `coordinator.store.db`
joins them into `Store` and explains threading and durability.
Must not: hold a query of its own beyond opening, or read the clock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from coordinator.store.blobs import BlobStore
from coordinator.store.errors import NotFound, StoreError
from coordinator.store.schema import migrate
from coordinator.store.verified import VerifiedResults

INLINE_PAYLOAD_LIMIT = 16 * 1024
"""Payloads up to this many bytes stay in the tasks row; larger ones (documents) go to the blob folder."""

T = TypeVar("T")


class Database:
    """The coordinator database plus its blob folder. See `coordinator.store.db` for threading."""

    def __init__(
        self,
        path: Path,
        *,
        blob_dir: Path | None = None,
        synchronous: str = "NORMAL",
        inline_limit: int = INLINE_PAYLOAD_LIMIT,
    ) -> None:
        self.path = Path(path)
        self.blobs = BlobStore(blob_dir if blob_dir is not None else self.path.with_name(self.path.name + ".blobs"))
        self._inline_limit = inline_limit
        self._lock = threading.RLock()
        self._depth = 0
        """How many `_tx` are open on this thread's call stack (the lock makes it one thread's)."""
        self._verified = VerifiedResults()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per call.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"could not put {self.path} in WAL mode (got {mode!r})")
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls everything in it back. Inside another (`atomic`) it is
        a savepoint: an exception undoes this call's writes only, and the outer transaction decides the rest."""
        with self._lock:
            outer = self._depth == 0
            name = f"tx{self._depth}"
            self._conn.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK" if outer else f"ROLLBACK TO {name}")
                if not outer:
                    self._conn.execute(f"RELEASE {name}")
                raise
            finally:
                self._depth -= 1
            self._conn.execute("COMMIT" if outer else f"RELEASE {name}")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every store call inside is one transaction: all of their writes, or (on an exception) none."""
        with self._tx():
            yield


def fetch_one(
    c: sqlite3.Connection, build: Callable[[Mapping[str, Any]], T], sql: str, args: tuple[Any, ...], missing: str
) -> T:
    """The one row `sql` selects, as `build` makes it; NotFound(`missing`) if there is none."""
    r = c.execute(sql, args).fetchone()
    if r is None:
        raise NotFound(missing)
    return build(r)
