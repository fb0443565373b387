"""The seam between the runtimes and the network: the `Transport` protocol and the types on it.

`node.runtime` and `coordinator.runtime` see the network only through
`Transport`: gossip (publish, subscribe) and requests on persistent streams
(serve, request), plus who this peer is. `SwarmHost` (host.py) is the
libp2p one; `MemoryTransport` (memory.py) is a test double for tests that are
not about the network. Both hand out the same `Subscription` and raise the
same error types (errors.py). No libp2p here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Protocol

from network.checks import EnvelopeChecks, NetworkStats
from network.queue import DeliveryQueue
from network.topics import topic_kinds
from protocol.envelope import Opened
from protocol.errors import ProtocolError
from protocol.identity import Identity
from protocol.messages import MessageKind

log = logging.getLogger(__name__)

RequestHandler = Callable[[str, Opened], Awaitable[bytes]]
"""(Noise-authenticated peer ID, verified request) -> response envelope bytes. Raise `Refused` to say no."""
RefusalHook = Callable[[str, ProtocolError], Awaitable[None]]
"""Told (peer, error) for a request refused before it reached the handler."""


class Subscription:
    """Verified messages of one topic, in arrival order, none lost to a slow consumer."""

    def __init__(
        self,
        topic: str,
        expect: Collection[MessageKind] | None,
        trusted: Collection[bytes] | None,
        *,
        max_buffered: int,
        on_unsubscribe: Callable[[Subscription], Awaitable[None]],
    ) -> None:
        self.topic = topic
        self.expect = frozenset(expect) if expect else topic_kinds(topic)
        """Kinds let through: those given, or by default the topic's."""
        self.trusted = frozenset(trusted) if trusted is not None else None
        """With a set, only envelopes signed by one of these Ed25519 public keys get through."""
        self.queue: DeliveryQueue[Opened] = DeliveryQueue(f"subscription {topic}", max_items=max_buffered)
        self._on_unsubscribe = on_unsubscribe

    def __len__(self) -> int:
        """Messages waiting for the consumer."""
        return len(self.queue)

    async def get(self) -> Opened:
        """The next message; trio.EndOfChannel after unsubscribe once drained."""
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[Opened]:
        return self.queue

    async def unsubscribe(self) -> None:
        await self._on_unsubscribe(self)

    def check(self, checks: EnvelopeChecks, data: bytes, *, origin: str, forwarder: str) -> Opened | None:
        """`data` from `origin` opened with this subscription's rules; None (counted, logged) if it fails."""
        try:
            return checks.gossip(self.topic, data, origin=origin, expect=self.expect, trusted=self.trusted)
        except Exception as exc:
            checks.drop(
                checks.stats.gossip_dropped, exc, what=f"gossip on {self.topic}", peer=forwarder, size=len(data)
            )
            return None

    def deliver(self, opened: Opened, stats: NetworkStats) -> None:
        """Queue a verified message for the consumer; past `max_buffered` it is dropped, counted and logged."""
        if self.queue.put(opened):
            stats.gossip_delivered[self.topic] += 1
            return
        stats.gossip_dropped["delivery_queue_full"] += 1
        log.error(
            "subscription %s: %d messages waiting, over max_buffered; message from %s dropped",
            self.topic, len(self.queue), opened.sender_peer_id,
        )  # fmt: skip


class Transport(Protocol):
    """What a runtime needs of the network; `SwarmHost` and `MemoryTransport` implement it."""

    @property
    def identity(self) -> Identity:
        """The key this peer signs its envelopes with (its peer ID is derived from it)."""
        ...

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]:
        """Where others can reach this peer (a coordinator announces them)."""
        ...

    async def publish(self, topic: str, data: bytes, *, timeout: float | None = None) -> int:
        """Gossip an envelope; how many subscribed peers it was handed to.

        Raises PublishTooLarge, PublishBackpressure, or the ProtocolError of an envelope receivers would refuse.
        """
        ...

    async def subscribe(
        self, topic: str, expect: Collection[MessageKind] | None = None, trusted: Collection[bytes] | None = None
    ) -> Subscription:
        """Verified envelopes of `expect` kinds (default: the topic's) on `topic`, from `trusted` signers if given."""
        ...

    def serve(
        self,
        protocol_id: str,
        handler: RequestHandler,
        *,
        expect: Collection[MessageKind],
        on_refused: RefusalHook | None = None,
    ) -> None:
        """Answer requests of `expect` kinds on `protocol_id` with `handler`; refusals are told to `on_refused`."""
        ...

    async def request(
        self,
        peer_id: str,
        protocol_id: str,
        envelope: bytes,
        *,
        expect: Collection[MessageKind],
        trusted: Collection[bytes] | None = None,
        timeout: float = 30.0,
    ) -> Opened:
        """The verified answer of `peer_id` to `envelope`.

        Raises RequestTimeout, ConnectionLost, RemoteError, or the ProtocolError of an answer that failed checks.
        """
        ...
