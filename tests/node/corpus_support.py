"""Test helpers for the retrieval, search and corpus tests (plain code, no fixtures).

- `ScriptedSite`: a loopback server with hostile endpoints (redirects to private
  addresses, endless redirects, a 50 MB stream, binary content, a gzip bomb).
- the corpus location and the size constants the tests assert against.

The fixtures that use these live in `corpus_fixtures.py` (loaded with `pytest_plugins`).
Everything listens on 127.0.0.1 only; nothing here reaches another host.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from node.search.corpus import IndexStats
from node.search.corpus_server import LoopbackHTTPServer

PYDOC_DIR = Path("/usr/share/doc/python3.11/html")
INDEX_BASE_URL = "http://127.0.0.1:8765/"
CHUNK = 64 * 1024
BIG_BODY = 50_000_000


@dataclass
class BuiltIndex:
    """What the `pydoc_index` fixture built: the index file, its stats and the progress calls."""

    path: Path
    stats: IndexStats
    progress: list[tuple[int, int]]


def require_pydoc() -> Path:
    if not (PYDOC_DIR / "library" / "heapq.html").is_file():
        pytest.fail(
            f"{PYDOC_DIR} is missing. These tests use Debian's python3.11-doc package as their corpus; "
            ".ci/run installs it (apt-get install -y python3.11-doc). Install it and run again.",
            pytrace=False,
        )
    return PYDOC_DIR


# --- the scripted site -----------------------------------------------------------------------


@dataclass
class StreamRecord:
    """What the server saw while streaming a large body."""

    written: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class ScriptedState:
    corpus_base: str = ""
    streams: dict[str, StreamRecord] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ScriptedHandler(BaseHTTPRequestHandler):
    """Endpoints by path; HTTP/1.0 so a body without Content-Length ends at close."""

    protocol_version = "HTTP/1.0"
    state: ScriptedState  # set on a subclass per server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with self.state.lock:
            self.state.requests.append(self.path)
        path = self.path.split("?", 1)[0]
        if path == "/redirect-private":
            self._redirect("http://10.0.0.1/secret")
        elif path == "/redirect-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/redirect-localhost-name":
            port = self.state.corpus_base.rstrip("/").rsplit(":", 1)[1]
            self._redirect(f"http://localhost:{port}/library/heapq.html")
        elif path == "/redirect-file":
            self._redirect("file:///etc/passwd")
        elif path == "/redirect-heapq":
            self._redirect(self.state.corpus_base + "library/heapq.html")
        elif path.startswith("/loop/"):
            self._redirect(f"/loop/{int(path.rsplit('/', 1)[1]) + 1}")
        elif path.startswith("/chain/"):  # /chain/N: N more redirects, then a page
            remaining = int(path.rsplit("/", 1)[1])
            if remaining:
                self._redirect(f"/chain/{remaining - 1}")
            else:
                self._send(200, "text/html; charset=utf-8", _page("End of the chain", "The chain ended here."))
        elif path == "/page":
            self._send(200, "text/html; charset=utf-8", _page("A page", "Scripted page body text."))
        elif path == "/wrapped":
            self._send(200, "text/html; charset=utf-8", WRAPPED_PAGE)
        elif path == "/plain":
            self._send(200, "text/plain; charset=utf-8", b"Plain text line one.\r\nLine two.\r\n")
        elif path == "/binary":
            self._send(200, "application/octet-stream", bytes(range(256)) * 16)
        elif path == "/image":
            self._send(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)
        elif path == "/no-type":
            self._send(200, None, _page("Untyped", "No content type here."))
        elif path == "/missing":
            self._send(404, "text/html", _page("Not found", "Nothing here."))
        elif path == "/big-stream":
            self._stream("big-stream", declare_length=False)
        elif path == "/big-declared":
            self._stream("big-declared", declare_length=True)
        elif path == "/gzip-bomb":
            body = gzip.compress(b"<html><body><p>" + b"a" * BIG_BODY, compresslevel=9)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._write_quietly(body)
        elif path == "/brotli":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Encoding", "br")
            self.end_headers()
            self._write_quietly(b"\x0b\x02\x80hello\x03")
        else:
            self._send(404, "text/plain", b"no such endpoint")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, content_type: str | None, body: bytes) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write_quietly(body)

    def _write_quietly(self, body: bytes) -> None:
        with contextlib.suppress(OSError):  # the client hung up, which is what several tests expect
            self.wfile.write(body)

    def _stream(self, name: str, *, declare_length: bool) -> None:
        record = StreamRecord()
        with self.state.lock:
            self.state.streams[name] = record
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if declare_length:
            self.send_header("Content-Length", str(BIG_BODY))
        self.end_headers()
        chunk = b"<p>" + b"x" * (CHUNK - 3)
        try:
            while record.written < BIG_BODY:
                self.wfile.write(chunk)
                record.written += len(chunk)
        except OSError as exc:
            record.error = type(exc).__name__
        finally:
            record.done.set()


def _page(title: str, text: str) -> bytes:
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        f"<p>{text} It has enough words to count as the main text of a document for extraction.</p>"
        "</main></body></html>"
    ).encode()


WRAPPED_PAGE = b"""<!doctype html><html><head><title>Wrapped</title></head><body><div id="page-content">
<h1>Wrapped</h1>
<p>This module requires the
    service of <code class="module"><a href="proxy.html">mod_proxy</a></code>. It provides support for the
    <a href="https://example.org/">SCGI protocol, version
    1</a>.</p>
<pre>ProxyPass "/scgi-bin/"
    "scgi://localhost:4000/"</pre>
<p>Both <code>mod_proxy</code> and <code>mod_proxy_scgi</code> have&nbsp;to
    be present in the server, which reads its configuration once at startup.</p>
<dl class="variablelist"><dt><span class="term">
     <code class="function">page_info(page bytea) returns record</code>
    </span></dt><dd><p>
      <code class="function">page_info</code> returns information about
      an index metapage, read from the page header.</p></dd></dl>
<p><code class="literal">SET SCHEMA '<em class="replaceable"><code>value</code></em>'</code> is an alias for
      <code class="literal">SET search_path TO <em class="replaceable"><code>value</code></em></code>.</p>
</div></body></html>"""
"""A manual that wraps its paragraphs in the HTML source, as the Apache and PostgreSQL manuals do."""


class ScriptedSite(LoopbackHTTPServer):
    def __init__(self, corpus_base: str = "") -> None:
        self.state = ScriptedState(corpus_base=corpus_base)
        handler = type("BoundScriptedHandler", (ScriptedHandler,), {"state": self.state})
        super().__init__(handler)
