"""From a fetched body to (title, main text) by content type: trafilatura for HTML, a cheap pass for indexing.

Owns: `extract_document` (what a retrieve task returns: for HTML and XML trafilatura's main-text
extraction, for Markdown, plain text and PDF the one text `documents.py` makes of them; the
text an evidence quote must come from) and `extract_for_index` (for HTML a structural lxml
pass, ~7x faster and good enough to rank pages, docs/notes/retrieval.md#index-extraction; for
the other formats the same text as retrieval). Both are synchronous and CPU-bound, never for the
event loop. libxml2 under them has segfaulted in concurrent threads, so the retriever runs
`extract_document` in a worker process (retriever.py); the indexer runs one thread at a time.

What it must not do: any I/O, or decide what may be fetched.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import lxml.html  # type: ignore[import-untyped]
import trafilatura
from lxml import etree
from lxml.etree import ParserError  # type: ignore[import-untyped]
from trafilatura.metadata import extract_title

from node.retrieve.config import HTML_CONTENT_TYPES, MARKDOWN_CONTENT_TYPES, PDF_CONTENT_TYPES
from node.retrieve.documents import ExtractedText, markdown_text, pdf_text, plain_text

_TRAILING_MARKS = " \t\n¶#"
"""Sphinx and similar generators append a permalink mark (¶) to headings."""

_INDEX_DROP_XPATH = (
    "//script|//style|//noscript|//template|//svg|//nav|//header|//footer|//form"
    "|//*[@role='navigation' or @role='banner' or @role='contentinfo' or @role='search']"
    "|//*[@aria-hidden='true']"
    "|//*[contains(concat(' ', normalize-space(@class), ' '), ' sphinxsidebar ')]"
    "|//*[contains(concat(' ', normalize-space(@class), ' '), ' related ')]"
    "|//*[contains(concat(' ', normalize-space(@class), ' '), ' headerlink ')]"
)
_INDEX_MAIN_XPATH = "//main|//*[@role='main']|//article"
_SPACES = re.compile(r"\s+")
_HTML_SPACES = re.compile(r"[ \t\n\r\f]+")
"""HTML's own whitespace: a no-break space (U+00A0) is text, not layout."""
_PREFORMATTED = ("pre", "textarea", "listing", "xmp", "plaintext")
_BLOCK_TEXT = (
    "address article aside blockquote dd details dialog div dl dt fieldset figcaption figure footer form h1 h2 h3 "
    "h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot th thead tr ul"
)
_BLOCKS = frozenset(_BLOCK_TEXT.split())
"""Elements laid out as blocks: whitespace around them separates blocks, which trafilatura reads as line breaks."""


def _collapse_whitespace(tree: Any) -> None:
    """Render whitespace as a browser does: outside preformatted elements a run of spaces and line breaks is one
    space. trafilatura keeps the source's line breaks around inline elements, so a manual that wraps its
    paragraphs in the HTML source (the Apache and PostgreSQL manuals) came out one line per source line, and a
    sentence split at each (docs/notes/retrieval.md#wrapped-html). A `<code>` whose text breaks lines is laid
    out by its stylesheet as a block of code, and is kept too."""
    kept: set[Any] = set()
    for element in tree.iter(*_PREFORMATTED, "code"):
        if element.tag != "code" or "\n" in (element.text or ""):
            kept.update(element.iter())
    # Markup inside inline code ("SET SCHEMA '<em><code>value</code></em>'") is laid out as the code's own text;
    # trafilatura moved the inner text out of place ("SET SCHEMA ' is an alias for value'SET search_path").
    for code in [c for c in tree.iter("code") if len(c) and c not in kept]:
        if code.getparent() is not None and not any(a.tag == "code" for a in code.iterancestors()):
            etree.strip_tags(code, "*")
    for element in tree.iter():
        first = element[0] if len(element) else None
        before_block = first is not None and first.tag in _BLOCKS and not (element.text or "").strip()
        if element.text and element not in kept and not before_block:
            element.text = _HTML_SPACES.sub(" ", element.text)
        parent = element.getparent()
        if element.tail and element.tag not in _BLOCKS and (parent is None or parent not in kept):
            element.tail = _HTML_SPACES.sub(" ", element.tail)
    # A block starts and ends on a line of its own. trafilatura joins some blocks with nothing between them
    # (a <dt> and its <dd>: "returns record gin_metapage_info returns ..."), and kept them apart only by the
    # source's line breaks; whitespace at a block's edge is not rendered, so it can be a line break.
    for element in tree.iter(*_BLOCKS):
        if element in kept:
            continue
        if element.text and not element.text[0].strip():
            element.text = "\n" + element.text.lstrip(" \t\n\r\f")
        node, attr = _last_text(element)
        text = getattr(node, attr)
        if text and not text[-1].strip():
            setattr(node, attr, text.rstrip(" \t\n\r\f") + "\n")


def _last_text(block: Any) -> tuple[Any, str]:
    """Where a block's rendered text ends: the tail of its last inline descendant, or the text of the innermost
    last one ("</code>\n    </span></dt>": the code's tail)."""
    node = block
    while len(node) and node[-1].tag not in _BLOCKS:
        last = node[-1]
        if last.tail:
            return last, "tail"
        node = last
    return node, "text"


def _clean_title(title: str | None) -> str:
    return _SPACES.sub(" ", title or "").strip().rstrip(_TRAILING_MARKS).strip()


def _decode(body: bytes, charset: str | None) -> str | None:
    """Decode with the server's charset if it names a real codec; None means "let the parser guess"."""
    if charset is None:
        return None
    try:
        codecs.lookup(charset)
    except LookupError:
        return None
    return body.decode(charset, errors="replace")


def extract_document(body: bytes, content_type: str, charset: str | None, url: str) -> ExtractedText:
    """The main text and title of a fetched page, as a retrieve task returns them.

    HTML and XML go through trafilatura (comments excluded, tables kept; its own
    baseline extraction is the fallback when it finds no main block). Plain text keeps
    its lines, except that hard-wrapped sentences are joined; Markdown and PDF become one
    block per line (documents.py; a broken PDF raises DocumentFormatError). No truncation
    happens here.
    """
    if content_type == "text/plain":
        return plain_text(body, charset)
    if content_type in MARKDOWN_CONTENT_TYPES:
        return markdown_text(body, charset)
    if content_type in PDF_CONTENT_TYPES:
        return pdf_text(body, url)
    decoded = _decode(body, charset)
    tree = trafilatura.load_html(decoded if decoded is not None else body)
    if tree is None:
        return ExtractedText(title="", text="")
    title = _clean_title(extract_title(tree))
    _collapse_whitespace(tree)
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        include_comments=False,
        include_tables=True,
        with_metadata=False,
        deduplicate=False,
    )
    text = getattr(document, "text", None) or ""
    if not text.strip():
        _element, text, _length = trafilatura.baseline(decoded if decoded is not None else body)
    if not title and content_type in HTML_CONTENT_TYPES:
        title = _clean_title(tree.findtext(".//title"))
    return ExtractedText(title=title, text=str(text).strip())


def extract_for_index(body: bytes, content_type: str = "text/html", url: str = "") -> ExtractedText:
    """A fast structural extraction for the search index: title plus the text of the main region.

    Markdown, plain text and PDF are indexed as `extract_document` extracts them (they have no
    boilerplate to drop, and the cheap pass would not be cheaper); the rest is parsed as HTML.
    Drops scripts, navigation, headers, footers and sidebars, keeps `<main>`,
    `[role=main]` or `<article>` if the page has one (else `<body>`), and collapses
    whitespace. Indexing needs words to rank, not clean prose (docs/notes/retrieval.md#index-extraction).
    """
    if content_type == "text/plain" or content_type in MARKDOWN_CONTENT_TYPES or content_type in PDF_CONTENT_TYPES:
        return extract_document(body, content_type, None, url)
    try:
        document = lxml.html.fromstring(body)
    except (ParserError, ValueError):
        return ExtractedText(title="", text="")
    title = _clean_title(document.findtext(".//title"))
    for element in document.xpath(_INDEX_DROP_XPATH):
        element.drop_tree()
    main = document.xpath(_INDEX_MAIN_XPATH)
    root = main[0] if main else (document.find(".//body") if document.find(".//body") is not None else document)
    # itertext with a separator: text_content() would glue "<h1>Alpha</h1><p>Aardvarks" into one word.
    text = _SPACES.sub(" ", " ".join(root.itertext())).strip()
    h1 = root.find(".//h1")
    if h1 is not None:
        heading = _clean_title(h1.text_content())
        if heading:
            title = heading
    return ExtractedText(title=title, text=text)


__all__ = ["ExtractedText", "extract_document", "extract_for_index"]
