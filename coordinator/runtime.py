"""The coordinator's network shell: gossip offers, answer claims and results, push receipts.

Owns: the I/O around `Scheduler` — publishing its offers on the per-kind
topics, serving the task stream (Claim -> Grant | Reject, Result -> Receipt),
pushing receipts decided later, listening to NodeStatus gossip, announcing
itself, and calling `tick` on a timer.
Must not: make scheduling or verification decisions (the scheduler does).

All scheduler calls go through one worker thread, one at a time: the store's
fsyncs never stall the event loop, and the scheduler's in-memory caches never
see two callers at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import trio

from coordinator.scheduler import Outgoing, Scheduler
from coordinator.store import NotFound
from network import (
    COORDINATORS_TOPIC,
    STATUS_TOPIC,
    TASK_PROTOCOL,
    TASK_REQUEST_KINDS,
    NetworkError,
    Refused,
    Subscription,
    Transport,
    now_ms,
    offers_topic,
    reason_of,
    run_periodic_publisher,
)
from network.topics import RECEIPTS_PROTOCOL
from protocol.envelope import Opened, seal
from protocol.errors import ProtocolError
from protocol.messages import Claim, CoordinatorAnnounce, MessageKind, NodeStatus, Pull, Result

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (installed with libp2p) shadow trio's own types

log = logging.getLogger(__name__)

VERSION = "dataswarm-coordinator/0.1.0"
SLOW_CALL_S = 5.0
T = TypeVar("T")


class CoordinatorRuntime:
    def __init__(
        self,
        host: Transport,
        scheduler: Scheduler,
        *,
        tick_s: float = 0.25,
        announce_interval_s: float = 5.0,
        api_url: str = "",
    ) -> None:
        self.host = host
        self.scheduler = scheduler
        self.tick_s = tick_s
        self.announce_interval_s = announce_interval_s
        self.api_url = api_url
        self._limiter = trio.CapacityLimiter(1)
        self._nursery: trio.Nursery | None = None

    async def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a scheduler (or store) call on the coordinator's single worker thread."""
        started = trio.current_time()
        try:
            return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._limiter)
        finally:
            took = trio.current_time() - started
            if took > SLOW_CALL_S:
                # Claims wait in the same queue: this is what makes nodes time out on their claims.
                log.warning("%s took %.1f s on the coordinator's worker thread (queue included)",
                            getattr(fn, "__qualname__", fn), took)  # fmt: skip

    def announce(self) -> CoordinatorAnnounce:
        return CoordinatorAnnounce(version=VERSION, addrs=self.host.listen_addrs[:16], api_url=self.api_url)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.serve(TASK_PROTOCOL, self._on_request, expect=TASK_REQUEST_KINDS, on_refused=self._on_refused)
        status = await self.host.subscribe(STATUS_TOPIC)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for outgoing in await self.call(self.scheduler.resume, now_ms()):
                nursery.start_soon(self._push, outgoing)
            nursery.start_soon(self._statuses, status)
            nursery.start_soon(
                lambda: run_periodic_publisher(
                    self.host, COORDINATORS_TOPIC, self.announce, interval=self.announce_interval_s
                )
            )
            nursery.start_soon(self._loop)
            task_status.started()

    async def _loop(self) -> None:
        assert self._nursery is not None
        while True:
            now = now_ms()
            for outgoing in await self.call(self.scheduler.tick, now):
                self._nursery.start_soon(self._push, outgoing)
            for kind, envelope in await self.call(self.scheduler.offers, now):
                try:
                    await self.host.publish(offers_topic(kind), envelope)
                except NetworkError as exc:
                    log.warning("offer not published on %s: %s", offers_topic(kind), exc)
            await trio.sleep(self.tick_s)

    async def _statuses(self, sub: Subscription) -> None:
        async for opened in sub:
            if isinstance(opened.message, NodeStatus):
                await self.call(self.scheduler.note_status, opened.sender_peer_id, opened.message, now_ms())

    async def _on_request(self, peer: str, opened: Opened) -> bytes:
        message = opened.message
        if isinstance(message, Claim):
            answer = await self.call(self.scheduler.on_claim, message, peer, now_ms())
            return seal(self.host.identity, answer, now_ms=now_ms())
        if isinstance(message, Pull):
            pulled = await self.call(self.scheduler.on_pull, message, peer, now_ms())
            return seal(self.host.identity, pulled, now_ms=now_ms())
        if isinstance(message, Result):
            try:
                receipt, others = await self.call(self.scheduler.on_result, opened, now_ms())
            except NotFound as exc:
                raise Refused(f"unknown lease: {exc}") from None
            assert self._nursery is not None
            for outgoing in others:
                self._nursery.start_soon(self._push, outgoing)
            return receipt
        raise Refused(f"{type(message).__name__} is not a request")

    async def _on_refused(self, peer: str, error: ProtocolError) -> None:
        kind = getattr(error, "kind", None)
        await self.call(self.scheduler.charge_refusal, peer, reason_of(error), now_ms(), kind=kind)

    def push_later(self, outgoing: Outgoing) -> None:
        """Deliver a receipt in the background (the runtime's nursery owns the attempt)."""
        assert self._nursery is not None
        self._nursery.start_soon(self._push, outgoing)

    async def _push(self, outgoing: Outgoing) -> None:
        """Deliver a receipt decided after its result was answered; the node may be gone (that is fine)."""
        try:
            await self.host.request(
                outgoing.peer_id, RECEIPTS_PROTOCOL, outgoing.envelope, expect={MessageKind.NODE_STATUS}, timeout=10
            )
        except NetworkError as exc:
            log.debug("receipt for %s not delivered: %s", outgoing.peer_id, exc)
