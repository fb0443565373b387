"""curate: documents + instruction -> synthesis tasks, one per source chunk. No LLM.

Owns: deterministic segmentation of document text — paragraphs, sentences,
and the chunks built from them — with character offsets into the document,
so that `doc.text[chunk.start:chunk.end] == chunk.text` always holds and any
node produces byte-identical output (curate is verified by quorum).
`synthesize` reuses `sentence_spans` for its evidence candidates.

Chunking: paragraphs (split at blank lines) are packed greedily into chunks of
at most `chunk_chars` characters; a paragraph that is too long is split at
sentence ends, a sentence that is too long at spaces, a word that is too long
anywhere. Chunks shorter than `MIN_CHUNK_CHARS` carry too little to ground a
row and are dropped. When `max_tasks` cuts the list, documents take turns
(round-robin), so one long page cannot crowd out the others.

An LLM is not needed: choosing chunks by structure is reproducible across
nodes and free, while an LLM pass would cost a generation per document and
make curate a generative kind that needs re-scoring.
"""

from __future__ import annotations

import hashlib
import re
from itertools import zip_longest

from node.executors.base import ExecutionError, ExecutionResult
from protocol.tasks import (
    CurateOutput,
    CuratePayload,
    DecodingParams,
    Document,
    Frozen,
    SourceChunk,
    SynthesisSpec,
    TaskKind,
)

MIN_CHUNK_CHARS = 80

Span = tuple[int, int]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends after . ! ? (plus closing quotes/brackets) followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n+")
_SPACE = re.compile(r"\s+")


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    """Spans of text[start:end] between matches of `pattern`, stripped, separators dropped."""
    spans: list[Span] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        if (s := _strip(text, pos, m.start())) is not None:
            spans.append(s)
        pos = m.end()
    if (s := _strip(text, pos, end)) is not None:
        spans.append(s)
    return spans


def paragraph_spans(text: str) -> list[Span]:
    return _split(text, 0, len(text), _PARAGRAPH_BREAK)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of text[start:end] (default: all), as stripped spans."""
    return _split(text, start, len(text) if end is None else end, _SENTENCE_END)


def bounded_pieces(text: str, span: Span, max_chars: int) -> list[Span]:
    """Split `span` into pieces of at most max_chars: sentences, then words, then hard cuts."""
    if span[1] - span[0] <= max_chars:
        return [span]
    out: list[Span] = []
    sentences = sentence_spans(text, *span)
    if len(sentences) > 1:
        for s in sentences:
            out.extend(bounded_pieces(text, s, max_chars))
        return out
    words = _split(text, span[0], span[1], _SPACE)
    if len(words) > 1:
        return _pack(text, [w for word in words for w in bounded_pieces(text, word, max_chars)], max_chars)
    return [(i, min(i + max_chars, span[1])) for i in range(span[0], span[1], max_chars)]


def _pack(text: str, units: list[Span], max_chars: int) -> list[Span]:
    """Greedily merge consecutive units while the merged span stays within max_chars."""
    chunks: list[Span] = []
    for start, end in units:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


def chunk_spans(text: str, max_chars: int, min_chars: int = MIN_CHUNK_CHARS) -> list[Span]:
    """Chunks of `text` as (start, end) offsets, each at most max_chars and at least min_chars long."""
    units = [piece for para in paragraph_spans(text) for piece in bounded_pieces(text, para, max_chars)]
    return [(s, e) for s, e in _pack(text, units, max_chars) if e - s >= min_chars]


class CurateExecutor:
    kind = TaskKind.CURATE

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, CuratePayload):
            raise ExecutionError(f"curate executor got a {type(payload).__name__}")
        return ExecutionResult(output=curate(payload))


def curate(payload: CuratePayload) -> CurateOutput:
    per_doc = [_document_tasks(doc, payload) for doc in payload.documents]
    tasks: list[SynthesisSpec] = []
    for round_ in zip_longest(*per_doc):
        tasks.extend(t for t in round_ if t is not None)
    return CurateOutput(tasks=tasks[: payload.max_tasks])


def _document_tasks(doc: Document, payload: CuratePayload) -> list[SynthesisSpec]:
    digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
    if digest != doc.content_sha256:
        # Offsets are only meaningful against the exact text the digest names.
        raise ExecutionError(f"document {doc.url} does not match its content_sha256 (got {digest})")
    return [
        SynthesisSpec(
            instruction=payload.instruction,
            chunk=SourceChunk(url=doc.url, content_sha256=doc.content_sha256, start=s, end=e, text=doc.text[s:e]),
        )
        for s, e in chunk_spans(doc.text, payload.chunk_chars)
    ]
