"""Markdown, plain text and PDF to (title, text): the formats besides HTML that a corpus may hold.

Owns: `markdown_text`, `plain_text` and `pdf_text`, each the *one* text a document of that type
becomes, for retrieval and for the search index alike (`extract.py` dispatches on content type).
The text is laid out like trafilatura's HTML output: one block (paragraph, heading, list item)
per line, so curate's sentence and chunk rules treat every format the same. Evidence offsets and
`content_sha256` refer to this text after the retriever's truncation (retriever.py), so nothing
here may depend on anything but the body and its declared charset: every node must produce the
same string.

Choices, and why:
- **PDF: pdfminer.six**, not pypdf: slower, but its layout analysis gives paragraphs where pypdf
  gives only lines; what it still splits is joined by `_join_wrapped` (docs/notes/retrieval.md#pdf-extraction).
- **Markdown: markdown-it-py's token stream**, not "render to HTML, then trafilatura".
  trafilatura, made for web pages, dropped the headings and list items of a rendered Markdown
  page (its boilerplate heuristics); a Markdown file has no navigation to remove, so every block
  is kept. markdown-it-py is CommonMark-compliant, maintained (executablebooks) and already
  installed as rich's dependency.
- **Plain text**: lines hard-wrapped inside a sentence are joined; nothing else changes.

Bounds: a PDF is read up to `MAX_PDF_PAGES` pages and stops once its text passes
`MAX_DOCUMENT_CHARS` (the retriever keeps no more), which bounds the parse time of a long
document; the body itself is capped by the fetcher and the parse by the worker's deadline.
A body that is not a readable PDF raises `DocumentFormatError` with the URL and the reason.

What it must not do: any I/O, or run in the event loop's thread (a PDF takes ~25 ms a page):
the retriever calls it in its extraction worker process, the indexer in a worker thread.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

from node.retrieve.errors import DocumentFormatError
from protocol.tasks import MAX_DOCUMENT_CHARS

MAX_PDF_PAGES = 500
"""Pages read at most: about 12 s, inside the 30 s extraction deadline (docs/notes/retrieval.md#pdf-extraction)."""
PDF_MAGIC_WINDOW = 1024
"""Readers accept `%PDF-` anywhere in the first KiB (junk before it is common)."""
HEADING_MAX_WORDS = 6
"""A line this short that does not end a sentence is a heading, unless the next line goes on in lower case."""

_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]]*$")
_LIST_MARKER = re.compile(r"^(?:[-*+•◦▪‣]|\d{1,3}[.)]|[a-zA-Z][.)])\s")
_RULE = re.compile(r"^[\W_]+$")
"""A line of punctuation only (`=====`, `----`): a setext underline or a separator."""
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?$", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n.*?\n(?:---|\+\+\+|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_SOFT_HYPHEN = re.compile(r"(?<=[^\W\d_])-$")


@dataclass(frozen=True)
class ExtractedText:
    """What any extractor returns (defined here, below extract.py, which re-exports it)."""

    title: str
    text: str


def decode_text(body: bytes, charset: str | None) -> str:
    """The server's charset if it names a codec, else UTF-8 (BOM dropped), else cp1252; never fails."""
    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


# --- joining wrapped lines (plain text and PDF) ----------------------------------------------


def _continues(previous: str, line: str) -> bool:
    """Whether `line` goes on with the sentence `previous` left open (a hard wrap), not a new block."""
    if not previous or not line or _SENTENCE_END.search(previous):
        return False
    if _LIST_MARKER.match(line) or _RULE.match(line) or _RULE.match(previous):
        return False
    return line[0].islower() or len(previous.split()) > HEADING_MAX_WORDS


def _glue(previous: str, line: str) -> str:
    if _SOFT_HYPHEN.search(previous) and line[:1].islower():
        return previous[:-1] + line  # "iden-" + "tifier." (TeX hyphenation), not "iden- tifier."
    return previous + " " + line


def _join_wrapped(lines: Iterable[str]) -> list[str]:
    """Join each line to the one before when it continues an open sentence; blank lines are dropped."""
    blocks: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if blocks and _continues(blocks[-1], line):
            blocks[-1] = _glue(blocks[-1], line)
        else:
            blocks.append(line)
    return blocks


def plain_text(body: bytes, charset: str | None) -> ExtractedText:
    """Plain text with hard-wrapped sentences joined; paragraphs stay apart (a blank line between)."""
    text = decode_text(body, charset).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = re.split(r"\n[ \t]*\n", text)
    kept = ["\n".join(_join_wrapped(p.split("\n"))) for p in paragraphs]
    return ExtractedText(title="", text="\n\n".join(p for p in kept if p))


# --- Markdown --------------------------------------------------------------------------------

_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _inline_text(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "image":
            parts.append(child.content)  # the alt text
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")  # a line break inside a paragraph is not the end of a sentence
        # html_inline and the open/close marks of links and emphasis carry no text
    return _SPACES.sub(" ", "".join(parts)).strip()


def _markdown_blocks(tokens: list[Token]) -> Iterator[tuple[str, str]]:
    """(kind, text) per block: `heading1`..`heading6`, `text` (paragraphs, list items, cells), `code`."""
    row: list[str] | None = None
    heading: str | None = None
    for token in tokens:
        if token.type == "heading_open":
            heading = token.tag.replace("h", "heading")
        elif token.type == "heading_close":
            heading = None
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            yield "text", " | ".join(cell for cell in row if cell)
            row = None
        elif token.type == "inline":
            text = _inline_text(token)
            if row is not None:
                row.append(text)
            elif text:
                yield heading or "text", text
        elif token.type in ("fence", "code_block"):
            for line in token.content.splitlines():
                if line.strip():
                    yield "code", line.rstrip()
        # html_block is dropped: raw HTML in Markdown is layout, rarely prose


def markdown_text(body: bytes, charset: str | None) -> ExtractedText:
    """One line per heading, paragraph, list item, table row and code line; the first `#` heading is the title."""
    source = _FRONT_MATTER.sub("", decode_text(body, charset).replace("\r\n", "\n"), count=1)
    title = ""
    lines: list[str] = []
    for kind, text in _markdown_blocks(_MARKDOWN.parse(source)):
        if not title and kind == "heading1":
            title = text
        lines.append(text)
    return ExtractedText(title=title, text="\n".join(lines))


# --- PDF -------------------------------------------------------------------------------------


def _pdf_title(info: list[dict[str, object]]) -> str:
    from pdfminer.pdftypes import resolve1
    from pdfminer.utils import decode_text as pdf_decode

    for entry in info:
        value = resolve1(entry.get("Title"))
        if isinstance(value, bytes):
            value = pdf_decode(value)
        if isinstance(value, str) and value.strip():
            return _SPACES.sub(" ", value).strip()
    return ""


def _box_text(text: str) -> str:
    """One text box's lines as one paragraph (a box is a paragraph in pdfminer's layout analysis)."""
    joined = ""
    for line in text.splitlines():
        line = _SPACES.sub(" ", line).strip()  # justified lines come out with runs of spaces
        if line:
            joined = _glue(joined, line) if joined else line
    return joined


def _pdf_boxes(body: bytes, url: str) -> tuple[str, Iterator[str]]:
    # Imported here: pdfminer costs ~0.1 s to import, paid only by a worker that meets a PDF.
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams, LTTextContainer
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    document = PDFDocument(PDFParser(io.BytesIO(body)))  # decrypts with the empty password if it can
    if not document.is_extractable:
        raise DocumentFormatError(f"{url}: the PDF forbids text extraction")
    resources = PDFResourceManager(caching=True)
    device = PDFPageAggregator(resources, laparams=LAParams())
    interpreter = PDFPageInterpreter(resources, device)

    def boxes() -> Iterator[str]:
        for number, page in enumerate(PDFPage.create_pages(document)):
            if number >= MAX_PDF_PAGES:
                return
            interpreter.process_page(page)
            for element in device.get_result():
                if isinstance(element, LTTextContainer):
                    yield element.get_text()

    return _pdf_title(document.info), boxes()


def pdf_text(body: bytes, url: str) -> ExtractedText:
    """A PDF's text layer, paragraph per line, in pdfminer's reading order; NFKC (ligatures unfolded).

    Raises DocumentFormatError for a body that is not a PDF, is malformed or truncated, is
    encrypted with a password, or forbids extraction. A PDF without a text layer (a scan) gives
    empty text: the retriever reports that as NoContentError.
    """
    if b"%PDF-" not in body[:PDF_MAGIC_WINDOW]:
        raise DocumentFormatError(f"{url}: served as PDF but is not one (no %PDF- header)")
    paragraphs: list[str] = []
    size = 0
    try:
        title, boxes = _pdf_boxes(body, url)
        for box in boxes:
            paragraph = unicodedata.normalize("NFKC", _box_text(box))
            if not paragraph or _PAGE_NUMBER.match(paragraph):
                continue
            paragraphs.append(paragraph)
            size += len(paragraph) + 1
            if size > MAX_DOCUMENT_CHARS:
                break  # the retriever keeps no more than this; the rest would cost time for nothing
    except DocumentFormatError:
        raise
    except Exception as exc:  # pdfminer raises anything from PSEOF to KeyError on a broken file
        from pdfminer.pdfdocument import PDFPasswordIncorrect

        if isinstance(exc, PDFPasswordIncorrect):
            raise DocumentFormatError(f"{url}: the PDF is encrypted with a password") from None
        detail = str(exc).strip()[:200] or "no detail"
        raise DocumentFormatError(f"{url}: malformed PDF ({type(exc).__name__}: {detail})") from None
    return ExtractedText(title=title, text="\n".join(_join_wrapped(paragraphs)))
