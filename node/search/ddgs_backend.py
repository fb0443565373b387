"""The `ddgs` backend: internet search through the optional `ddgs` package (DuckDuckGo and others).

Owns: the optional import and the mapping of its results. It needs the public internet,
so it is never used by tests or the demo; `ddgs` is not a dependency of dataswarm. The
package's API is synchronous, so searches run in a worker thread.
"""

from __future__ import annotations

import importlib
from typing import Any

import trio

from node.search.base import (
    MAX_SNIPPET_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    SearchBackendError,
    SearchBackendUnavailable,
    clip,
)
from protocol.tasks import SearchHit

INSTALL_HINT = (
    "search backend 'ddgs' needs the optional package `ddgs`: install it into the node's environment "
    "(`pip install ddgs`), or choose search_backend = 'local' or 'searxng'"
)


class DdgsBackend:
    name = "ddgs"

    def __init__(self, *, timeout_s: float = 10.0, region: str = "wt-wt", safesearch: str = "moderate") -> None:
        try:
            module = importlib.import_module("ddgs")
        except ImportError:
            raise SearchBackendUnavailable(INSTALL_HINT) from None
        self._ddgs_class: Any = module.DDGS
        self.timeout_s = timeout_s
        self.region = region
        self.safesearch = safesearch

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        return await trio.to_thread.run_sync(self._search_sync, query, max_results)

    def _search_sync(self, query: str, max_results: int) -> list[SearchHit]:
        try:
            results = self._ddgs_class(timeout=int(self.timeout_s)).text(
                query, region=self.region, safesearch=self.safesearch, max_results=max_results
            )
        except Exception as exc:  # ddgs raises its own exception types; report any of them the same way
            raise SearchBackendError(f"ddgs search failed: {type(exc).__name__}: {exc}") from exc
        hits: list[SearchHit] = []
        for result in results or []:
            if not isinstance(result, dict):
                continue
            url = str(result.get("href") or result.get("url") or "")
            if url.startswith(("http://", "https://")) and len(url) <= MAX_URL_CHARS:
                hits.append(
                    SearchHit(
                        url=url,
                        title=clip(str(result.get("title") or ""), MAX_TITLE_CHARS),
                        snippet=clip(str(result.get("body") or ""), MAX_SNIPPET_CHARS),
                    )
                )
        return hits[:max_results]
