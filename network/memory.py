"""A test double: an in-process network of `MemoryTransport`s, for unit tests that are not about the network.

A runtime given a `MemoryTransport` instead of a `SwarmHost` gossips and
makes requests to the other transports of its `MemoryNetwork` in the same trio
run, with no sockets, no libp2p and no waiting for meshes to form. Tests of
the network itself use real hosts (tests/network); this is for tests whose
subject is a runtime's logic (claims, grants, results, receipts).

What it keeps of the real transport, by running the same code:
- every envelope check and its drop accounting (`EnvelopeChecks`,
  `NetworkStats`), with one replay cache per transport, so what a `SwarmHost`
  refuses this refuses too, and a message's sender is the transport that
  sent it (the double's stand-in for Noise and gossip signatures);
- the gossip size ceiling (PublishTooLarge) and the publisher-side checks;
- `Subscription` as it is (ordered, bounded, drops counted);
- requests as `Streams` makes them: one persistent stream per (peer,
  protocol), framed as in rpc.py, with the same size limits, RemoteError for
  refusals, RequestTimeout, and ConnectionLost when a peer is unknown, does
  not serve the protocol or leaves (its streams close);
- errors mapped by `errors.network_error`, as the real ones are.

What it does not model: connections (every transport reaches every other
at once; no dialling, peer events or reconnects), the mesh (a publish
reaches every subscriber synchronously: no heartbeat, IHAVE, fanout,
`flood_max` or duplicate delivery), publish backpressure (never waits),
latency, loss, partitions, mDNS, the DHT, relays and Noise itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from network.checks import EnvelopeChecks, NetworkStats
from network.errors import AlreadySubscribed, network_error, network_errors
from network.queue import DEFAULT_MAX_ITEMS
from network.streams import StreamHandler, Streams
from network.transport import Subscription, Transport
from protocol.identity import Identity
from protocol.messages import MessageKind

if TYPE_CHECKING:  # trio.testing pulls in pytest when it is installed: only the pair helpers, at run time
    import trio.testing


class MemoryNetwork:
    """The transports that can reach each other: all of those running, each under its own peer ID."""

    def __init__(self) -> None:
        self.transports: dict[str, MemoryTransport] = {}

    def transport(self, identity: Identity, *, max_buffered: int = DEFAULT_MAX_ITEMS) -> MemoryTransport:
        """A transport for `identity` on this network; it joins when its `async with` starts."""
        return MemoryTransport(self, identity, max_buffered=max_buffered)


class _MemoryStream:
    """One end of an in-memory byte stream to `peer_id`, failing as `RawStream` does (ConnectionLost)."""

    def __init__(
        self,
        send: trio.testing.MemorySendStream,
        receive: trio.testing.MemoryReceiveStream,
        peer_id: str,
        held_in: set[_MemoryStream],
    ) -> None:
        self._send = send
        self._receive = receive
        self.peer_id = peer_id
        self._held_in = held_in
        held_in.add(self)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with network_errors("read", f"from {self.peer_id}"):
            return bytes(await self._receive.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with network_errors("write", f"to {self.peer_id}"):
            await self._send.send_all(data)

    def abort(self) -> None:
        """The other end reads EOF; this end's reads and writes fail."""
        with contextlib.suppress(trio.BrokenResourceError):  # the other end is closed already
            self._send.close()
        self._receive.close()
        self._held_in.discard(self)

    async def close(self) -> None:
        self.abort()
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        await self.close()


class MemoryTransport:
    """A `Transport` on a `MemoryNetwork`. Use as `async with network.transport(identity) as t:`."""

    def __init__(self, network: MemoryNetwork, identity: Identity, *, max_buffered: int = DEFAULT_MAX_ITEMS) -> None:
        self.network = network
        self.identity = identity
        self.peer_id = identity.peer_id
        self.max_buffered = max_buffered
        self.stats = NetworkStats()
        self.checks = EnvelopeChecks(self.stats)
        self._handlers: dict[str, StreamHandler] = {}
        self.streams = Streams(self.checks, open_stream=self._open_stream, set_handler=self._handlers.__setitem__)
        self.serve = self.streams.serve
        self.request = self.streams.request
        self._subs: dict[str, Subscription] = {}
        self._ends: set[_MemoryStream] = set()
        self._nursery: trio.Nursery | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def listen_addrs(self) -> list[str]:
        return [f"/memory/{self.peer_id}"]

    async def __aenter__(self) -> MemoryTransport:
        if self.peer_id in self.network.transports:
            raise RuntimeError(f"{self.peer_id} is already on this memory network")
        stack = contextlib.AsyncExitStack()
        self._nursery = self.streams.nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        self.network.transports[self.peer_id] = self
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stack is not None and self._nursery is not None
        del self.network.transports[self.peer_id]
        for sub in self._subs.values():
            sub.queue.close()
        self._nursery.cancel_scope.cancel()  # first: this side's readers end cancelled, not failed
        for end in list(self._ends):
            end.abort()  # peers waiting on these streams see them close, as when a host goes away
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            self._stack = self._nursery = self.streams.nursery = None
        return None

    # --- gossip --------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, *, timeout: float | None = None, check: bool = True) -> int:
        """Deliver to every other subscribed transport now; how many. `timeout` is unused (no backpressure)."""
        self.checks.publishing(topic, data, self_peer=self.peer_id, check=check)
        await trio.lowlevel.checkpoint()
        self.stats.gossip_published[topic] += 1
        receivers = [t for t in self.network.transports.values() if t is not self and topic in t._subs]
        for receiver in receivers:
            receiver._receive(topic, data, origin=self.peer_id)
        return len(receivers)

    def _receive(self, topic: str, data: bytes, *, origin: str) -> None:
        sub = self._subs[topic]
        opened = sub.check(self.checks, data, origin=origin, forwarder=origin)
        if opened is not None and not sub.queue.closed:
            sub.deliver(opened, self.stats)

    async def subscribe(
        self, topic: str, expect: Collection[MessageKind] | None = None, trusted: Collection[bytes] | None = None
    ) -> Subscription:
        if topic in self._subs:
            raise AlreadySubscribed(f"already subscribed to {topic}")
        sub = self._subs[topic] = Subscription(
            topic, expect, trusted, max_buffered=self.max_buffered, on_unsubscribe=self._unsubscribe
        )
        await trio.lowlevel.checkpoint()
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.topic) is sub:
            del self._subs[sub.topic]
            sub.queue.close()
        await trio.lowlevel.checkpoint()

    # --- requests on streams (Streams: serve, request) -----------------------

    async def _open_stream(self, peer_id: str, protocol_id: str) -> _MemoryStream:
        await trio.lowlevel.checkpoint()
        peer = self.network.transports.get(peer_id)
        handler = peer._handlers.get(protocol_id) if peer is not None else None
        if peer is None or peer._nursery is None or handler is None:
            problem = "no such peer on the network" if peer is None else "the peer does not serve it"
            raise network_error(LookupError(problem), "open", f"{protocol_id} to {peer_id}")
        from trio.testing import memory_stream_one_way_pair

        to_peer, from_here = memory_stream_one_way_pair()
        to_here, from_peer = memory_stream_one_way_pair()
        peer._nursery.start_soon(handler, _MemoryStream(to_here, from_here, self.peer_id, peer._ends))
        return _MemoryStream(to_peer, from_peer, peer_id, self._ends)


def _is_a_transport(transport: MemoryTransport) -> Transport:
    return transport  # mypy's check that MemoryTransport implements Transport
