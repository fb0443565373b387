"""Search backends: BM25 over the indexed Python docs, SearXNG against a fake JSON server, ddgs absent."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from node.executors.base import ExecutionError
from node.executors.search import SearchExecutor
from node.search import (
    MalformedResponseError,
    SearchBackendError,
    SearchBackendUnavailable,
    SearchConfig,
    build_backend,
)
from node.search.corpus_server import LoopbackHTTPServer
from node.search.local import LocalSearchBackend, fts_query
from node.search.searxng import SearxngBackend
from protocol.tasks import RetrievePayload, SearchOutput, SearchPayload
from tests.node.corpus_support import INDEX_BASE_URL, BuiltIndex

pytest_plugins = ["tests.node.corpus_fixtures"]


# --- local: BM25 over the Python docs --------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("heap queue priority", "library/heapq.html"),
        ("regular expression match groups", "library/re.html"),
        ("json encode decode serialize", "library/json.html"),
        ("sqlite database", "library/sqlite3.html"),
        ("socket network interface", "library/socket.html"),
        ("decimal fixed point floating point arithmetic", "library/decimal.html"),
    ],
)
async def test_local_search_ranks_the_relevant_page_in_the_top_3(
    pydoc_index: BuiltIndex, query: str, page: str
) -> None:
    hits = await LocalSearchBackend(pydoc_index.path).search(query, 10)
    urls = [hit.url for hit in hits]
    assert INDEX_BASE_URL + page in urls[:3], urls[:5]


async def test_local_hits_carry_title_snippet_and_descending_scores(pydoc_index: BuiltIndex) -> None:
    hits = await LocalSearchBackend(pydoc_index.path).search("heap queue priority", 5)
    assert len(hits) == 5
    top = hits[0]
    assert top.url == INDEX_BASE_URL + "library/heapq.html"
    assert top.title == "heapq — Heap queue algorithm"
    assert "heap" in top.snippet.lower() and 0 < len(top.snippet) <= 2000
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


async def test_stemming_finds_inflected_forms(pydoc_index: BuiltIndex) -> None:
    hits = await LocalSearchBackend(pydoc_index.path).search("heaps queues", 3)
    assert INDEX_BASE_URL + "library/heapq.html" in [hit.url for hit in hits]


async def test_max_results_is_respected(pydoc_index: BuiltIndex) -> None:
    backend = LocalSearchBackend(pydoc_index.path)
    assert len(await backend.search("python", 1)) == 1
    assert len(await backend.search("python", 50)) == 50


@pytest.mark.parametrize(
    "query",
    ['title:heapq OR NEAR(a b) "unterminated', "-- ; DROP TABLE pages; --", "*", "AND OR NOT", 'heapq" OR "x'],
)
async def test_fts_syntax_in_queries_is_inert(pydoc_index: BuiltIndex, query: str) -> None:
    hits = await LocalSearchBackend(pydoc_index.path).search(query, 5)
    assert isinstance(hits, list)  # no sqlite error: every word is a quoted term


async def test_query_without_words_returns_nothing(pydoc_index: BuiltIndex) -> None:
    assert await LocalSearchBackend(pydoc_index.path).search("?!  …", 5) == []
    assert fts_query("Heap heap QUEUE") == '"heap" OR "queue"'


async def test_base_url_rebases_hits_onto_the_serving_port(pydoc_index: BuiltIndex) -> None:
    backend = LocalSearchBackend(pydoc_index.path, base_url="http://127.0.0.1:40123")
    hits = await backend.search("heap queue priority", 1)
    assert hits[0].url == "http://127.0.0.1:40123/library/heapq.html"


def test_missing_index_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(SearchBackendUnavailable, match="dataswarm corpus index"):
        LocalSearchBackend(tmp_path / "none.sqlite")
    not_an_index = tmp_path / "junk.sqlite"
    not_an_index.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SearchBackendUnavailable, match="not a dataswarm search index"):
        LocalSearchBackend(not_an_index)


def test_build_backend_from_config(pydoc_index: BuiltIndex) -> None:
    backend = build_backend(SearchConfig(backend="local", index_path=pydoc_index.path))
    assert backend.name == "local"
    assert build_backend(SearchConfig(backend="searxng", searxng_url="http://127.0.0.1:9/")).name == "searxng"
    with pytest.raises(SearchBackendUnavailable, match="index path"):
        build_backend(SearchConfig(backend="local"))
    with pytest.raises(SearchBackendUnavailable, match="searxng_url"):
        build_backend(SearchConfig(backend="searxng"))


@pytest.mark.skipif(importlib.util.find_spec("ddgs") is not None, reason="ddgs is installed here")
def test_ddgs_without_the_package_says_how_to_enable_it() -> None:
    with pytest.raises(SearchBackendUnavailable, match="pip install ddgs"):
        build_backend(SearchConfig(backend="ddgs"))


async def test_search_executor_with_the_local_backend(pydoc_index: BuiltIndex) -> None:
    executor = SearchExecutor.from_config(SearchConfig(index_path=pydoc_index.path))
    result = await executor.execute(SearchPayload(query="heap queue priority", max_results=3), None, None)
    assert isinstance(result.output, SearchOutput)
    assert result.output.backend == "local"
    assert len(result.output.hits) == 3
    assert result.output.hits[0].url.endswith("/library/heapq.html")
    with pytest.raises(ExecutionError, match="not a SearchPayload"):
        await executor.execute(RetrievePayload(url="http://127.0.0.1/"), None, None)


def test_search_executor_built_without_a_backend_says_what_is_missing() -> None:
    with pytest.raises(SearchBackendUnavailable, match="needs an index path"):
        SearchExecutor()


# --- searxng: against a fake SearXNG JSON server ---------------------------------------------


def _result(n: int) -> dict[str, Any]:
    return {
        "url": f"https://example.org/page/{n}",
        "title": f"Result {n}",
        "content": f"Snippet of result {n}.",
        "engine": "fake",
        "score": 10.0 - n / 10,
        "parsed_url": ["https", "example.org", f"/page/{n}", "", "", ""],
    }


class FakeSearxng(BaseHTTPRequestHandler):
    """`/<mode>/search?q=…&format=json&pageno=N` answers like SearXNG would, or breaks in `mode`'s way."""

    requests: list[dict[str, list[str]]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        type(self).requests.append(query)
        mode = parts.path.strip("/").split("/")[0]
        page = int(query.get("pageno", ["1"])[0])
        if mode == "good":  # 12 results a page, 2 pages, with a duplicate and a non-http URL on page 1
            results = [_result(n) for n in range((page - 1) * 12, min(page * 12, 24))]
            if page == 1:
                results += [_result(0), {**_result(99), "url": "magnet:?xt=urn:btih:abc"}]
            self._json({"query": query["q"][0], "number_of_results": 24, "results": results, "answers": []})
        elif mode == "notjson":
            self._send(200, "text/html", b"<html><body>SearXNG</body></html>")
        elif mode == "noresults":
            self._json({"query": "x", "answers": []})
        elif mode == "resultsnotlist":
            self._json({"results": {"url": "https://example.org/"}})
        elif mode == "badentries":
            self._json({"results": [{"title": "no url"}, {"url": 42}, "just a string"]})
        elif mode == "forbidden":
            self._send(403, "text/html", b"Forbidden")
        elif mode == "huge":
            self._send(200, "application/json", b'{"results": [' + b" " * 3_000_000 + b"]}")
        else:
            self._send(404, "text/plain", b"not found")

    def _json(self, document: Any) -> None:
        self._send(200, "application/json", json.dumps(document).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def searxng() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    requests: list[dict[str, list[str]]] = []
    handler = type("BoundFakeSearxng", (FakeSearxng,), {"requests": requests})
    with LoopbackHTTPServer(handler) as server:
        yield server.base_url, requests


async def test_searxng_returns_hits_in_order_across_pages(searxng: tuple[str, list[dict[str, list[str]]]]) -> None:
    base, requests = searxng
    requests.clear()
    hits = await SearxngBackend(base + "good/").search("heap queue", 20)
    assert [hit.url for hit in hits] == [f"https://example.org/page/{n}" for n in range(20)]
    assert hits[0].title == "Result 0" and hits[0].snippet == "Snippet of result 0." and hits[0].score == 10.0
    assert [r["pageno"] for r in requests] == [["1"], ["2"]]
    assert all(r["q"] == ["heap queue"] and r["format"] == ["json"] for r in requests)


async def test_searxng_stops_at_max_results(searxng: tuple[str, list[dict[str, list[str]]]]) -> None:
    base, requests = searxng
    requests.clear()
    hits = await SearxngBackend(base + "good").search("x", 5)
    assert len(hits) == 5 and len(requests) == 1


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("notjson", MalformedResponseError, "not JSON"),
        ("noresults", MalformedResponseError, "without a 'results' list"),
        ("resultsnotlist", MalformedResponseError, "without a 'results' list"),
        ("badentries", MalformedResponseError, "none with an http"),
        ("huge", MalformedResponseError, "more than 2000000 bytes"),
        ("forbidden", SearchBackendError, "search.formats"),
        ("nosuchpath", SearchBackendError, "HTTP 404"),
    ],
)
async def test_malformed_searxng_answers_are_clear_errors(
    searxng: tuple[str, list[dict[str, list[str]]]], mode: str, error: type[Exception], message: str
) -> None:
    base, _ = searxng
    with pytest.raises(error, match=message):
        await SearxngBackend(base + mode).search("x", 10)


async def test_unreachable_searxng_is_a_backend_error() -> None:
    server = LoopbackHTTPServer(FakeSearxng)  # bound, then closed: nothing listens on the port
    server.stop()
    with pytest.raises(SearchBackendError, match="cannot reach SearXNG"):
        await SearxngBackend(server.base_url).search("x", 10)


async def test_search_executor_reports_backend_failures(searxng: tuple[str, list[dict[str, list[str]]]]) -> None:
    base, _ = searxng
    executor = SearchExecutor(SearxngBackend(base + "notjson"))
    with pytest.raises(ExecutionError, match=r"'searxng' failed.*not JSON"):
        await executor.execute(SearchPayload(query="x"), None, None)
    good_executor = SearchExecutor(SearxngBackend(base + "good"))
    good = await good_executor.execute(SearchPayload(query="x", max_results=3), None, None)
    assert isinstance(good.output, SearchOutput) and good.output.backend == "searxng" and len(good.output.hits) == 3
