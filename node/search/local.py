"""The embedded search engine: BM25 over the local SQLite FTS5 index, titles boosted.

Owns: turning a free-text query into an FTS5 expression and ranking. Queries run in a
worker thread on a fresh read-only connection (cheap, and lets searches run side by side
while an indexer writes).

Ranking. Every query word is an OR'ed, quoted FTS5 term (quoting makes user text inert:
no column filters, NEAR or operators from a task), so a page matching more and rarer
words ranks higher under BM25; a match in the title weighs TITLE_WEIGHT times one in the
body. Snippets come from FTS5's `snippet()` over the body.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import trio

from node.search.base import MAX_SNIPPET_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS, SearchBackendError, clip
from node.search.index_db import get_meta, open_for_search
from protocol.tasks import SearchHit

TITLE_WEIGHT = 8.0
"""bm25() weight of a title match against 1.0 for the body: the flat middle of the range that ranks
well (docs/notes/retrieval.md#title-weight)."""
MAX_QUERY_TERMS = 32
SNIPPET_TOKENS = 32

_WORD = re.compile(r"\w+", re.UNICODE)
_RANK = f"bm25(pages_fts, {TITLE_WEIGHT}, 1.0)"
# Two steps: rank every match, then build snippets for the top rows only (docs/notes/retrieval.md#snippets).
_SEARCH_SQL = f"""
SELECT pages.url, pages.title, snippet(pages_fts, 1, '', '', '…', {SNIPPET_TOKENS}), {_RANK} AS rank
FROM pages_fts JOIN pages ON pages.id = pages_fts.rowid
WHERE pages_fts MATCH :query AND pages_fts.rowid IN (
    SELECT rowid FROM pages_fts WHERE pages_fts MATCH :query ORDER BY {_RANK} LIMIT :limit
)
ORDER BY rank
"""


def fts_query(query: str) -> str | None:
    """The FTS5 MATCH expression for free text: quoted words joined by OR; None if no words."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in words:
            words.append(word)
    if not words:
        return None
    return " OR ".join(f'"{word}"' for word in words[:MAX_QUERY_TERMS])


class LocalSearchBackend:
    """Search the index at `db_path`; `base_url` rebases hits (see `SearchConfig.base_url`)."""

    name = "local"

    def __init__(self, db_path: Path, *, base_url: str | None = None) -> None:
        self.db_path = Path(db_path)
        connection = open_for_search(self.db_path)  # fail at construction, with the fix in the message
        try:
            self._indexed_base = get_meta(connection, "base_url")
        finally:
            connection.close()
        self._base_url = base_url

    def _rebase(self, url: str) -> str:
        if self._base_url and self._indexed_base and url.startswith(self._indexed_base):
            return self._base_url.rstrip("/") + "/" + url[len(self._indexed_base) :].lstrip("/")
        return url

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        return await trio.to_thread.run_sync(self.search_sync, query, max_results)

    def search_sync(self, query: str, max_results: int) -> list[SearchHit]:
        """The blocking search; call from a worker thread (or from sync code such as the CLI)."""
        expression = fts_query(query)
        if expression is None or max_results < 1:
            return []
        connection = open_for_search(self.db_path)
        try:
            rows = connection.execute(_SEARCH_SQL, {"query": expression, "limit": max_results}).fetchall()
        except sqlite3.Error as exc:
            raise SearchBackendError(f"local search in {self.db_path} failed: {exc}") from exc
        finally:
            connection.close()
        hits: list[SearchHit] = []
        for url, title, snippet, rank in rows:
            url = self._rebase(str(url))
            if len(url) > MAX_URL_CHARS:
                continue
            hits.append(
                SearchHit(
                    url=url,
                    title=clip(str(title), MAX_TITLE_CHARS),
                    snippet=clip(str(snippet), MAX_SNIPPET_CHARS),
                    score=round(-float(rank), 6),
                )
            )
        return hits
