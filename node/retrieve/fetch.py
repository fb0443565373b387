"""Fetching one URL safely: redirects hop by hop, the body streamed and cut at a cap.

Owns: `Fetcher` (an httpx AsyncClient over the SSRF-guarded transport), the redirect
loop, the content-type and size checks and bounded decompression. It returns raw bytes
(`FetchedPage`); turning them into text is `extract.py`'s job.

What it must not do: let httpx follow redirects or decompress on its own (either would
skip a check), trust the environment's proxy settings, or hold more than the cap (plus
one network read) of a body in memory.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from types import TracebackType
from typing import Self, cast

import certifi
import httpcore
import httpx
import trio

from node.retrieve.config import RetrieverConfig
from node.retrieve.errors import (
    BodyTooLargeError,
    ContentEncodingError,
    ContentTypeError,
    FetchFailed,
    FetchTimeoutError,
    HttpStatusError,
    TooManyRedirectsError,
)
from node.retrieve.ssrf import GuardedNetworkBackend, check_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ClockMs = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class FetchedPage:
    url: str
    """The URL asked for."""
    final_url: str
    """The URL of the response that carried the body, after redirects."""
    status: int
    content_type: str
    """Media type, lowercased, without parameters (e.g. `text/html`)."""
    charset: str | None
    """The charset parameter of Content-Type, if the server sent one."""
    body: bytes
    """Decoded from any Content-Encoding; never longer than the cap."""
    fetched_at_ms: int
    """Unix ms when the final response's headers arrived."""
    redirects: int = 0


def parse_content_type(header: str | None) -> tuple[str, str | None]:
    """`text/html; charset=UTF-8` -> (`text/html`, `utf-8`); a missing header gives ("", None)."""
    if not header:
        return "", None
    message = Message()
    message["content-type"] = header
    media = message.get_content_type().lower() if "/" in header.split(";", 1)[0] else ""
    charset = message.get_param("charset")
    return media, (charset.strip().lower() if isinstance(charset, str) and charset.strip() else None)


# --- transport: httpx on top of an httpcore pool with the guarded backend --------------------


@contextlib.contextmanager
def _map_httpcore_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise FetchTimeoutError(f"timed out fetching {url}: {type(exc).__name__}") from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        detail = str(exc) or type(exc).__name__
        raise FetchFailed(f"fetching {url} failed: {detail}") from exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpcore.Response, url: str) -> None:
        self._response = stream
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_httpcore_errors(self._url):
            async with contextlib.aclosing(cast(AsyncGenerator[bytes, None], self._response.aiter_stream())) as parts:
                async for part in parts:
                    yield part

    async def aclose(self) -> None:
        await self._response.aclose()


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """Certificate verification against certifi's CAs, against the URL's host name (not the pinned IP).

    Built once: loading the CA bundle costs ~10 ms, and an un-entered Fetcher builds a
    transport per call. SSLContext objects are safe to share between connections.
    """
    return ssl.create_default_context(cafile=certifi.where())


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection goes through `GuardedNetworkBackend`.

    Written against public httpx/httpcore API only (httpx's own transport does not let a
    network backend be passed in); no proxy support on purpose.
    """

    def __init__(self, backend: GuardedNetworkBackend, *, max_connections: int = 20) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_default_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream if isinstance(request.stream, httpx.AsyncByteStream) else None,
            extensions=request.extensions,
        )
        with _map_httpcore_errors(url):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response, url),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# --- bounded body reading --------------------------------------------------------------------


class _BoundedDecoder:
    """Content-Encoding decoding that never produces more than `limit` bytes (zip-bomb proof)."""

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        self._limit = limit
        self._url = url
        self.decoded = 0
        self.raw = 0
        self._chunks: list[bytes] = []
        encodings = [e.strip().lower() for e in encoding.split(",") if e.strip() and e.strip().lower() != "identity"]
        if len(encodings) > 1:
            raise ContentEncodingError(f"{url}: stacked Content-Encoding {encoding!r} is not decoded")
        self._kind = encodings[0] if encodings else "identity"
        self._zlib: zlib._Decompress | None = None
        if self._kind in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._kind == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        elif self._kind != "identity":
            raise ContentEncodingError(f"{url}: Content-Encoding {encoding!r} is not supported (gzip, deflate)")

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self._zlib is None:
            out = chunk
        else:
            try:
                out = self._zlib.decompress(chunk, self._limit - self.decoded + 1)
            except zlib.error as exc:
                if self._kind == "deflate" and self.decoded == 0 and self.raw == len(chunk):
                    # Some servers send raw deflate (no zlib header) as "deflate".
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._kind = "raw-deflate"
                    self.raw -= len(chunk)
                    self.feed(chunk)
                    return
                raise FetchFailed(f"{self._url}: corrupt {self._kind} body: {exc}") from None
        self.decoded += len(out)
        if self.decoded > self._limit:
            raise BodyTooLargeError(
                f"{self._url}: body exceeds the {self._limit}-byte limit; transfer aborted",
                limit=self._limit,
                received=self.raw,
            )
        self._chunks.append(out)

    def body(self) -> bytes:
        return b"".join(self._chunks)


async def _read_capped(response: httpx.Response, limit: int, url: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        # Checked on the raw (possibly compressed) length: a compressed body that declares
        # more than the cap would decode to more still.
        raise BodyTooLargeError(
            f"{url}: Content-Length {int(declared)} exceeds the {limit}-byte limit; not downloaded",
            limit=limit,
            received=0,
            declared=int(declared),
        )
    decoder = _BoundedDecoder(response.headers.get("content-encoding", ""), limit, url)
    # aclosing: leaving the loop by an exception must close the generator now, not at GC.
    async with contextlib.aclosing(cast(AsyncGenerator[bytes, None], response.aiter_raw())) as chunks:
        async for chunk in chunks:
            decoder.feed(chunk)
    return decoder.body()


# --- the fetcher -----------------------------------------------------------------------------


class Fetcher:
    """Fetch URLs under one `RetrieverConfig`.

    Use as `async with Fetcher(cfg) as f:` to share a connection pool across fetches; a
    Fetcher that was not entered opens (and closes) a client per `fetch` call, which is
    what the executor does so that it needs no lifecycle of its own.
    """

    def __init__(
        self,
        config: RetrieverConfig | None = None,
        *,
        backend: GuardedNetworkBackend | None = None,
        clock_ms: ClockMs = wall_clock_ms,
    ) -> None:
        self.config = config or RetrieverConfig()
        self._backend = backend or GuardedNetworkBackend(self.config.policy)
        if self._backend.policy != self.config.policy:
            raise ValueError("the network backend's policy differs from the config's")
        self._clock_ms = clock_ms
        self._client: httpx.AsyncClient | None = None

    def _new_client(self) -> httpx.AsyncClient:
        cfg = self.config
        return httpx.AsyncClient(
            transport=GuardedTransport(self._backend),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s),
            headers={
                "User-Agent": cfg.user_agent,
                "Accept": (
                    "text/html,application/xhtml+xml,text/markdown,text/plain;q=0.9,"
                    "application/pdf;q=0.8,application/xml;q=0.8"
                ),
                "Accept-Encoding": "gzip, deflate",
            },
        )

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError("Fetcher is already entered")
        self._client = self._new_client()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True):
                await client.aclose()

    @contextlib.asynccontextmanager
    async def _client_for_call(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        client = self._new_client()
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    def effective_limit(self, max_bytes: int | None) -> int:
        return self.config.max_bytes if max_bytes is None else max(1, min(max_bytes, self.config.max_bytes))

    async def fetch(self, url: str, *, max_bytes: int | None = None) -> FetchedPage:
        """Fetch `url` (following up to `max_redirects` redirects) and return its body.

        Raises a `RetrieveError` subclass for every refusal and failure; the whole call is
        bounded by `total_timeout_s`.
        """
        limit = self.effective_limit(max_bytes)
        try:
            with trio.fail_after(self.config.total_timeout_s):
                async with self._client_for_call() as client:
                    return await self._fetch(client, url, limit)
        except trio.TooSlowError:
            raise FetchTimeoutError(
                f"retrieving {url} took longer than {self.config.total_timeout_s} s; abandoned"
            ) from None

    async def _fetch(self, client: httpx.AsyncClient, url: str, limit: int) -> FetchedPage:
        current = check_url(url).url
        for hop in range(self.config.max_redirects + 1):
            response = await client.send(client.build_request("GET", current), stream=True)
            try:
                if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                    target = response.url.join(response.headers["location"])
                    current = check_url(str(target)).url
                    continue
                return await self._accept(response, url, current, limit, hop)
            finally:
                await response.aclose()
        raise TooManyRedirectsError(f"{url}: more than {self.config.max_redirects} redirects; last hop was {current}")

    async def _accept(self, response: httpx.Response, url: str, current: str, limit: int, hop: int) -> FetchedPage:
        fetched_at_ms = self._clock_ms()
        status = response.status_code
        if not 200 <= status < 300:
            raise HttpStatusError(f"{current} answered HTTP {status}", status=status)
        header = response.headers.get("content-type")
        media, charset = parse_content_type(header)
        if media not in self.config.content_types:
            shown = repr(header) if header else "no Content-Type"
            allowed = ", ".join(sorted(self.config.content_types))
            raise ContentTypeError(f"{current} is {shown}, not text or PDF; only {allowed} are retrieved")
        body = await _read_capped(response, limit, current)
        return FetchedPage(
            url=url,
            final_url=current,
            status=status,
            content_type=media,
            charset=charset,
            body=body,
            fetched_at_ms=fetched_at_ms,
            redirects=hop,
        )
