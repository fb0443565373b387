"""Which peers a host is connected to, and the events its application hears about them.

`PeerTable` is told of each peer coming and going (once per peer, however
many connections it has: the host sorts that out) and wakes whoever waits for
that peer or listens to peer events. No libp2p here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import trio

from network.events import PeerEvent, PeerEventKind
from network.queue import DeliveryQueue

log = logging.getLogger(__name__)


class PeerTable:
    def __init__(self) -> None:
        self._connected: set[str] = set()
        self._waiters: dict[str, trio.Event] = {}
        self._event_queues: list[DeliveryQueue[PeerEvent]] = []

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._connected

    def connected_peers(self) -> list[str]:
        return sorted(self._connected)

    def connected(self, peer_id: str) -> bool:
        """Note `peer_id` as connected; False if it already was (no event then)."""
        if peer_id in self._connected:
            return False
        self._connected.add(peer_id)
        log.debug("connected to %s", peer_id)
        self._emit(PeerEvent(PeerEventKind.CONNECTED, peer_id))
        waiter = self._waiters.pop(peer_id, None)
        if waiter is not None:
            waiter.set()
        return True

    def disconnected(self, peer_id: str) -> None:
        """Note that the last connection to `peer_id` closed."""
        if peer_id not in self._connected:
            return
        self._connected.discard(peer_id)
        log.debug("disconnected from %s", peer_id)
        self._emit(PeerEvent(PeerEventKind.DISCONNECTED, peer_id))

    async def wait_for_peer(self, peer_id: str, *, timeout: float) -> None:
        """Return once `peer_id` is connected; trio.TooSlowError after `timeout`."""
        with trio.fail_after(timeout):
            while peer_id not in self._connected:
                await self._waiters.setdefault(peer_id, trio.Event()).wait()

    @contextlib.asynccontextmanager
    async def peer_events(self) -> AsyncIterator[DeliveryQueue[PeerEvent]]:
        """Connection and disconnection events (one per peer, not per connection) while the block runs."""
        queue: DeliveryQueue[PeerEvent] = DeliveryQueue("peer events")
        self._event_queues.append(queue)
        try:
            yield queue
        finally:
            self._event_queues.remove(queue)
            queue.close()

    def close(self) -> None:
        """End every event stream: the host is shutting down."""
        for queue in self._event_queues:
            queue.close()

    def _emit(self, event: PeerEvent) -> None:
        for queue in self._event_queues:
            if not queue.put(event):
                log.error("peer event queue full: %s for %s lost", event.kind, event.peer_id)
