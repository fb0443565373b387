"""Text normalisation shared by the row gates: whitespace and typography, a row's text, content words, stems.

Owns: how the gates see text. A quote an LLM "prettified" (curly quotes, dashes) is folded
back, so a faithful quote is not refused for typography.
Must not: decide anything (the gates in `gates.py` and `questions.py` do).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from protocol.tasks import JsonObject

_WS = re.compile(r"\s+")
WORD = re.compile(r"\w+")
# LLMs "prettify" quotes and dashes when copying a span; fold them so a faithful
# quote is not refused for typography.
_TYPOGRAPHY = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


def normalize_ws(text: str) -> str:
    """NFKC, typographic quotes/dashes folded to ASCII, whitespace runs collapsed, trimmed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY)).strip()


def row_text(data: JsonObject) -> str:
    """All string (and number) leaves of a row, in key order: the text gates look at."""

    def leaves(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int | float):
            yield str(value)
        elif isinstance(value, dict):
            for k in sorted(value):
                yield from leaves(value[k])
        elif isinstance(value, list):
            for v in value:
                yield from leaves(v)

    return " ".join(s for s in leaves(data) if s)


# English function words: removing them leaves the words that carry the claim.
_STOPWORD_TEXT = (
    "a about above after again against all also am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have having "
    "he her here hers herself him himself his how i if in into is it its itself just many may me might more most "
    "much must my myself no nor not now of off on once one only or other our ours ourselves out over own same "
    "shall she should so some such than that the their theirs them themselves then there these they this those "
    "through to too two under until up very was we were what when where which while who whom why will with "
    "would yes you your yours yourself yourselves"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_words(text: str) -> list[str]:
    return [
        w for w in WORD.findall(normalize_ws(text).casefold()) if w not in _STOPWORDS and (len(w) > 2 or w.isdigit())
    ]


def stem(word: str) -> str:
    """Crude prefix stem: invent/invented/invention meet at "inven". Good enough for overlap."""
    return word if len(word) <= 5 or word.isdigit() else word[:5]


def words(text: str) -> list[str]:
    """The words of `text`, normalized and casefolded."""
    return WORD.findall(normalize_ws(text).casefold())
