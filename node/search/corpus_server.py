"""Serving a directory (the local corpus) over HTTP on loopback, so retrieval makes real fetches.

Owns: `LoopbackHTTPServer` (any `http.server` handler, run in a thread, bound to a
loopback address only, stoppable at any time, also closing keep-alive connections) and
`CorpusServer` / `serve_corpus` on top of it for a directory of files, and the content type
each corpus file is served with (`CORPUS_CONTENT_TYPES`, which the indexer reads too, so a
file is indexed as the type a retrieve task will extract it as). Tests use the generic server
for their scripted endpoints.

Why a thread-run `http.server` rather than a trio server: it is the standard library's
independent HTTP implementation (the retriever is tested against a peer it did not
write), and it needs nothing but a thread; `serve_corpus` gives trio code the usual
`await nursery.start(...)` shape, and cancelling the nursery stops it.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import trio

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (installed with libp2p) shadow trio's own types

CORPUS_CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "application/xhtml+xml",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}
"""The files a directory corpus is made of, by suffix (lower case). Fixed here rather than taken
from `mimetypes`, which reads /etc/mime.types: `.md` is unknown or differs between machines.
No charset is sent: the file's bytes are decoded the same way when indexed and when retrieved."""


class _TrackingServer(ThreadingHTTPServer):
    """Remembers open connections so `stop()` can end idle keep-alive handlers at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, family: socket.AddressFamily) -> None:
        self.address_family = family
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading (the retriever drops a body over its size limit) is no server error.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackHTTPServer:
    """A threaded `http.server` on a loopback address; `port=0` picks a free port.

    Start/stop from sync code (`with LoopbackHTTPServer(h) as server:`) or from trio
    (`await trio.to_thread.run_sync(server.stop)`); `stop()` is idempotent.
    """

    def __init__(self, handler: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        address = ipaddress.ip_address(host)
        if not address.is_loopback:
            raise ValueError(f"{host} is not a loopback address: the corpus server only serves this machine")
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self._server = _TrackingServer((host, port), handler, family)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/` (IPv6 in brackets), ending with a slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"http-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            self._server.server_close()
            return
        thread, self._thread = self._thread, None
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class CorpusRequestHandler(SimpleHTTPRequestHandler):
    """Static files with keep-alive (HTTP/1.1), idle connections closed after 10 s, no logging."""

    protocol_version = "HTTP/1.1"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **CORPUS_CONTENT_TYPES}  # noqa: RUF012 (the base's name)
    timeout = 10
    disable_nagle_algorithm = True
    """Headers and body go out in separate writes: with Nagle on, keep-alive responses stall on
    the client's delayed ACK (docs/notes/retrieval.md#nagle-on-the-corpus-server)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CorpusServer(LoopbackHTTPServer):
    """Serve `directory` read-only over HTTP on loopback."""

    def __init__(self, directory: Path | str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"corpus directory {self.directory} does not exist")
        handler = functools.partial(CorpusRequestHandler, directory=os.fspath(self.directory))
        super().__init__(handler, host=host, port=port)


async def serve_corpus(
    directory: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: TaskStatus[CorpusServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `directory` until cancelled: `server = await nursery.start(serve_corpus, path)`."""
    server = CorpusServer(directory, host=host, port=port)
    server.start()
    try:
        task_status.started(server)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.stop)


__all__ = ["CORPUS_CONTENT_TYPES", "CorpusRequestHandler", "CorpusServer", "LoopbackHTTPServer", "serve_corpus"]
