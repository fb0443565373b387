"""A corpus of Markdown, plain text and PDF as well as HTML: extraction, indexing, serving, retrieval.

Real parts throughout: PDFs written by fpdf2 and parsed by pdfminer.six, the corpus server on
127.0.0.1, the SSRF-guarded retriever with its extraction worker process, the SQLite index.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio

from coordinator.compile.evidence import locate
from node.executors.curate import answer_sentences
from node.retrieve import (
    BodyTooLargeError,
    DocumentFormatError,
    NoContentError,
    Retriever,
    RetrieverConfig,
)
from node.retrieve.extract import extract_document, extract_for_index
from node.search.corpus import CorpusError, corpus_files, index_corpus
from node.search.corpus_server import CorpusServer, serve_corpus
from node.search.local import LocalSearchBackend
from tests.node.document_support import BEES_TEXT, LIGHTHOUSE_PAGES, TIDES_MARKDOWN, make_pdf

LOOPBACK_CONFIG = RetrieverConfig.from_allowlist(["127.0.0.1"])


@pytest.fixture
def mixed_corpus(tmp_path: Path) -> Path:
    """tides.md, bees.txt, lighthouses.pdf, page.html, broken.pdf; files the indexer must pass over."""
    root = tmp_path / "corpus"
    (root / "guides").mkdir(parents=True)
    (root / "_sources").mkdir()
    (root / "guides" / "tides.md").write_text(TIDES_MARKDOWN)
    (root / "bees.txt").write_text(BEES_TEXT)
    (root / "guides" / "lighthouses.pdf").write_bytes(
        make_pdf("Lighthouses of the world", LIGHTHOUSE_PAGES, heading="Lighthouses")
    )
    (root / "page.html").write_text(
        "<html><head><title>Kites</title></head><body><main><h1>Kites</h1>"
        "<p>A kite is a tethered craft that flies on the wind.</p></main></body></html>"
    )
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog" + bytes(range(256)) * 4)
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / ".draft.md").write_text("# Draft\n\nNever indexed.\n")
    (root / "_sources" / "page.rst.txt").write_text("Kites\n=====\n\nA Sphinx source copy.\n")
    return root


def _pdf() -> bytes:
    return make_pdf("Lighthouses of the world", LIGHTHOUSE_PAGES, heading="Lighthouses")


# --- extraction ------------------------------------------------------------------------------


def test_pdf_text_is_one_paragraph_per_line_in_reading_order() -> None:
    doc = extract_document(_pdf(), "application/pdf", None, "http://127.0.0.1/l.pdf")
    assert doc.title == "Lighthouses of the world"  # the metadata title
    lines = doc.text.split("\n")
    paragraphs = [p for page in LIGHTHOUSE_PAGES for p in page]
    assert lines == ["Lighthouses", *paragraphs]  # wrapped lines joined, justification spaces collapsed
    assert "\n1\n" not in doc.text and not doc.text.endswith("2")  # page numbers dropped


def test_pdf_sentences_survive_line_wrapping_for_curate() -> None:
    doc = extract_document(_pdf(), "application/pdf", None, "http://127.0.0.1/l.pdf")
    answers = answer_sentences(doc.text, limit=10)
    # Each of these sentences is wrapped over two lines in the PDF.
    assert {
        "The Eddystone Lighthouse guides ships past a dangerous reef in the English Channel, south of the "
        "harbour of Plymouth.",
        "The Fresnel lens bends the light of a single lamp into a narrow horizontal beam that sailors can see "
        "from far out at sea.",
    } <= set(answers)
    for answer in answers:  # what provenance offsets will index: the quote sits at its span
        start, end = locate(answer, doc.text) or (-1, -1)
        assert doc.text[start:end] == answer


def test_markdown_keeps_every_block_and_drops_markup() -> None:
    doc = extract_document(TIDES_MARKDOWN.encode(), "text/markdown", None, "http://127.0.0.1/tides.md")
    assert doc.title == "Tidal energy"
    assert doc.text.split("\n") == [
        "Tidal energy",
        "Tidal energy is a form of hydropower that turns the rise and fall of the sea into electricity. "
        "The tides are driven by the gravitational pull of the Moon and the Sun, "
        "so they can be predicted many years in advance.",
        "Barrages",
        "A tidal barrage is a low dam built across the mouth of an estuary. The La Rance barrage "
        "is a tidal power station on the estuary of the Rance river in Brittany.",
        "The Sihwa Lake station in South Korea is the largest tidal power station in the world.",
        "A barrage changes how sediment settles in the estuary.",
        "turbine output = flow x head",
    ]  # front matter, raw HTML, emphasis and link targets are gone


def test_plain_text_joins_hard_wrapped_sentences_only() -> None:
    doc = extract_document(BEES_TEXT.encode(), "text/plain", None, "http://127.0.0.1/bees.txt")
    paragraphs = doc.text.split("\n\n")
    assert paragraphs[0] == "Honeybees"  # a heading is not glued to the paragraph below it
    assert paragraphs[1].startswith("A honeybee colony is a family of insects that lives together in a single nest")
    assert "\n" not in paragraphs[1] and "\n" not in paragraphs[2] and len(paragraphs) == 3
    listing = extract_document(b"Steps\n- open the hive\n- lift a frame\n", "text/plain", "utf-8", "u").text
    assert listing == "Steps\n- open the hive\n- lift a frame"  # list items stay lines


def test_text_without_a_charset_falls_back_from_utf8_to_cp1252() -> None:
    assert extract_document("Café au lait.".encode(), "text/plain", None, "u").text == "Café au lait."
    assert extract_document("Café au lait.".encode("cp1252"), "text/plain", None, "u").text == "Café au lait."


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not a pdf</html>", "no %PDF- header"),
        (_pdf()[:900], "malformed PDF"),  # truncated mid-file
        (b"%PDF-1.7\n" + bytes(range(256)) * 8, "malformed PDF"),
        (make_pdf("Owls", [["Owls hunt at night."]], user_password="secret"), "encrypted with a password"),
    ],
    ids=["not-pdf", "truncated", "garbage", "password"],
)
def test_unreadable_pdfs_raise_a_clear_document_format_error(body: bytes, message: str) -> None:
    with pytest.raises(DocumentFormatError, match=rf"^http://127\.0\.0\.1/x\.pdf: .*{message}"):
        extract_document(body, "application/pdf", None, "http://127.0.0.1/x.pdf")


def test_a_long_pdf_is_read_only_as_far_as_the_document_bound() -> None:
    from protocol.tasks import MAX_DOCUMENT_CHARS

    paragraph = "Page {n} says that the lamp of lighthouse number {n} was lit every evening at dusk. " * 6
    pages = [[paragraph.format(n=n)] * 5 for n in range(60)]  # ~12,000 characters a page
    text = extract_document(make_pdf("Long", pages), "application/pdf", None, "u").text
    assert MAX_DOCUMENT_CHARS <= len(text) < MAX_DOCUMENT_CHARS + 20_000
    assert "lighthouse number 8 " in text and "lighthouse number 59 " not in text


# --- indexing --------------------------------------------------------------------------------


def test_corpus_files_are_the_served_formats(mixed_corpus: Path) -> None:
    names = [p.relative_to(mixed_corpus).as_posix() for p in corpus_files(mixed_corpus)]
    assert names == ["bees.txt", "broken.pdf", "guides/lighthouses.pdf", "guides/tides.md", "page.html"]


async def test_a_directory_of_every_format_is_indexed_and_searchable(mixed_corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "mixed.sqlite"
    stats = await index_corpus(mixed_corpus, db_path=db, base_url="http://127.0.0.1:9000/")
    assert (stats.pages, stats.failed, stats.skipped) == (4, 1, 0)  # broken.pdf failed
    with sqlite3.connect(db) as connection:
        titles = dict(connection.execute("SELECT url, title FROM pages"))
    assert titles == {
        "http://127.0.0.1:9000/bees.txt": "bees.txt",
        "http://127.0.0.1:9000/guides/lighthouses.pdf": "Lighthouses of the world",
        "http://127.0.0.1:9000/guides/tides.md": "Tidal energy",
        "http://127.0.0.1:9000/page.html": "Kites",
    }
    backend = LocalSearchBackend(db)
    assert [h.url for h in await backend.search("Fresnel lens", 3)] == ["http://127.0.0.1:9000/guides/lighthouses.pdf"]
    assert [h.url for h in await backend.search("barrage estuary", 3)] == ["http://127.0.0.1:9000/guides/tides.md"]
    assert [h.url for h in await backend.search("waggle dance", 3)] == ["http://127.0.0.1:9000/bees.txt"]
    assert await backend.search("sphinx source copy", 3) == []


async def test_an_empty_corpus_names_the_formats_it_looks_for(tmp_path: Path) -> None:
    (tmp_path / "only-images").mkdir()
    (tmp_path / "only-images" / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(CorpusError, match=r"no HTML, Markdown \(\.md\), plain text \(\.txt\) or PDF files"):
        await index_corpus(tmp_path / "only-images", db_path=tmp_path / "x.sqlite")


def test_index_text_is_the_retrieval_text_for_non_html() -> None:
    for body, content_type in ((_pdf(), "application/pdf"), (TIDES_MARKDOWN.encode(), "text/markdown")):
        assert extract_for_index(body, content_type) == extract_document(body, content_type, None, "")


# --- serving and retrieval -------------------------------------------------------------------


def test_the_corpus_server_sends_each_format_with_its_content_type(mixed_corpus: Path) -> None:
    with CorpusServer(mixed_corpus) as server:
        types = {
            name: httpx.get(server.url(name)).headers["content-type"]
            for name in ("guides/tides.md", "bees.txt", "guides/lighthouses.pdf", "page.html")
        }
    assert types == {
        "guides/tides.md": "text/markdown",
        "bees.txt": "text/plain",
        "guides/lighthouses.pdf": "application/pdf",
        "page.html": "text/html",
    }


async def test_each_format_is_retrieved_with_offsets_into_its_extracted_text(mixed_corpus: Path) -> None:
    async with trio.open_nursery() as nursery:
        server: CorpusServer = await nursery.start(serve_corpus, mixed_corpus)
        async with Retriever(LOOPBACK_CONFIG) as retriever:
            for name, content_type in (
                ("guides/lighthouses.pdf", "application/pdf"),
                ("guides/tides.md", "text/markdown"),
                ("bees.txt", "text/plain"),
            ):
                out = await retriever.retrieve(server.url(name))
                body = (mixed_corpus / name).read_bytes()
                assert out.content_type == content_type
                assert out.text == extract_document(body, content_type, None, out.final_url).text
                assert out.content_sha256 == hashlib.sha256(out.text.encode()).hexdigest()
                answers = answer_sentences(out.text, limit=10)
                assert answers, name
                for answer in answers:
                    span = locate(answer, out.text)
                    assert span is not None and out.text[span[0] : span[1]] == answer
        nursery.cancel_scope.cancel()


async def test_broken_empty_and_oversized_pdfs_are_clear_retrieve_errors(mixed_corpus: Path) -> None:
    blank = make_pdf("Blank", [[]])
    (mixed_corpus / "blank.pdf").write_bytes(blank)
    async with trio.open_nursery() as nursery:
        server: CorpusServer = await nursery.start(serve_corpus, mixed_corpus)
        retriever = Retriever(LOOPBACK_CONFIG)
        # Raised in the extraction worker process and carried back whole.
        with pytest.raises(DocumentFormatError, match=r"broken\.pdf: malformed PDF"):
            await retriever.retrieve(server.url("broken.pdf"))
        with pytest.raises(NoContentError, match=r"blank\.pdf: .*scanned PDF has no text layer"):
            await retriever.retrieve(server.url("blank.pdf"))
        size = (mixed_corpus / "guides" / "lighthouses.pdf").stat().st_size
        with pytest.raises(BodyTooLargeError, match=rf"Content-Length {size} exceeds the 1000-byte limit"):
            await retriever.retrieve(server.url("guides/lighthouses.pdf"), max_bytes=1000)
        # The retriever carries on after each refusal.
        assert "Fresnel lens" in (await retriever.retrieve(server.url("guides/lighthouses.pdf"))).text
        nursery.cancel_scope.cancel()


async def test_a_crawl_indexes_linked_markdown_and_pdf(mixed_corpus: Path, tmp_path: Path) -> None:
    (mixed_corpus / "index.html").write_text(
        "<html><body><main><h1>Start</h1><p>Guides for the crawl.</p>"
        "<a href='guides/tides.md'>tides</a> <a href='guides/lighthouses.pdf'>lights</a>"
        "<a href='photo.png'>photo</a></main></body></html>"
    )
    db = tmp_path / "crawl.sqlite"
    async with trio.open_nursery() as nursery:
        server: CorpusServer = await nursery.start(serve_corpus, mixed_corpus)
        stats = await index_corpus(server.url("index.html"), db_path=db, retriever_config=LOOPBACK_CONFIG)
        nursery.cancel_scope.cancel()
    with sqlite3.connect(db) as connection:
        urls = sorted(row[0] for row in connection.execute("SELECT url FROM pages"))
    assert urls == [server.url("guides/lighthouses.pdf"), server.url("guides/tides.md"), server.url("index.html")]
    assert stats.failed == 0
    hits = await LocalSearchBackend(db).search("Fresnel", 3)
    assert [h.url for h in hits] == [server.url("guides/lighthouses.pdf")]
