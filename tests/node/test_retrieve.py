"""Retrieval against real HTTP servers on 127.0.0.1: extraction, the SSRF guard, the limits.

Every refusal test also records each connection the guarded backend attempts and checks
that nothing but 127.0.0.1 was ever dialled: the guard refuses before connecting.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import time
from dataclasses import replace
from ipaddress import ip_address

import pytest
import trio
import trio_parallel

from node.executors.base import ExecutionError
from node.executors.retrieve import RetrieveExecutor
from node.retrieve import (
    AddressPolicy,
    AllowRule,
    BlockedAddressError,
    BodyTooLargeError,
    ContentEncodingError,
    ContentTypeError,
    CredentialsInUrlError,
    ExtractionFailed,
    GuardedNetworkBackend,
    HttpStatusError,
    InvalidUrlError,
    Retriever,
    RetrieverConfig,
    SchemeNotAllowedError,
    TooManyRedirectsError,
)
from node.retrieve.extract import ExtractedText, extract_document
from node.retrieve.ssrf import forbidden_reason
from node.search.corpus_server import CorpusServer
from protocol.tasks import MAX_DOCUMENT_CHARS, RetrieveOutput, RetrievePayload, SearchPayload
from tests.node.corpus_support import BIG_BODY, CHUNK, ScriptedSite

pytest_plugins = ["tests.node.corpus_fixtures"]

FIXED_NOW_MS = 1_750_000_000_000


class DialLog:
    """Records every (host, address, port) the guarded backend is about to connect to."""

    def __init__(self) -> None:
        self.dials: list[tuple[str, str, int]] = []

    def __call__(self, host: str, address: str, port: int) -> None:
        self.dials.append((host, address, port))

    def assert_loopback_only(self) -> None:
        assert all(ip_address(address).is_loopback for _, address, _ in self.dials), self.dials


def make_retriever(
    policy: AddressPolicy, log: DialLog, *, max_bytes: int | None = None, **extraction: object
) -> Retriever:
    """`extraction`: `extractor=` for the Retriever, other keys replace RetrieverConfig fields."""
    extractor = extraction.pop("extractor", extract_document)
    config = replace(RetrieverConfig(policy=policy), **extraction)  # type: ignore[arg-type]
    if max_bytes is not None:
        config = replace(config, max_bytes=max_bytes)
    backend = GuardedNetworkBackend(policy, on_connect=log)
    return Retriever(config, backend=backend, clock_ms=lambda: FIXED_NOW_MS, extractor=extractor)  # type: ignore[arg-type]


LOOPBACK = AddressPolicy.loopback()


# --- extraction from the real corpus ---------------------------------------------------------


async def test_retrieves_main_text_of_a_docs_page(corpus_server: CorpusServer) -> None:
    log = DialLog()
    url = corpus_server.url("library/heapq.html")
    out = await make_retriever(LOOPBACK, log).retrieve(url)

    assert isinstance(out, RetrieveOutput)
    assert (out.url, out.final_url, out.status, out.content_type) == (url, url, 200, "text/html")
    assert out.title == "heapq — Heap queue algorithm"
    for phrase in (
        "also known as the priority queue algorithm",
        "heapq.heappush(heap, item)",
        "Push the value item onto the heap, maintaining the heap invariant.",
        "Priority Queue Implementation Notes",
    ):
        assert phrase in out.text, phrase
    for boilerplate in ("Previous topic", "Next topic", "Quick search", "Report a Bug", "Show Source", "Navigation"):
        assert boilerplate not in out.text, boilerplate
    assert 8_000 < len(out.text) < 20_000  # the article, not the page chrome (the HTML is 70 kB)
    assert out.content_sha256 == hashlib.sha256(out.text.encode("utf-8")).hexdigest()
    assert out.fetched_at_ms == FIXED_NOW_MS
    log.assert_loopback_only()


async def test_same_page_twice_gives_the_same_digest(corpus_server: CorpusServer) -> None:
    url = corpus_server.url("library/json.html")
    async with make_retriever(LOOPBACK, DialLog()) as retriever:
        first = await retriever.retrieve(url)
        second = await retriever.retrieve(url)
    assert first.content_sha256 == second.content_sha256
    assert "JSON" in first.title


async def test_long_pages_are_truncated_to_the_protocol_bound(corpus_server: CorpusServer) -> None:
    out = await make_retriever(LOOPBACK, DialLog()).retrieve(corpus_server.url("library/stdtypes.html"))
    assert len(out.text) == MAX_DOCUMENT_CHARS
    assert out.content_sha256 == hashlib.sha256(out.text.encode()).hexdigest()


async def test_plain_text_is_returned_as_is(scripted_site: ScriptedSite) -> None:
    out = await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("plain"))
    assert out.content_type == "text/plain"
    assert out.text == "Plain text line one.\nLine two."


async def test_line_breaks_of_the_html_source_are_spaces_except_in_preformatted_text(
    scripted_site: ScriptedSite,
) -> None:
    out = await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("wrapped"))
    lines = out.text.split("\n")
    assert (
        "This module requires the service of mod_proxy. It provides support for the SCGI protocol, version 1." in lines
    )
    assert 'ProxyPass "/scgi-bin/"\n    "scgi://localhost:4000/"' in out.text  # a <pre> keeps its layout
    both = "Both mod_proxy and mod_proxy_scgi have\xa0to be present in the server, which reads its configuration"
    assert any(line.startswith(both) for line in lines)  # a no-break space is text, not layout
    # A definition list's term and its description stay apart (trafilatura puts nothing between them).
    assert "page_info returns information about an index metapage, read from the page header." in lines
    assert "SET SCHEMA 'value' is an alias for SET search_path TO value." in lines  # code inside code, in order


async def test_redirect_within_the_allowlist_is_followed(scripted_site: ScriptedSite) -> None:
    url = scripted_site.url("redirect-heapq")
    out = await make_retriever(LOOPBACK, DialLog()).retrieve(url)
    assert out.url == url
    assert out.final_url.endswith("/library/heapq.html") and out.final_url != url
    assert "priority queue" in out.text


async def test_five_redirects_are_followed_six_are_refused(scripted_site: ScriptedSite) -> None:
    retriever = make_retriever(LOOPBACK, DialLog())
    out = await retriever.retrieve(scripted_site.url("chain/5"))
    assert "The chain ended here." in out.text
    with pytest.raises(TooManyRedirectsError, match="more than 5 redirects"):
        await retriever.retrieve(scripted_site.url("chain/6"))


async def test_endless_redirects_are_refused(scripted_site: ScriptedSite) -> None:
    log = DialLog()
    with pytest.raises(TooManyRedirectsError):
        await make_retriever(LOOPBACK, log).retrieve(scripted_site.url("loop/0"))
    log.assert_loopback_only()


async def test_http_errors_are_reported_with_their_status(scripted_site: ScriptedSite) -> None:
    with pytest.raises(HttpStatusError, match="HTTP 404") as caught:
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("missing"))
    assert caught.value.status == 404


# --- the SSRF guard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8080/", "loopback"),
        ("http://127.0.0.1:9/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "non-global"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 written as one number
    ],
)
async def test_private_addresses_are_refused_without_dialling(url: str, reason: str) -> None:
    log = DialLog()
    with pytest.raises(BlockedAddressError, match=reason):
        await make_retriever(AddressPolicy(), log).retrieve(url)
    assert log.dials == []


async def test_a_name_that_resolves_to_loopback_is_refused(corpus_server: CorpusServer) -> None:
    log = DialLog()
    with pytest.raises(BlockedAddressError, match=r"localhost \(resolves to .*\) .*loopback") as caught:
        await make_retriever(AddressPolicy(), log).retrieve(f"http://localhost:{corpus_server.port}/index.html")
    assert caught.value.host == "localhost"
    assert log.dials == []


async def test_loopback_without_allowlist_is_refused_even_for_the_corpus(corpus_server: CorpusServer) -> None:
    log = DialLog()
    with pytest.raises(BlockedAddressError, match="not in the retrieval allowlist"):
        await make_retriever(AddressPolicy(), log).retrieve(corpus_server.url("library/heapq.html"))
    assert log.dials == []


@pytest.mark.parametrize("path", ["redirect-private", "redirect-metadata"])
async def test_redirect_to_a_private_address_is_refused(scripted_site: ScriptedSite, path: str) -> None:
    log = DialLog()
    with pytest.raises(BlockedAddressError):
        await make_retriever(AddressPolicy.from_strings(["127.0.0.1"]), log).retrieve(scripted_site.url(path))
    assert [address for _, address, _ in log.dials] == ["127.0.0.1"]  # the first hop only


@pytest.mark.parametrize("path", ["redirect-heapq", "redirect-localhost-name"], ids=["address", "name"])
async def test_redirect_to_another_loopback_port_is_refused_by_a_port_rule(
    scripted_site: ScriptedSite, corpus_server: CorpusServer, path: str
) -> None:
    policy = AddressPolicy.from_strings([f"127.0.0.1:{scripted_site.port}"])
    log = DialLog()
    with pytest.raises(BlockedAddressError, match=f"port {corpus_server.port}"):
        await make_retriever(policy, log).retrieve(scripted_site.url(path))
    assert [port for _, _, port in log.dials] == [scripted_site.port]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", SchemeNotAllowedError),
        ("ftp://127.0.0.1/pub/", SchemeNotAllowedError),
        ("gopher://127.0.0.1:70/_stats", SchemeNotAllowedError),
        ("data:text/html,<p>hi</p>", SchemeNotAllowedError),
        ("127.0.0.1/no-scheme", SchemeNotAllowedError),
        ("http://user:secret@127.0.0.1/", CredentialsInUrlError),
        ("http:///no-host", InvalidUrlError),
        ("http://127.0.0.1/" + "a" * 2100, InvalidUrlError),
    ],
)
async def test_urls_refused_before_any_lookup(url: str, error: type[Exception]) -> None:
    log = DialLog()
    with pytest.raises(error) as caught:
        await make_retriever(LOOPBACK, log).retrieve(url)
    assert "secret" not in str(caught.value)
    assert log.dials == []


async def test_redirect_to_file_scheme_is_refused(scripted_site: ScriptedSite) -> None:
    with pytest.raises(SchemeNotAllowedError, match="'file'"):
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("redirect-file"))


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.2", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private|reserved"),  # Python 3.11 files 240/4 under private, later ones reserved
        ("255.255.255.255", "private"),
        ("100.64.0.1", "non-global"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("::ffff:192.168.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:a00:1::1", "private"),  # 6to4 around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:93.184.216.34", None),
    ],
)
def test_forbidden_reason_table(address: str, reason: str | None) -> None:
    found = forbidden_reason(ip_address(address))
    if reason is None:
        assert found is None
    else:
        assert found is not None and re.match(reason, found), found


def test_allowlist_entries_parse() -> None:
    rule = AllowRule.parse("127.0.0.1:8000")
    assert rule.matches("127.0.0.1", ip_address("127.0.0.1"), 8000)
    assert not rule.matches("127.0.0.1", ip_address("127.0.0.1"), 8001)
    assert AllowRule.parse("[::1]:8000").matches("::1", ip_address("::1"), 8000)
    assert AllowRule.parse("::1").matches("::1", ip_address("::1"), 1)
    assert AllowRule.parse("10.0.0.0/8").matches("x", ip_address("10.9.9.9"), 80)
    assert AllowRule.parse("127.0.0.1").matches("x", ip_address("::ffff:127.0.0.1"), 80)
    named = AllowRule.parse("Corpus.LAN:8080")
    assert named.matches("corpus.lan", ip_address("10.0.0.7"), 8080)
    assert not named.matches("other.lan", ip_address("10.0.0.7"), 8080)
    for bad in ("10.0.0.1/8", "[::1", "127.0.0.1:http", "", "a b"):
        with pytest.raises(ValueError):
            AllowRule.parse(bad)


# --- the limits: size, content type, encodings -----------------------------------------------


async def test_streamed_body_over_the_cap_is_aborted_at_the_cap(scripted_site: ScriptedSite) -> None:
    cap = 1_000_000
    with pytest.raises(BodyTooLargeError, match="limit") as caught:
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("big-stream"), max_bytes=cap)
    assert caught.value.limit == cap
    assert cap < caught.value.received <= cap + CHUNK  # stopped within one network read of the cap
    record = scripted_site.state.streams["big-stream"]
    assert record.done.wait(10), "the server never noticed the client hung up"
    assert record.error in ("BrokenPipeError", "ConnectionResetError")
    assert record.written < BIG_BODY // 2  # kernel buffers aside, the 50 MB were never sent


async def test_declared_length_over_the_cap_is_refused_before_reading(scripted_site: ScriptedSite) -> None:
    with pytest.raises(BodyTooLargeError, match="Content-Length 50000000") as caught:
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("big-declared"), max_bytes=1_000_000)
    assert caught.value.received == 0 and caught.value.declared == BIG_BODY
    record = scripted_site.state.streams["big-declared"]
    assert record.done.wait(10)
    assert record.written < BIG_BODY // 2


async def test_node_cap_bounds_a_larger_task_cap(scripted_site: ScriptedSite) -> None:
    retriever = make_retriever(LOOPBACK, DialLog(), max_bytes=200_000)
    with pytest.raises(BodyTooLargeError) as caught:
        await retriever.retrieve(scripted_site.url("big-stream"), max_bytes=50_000_000)
    assert caught.value.limit == 200_000


async def test_gzip_bomb_is_cut_at_the_cap_after_decoding(scripted_site: ScriptedSite) -> None:
    with pytest.raises(BodyTooLargeError) as caught:
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("gzip-bomb"), max_bytes=1_000_000)
    assert caught.value.received < 1_000_000  # a few kB of gzip would have become 50 MB


async def test_unsupported_content_encoding_is_refused(scripted_site: ScriptedSite) -> None:
    with pytest.raises(ContentEncodingError, match="'br'"):
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url("brotli"))


@pytest.mark.parametrize(
    ("path", "shown"),
    [("binary", "application/octet-stream"), ("image", "image/png"), ("no-type", "no Content-Type")],
)
async def test_non_text_content_is_refused(scripted_site: ScriptedSite, path: str, shown: str) -> None:
    with pytest.raises(ContentTypeError, match=shown):
        await make_retriever(LOOPBACK, DialLog()).retrieve(scripted_site.url(path))


# --- extraction runs in a worker process ------------------------------------------------------
# The two parsers below stand in for a page that crashes or hangs libxml2: no such page is known
# on demand. The crash is a real SIGSEGV in the worker, as libxml2's was in threads of our nodes.


def segfaulting_parser(body: bytes, content_type: str, charset: str | None, url: str) -> ExtractedText:
    ctypes.string_at(0)
    raise AssertionError("unreachable: reading address 0 segfaults")


def hanging_parser(body: bytes, content_type: str, charset: str | None, url: str) -> ExtractedText:
    time.sleep(600)
    raise AssertionError("unreachable: the deadline kills the worker first")


async def test_a_parser_crash_costs_the_page_not_the_node(corpus_server: CorpusServer) -> None:
    url = corpus_server.url("library/heapq.html")
    with pytest.raises(ExtractionFailed, match=r"heapq\.html: the HTML parser crashed .*SIGSEGV"):
        await make_retriever(LOOPBACK, DialLog(), extractor=segfaulting_parser).retrieve(url)
    out = await make_retriever(LOOPBACK, DialLog()).retrieve(url)  # this process lived on
    assert "priority queue algorithm" in out.text


async def test_a_parser_that_hangs_is_killed_at_the_deadline(corpus_server: CorpusServer) -> None:
    url = corpus_server.url("library/heapq.html")
    hangs = make_retriever(LOOPBACK, DialLog(), extractor=hanging_parser, extract_timeout_s=1.0)
    with pytest.raises(ExtractionFailed, match=r"took over 1 s; the parser was stopped"):
        await hangs.retrieve(url)
    assert trio_parallel.default_context_statistics().running_workers == 0
    assert "priority queue algorithm" in (await make_retriever(LOOPBACK, DialLog()).retrieve(url)).text


async def test_concurrent_retrievals_extract_the_same_text_as_one_at_a_time(corpus_server: CorpusServer) -> None:
    pages = ["heapq", "json", "re", "os", "asyncio-task", "collections", "itertools", "functools"] * 3
    urls = [corpus_server.url(f"library/{name}.html") for name in pages]
    async with make_retriever(LOOPBACK, DialLog(), extract_workers=2) as retriever:
        one_at_a_time = {url: (await retriever.retrieve(url)).content_sha256 for url in urls[:8]}
        together: list[tuple[str, str]] = []

        async def fetch(url: str) -> None:
            together.append((url, (await retriever.retrieve(url)).content_sha256))

        async with trio.open_nursery() as nursery:
            for url in urls:
                nursery.start_soon(fetch, url)
    assert len(together) == len(urls)
    assert all(digest == one_at_a_time[url] for url, digest in together)


def test_extraction_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="extract_timeout_s"):
        RetrieverConfig(extract_timeout_s=0)
    with pytest.raises(ValueError, match="extract_workers"):
        RetrieverConfig(extract_workers=0)


# --- the executor ----------------------------------------------------------------------------


async def test_executor_returns_the_retrieve_output(corpus_server: CorpusServer) -> None:
    executor = RetrieveExecutor(RetrieverConfig.from_allowlist(["127.0.0.1"]))
    payload = RetrievePayload(url=corpus_server.url("library/heapq.html"))
    result = await executor.execute(payload, None, None)
    assert isinstance(result.output, RetrieveOutput)
    assert result.model_sha256 is None
    assert "heap queue algorithm" in result.output.text


async def test_executor_turns_refusals_into_execution_errors() -> None:
    executor = RetrieveExecutor(RetrieverConfig())
    with pytest.raises(ExecutionError, match=r"BlockedAddressError.*169\.254\.169\.254"):
        await executor.execute(RetrievePayload(url="http://169.254.169.254/"), None, None)
    with pytest.raises(ExecutionError, match="not a RetrievePayload"):
        await executor.execute(SearchPayload(query="x"), None, None)


async def test_executor_reports_a_parser_crash_as_an_execution_error(corpus_server: CorpusServer) -> None:
    retriever = make_retriever(LOOPBACK, DialLog(), extractor=segfaulting_parser)
    payload = RetrievePayload(url=corpus_server.url("library/json.html"))
    with pytest.raises(ExecutionError, match=r"ExtractionFailed.*crashed"):
        await RetrieveExecutor(retriever=retriever).execute(payload, None, None)
