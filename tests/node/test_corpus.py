"""Corpus indexing (a directory, a crawl) and the corpus server, with real files and real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from node.retrieve import RetrieverConfig
from node.search.corpus import CorpusError, html_files, index_corpus
from node.search.corpus_server import CorpusServer, serve_corpus
from node.search.local import LocalSearchBackend
from tests.node.corpus_support import INDEX_BASE_URL, BuiltIndex

pytest_plugins = ["tests.node.corpus_fixtures"]

LOOPBACK_CONFIG = RetrieverConfig.from_allowlist(["127.0.0.1"])


def _page(title: str, body: str, links: tuple[str, ...] = ()) -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!doctype html><html><head><title>{title} - Site</title></head><body>"
        f"<nav><a href='/'>Home</a> navigationword</nav>"
        f"<main><h1>{title}</h1><p>{body}</p><ul>{anchors}</ul></main>"
        f"<footer>footerword</footer></body></html>"
    )


@pytest.fixture
def small_site(tmp_path: Path) -> Path:
    """index -> a, b, private/c (robots-disallowed), an image, an external link, a mailto."""
    site = tmp_path / "site"
    (site / "private").mkdir(parents=True)
    (site / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    links = (
        "a.html",
        "b.html#section",
        "private/c.html",
        "logo.png",
        "http://example.com/elsewhere.html",
        "mailto:someone@example.com",
    )
    (site / "index.html").write_text(_page("Welcome", "The start of the alphasite.", links))
    (site / "a.html").write_text(_page("Alpha", "Aardvarks are alphabetically first.", ("index.html", "b.html")))
    (site / "b.html").write_text(_page("Beta", "Bumblebees buzz between blossoms."))
    (site / "private" / "c.html").write_text(_page("Secret", "Crocodiles are confidential."))
    (site / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (site / ".hidden.html").write_text(_page("Hidden", "Never indexed."))
    return site


def _urls(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return sorted(row[0] for row in connection.execute("SELECT url FROM pages"))


# --- a directory ----------------------------------------------------------------------------


def test_python_docs_index_every_page(pydoc_index: BuiltIndex, pydoc_dir: Path) -> None:
    total = len(html_files(pydoc_dir))
    assert total > 500
    stats = pydoc_index.stats
    assert (stats.pages, stats.failed, stats.skipped) == (total, 0, 0)
    assert pydoc_index.progress[-1] == (total, total)
    assert [done for done, _ in pydoc_index.progress] == list(range(1, total + 1))
    urls = _urls(pydoc_index.path)
    assert INDEX_BASE_URL + "library/heapq.html" in urls
    assert all(url.startswith(INDEX_BASE_URL) for url in urls)
    print(f"indexed {stats.pages} pages in {stats.seconds:.2f} s ({stats.pages_per_s:.0f} pages/s)")


async def test_directory_index_strips_chrome_and_reindexes_in_place(small_site: Path, tmp_path: Path) -> None:
    db = tmp_path / "small.sqlite"
    stats = await index_corpus(small_site, db_path=db, base_url="http://127.0.0.1:9000/docs")
    assert stats.pages == 4  # index, a, b, private/c; not .hidden.html
    assert _urls(db) == [
        "http://127.0.0.1:9000/docs/a.html",
        "http://127.0.0.1:9000/docs/b.html",
        "http://127.0.0.1:9000/docs/index.html",
        "http://127.0.0.1:9000/docs/private/c.html",
    ]
    backend = LocalSearchBackend(db)
    assert [hit.title for hit in await backend.search("aardvarks", 5)] == ["Alpha"]
    assert await backend.search("navigationword footerword", 5) == []  # nav and footer are not indexed

    (small_site / "b.html").write_text(_page("Beta", "Now about zebras instead."))
    again = await index_corpus(small_site, db_path=db, base_url="http://127.0.0.1:9000/docs")
    assert again.pages == 4 and len(_urls(db)) == 4
    assert await backend.search("bumblebees", 5) == []
    assert [hit.title for hit in await backend.search("zebras", 5)] == ["Beta"]


async def test_directory_index_errors_are_clear(small_site: Path, tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    with pytest.raises(CorpusError, match="is not a directory"):
        await index_corpus(tmp_path / "nowhere", db_path=db)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"no HTML, Markdown .* or PDF files"):
        await index_corpus(tmp_path / "empty", db_path=db)
    with pytest.raises(CorpusError, match="must be an http"):
        await index_corpus(small_site, db_path=db, base_url="file:///srv/")
    with pytest.raises(CorpusError, match="applies to a directory corpus"):
        await index_corpus("http://127.0.0.1:1/", db_path=db, base_url="http://127.0.0.1:2/")


# --- a crawl --------------------------------------------------------------------------------


async def test_crawl_follows_same_origin_links_and_honours_robots(small_site: Path, tmp_path: Path) -> None:
    db = tmp_path / "crawl.sqlite"
    progress: list[tuple[int, int]] = []
    async with trio.open_nursery() as nursery:
        server: CorpusServer = await nursery.start(serve_corpus, small_site)
        stats = await index_corpus(
            server.url("index.html"),
            db_path=db,
            retriever_config=LOOPBACK_CONFIG,
            on_progress=lambda done, total: progress.append((done, total)),
        )
        nursery.cancel_scope.cancel()
    assert _urls(db) == [server.url("a.html"), server.url("b.html"), server.url("index.html")]
    assert stats.pages == 3 and stats.failed == 0
    # Skipped: private/c.html (robots.txt) and `/`, the same page as index.html; the png and the
    # off-site and mailto links were never queued.
    assert stats.skipped == 2
    assert progress[-1] == (3, 3)
    hits = await LocalSearchBackend(db).search("bumblebees", 3)
    assert [hit.url for hit in hits] == [server.url("b.html")]


async def test_crawl_stops_at_the_page_limit(corpus_server: CorpusServer, tmp_path: Path) -> None:
    db = tmp_path / "limit.sqlite"
    stats = await index_corpus(
        corpus_server.url("library/index.html"), db_path=db, max_pages=15, retriever_config=LOOPBACK_CONFIG
    )
    urls = _urls(db)
    assert stats.pages == len(urls) == 15
    assert all(url.startswith(corpus_server.base_url) for url in urls)
    assert corpus_server.url("library/index.html") in urls


async def test_crawl_goes_through_the_ssrf_guard(corpus_server: CorpusServer, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not in the retrieval allowlist"):
        await index_corpus(corpus_server.url("index.html"), db_path=tmp_path / "no.sqlite")
    with pytest.raises(CorpusError, match="scheme 'ftp'"):
        await index_corpus("ftp://127.0.0.1/", db_path=tmp_path / "no.sqlite")


# --- the corpus server ----------------------------------------------------------------------


def _port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_serve_corpus_starts_and_stops_with_its_nursery(small_site: Path) -> None:
    async with trio.open_nursery() as nursery:
        server: CorpusServer = await nursery.start(serve_corpus, small_site)
        assert server.base_url == f"http://127.0.0.1:{server.port}/"
        async with httpx.AsyncClient() as client:  # keeps its connection alive after the request
            response = await client.get(server.url("a.html"))
            assert response.status_code == 200 and "Aardvarks" in response.text
            with trio.fail_after(5):  # an idle keep-alive connection must not hold up the stop
                nursery.cancel_scope.cancel()
    assert _port_is_closed(server.port)


def test_corpus_server_as_a_context_manager(small_site: Path) -> None:
    with CorpusServer(small_site) as server:
        response = httpx.get(server.url("b.html"))
        assert response.status_code == 200 and response.headers["content-type"] == "text/html"
        assert httpx.get(server.url("nothing.html")).status_code == 404
    assert _port_is_closed(server.port)


def test_corpus_server_binds_loopback_only(small_site: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        CorpusServer(small_site, host="0.0.0.0")
    with pytest.raises(FileNotFoundError):
        CorpusServer(small_site / "missing")


def test_a_client_that_hangs_up_mid_body_prints_no_traceback(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The retriever stops reading a body over its size limit; the server must not report that as its error."""
    (tmp_path / "big.html").write_text("<p>" + "word " * 2_000_000 + "</p>")
    with CorpusServer(tmp_path) as server:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(b"GET /big.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                s.recv(1024)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        assert httpx.get(server.url("big.html")).status_code == 200  # still serving
    assert "Traceback" not in capfd.readouterr().err
