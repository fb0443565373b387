"""The delivery queue between libp2p callbacks and an application consumer.

py-libp2p hands each subscription a 32-slot channel and drops what does not
fit (`SUBSCRIPTION_CHANNEL_SIZE`, notes/libp2p.md #2). This queue replaces it:
the producer side is synchronous and never blocks (libp2p calls it from a
callback), the consumer side is an async iterator, and nothing is dropped
below `max_items`. At that cap a put is refused and the caller must count and
log it: memory stays bounded against a flood, and loss is never silent.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ITEMS = 50_000
"""At the 8.5 KB envelope ceiling of gossip kinds this is ~425 MB; realistic 2 KB offers, ~100 MB."""


class DeliveryQueue(Generic[T]):
    def __init__(self, name: str, *, max_items: int = DEFAULT_MAX_ITEMS, warn_at: int = 1_000) -> None:
        self.name = name
        self.max_items = max_items
        self.high_water = 0
        self._warn_next = warn_at
        self._items: deque[T] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Append without blocking; False (nothing queued) if closed or at `max_items`."""
        if self._closed or len(self._items) >= self.max_items:
            return False
        self._items.append(item)
        size = len(self._items)
        if size > self.high_water:
            self.high_water = size
            if size >= self._warn_next:
                log.warning("%s: consumer is %d messages behind (nothing lost yet)", self.name, size)
                self._warn_next *= 2
        self._lot.unpark_all()
        return True

    def close(self) -> None:
        """No more puts; the consumer drains what is queued, then iteration ends."""
        self._closed = True
        self._lot.unpark_all()

    async def get(self) -> T:
        """The oldest item; trio.EndOfChannel once closed and drained."""
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._lot.park()
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
