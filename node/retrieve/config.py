"""The retriever's settings: the address policy and the limits every fetch obeys.

Owns: `RetrieverConfig` and its defaults. Plain data, no I/O, so the node runtime can
build it from `NodeConfig` (`RetrieverConfig.from_allowlist(cfg.retrieve_allow)`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from node.retrieve.ssrf import AddressPolicy

DEFAULT_MAX_BYTES = 10_000_000
"""The node's own ceiling on a body; a task's `max_bytes` can only lower it."""

HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})
MARKDOWN_CONTENT_TYPES = frozenset({"text/markdown", "text/x-markdown"})
PDF_CONTENT_TYPES = frozenset({"application/pdf"})
TEXT_CONTENT_TYPES = frozenset(
    HTML_CONTENT_TYPES | MARKDOWN_CONTENT_TYPES | {"text/plain", "application/xml", "text/xml"}
)
DOCUMENT_CONTENT_TYPES = TEXT_CONTENT_TYPES | PDF_CONTENT_TYPES
"""What a retrieve task fetches by default: text, and PDF (parsed in the extraction worker process,
bounded in pages and text; see extract.py)."""

USER_AGENT = "dataswarm-retriever/0.1 (volunteer node of a dataset network)"


@dataclass(frozen=True)
class RetrieverConfig:
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    """Which non-public addresses may be fetched (none by default)."""
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 5
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 30.0
    """Deadline for the whole fetch: resolution, every redirect hop and the body (not extraction)."""
    content_types: frozenset[str] = DOCUMENT_CONTENT_TYPES
    user_agent: str = USER_AGENT
    extract_timeout_s: float = 30.0
    """Deadline for extracting one page's text; past it the worker process is killed."""
    extract_workers: int = 1
    """Extraction processes at most (each costs 80-160 MB; a page takes ~55 ms)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if self.extract_timeout_s <= 0:
            raise ValueError("extract_timeout_s must be positive")
        if self.extract_workers < 1:
            raise ValueError("extract_workers must be >= 1")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")

    @classmethod
    def from_allowlist(cls, allow: Iterable[str]) -> RetrieverConfig:
        """Defaults plus allowlist strings (`127.0.0.1`, `10.0.0.0/8`, `[::1]:8000`, `corpus.lan:80`).

        Change other limits with `dataclasses.replace`. ValueError names a malformed entry.
        """
        return cls(policy=AddressPolicy.from_strings(allow))
