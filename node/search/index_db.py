"""The local search index on disk: an SQLite file with a pages table and its FTS5 mirror.

Owns: the schema, opening (read-only for search, read-write for indexing) and writing
pages. Every function here blocks: call them from a worker thread.

Layout. `pages` holds url, title and extracted text; `pages_fts` is an external-content
FTS5 table over (title, body) kept in step by triggers, with the porter stemmer so
"queues" finds "queue". `meta` records the schema version and the base URL a directory
corpus was indexed under (so search can rebase hits onto another port).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from node.search.base import SearchBackendUnavailable

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages(
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    indexed_at_ms INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS pages_fts USING fts5(
    title, body, content='pages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS pages_ai AFTER INSERT ON pages BEGIN
    INSERT INTO pages_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER IF NOT EXISTS pages_ad AFTER DELETE ON pages BEGIN
    INSERT INTO pages_fts(pages_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER IF NOT EXISTS pages_au AFTER UPDATE ON pages BEGIN
    INSERT INTO pages_fts(pages_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO pages_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
"""

MAX_INDEXED_CHARS = 2_000_000
"""Text kept per page in the index; the largest Python docs page (contents.html) is ~0.9 M."""


def open_for_search(path: Path) -> sqlite3.Connection:
    """A read-only connection; SearchBackendUnavailable if there is no usable index at `path`."""
    if not path.is_file():
        raise SearchBackendUnavailable(
            f"no local search index at {path}: build one with `dataswarm corpus index DIR-or-URL --db {path}`"
        )
    connection = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, check_same_thread=False)
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise SearchBackendUnavailable(f"{path} is not a dataswarm search index: {exc}") from None
    if row is None or row[0] != SCHEMA_VERSION:
        connection.close()
        found = row[0] if row else "none"
        raise SearchBackendUnavailable(
            f"{path} has index schema {found}, this node reads {SCHEMA_VERSION}: "
            "rebuild it with `dataswarm corpus index`"
        )
    return connection


def open_for_writing(path: Path) -> sqlite3.Connection:
    """Create or open the index for indexing (one writer at a time; the caller commits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.executescript(_SCHEMA)
    set_meta(connection, {"schema_version": SCHEMA_VERSION})
    connection.commit()
    return connection


def set_meta(connection: sqlite3.Connection, values: dict[str, str]) -> None:
    connection.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def get_meta(connection: sqlite3.Connection, key: str) -> str | None:
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def upsert_pages(connection: sqlite3.Connection, pages: Iterable[tuple[str, str, str]]) -> int:
    """Insert or replace (url, title, text) rows; returns how many were written (not committed)."""
    now_ms = time.time_ns() // 1_000_000
    rows = [(url, title, text[:MAX_INDEXED_CHARS], now_ms) for url, title, text in pages]
    connection.executemany(
        "INSERT INTO pages(url, title, body, indexed_at_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(url) DO UPDATE SET title = excluded.title, body = excluded.body, "
        "indexed_at_ms = excluded.indexed_at_ms",
        rows,
    )
    return len(rows)


def optimize(connection: sqlite3.Connection) -> None:
    """Merge the FTS5 b-trees after a bulk load: smaller file, faster queries."""
    connection.execute("INSERT INTO pages_fts(pages_fts) VALUES ('optimize')")


def page_count(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT count(*) FROM pages").fetchone()[0])
