"""The one interface every search backend implements, its errors, and building one from config.

Owns: `SearchBackend` (query in, `SearchHit`s out), `SearchConfig` and `build_backend`.
Backends live one per module (`local`, `searxng`, `ddgs_backend`) and are imported here
lazily, so a node that uses `local` never imports httpx code paths it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from protocol.tasks import SearchHit

BackendName = Literal["local", "searxng", "ddgs"]

MAX_TITLE_CHARS = 512
MAX_SNIPPET_CHARS = 2000
MAX_URL_CHARS = 2048
"""The bounds of `protocol.tasks.SearchHit`; backends trim to them rather than fail."""


class SearchBackendError(Exception):
    """The backend could not answer; the message says which backend and why."""


class SearchBackendUnavailable(SearchBackendError):
    """The backend is not set up on this node (no index, no URL, a missing optional package)."""


class MalformedResponseError(SearchBackendError):
    """A remote search service answered something that is not the expected format."""


class SearchBackend(Protocol):
    @property
    def name(self) -> str:
        """Short name reported in `SearchOutput.backend` (`local`, `searxng`, `ddgs`)."""
        ...

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        """Best hits first, at most `max_results`, each within `SearchHit`'s bounds.

        Raises SearchBackendError (or a subclass) when the backend cannot answer; an
        answer with no hits is an empty list, not an error.
        """
        ...


@dataclass(frozen=True)
class SearchConfig:
    """What `build_backend` needs; mirrors the search fields of `node.config.NodeConfig`."""

    backend: BackendName = "local"
    index_path: Path | None = None
    """SQLite index for `local` (built by `dataswarm corpus index`)."""
    base_url: str | None = None
    """For `local`: serve hits under this base URL instead of the one the index was built
    with (the corpus server may listen on another port than at indexing time)."""
    searxng_url: str | None = None
    timeout_s: float = 10.0


def build_backend(config: SearchConfig) -> SearchBackend:
    """Construct the configured backend; SearchBackendUnavailable says what is missing."""
    if config.backend == "local":
        from node.search.local import LocalSearchBackend

        if config.index_path is None:
            raise SearchBackendUnavailable(
                "search backend 'local' needs an index path: build one with `dataswarm corpus index DIR-or-URL`"
            )
        return LocalSearchBackend(config.index_path, base_url=config.base_url)
    if config.backend == "searxng":
        from node.search.searxng import SearxngBackend

        if not config.searxng_url:
            raise SearchBackendUnavailable(
                "search backend 'searxng' needs the URL of a SearXNG instance (setting searxng_url)"
            )
        return SearxngBackend(config.searxng_url, timeout_s=config.timeout_s)
    if config.backend == "ddgs":
        from node.search.ddgs_backend import DdgsBackend

        return DdgsBackend(timeout_s=config.timeout_s)
    raise SearchBackendUnavailable(f"unknown search backend {config.backend!r} (local, searxng or ddgs)")


def clip(text: str, limit: int) -> str:
    """Trim to `limit` characters, marking the cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
