"""URL in, `RetrieveOutput` out: fetch (guarded), extract (in a worker process), bound, digest.

Owns: the assembly of a retrieve task's output, including the truncation to protocol
bounds and `content_sha256` of the final `text` (`protocol.digests`: what evidence offsets
refer to), and where extraction runs. Fetching rules live in `fetch.py`, extraction in
`extract.py`.

Extraction runs in a worker process (trio-parallel), not a thread (PDF too: pdfminer is pure
Python, ~25 ms a page, and would hold the GIL against the trio thread): trafilatura's libxml2
segfaulted in concurrent worker threads of our nodes (SIGSEGV in lxml's etree.so, seen in
CI and in this machine's kernel log; trafilatura issues 840 and 925), and a page that
crashes or hangs the parser must cost one task, not the volunteer's whole node.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import TracebackType
from typing import Self

import trio
import trio_parallel

from node.retrieve.config import MARKDOWN_CONTENT_TYPES, PDF_CONTENT_TYPES, RetrieverConfig
from node.retrieve.errors import ExtractionFailed, NoContentError, RetrieveError
from node.retrieve.extract import ExtractedText, extract_document
from node.retrieve.fetch import ClockMs, FetchedPage, Fetcher, wall_clock_ms
from node.retrieve.ssrf import GuardedNetworkBackend
from protocol.digests import content_sha256
from protocol.tasks import MAX_DOCUMENT_CHARS, RetrieveOutput

MAX_TITLE_CHARS = 512
MAX_CONTENT_TYPE_CHARS = 512

Extractor = Callable[[bytes, str, str | None, str], ExtractedText]
"""`extract_document`'s signature; it must be importable by name (it is pickled to a worker)."""


def build_output(page: FetchedPage, extracted: ExtractedText) -> RetrieveOutput:
    """Bound the extracted text to the protocol's limits and digest what is kept."""
    text = extracted.text[:MAX_DOCUMENT_CHARS]
    if not text.strip():
        hint = "; a scanned PDF has no text layer to read" if page.content_type in PDF_CONTENT_TYPES else ""
        raise NoContentError(f"{page.final_url}: no main text could be extracted ({page.content_type}{hint})")
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
    client per call. Extraction runs in at most `config.extract_workers` worker processes
    at once; `extractor` replaces `extract_document` (tests: a parser that crashes or hangs).
    """

    def __init__(
        self,
        config: RetrieverConfig | None = None,
        *,
        backend: GuardedNetworkBackend | None = None,
        clock_ms: ClockMs = wall_clock_ms,
        extractor: Extractor = extract_document,
    ) -> None:
        self.config = config or RetrieverConfig()
        self.fetcher = Fetcher(self.config, backend=backend, clock_ms=clock_ms)
        self._extractor = extractor
        self._extract_limiter = trio.CapacityLimiter(self.config.extract_workers)

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
        return build_output(page, await self.extract(page))

    async def extract(self, page: FetchedPage) -> ExtractedText:
        """`page`'s title and main text, from a worker process; ExtractionFailed if the parser dies or hangs."""
        timeout = self.config.extract_timeout_s
        try:
            with trio.fail_after(timeout):
                extracted: ExtractedText = await trio_parallel.run_sync(
                    self._extractor,
                    page.body,
                    page.content_type,
                    page.charset,
                    page.final_url,
                    kill_on_cancel=True,  # the only way to stop a parser stuck in C
                    limiter=self._extract_limiter,
                )
        except trio.TooSlowError:
            raise ExtractionFailed(
                f"{page.final_url}: extracting the text took over {timeout:g} s; the parser was stopped"
            ) from None
        except trio_parallel.BrokenWorkerError as exc:
            raise ExtractionFailed(
                f"{page.final_url}: the {_format_name(page.content_type)} parser crashed on this page ({_death(exc)}); "
                "this node carries on"
            ) from None
        except RetrieveError:
            raise  # the extractor's own verdict (DocumentFormatError: a malformed PDF), message and all
        except Exception as exc:  # a parser bug on one odd page costs that task, not the node
            raise ExtractionFailed(
                f"{page.final_url}: extracting the text failed ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        return extracted


def _format_name(content_type: str) -> str:
    if content_type in PDF_CONTENT_TYPES:
        return "PDF"
    if content_type in MARKDOWN_CONTENT_TYPES:
        return "Markdown"
    return "text" if content_type == "text/plain" else "HTML"


def _death(exc: trio_parallel.BrokenWorkerError) -> str:
    """How the worker died, from the exit code trio-parallel attaches (negative: killed by that signal)."""
    code = next((a.exitcode for a in exc.args if hasattr(a, "exitcode")), None)
    if isinstance(code, int) and code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return "worker process died" if code is None else f"worker exited with code {code}"
