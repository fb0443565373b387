"""Building the local search index from a directory of documents or by crawling a site.

Owns: `index_corpus` (what `dataswarm corpus index URL-or-DIR` calls), the directory
walk, the same-origin breadth-first crawl and their progress reporting. A directory holds
HTML, Markdown, plain text and PDF files (`CORPUS_CONTENT_TYPES`, the suffixes the corpus
server serves); a crawl indexes the responses of those types. Pages are read with
`node.retrieve.extract.extract_for_index` under the content type they are served with (for
HTML a cheap structural pass, for the rest the retrieval text); a retrieve task later fetches
the page again and extracts it properly (trafilatura for HTML).

What it must not do: fetch anything except through the SSRF-guarded `Fetcher` (a crawl
URL comes from a person, but the links on the pages it finds do not), or block the trio
thread: file reading, extraction and SQLite all run in worker threads.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import urllib.robotparser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urldefrag, urljoin, urlsplit

import lxml.html  # type: ignore[import-untyped]
import trio
from lxml.etree import ParserError  # type: ignore[import-untyped]

from node.retrieve.config import (
    HTML_CONTENT_TYPES,
    MARKDOWN_CONTENT_TYPES,
    PDF_CONTENT_TYPES,
    RetrieverConfig,
)
from node.retrieve.errors import RetrieveError
from node.retrieve.extract import ExtractedText, extract_for_index
from node.retrieve.fetch import FetchedPage, Fetcher
from node.retrieve.ssrf import check_url
from node.search import index_db
from node.search.corpus_server import CORPUS_CONTENT_TYPES

ProgressCallback = Callable[[int, int], None]
"""on_progress(done, total): pages handled so far and the current total (a crawl's grows)."""

DEFAULT_CORPUS_PORT = 8765
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_CORPUS_PORT}/"
"""Where a directory corpus is assumed to be served when no base URL is given (see corpus_server)."""
DEFAULT_MAX_PAGES = 10_000
DEFAULT_CRAWL_PAGES = 500
CRAWL_CONCURRENCY = 4
_BATCH = 32

_SKIP_EXTENSIONS = frozenset(
    {
        ".css",
        ".js",
        ".json",
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".svg",
        ".ico",
        ".webp",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".tar",
        ".whl",
        ".exe",
        ".mp3",
        ".mp4",
        ".webm",
        ".woff",
        ".woff2",
        ".ttf",
        ".eot",
        ".epub",
    }
)
"""Links not worth a request in a crawl (the fetcher would refuse most by content type anyway)."""
CRAWL_INDEXED_TYPES = HTML_CONTENT_TYPES | MARKDOWN_CONTENT_TYPES | PDF_CONTENT_TYPES | {"text/plain"}
"""Responses a crawl indexes (only HTML is searched for links). XML is not: feeds and sitemaps are not prose."""
_GENERATOR_FOLDERS = frozenset({"_sources", "_static"})
"""Skipped in a directory corpus: a Sphinx build's copies of its reST sources (`_sources/*.rst.txt`,
497 of them beside the 530 pages of the Python docs) and its assets. The HTML pages are the documents."""
_SITE_FILES = frozenset({"robots.txt", "humans.txt", "security.txt", "ads.txt", "llms.txt"})
"""Plain text files that instruct crawlers or name the site's people; not documents."""
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class CorpusError(Exception):
    """The corpus source cannot be indexed; the message says why and what to do."""


@dataclass(frozen=True)
class IndexStats:
    source: str
    db_path: Path
    pages: int
    """Pages written to the index."""
    skipped: int
    """Pages with no text, or (crawl) responses of a type that is not indexed."""
    failed: int
    """Files that could not be read or parsed (a broken PDF), or URLs that could not be fetched (refusals included)."""
    seconds: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


async def index_corpus(
    source: str | Path,
    *,
    db_path: Path,
    base_url: str | None = None,
    max_pages: int | None = None,
    retriever_config: RetrieverConfig | None = None,
    on_progress: ProgressCallback | None = None,
) -> IndexStats:
    """Index a directory of documents or crawl a site into the index at `db_path`.

    - A directory: every HTML, Markdown, plain text and PDF file below it (sorted; the
      suffixes in `CORPUS_CONTENT_TYPES`), served as `base_url` + relative path (default
      DEFAULT_BASE_URL).
    - An http(s) URL: a same-origin breadth-first crawl of at most `max_pages` pages
      (default DEFAULT_CRAWL_PAGES) through the SSRF-guarded fetcher configured by
      `retriever_config` (a loopback site needs its allowlist), honouring robots.txt.

    Re-indexing updates pages with the same URL and keeps the others. `on_progress` runs
    in the trio thread. Raises CorpusError for a source that cannot be indexed at all.
    """
    if isinstance(source, str) and _URL_SCHEME.match(source):
        if base_url is not None:
            raise CorpusError("--base-url applies to a directory corpus; a crawl stores the URLs it fetched")
        return await crawl_site(
            source,
            db_path=db_path,
            max_pages=max_pages or DEFAULT_CRAWL_PAGES,
            config=retriever_config,
            on_progress=on_progress,
        )
    return await index_directory(
        Path(source),
        db_path=db_path,
        base_url=base_url or DEFAULT_BASE_URL,
        max_pages=max_pages,
        on_progress=on_progress,
    )


# --- a directory ----------------------------------------------------------------------------


def corpus_files(directory: Path) -> list[Path]:
    """The documents below `directory` (suffixes in `CORPUS_CONTENT_TYPES`), sorted.

    Hidden files and folders are skipped, and so are `_GENERATOR_FOLDERS` and `_SITE_FILES`."""
    found = [
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in CORPUS_CONTENT_TYPES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        and not any(part in _GENERATOR_FOLDERS for part in path.relative_to(directory).parts[:-1])
        and path.name.lower() not in _SITE_FILES
    ]
    return sorted(found)


html_files = corpus_files
"""The old name (bench/retrieval.py and tests use it); a directory corpus is no longer HTML only."""

SUPPORTED_FORMATS = "HTML, Markdown (.md), plain text (.txt) or PDF"


def url_for(base_url: str, relative: PurePosixPath) -> str:
    return base_url.rstrip("/") + "/" + quote(relative.as_posix(), safe="/")


def _extract_file(path: Path) -> ExtractedText | None:
    """None when the file cannot be read, or (a broken PDF) parsed."""
    try:
        body = path.read_bytes()
    except OSError:
        return None
    try:
        return extract_for_index(body, CORPUS_CONTENT_TYPES[path.suffix.lower()], path.name)
    except RetrieveError:
        return None  # counted as failed; a retrieve task would meet the same DocumentFormatError


async def index_directory(
    directory: Path,
    *,
    db_path: Path,
    base_url: str = DEFAULT_BASE_URL,
    max_pages: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> IndexStats:
    """Index the documents below `directory` as served under `base_url` (see `index_corpus`).

    One worker thread reads, extracts and writes: 2 processes were slower
    (docs/notes/retrieval.md#indexing-in-one-thread).
    """
    if not directory.is_dir():
        raise CorpusError(f"{directory} is not a directory (give a directory of documents or an http(s) URL)")
    if not _URL_SCHEME.match(base_url) or urlsplit(base_url).scheme not in ("http", "https"):
        raise CorpusError(f"base URL {base_url!r} must be an http(s) URL, e.g. {DEFAULT_BASE_URL}")
    files = corpus_files(directory)[: max_pages or DEFAULT_MAX_PAGES]
    if not files:
        suffixes = " ".join(sorted(CORPUS_CONTENT_TYPES))
        raise CorpusError(f"no {SUPPORTED_FORMATS} files under {directory} (looked for {suffixes})")
    started = time.perf_counter()
    pages, skipped, failed = await trio.to_thread.run_sync(
        _index_files, directory, files, db_path, base_url, on_progress
    )
    return IndexStats(
        source=str(directory),
        db_path=db_path,
        pages=pages,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - started,
    )


def _index_files(
    directory: Path,
    files: Sequence[Path],
    db_path: Path,
    base_url: str,
    on_progress: ProgressCallback | None,
) -> tuple[int, int, int]:
    """Runs in a worker thread: read, extract, write in batches, report progress to the trio thread."""
    pages = skipped = failed = 0
    connection = index_db.open_for_writing(db_path)
    try:
        batch: list[tuple[str, str, str]] = []
        for done, path in enumerate(files, start=1):
            result = _extract_file(path)
            if result is None:
                failed += 1
            elif not result.text:
                skipped += 1
            else:
                relative = PurePosixPath(path.relative_to(directory).as_posix())
                batch.append((url_for(base_url, relative), result.title or relative.name, result.text))
            if len(batch) >= _BATCH or done == len(files):
                pages += index_db.upsert_pages(connection, batch)
                batch.clear()
            if on_progress is not None:
                trio.from_thread.run_sync(on_progress, done, len(files))
            trio.from_thread.check_cancelled()
        index_db.set_meta(connection, {"base_url": base_url.rstrip("/") + "/", "source": str(directory)})
        index_db.optimize(connection)
        connection.commit()
    finally:
        connection.close()
    return pages, skipped, failed


# --- a crawl --------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int]:
    checked = check_url(url)
    return checked.scheme, checked.host, checked.port


def _worth_fetching(url: str) -> bool:
    path = PurePosixPath(urlsplit(url).path)
    return path.suffix.lower() not in _SKIP_EXTENSIONS and path.name.lower() not in _SITE_FILES


def parse_for_crawl(body: bytes, page_url: str, content_type: str = "text/html") -> tuple[ExtractedText, list[str]]:
    """Index text and the absolute, fragment-free http(s) links of one page (worker thread).

    Only HTML is searched for links; a broken PDF gives no text (the page is skipped)."""
    links: list[str] = []
    if content_type not in HTML_CONTENT_TYPES:
        try:
            return extract_for_index(body, content_type, page_url), links
        except RetrieveError:
            return ExtractedText(title="", text=""), links
    try:
        document = lxml.html.fromstring(body)
    except (ParserError, ValueError):
        return ExtractedText(title="", text=""), links
    base = document.find(".//base[@href]")
    base_url = urljoin(page_url, base.get("href")) if base is not None else page_url
    for href in document.xpath("//a/@href"):
        target, _fragment = urldefrag(urljoin(base_url, str(href).strip()))
        if target.startswith(("http://", "https://")) and target not in links:
            links.append(target)
    return extract_for_index(body), links


async def _load_robots(fetcher: Fetcher, start_url: str) -> urllib.robotparser.RobotFileParser | None:
    robots_url = urljoin(start_url, "/robots.txt")
    try:
        page = await fetcher.fetch(robots_url, max_bytes=500_000)
    except RetrieveError:
        return None  # no robots.txt (or none we may read): everything is allowed
    parser = urllib.robotparser.RobotFileParser(robots_url)
    parser.parse(page.body.decode(page.charset or "utf-8", errors="replace").splitlines())
    return parser


async def crawl_site(
    start_url: str,
    *,
    db_path: Path,
    max_pages: int = DEFAULT_CRAWL_PAGES,
    config: RetrieverConfig | None = None,
    on_progress: ProgressCallback | None = None,
    concurrency: int = CRAWL_CONCURRENCY,
    respect_robots: bool = True,
) -> IndexStats:
    """Breadth-first crawl of `start_url`'s origin, indexing up to `max_pages` documents (HTML, Markdown, text, PDF)."""
    started = time.perf_counter()
    try:
        origin = _origin(start_url)
        start = check_url(start_url).url
    except RetrieveError as exc:
        raise CorpusError(f"cannot crawl {start_url}: {exc}") from None
    frontier: list[str] = [start]
    seen = {start}
    texts_seen: set[bytes] = set()
    pages = skipped = failed = attempts = 0
    max_attempts = max_pages * 3  # bounds the work when most links fail or are not HTML
    connection = await trio.to_thread.run_sync(index_db.open_for_writing, db_path)
    try:
        async with Fetcher(config or RetrieverConfig()) as fetcher:
            robots = await _load_robots(fetcher, start) if respect_robots else None
            user_agent = fetcher.config.user_agent
            while frontier and pages < max_pages and attempts < max_attempts:
                batch, frontier = frontier[:concurrency], frontier[concurrency:]
                attempts += len(batch)
                results: list[FetchedPage | RetrieveError | None] = [None] * len(batch)

                async def fetch_one(index: int, url: str, results: list[FetchedPage | RetrieveError | None]) -> None:
                    if robots is not None and not robots.can_fetch(user_agent, url):
                        results[index] = None
                        return
                    try:
                        results[index] = await fetcher.fetch(url)
                    except RetrieveError as exc:
                        results[index] = exc

                async with trio.open_nursery() as nursery:
                    for index, url in enumerate(batch):
                        nursery.start_soon(fetch_one, index, url, results)

                rows: list[tuple[str, str, str]] = []
                for url, result in zip(batch, results, strict=True):  # in batch order: a deterministic crawl
                    if result is None:
                        skipped += 1
                        continue
                    if isinstance(result, RetrieveError):
                        if url == start:
                            raise CorpusError(f"cannot crawl {start_url}: {result}")
                        failed += 1
                        continue
                    if result.content_type not in CRAWL_INDEXED_TYPES or not _same_origin(result.final_url, origin):
                        skipped += 1  # not a document, or redirected off the site
                        continue
                    extracted, links = await trio.to_thread.run_sync(
                        parse_for_crawl, result.body, result.final_url, result.content_type
                    )
                    for link in links:
                        if link not in seen and _worth_fetching(link) and _same_origin(link, origin):
                            seen.add(link)
                            frontier.append(link)
                    digest = hashlib.sha256(extracted.text.encode()).digest()
                    if extracted.text and digest not in texts_seen and pages + len(rows) < max_pages:
                        texts_seen.add(digest)
                        rows.append((result.final_url, extracted.title or result.final_url, extracted.text))
                    else:  # empty, over the limit, or the same page under a second URL (`/` and `/index.html`)
                        skipped += 1
                if rows:  # committed per batch, so an interrupted crawl keeps what it indexed
                    pages += await trio.to_thread.run_sync(_write_batch, connection, rows)
                if on_progress is not None:
                    on_progress(pages, min(max_pages, pages + len(frontier)))
        await trio.to_thread.run_sync(_finish_crawl, connection, start)
    finally:
        connection.close()
    return IndexStats(
        source=start_url,
        db_path=db_path,
        pages=pages,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - started,
    )


def _same_origin(url: str, origin: tuple[str, str, int]) -> bool:
    try:
        return _origin(url) == origin
    except RetrieveError:
        return False


def _write_batch(connection: sqlite3.Connection, rows: list[tuple[str, str, str]]) -> int:
    written = index_db.upsert_pages(connection, rows)
    connection.commit()
    return written


def _finish_crawl(connection: sqlite3.Connection, start: str) -> None:
    index_db.set_meta(connection, {"source": start})
    index_db.optimize(connection)
    connection.commit()
