"""Network doctor: can this machine take part in the swarm, and if not, what to change.

Three checks, each returning `Finding`s with one actionable sentence:
- is each listen port free (or which process class of problem blocks it);
- which addresses peers could reach us on (and whether they are only private);
- can each bootstrap peer be reached, and does it speak libp2p with Noise.

Only sockets here (trio's, so nothing blocks the event loop), no libp2p: the
doctor must work when the libp2p stack itself is what fails. The
multistream-select probe is also what tests use to show that a host refuses
plaintext and secio.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import psutil
import trio

from network.framing import decode_uvarint, encode_uvarint

MULTISTREAM = "/multistream/1.0.0"
NOISE = "/noise"
INSECURE_PROTOCOLS = ("/plaintext/2.0.0", "/plaintext/1.0.0", "/secio/1.0.0", "/tls/1.0.0")

_ADDR_RE = re.compile(r"^/(ip4|ip6)/([^/]+)/tcp/(\d+)(/.*)?$")


class NotLibp2p(Exception):
    """The endpoint answered, but not with multistream-select as libp2p speaks it."""


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    check: str
    """"listen_port", "reachability" or "bootstrap"."""
    level: Level
    subject: str
    """The address or port the finding is about."""
    message: str
    """What was found and, unless all is well, what to do about it."""


def parse_tcp_addr(addr: str) -> tuple[str, str, int]:
    """("ip4"|"ip6", ip, port) from "/ip4/1.2.3.4/tcp/4001[/p2p/...]"; ValueError otherwise."""
    match = _ADDR_RE.match(addr)
    if match is None:
        raise ValueError(f"{addr!r} is not a /ip4|ip6/<address>/tcp/<port> multiaddr")
    return match.group(1), match.group(2), int(match.group(3))


def local_addresses(family: str = "ip4") -> list[str]:
    """IP addresses assigned to this machine's interfaces, loopback first."""
    want = socket.AF_INET if family == "ip4" else socket.AF_INET6
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            ip = a.address.split("%")[0]
            if a.family == want and ip not in found:
                found.append(ip)
    return sorted(found, key=lambda ip: (not ipaddress.ip_address(ip).is_loopback, ip))


def expand_unspecified(addr: str) -> list[str]:
    """An address on 0.0.0.0 (or ::) becomes one per local interface; others are returned as they are."""
    try:
        family, ip, _ = parse_tcp_addr(addr)
    except ValueError:
        return [addr]
    if not ipaddress.ip_address(ip).is_unspecified:
        return [addr]
    prefix = f"/{family}/{ip}/"
    return [addr.replace(prefix, f"/{family}/{local}/", 1) for local in local_addresses(family)] or [addr]


def _bind_error(family: str, ip: str, port: int) -> OSError | None:
    sock = socket.socket(socket.AF_INET if family == "ip4" else socket.AF_INET6, socket.SOCK_STREAM)
    try:
        # Same option trio sets on its listeners, so TIME_WAIT leftovers do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None


def _free_port_near(family: str, ip: str, port: int) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65536)):
        if _bind_error(family, ip, candidate) is None:
            return candidate
    return None


def listen_blocker(addr: str) -> str | None:
    """Advice if `addr` cannot be bound right now, else None (port 0 and non-TCP addresses pass).

    py-libp2p listens with SO_REUSEPORT, so a second host on a busy port
    binds "successfully" and the kernel splits connections between the two
    processes. A plain bind (SO_REUSEADDR only) still sees the port as taken.
    """
    try:
        family, ip, port = parse_tcp_addr(addr)
    except ValueError:
        return None
    if port == 0 or _bind_error(family, ip, port) is None:
        return None
    return listen_failure_advice(addr)


def listen_failure_advice(addr: str) -> str:
    """One sentence on why `addr` cannot be listened on and what to pass instead."""
    try:
        family, ip, port = parse_tcp_addr(addr)
    except ValueError as exc:
        return f"cannot listen on {addr}: {exc}; pass e.g. --listen /ip4/0.0.0.0/tcp/4001"
    error = _bind_error(family, ip, port)
    if error is None:
        return f"listening on {addr} failed although the port is free now: retry, or pass another --listen port"
    if error.errno == errno.EADDRINUSE:
        free = _free_port_near(family, ip, port)
        alternative = f"/{family}/{ip}/tcp/{free}" if free else f"/{family}/{ip}/tcp/0"
        return f"port {port} is in use by another process: pass --listen {alternative}"
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"{ip} is not an address of this machine: pass --listen /{family}/0.0.0.0/tcp/{port} "
            f"or one of {', '.join(local_addresses(family))}"
        )
    if error.errno == errno.EACCES:
        return f"port {port} needs elevated privileges: pass --listen /{family}/{ip}/tcp/4001 (any port >= 1024)"
    return f"cannot listen on {addr} ({error.strerror}): pass another --listen address"


async def check_listen_port(addr: str) -> Finding:
    try:
        family, ip, port = parse_tcp_addr(addr)
    except ValueError as exc:
        return Finding("listen_port", Level.ERROR, addr, f"{exc}: pass e.g. --listen /ip4/0.0.0.0/tcp/4001")
    await trio.lowlevel.checkpoint()
    if _bind_error(family, ip, port) is None:
        return Finding("listen_port", Level.OK, addr, f"port {port} on {ip} is free")
    return Finding("listen_port", Level.ERROR, addr, listen_failure_advice(addr))


def check_reachability(listen: Sequence[str], announce: Sequence[str] = ()) -> list[Finding]:
    """Which addresses peers could dial, and whether any of them is reachable beyond this machine/LAN."""
    findings: list[Finding] = []
    candidates = [a for addr in (announce or listen) for a in expand_unspecified(addr)]
    public: list[str] = []
    private: list[str] = []
    loopback: list[str] = []
    for addr in candidates:
        try:
            ip = ipaddress.ip_address(parse_tcp_addr(addr)[1])
        except ValueError:
            continue
        (loopback if ip.is_loopback else private if ip.is_private or ip.is_link_local else public).append(addr)
    for addr in candidates:
        findings.append(Finding("reachability", Level.OK, addr, f"peers can dial {addr} if their network routes to it"))
    if public:
        return findings
    port = parse_tcp_addr(candidates[0])[2] if candidates else 4001
    if private:
        findings.append(Finding(
            "reachability", Level.WARN, ", ".join(private),
            "only private addresses: peers outside your LAN cannot dial you, which is fine for a node "
            f"(it dials coordinators itself); to accept inbound peers forward TCP port {port} on your router "
            "and pass --announce /ip4/<public ip>/tcp/<port>, or reserve a slot on a relay",
        ))
    else:
        findings.append(Finding(
            "reachability", Level.ERROR, ", ".join(loopback) or "(none)",
            "only loopback addresses: no other machine can reach you; pass --listen /ip4/0.0.0.0/tcp/4001",
        ))
    return findings


async def multistream_probe(ip: str, port: int, proposals: Sequence[str], *, timeout: float = 3.0) -> dict[str, bool]:
    """Propose security protocols in turn on one TCP connection: {protocol: accepted}.

    Speaks multistream-select 1.0 by hand (uvarint-length-prefixed, newline
    terminated lines). Stops after the first accepted protocol, since its
    handshake would start there.
    """
    answers: dict[str, bool] = {}
    buf = bytearray()

    async def read_line(stream: trio.SocketStream) -> str:
        while True:
            header = decode_uvarint(buf)
            if header is not None and len(buf) >= header[1] + header[0]:
                size, n = header
                line = bytes(buf[n : n + size]).decode(errors="replace").rstrip("\n")
                del buf[: n + size]
                return line
            chunk = await stream.receive_some(4096)
            if not chunk:
                raise NotLibp2p("it closed the connection during multistream-select")
            buf.extend(chunk)

    def line(text: str) -> bytes:
        data = (text + "\n").encode()
        return encode_uvarint(len(data)) + data

    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(ip, port)
        async with stream:
            try:
                await stream.send_all(line(MULTISTREAM))
                if (hello := await read_line(stream)) != MULTISTREAM:
                    raise NotLibp2p(f"it greeted with {hello[:40]!r}, not {MULTISTREAM}")
                for proto in proposals:
                    await stream.send_all(line(proto))
                    answer = await read_line(stream)
                    answers[proto] = answer == proto
                    if answers[proto]:
                        break
            except trio.BrokenResourceError:
                raise NotLibp2p("it reset the connection during multistream-select") from None
    return answers


def _refused(exc: BaseException) -> bool:
    # trio reports "all attempts to connect failed" and chains the per-address errors.
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_refused(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _refused(exc.__cause__)


async def check_bootstrap(addr: str, *, timeout: float = 3.0) -> Finding:
    try:
        _, ip, port = parse_tcp_addr(addr)
    except ValueError as exc:
        return Finding("bootstrap", Level.ERROR, addr, f"{exc}: use the full address the coordinator prints")
    if "/p2p/" not in addr:
        return Finding(
            "bootstrap",
            Level.ERROR,
            addr,
            "the address lacks /p2p/<peer id>: copy the full address the coordinator prints"
        )
    try:
        answers = await multistream_probe(ip, port, [NOISE], timeout=timeout)
    except trio.TooSlowError:
        return Finding(
            "bootstrap", Level.ERROR, addr,
            f"no answer from {ip}:{port} within {timeout:g} s: "
            f"check the address, and that no firewall drops TCP {port}",
        )
    except NotLibp2p as exc:
        return Finding(
            "bootstrap", Level.ERROR, addr, f"{ip}:{port} is not a libp2p endpoint ({exc}): is that the right port?"
        )
    except OSError as exc:
        if _refused(exc):
            return Finding(
                "bootstrap", Level.ERROR, addr,
                f"{ip}:{port} refused the connection: is the coordinator running and listening on port {port}?",
            )
        return Finding(
            "bootstrap", Level.ERROR, addr, f"cannot reach {ip}:{port} ({exc}): check the address and your network"
        )
    if not answers.get(NOISE):
        return Finding(
            "bootstrap", Level.ERROR, addr,
            f"{ip}:{port} speaks libp2p but refuses Noise: it is not a dataswarm peer, check the address",
        )
    return Finding("bootstrap", Level.OK, addr, f"reached {ip}:{port}; it speaks libp2p with Noise")


async def run_doctor(
    listen: Sequence[str], bootstrap: Sequence[str], *, announce: Sequence[str] = (), timeout: float = 3.0
) -> list[Finding]:
    """All network findings, for `dataswarm node doctor`."""
    findings = [await check_listen_port(addr) for addr in listen]
    findings += check_reachability(listen, announce)
    results: list[Finding | None] = [None] * len(bootstrap)

    async def one(i: int, addr: str) -> None:
        results[i] = await check_bootstrap(addr, timeout=timeout)

    async with trio.open_nursery() as nursery:
        for i, addr in enumerate(bootstrap):
            nursery.start_soon(one, i, addr)
    findings += [f for f in results if f is not None]
    if not bootstrap:
        findings.append(Finding(
            "bootstrap", Level.WARN, "(none)",
            "no bootstrap peers configured: pass --bootstrap <coordinator multiaddr> unless mDNS finds one on your LAN",
        ))
    return findings
