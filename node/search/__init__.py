"""Search: pluggable backends (local FTS5/BM25, SearXNG, ddgs) and the local corpus.

Modules:
- `base`: the `SearchBackend` interface, errors, `SearchConfig` and `build_backend`;
- `local`: the embedded engine over an SQLite FTS5 index (`index_db` holds its schema);
- `searxng`, `ddgs_backend`: the remote backends;
- `corpus`: building the index from a directory or a crawl (`index_corpus`);
- `corpus_server`: serving a directory over HTTP on loopback.
"""

from node.search.base import (
    MalformedResponseError,
    SearchBackend,
    SearchBackendError,
    SearchBackendUnavailable,
    SearchConfig,
    build_backend,
)

__all__ = [
    "MalformedResponseError",
    "SearchBackend",
    "SearchBackendError",
    "SearchBackendUnavailable",
    "SearchConfig",
    "build_backend",
]
