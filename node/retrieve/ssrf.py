"""The SSRF guard: which URLs may be fetched and which addresses may be connected to.

Owns: URL checks (scheme, credentials, host), the address policy (what counts as
private, what the allowlist lets through) and `GuardedNetworkBackend`, the httpcore
network backend through which every retrieval connection is opened.

Theory of operation. A task names a URL chosen by someone else, so the node must not be
steerable into its own LAN, its loopback services or a cloud metadata endpoint. Checking
the URL's host name is not enough (DNS may answer with 10.0.0.1, or answer differently the
second time: rebinding). So the check sits at the one place every connection passes:
`GuardedNetworkBackend.connect_tcp` resolves the host itself, refuses the connection if any
resolved address is forbidden, and then connects to the address it validated, never to the
name again. TLS still verifies the certificate against the host name (httpcore passes it as
`server_hostname`), so pinning the IP does not weaken HTTPS. Redirects are followed by
`fetch.py` one hop at a time; each hop opens its connections through this backend too.

What it must not do: open a socket before the address is validated, or consult a proxy
(the client is built with `trust_env=False`, and proxies would bypass the pinning).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpcore
import httpx
import trio
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from node.retrieve.errors import (
    BlockedAddressError,
    CredentialsInUrlError,
    DnsResolutionError,
    FetchTimeoutError,
    InvalidUrlError,
    SchemeNotAllowedError,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""(host, port) -> addresses; the default uses the system resolver in a worker thread."""

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_CHARS = 2048
"""Same bound as `protocol.tasks.Url`."""

_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")
"""RFC 6052: the last 32 bits are an IPv4 address that a NAT64 gateway would reach."""


# --- URL checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the static checks; the address checks happen at connect time."""

    url: str
    scheme: str
    host: str
    """Lowercased; IPv6 literals without brackets."""
    port: int


def check_url(url: str) -> CheckedUrl:
    """Refuse what can be refused without the network: bad syntax, schemes, credentials.

    Raises InvalidUrlError, SchemeNotAllowedError or CredentialsInUrlError.
    """
    if len(url) > MAX_URL_CHARS:
        raise InvalidUrlError(f"URL is {len(url)} characters long, over the {MAX_URL_CHARS} limit")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidUrlError(f"cannot parse URL {url!r}: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = scheme or "(none)"
        raise SchemeNotAllowedError(f"scheme {shown!r} is not fetched (only http and https): {url!r}")
    if parsed.userinfo:
        raise CredentialsInUrlError(f"URL carries credentials (user:password@), refused: {_redact(url)}")
    host = parsed.host.lower().rstrip(".")
    if not host:
        raise InvalidUrlError(f"URL has no host: {url!r}")
    port = parsed.port if parsed.port is not None else (443 if scheme == "https" else 80)
    return CheckedUrl(url=str(parsed), scheme=scheme, host=host, port=port)


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


# --- the address policy ---------------------------------------------------------------------


def forbidden_reason(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused by default, or None if it is a public address.

    IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, 6to4 2002::/16,
    Teredo, NAT64 64:ff9b::/96) are judged by the IPv4 address they reach.
    """
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = forbidden_reason(embedded)
            if inner is not None:
                return f"{inner} (IPv4 {embedded} inside IPv6 {address})"
            if address.ipv4_mapped is not None:
                return None  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket, and that one is public
    # Order matters only for the message: the most specific reason first.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        # e.g. 100.64.0.0/10 (carrier-grade NAT): not "private" in Python's table, not public either.
        return "non-global"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64_WELL_KNOWN:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _canonical(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 is the IPv4 address for allowlist matching (it reaches the same socket)."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class AllowRule:
    """One allowlist entry: an address network or a host name, optionally limited to one port.

    Written as `127.0.0.1`, `127.0.0.0/8`, `127.0.0.1:8000`, `::1`, `[::1]:8000`,
    `fd00::/8`, `corpus.lan` or `corpus.lan:8080`. A host-name rule lets through whatever
    that name resolves to when the URL names it, so use it only for names you control.
    """

    network: IPNetwork | None = None
    hostname: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if (self.network is None) == (self.hostname is None):
            raise ValueError("an AllowRule names exactly one of network or hostname")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        """Parse one allowlist entry; ValueError (naming the entry) if it is malformed."""
        spec = text.strip()
        if not spec:
            raise ValueError("empty allowlist entry")
        port: int | None = None
        if spec.startswith("["):  # [v6addr(/prefix)](:port)
            inner, sep, rest = spec[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"allowlist entry {text!r}: expected [IPv6](:port)")
            spec = inner
            if rest:
                port = _parse_port(rest[1:], text)
        elif spec.count(":") == 1:  # v4addr(/prefix):port or host:port
            spec, port_text = spec.split(":")
            port = _parse_port(port_text, text)
        try:
            network = ipaddress.ip_network(spec, strict=True)
        except ValueError as exc:
            if "/" in spec or ":" in spec or not _looks_like_hostname(spec):
                raise ValueError(f"allowlist entry {text!r}: {exc}") from None
            return cls(hostname=spec.lower().rstrip("."), port=port)
        return cls(network=network, port=port)

    def matches(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.hostname is not None:
            return host == self.hostname
        assert self.network is not None
        return _canonical(address) in self.network


def _parse_port(text: str, entry: str) -> int:
    if not text.isdigit():
        raise ValueError(f"allowlist entry {entry!r}: port {text!r} is not a number")
    return int(text)


def _looks_like_hostname(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels)


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses are allowed; forbidden ones only where an allowlist rule names them."""

    allow: tuple[AllowRule, ...] = ()

    @classmethod
    def from_strings(cls, entries: Iterable[str]) -> AddressPolicy:
        """From config strings such as `NodeConfig.retrieve_allow`; ValueError names a bad entry."""
        return cls(allow=tuple(AllowRule.parse(entry) for entry in entries))

    @classmethod
    def loopback(cls) -> AddressPolicy:
        """Allow 127.0.0.0/8 and ::1: what the demo and the tests use for the local corpus."""
        return cls.from_strings(["127.0.0.0/8", "::1"])

    def check(self, host: str, address: IPAddress, port: int) -> None:
        """Raise BlockedAddressError unless connecting to `address`:`port` for `host` is allowed."""
        if any(rule.matches(host, address, port) for rule in self.allow):
            return
        reason = forbidden_reason(address)
        if reason is not None:
            shown = host if _parse_literal(host) == address else f"{host} (resolves to {address})"
            raise BlockedAddressError(
                f"refusing to connect to {shown} port {port}: {reason} address, not in the retrieval allowlist",
                host=host,
                address=str(address),
            )


# --- resolution and the guarded backend -----------------------------------------------------


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve with getaddrinfo (in a worker thread, via trio); literal addresses skip DNS."""
    literal = _parse_literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise DnsResolutionError(f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DnsResolutionError(f"host {host!r} resolves to no address")
    return addresses


def _parse_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_checked(
    host: str, port: int, policy: AddressPolicy, resolver: Resolver = system_resolver
) -> list[IPAddress]:
    """All addresses of `host`, after checking every one of them against `policy`.

    If any address is forbidden the whole host is refused, rather than quietly using the
    others: a name that mixes public and private answers is a rebinding attempt or a
    misconfiguration, and either way the node should not guess.
    """
    addresses = await resolver(host, port)
    for address in addresses:
        policy.check(host, address, port)
    return addresses


@dataclass
class GuardedNetworkBackend(AsyncNetworkBackend):
    """An httpcore network backend that resolves, validates and connects to the validated IP.

    `inner` does the actual socket work (httpcore's trio backend).
    `on_connect` is called with (host, address, port) just before each connection attempt:
    a hook for tests that prove no socket is opened towards a refused address.
    """

    policy: AddressPolicy
    inner: AsyncNetworkBackend = field(default_factory=httpcore.TrioBackend)
    resolver: Resolver = system_resolver
    on_connect: Callable[[str, str, int], None] | None = None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            addresses = await resolve_checked(host, port, self.policy, self.resolver)
        if scope.cancelled_caught:
            raise FetchTimeoutError(f"resolving {host!r} took longer than {timeout} s")
        return await self._connect_first(host, addresses, port, timeout, local_address, socket_options)

    async def _connect_first(
        self,
        host: str,
        addresses: Sequence[IPAddress],
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> AsyncNetworkStream:
        last_error: Exception | None = None
        options = list(socket_options) if socket_options is not None else None
        for address in addresses:
            if self.on_connect is not None:
                self.on_connect(host, str(address), port)
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        raise BlockedAddressError(f"refusing to connect to unix socket {path!r}", host=path)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
