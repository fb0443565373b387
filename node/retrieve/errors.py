"""Why a retrieval was refused or failed: one type per reason, each with a message that names the URL.

Owns: the error hierarchy of `node.retrieve`. Every refusal of the SSRF guard is a
`RetrievalRefused`; every failure of the remote side (timeouts, resets, HTTP errors) is a
`FetchFailed`. Callers that only need "it did not work" catch `RetrieveError`; the
executor turns all of them into `ExecutionError` with the same message.
"""

from __future__ import annotations


class RetrieveError(Exception):
    """Base of every retrieval error; `str(err)` is a message fit to send back to the coordinator."""


# --- refusals: the guard said no, usually before any packet left ----------------------------


class RetrievalRefused(RetrieveError):
    """The request breaks a safety rule; retrying it elsewhere will not help."""


class InvalidUrlError(RetrievalRefused):
    """The URL cannot be parsed, has no host, or is too long."""


class SchemeNotAllowedError(RetrievalRefused):
    """Only http and https are fetched (no file://, ftp://, gopher://, data:…)."""


class CredentialsInUrlError(RetrievalRefused):
    """URLs with user:password@ are refused: they leak secrets into logs and onto the network."""


class BlockedAddressError(RetrievalRefused):
    """The host is or resolves to a private, loopback, link-local, multicast, reserved or
    unspecified address that no allowlist rule names."""

    def __init__(self, message: str, *, host: str, address: str | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.address = address


class TooManyRedirectsError(RetrievalRefused):
    """The redirect chain is longer than the configured maximum."""


class BodyTooLargeError(RetrievalRefused):
    """The body is (or declares itself) larger than the cap; reading stopped at the cap."""

    def __init__(self, message: str, *, limit: int, received: int, declared: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.received = received
        """Bytes taken off the wire before the transfer was aborted (0 when refused on Content-Length)."""
        self.declared = declared


class ContentTypeError(RetrievalRefused):
    """The response is not a type the node reads (HTML, XHTML, XML, Markdown, plain text or PDF)."""


class ContentEncodingError(RetrievalRefused):
    """The body is compressed with an encoding this node does not decode with a size bound."""


# --- failures: the remote side or the content did not deliver -------------------------------


class FetchFailed(RetrieveError):
    """The page could not be fetched (network, TLS, protocol, DNS); another node might succeed."""


class DnsResolutionError(FetchFailed):
    """The host name does not resolve."""


class FetchTimeoutError(FetchFailed):
    """A connect, read or the whole-retrieval deadline passed."""


class HttpStatusError(FetchFailed):
    """The final response is not 2xx."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ExtractionFailed(RetrieveError):
    """The page was fetched but extracting its text crashed the parser or ran past its deadline."""


class NoContentError(RetrieveError):
    """The page was fetched but no main text could be extracted from it."""


class DocumentFormatError(RetrieveError):
    """The body is not a readable document of the type it was served as (a malformed, truncated or
    encrypted PDF). Raised inside the extraction worker, so it carries only its message (picklable)."""
