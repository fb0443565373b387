"""Retrieval: fetch a URL with httpx behind an SSRF guard, extract its main text with trafilatura.

Modules, in the order a retrieval passes through them:
- `ssrf`: URL checks, the address policy and allowlist, the guarded network backend;
- `fetch`: the httpx client, redirects hop by hop, the size cap and content-type check;
- `extract`: trafilatura (retrieval) and a cheap structural pass (indexing), by content type;
- `documents`: Markdown, plain text and PDF to text (markdown-it-py, pdfminer.six);
- `retriever`: assembles the `RetrieveOutput` (bounds, digest, fetch time);
- `errors`: one exception type per refusal or failure.
"""

from node.retrieve.config import RetrieverConfig
from node.retrieve.errors import (
    BlockedAddressError,
    BodyTooLargeError,
    ContentEncodingError,
    ContentTypeError,
    CredentialsInUrlError,
    DnsResolutionError,
    DocumentFormatError,
    ExtractionFailed,
    FetchFailed,
    FetchTimeoutError,
    HttpStatusError,
    InvalidUrlError,
    NoContentError,
    RetrievalRefused,
    RetrieveError,
    SchemeNotAllowedError,
    TooManyRedirectsError,
)
from node.retrieve.fetch import FetchedPage, Fetcher
from node.retrieve.retriever import Retriever
from node.retrieve.ssrf import AddressPolicy, AllowRule, GuardedNetworkBackend
from protocol.digests import content_sha256

__all__ = [
    "AddressPolicy",
    "AllowRule",
    "BlockedAddressError",
    "BodyTooLargeError",
    "ContentEncodingError",
    "ContentTypeError",
    "CredentialsInUrlError",
    "DnsResolutionError",
    "DocumentFormatError",
    "ExtractionFailed",
    "FetchFailed",
    "FetchTimeoutError",
    "FetchedPage",
    "Fetcher",
    "GuardedNetworkBackend",
    "HttpStatusError",
    "InvalidUrlError",
    "NoContentError",
    "RetrievalRefused",
    "RetrieveError",
    "Retriever",
    "RetrieverConfig",
    "SchemeNotAllowedError",
    "TooManyRedirectsError",
    "content_sha256",
]
