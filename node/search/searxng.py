"""The `searxng` backend: a self-hosted SearXNG metasearch instance, through its JSON API.

Owns: the request (`GET {base}/search?q=…&format=json&pageno=N`), the size-capped read
and the validation of the answer. The instance URL comes from the operator's config, not
from a task, so it is fetched directly rather than through the retrieval SSRF guard (a
SearXNG is usually on loopback or the LAN); the result URLs it returns are only reported,
a retrieve task fetches them later through the guard.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from node.search.base import (
    MAX_SNIPPET_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    MalformedResponseError,
    SearchBackendError,
    clip,
)
from protocol.tasks import SearchHit

MAX_RESPONSE_BYTES = 2_000_000
"""A results page of SearXNG is ~10-60 kB; anything near this cap is not a results page."""
MAX_PAGES = 3
"""SearXNG returns ~10 results a page; three pages cover most `max_results` at 3x the latency."""


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    title: str = ""
    content: str | None = ""
    score: float | None = None


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[Any]


class SearxngBackend:
    name = "searxng"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        language: str | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"SearXNG URL {base_url!r} must be an http(s) URL such as http://127.0.0.1:8888/")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout_s = timeout_s
        self.language = language
        self.max_response_bytes = max_response_bytes

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        hits: list[SearchHit] = []
        seen: set[str] = set()
        async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False, follow_redirects=False) as client:
            for page in range(1, MAX_PAGES + 1):
                results = await self._page(client, query, page)
                for result in results:
                    if result.url not in seen:
                        seen.add(result.url)
                        hits.append(_hit(result))
                if not results or len(hits) >= max_results:
                    break
        return hits[:max_results]

    async def _page(self, client: httpx.AsyncClient, query: str, page: int) -> list[_Result]:
        params: dict[str, str | int] = {"q": query, "format": "json", "pageno": page}
        if self.language:
            params["language"] = self.language
        endpoint = self.base_url + "search"
        try:
            headers = {"Accept": "application/json"}
            async with client.stream("GET", endpoint, params=params, headers=headers) as response:
                if response.status_code != 200:
                    raise SearchBackendError(_status_message(endpoint, response.status_code))
                body = bytearray()
                async with contextlib.aclosing(cast(AsyncGenerator[bytes, None], response.aiter_bytes())) as chunks:
                    async for chunk in chunks:
                        body += chunk
                        if len(body) > self.max_response_bytes:
                            raise MalformedResponseError(
                                f"SearXNG at {endpoint} sent more than {self.max_response_bytes} bytes; "
                                "not a results page"
                            )
        except httpx.HTTPError as exc:
            raise SearchBackendError(f"cannot reach SearXNG at {endpoint}: {type(exc).__name__}: {exc}") from exc
        return _parse(bytes(body), endpoint)


def _status_message(endpoint: str, status: int) -> str:
    if status == 403:
        return (
            f"SearXNG at {endpoint} answered HTTP 403: the JSON format is probably disabled; "
            "add `json` to `search.formats` in its settings.yml"
        )
    if status == 429:
        return f"SearXNG at {endpoint} answered HTTP 429: its limiter throttles this node; disable `server.limiter`"
    return f"SearXNG at {endpoint} answered HTTP {status}"


def _parse(body: bytes, endpoint: str) -> list[_Result]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponseError(f"SearXNG at {endpoint} answered something that is not JSON: {exc}") from None
    try:
        response = _Response.model_validate(document)
    except ValidationError:
        raise MalformedResponseError(
            f"SearXNG at {endpoint} answered JSON without a 'results' list (is this a SearXNG /search endpoint?)"
        ) from None
    results: list[_Result] = []
    for entry in response.results:
        try:
            result = _Result.model_validate(entry)
        except ValidationError:
            continue
        if result.url.startswith(("http://", "https://")) and len(result.url) <= MAX_URL_CHARS:
            results.append(result)
    if response.results and not results:
        raise MalformedResponseError(
            f"SearXNG at {endpoint} returned {len(response.results)} results, none with an http(s) 'url' string"
        )
    return results


def _hit(result: _Result) -> SearchHit:
    return SearchHit(
        url=result.url,
        title=clip(result.title, MAX_TITLE_CHARS),
        snippet=clip(result.content or "", MAX_SNIPPET_CHARS),
        score=float(result.score) if result.score is not None and math.isfinite(result.score) else 0.0,
    )
