"""Where a quoted evidence span sits in its source text, and the check that it does.

Owns: the text normalization evidence is compared under, and mapping a match
back to character offsets in the raw source, so provenance can say *where* the
quote is and `verify_directory` can re-check it.
Normalization mirrors the grounding gate (`coordinator.verify.text.normalize_ws`):
NFKC, typographic quotes and dashes folded to ASCII, whitespace runs collapsed,
ends trimmed. LLMs "prettify" quotes and re-flow whitespace when they copy, so
a faithful quote must match through those. It is applied per grapheme-ish
cluster (a character with its combining marks), which keeps a map from every
normalized character back to its raw span.
Must not: judge whether the quote supports the row (that is the gate's job).
"""

from __future__ import annotations

import unicodedata

_TYPOGRAPHY = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


def _normalize_mapped(text: str) -> tuple[str, list[int], list[int]]:
    """(normalized text, raw start of each normalized char, raw end of each normalized char)."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        for ch in unicodedata.normalize("NFKC", text[i:j]).translate(_TYPOGRAPHY):
            if ch.isspace():
                if not out or out[-1] == " ":
                    continue
                ch = " "
            out.append(ch)
            starts.append(i)
            ends.append(j)
        i = j
    if out and out[-1] == " ":
        out.pop()
        starts.pop()
        ends.pop()
    return "".join(out), starts, ends


def normalize(text: str) -> str:
    return _normalize_mapped(text)[0]


def locate(evidence: str, text: str) -> tuple[int, int] | None:
    """Character span [start, end) of `evidence` in `text` (exact first, then normalized); None if absent."""
    if not evidence.strip():
        return None
    exact = text.find(evidence)
    if exact != -1:
        return exact, exact + len(evidence)
    wanted = normalize(evidence)
    norm, starts, ends = _normalize_mapped(text)
    at = norm.find(wanted)
    if at == -1:
        return None
    span = starts[at], ends[at + len(wanted) - 1]
    # A match that begins inside one character's expansion ("ﬁ" -> "fi") has no raw span of its own.
    return span if quote_at(evidence, text, *span) else None


def quote_at(evidence: str, text: str, start: int, end: int) -> bool:
    """Does text[start:end] say `evidence` (under normalization)?"""
    if not 0 <= start < end <= len(text):
        return False
    return normalize(text[start:end]) == normalize(evidence) != ""
