"""URL in, `RetrieveOutput` out: fetch (guarded), extract (in a worker thread), bound, digest.

Owns: the assembly of a retrieve task's output, including the truncation to protocol
bounds and `content_sha256` (sha256 of the final `text` as UTF-8, what evidence offsets
refer to). Fetching rules live in `fetch.py`, extraction in `extract.py`.
"""

from __future__ import annotations

import hashlib
import os
from types import TracebackType
from typing import Self

import trio

from node.retrieve.config import RetrieverConfig
from node.retrieve.errors import NoContentError
from node.retrieve.extract import ExtractedText, extract_document
from node.retrieve.fetch import ClockMs, FetchedPage, Fetcher, wall_clock_ms
from node.retrieve.ssrf import GuardedNetworkBackend
from protocol.tasks import MAX_DOCUMENT_CHARS, RetrieveOutput

MAX_TITLE_CHARS = 512
MAX_CONTENT_TYPE_CHARS = 512


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_output(page: FetchedPage, extracted: ExtractedText) -> RetrieveOutput:
    """Bound the extracted text to the protocol's limits and digest what is kept."""
    text = extracted.text[:MAX_DOCUMENT_CHARS]
    if not text.strip():
        raise NoContentError(f"{page.final_url}: no main text could be extracted ({page.content_type})")
    return RetrieveOutput(
        url=page.url,
        final_url=page.final_url,
        status=page.status,
        content_type=page.content_type[:MAX_CONTENT_TYPE_CHARS],
        title=extracted.title[:MAX_TITLE_CHARS],
        text=text,
        content_sha256=content_sha256(text),
        fetched_at_ms=page.fetched_at_ms,
    )


class Retriever:
    """Fetch and extract pages under one `RetrieverConfig`.

    `async with Retriever(cfg) as r:` shares one connection pool across calls (the
    benchmark and the crawler do this); an un-entered Retriever works too, opening a
    client per call. Extraction runs in worker threads, at most `extract_threads` at once:
    it is CPU-bound Python, so more threads than cores only add memory.
    """

    def __init__(
        self,
        config: RetrieverConfig | None = None,
        *,
        backend: GuardedNetworkBackend | None = None,
        clock_ms: ClockMs = wall_clock_ms,
        extract_threads: int | None = None,
    ) -> None:
        self.config = config or RetrieverConfig()
        self.fetcher = Fetcher(self.config, backend=backend, clock_ms=clock_ms)
        self._extract_limiter = trio.CapacityLimiter(extract_threads or os.cpu_count() or 1)

    async def __aenter__(self) -> Self:
        await self.fetcher.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.fetcher.__aexit__(exc_type, exc, tb)

    async def retrieve(self, url: str, *, max_bytes: int | None = None) -> RetrieveOutput:
        """Fetch `url` and return its main text. Raises a `RetrieveError` subclass on any refusal or failure."""
        page = await self.fetcher.fetch(url, max_bytes=max_bytes)
        extracted = await trio.to_thread.run_sync(
            extract_document,
            page.body,
            page.content_type,
            page.charset,
            page.final_url,
            limiter=self._extract_limiter,
        )
        return build_output(page, extracted)
