"""Text helpers shared by the request readers: normalising a request, and turning words into a field name.

Owns: `clean_text` (NFKC folding, control characters out) and `snake_name`.
Must not: interpret the text (counts, fields and facets do), do I/O, or import `node/`.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    # NFKC folds full-width digits and letters ("３００" -> "300") so one set of rules reads them.
    return _CONTROL.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def snake_name(text: str) -> str | None:
    """`Source URL` -> `source_url`; None when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    if not name or not name[0].isalpha():
        return None
    return name[:64].rstrip("_")
