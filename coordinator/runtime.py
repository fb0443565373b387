"""The coordinator's network shell: gossip offers, answer claims and results, push receipts.

Owns: the I/O around `Scheduler` — publishing its offers on the per-kind
topics, serving the task stream (Claim -> Grant | Reject, Result -> Receipt),
pushing receipts decided later, listening to NodeStatus gossip, announcing
itself, calling `tick` on a timer, and sending the scheduler's events to the
job runners listening on their job's channel (`job_events`).
Must not: make scheduling or verification decisions (the scheduler does).

All scheduler calls go through one worker thread, one at a time: the store's
fsyncs never stall the event loop, and the scheduler's in-memory caches never
see two callers at once.

Time: the runtime and the runners read the clock through `now_ms` (given at
construction, `network.now_ms` by default), so a test can run them on trio's
MockClock; the loops sleep on trio's clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import trio

from coordinator.scheduler import Outgoing, Scheduler
from coordinator.scheduler.events import Event, JobChanged, NodesChanged
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
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """clock: where the runtime and the job runners read the time (wall time in ms), as `now_ms`; called
        on the worker thread too."""
        self.host = host
        self.now_ms = clock
        self.scheduler = scheduler
        self.tick_s = tick_s
        self.announce_interval_s = announce_interval_s
        self.api_url = api_url
        self._limiter = trio.CapacityLimiter(1)
        self._nursery: trio.Nursery | None = None
        self._listeners: dict[str, list[trio.MemorySendChannel[Event]]] = {}

    async def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a scheduler (or store) call on the coordinator's single worker thread; then send the events
        the scheduler recorded to the runners listening."""
        started = trio.current_time()
        try:
            return await self._on_worker(partial(fn, *args, **kwargs))
        finally:
            self._send(self.scheduler.take_events())
            took = trio.current_time() - started
            if took > SLOW_CALL_S:
                # Claims wait in the same queue: this is what makes nodes time out on their claims.
                log.warning("%s took %.1f s on the coordinator's worker thread (queue included)",
                            getattr(fn, "__qualname__", fn), took)  # fmt: skip

    async def _on_worker(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the worker thread, one call at a time."""
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    @contextmanager
    def job_events(self, job_id: str) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        """A channel of the events about `job_id` (its tasks settled, the job changed) and the live nodes,
        for as long as the block runs. Unbounded: the scheduler never waits on a runner."""
        send, receive = trio.open_memory_channel[Event](math.inf)
        self._listeners.setdefault(job_id, []).append(send)
        try:
            with send, receive:
                yield receive
        finally:
            listeners = self._listeners[job_id]
            listeners.remove(send)
            if not listeners:
                del self._listeners[job_id]

    def notify(self, job_id: str) -> None:
        """Wake the job's runner: its record changed outside the scheduler (cancelled)."""
        self._send([JobChanged(job_id)])

    def _send(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, NodesChanged):
                targets = [s for senders in self._listeners.values() for s in senders]
            else:
                targets = self._listeners.get(event.job_id, [])
            for send in targets:
                send.send_nowait(event)

    def announce(self) -> CoordinatorAnnounce:
        return CoordinatorAnnounce(version=VERSION, addrs=self.host.listen_addrs[:16], api_url=self.api_url)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.serve(TASK_PROTOCOL, self._on_request, expect=TASK_REQUEST_KINDS, on_refused=self._on_refused)
        status = await self.host.subscribe(STATUS_TOPIC)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for outgoing in await self.call(self.scheduler.resume, self.now_ms()):
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
            now = self.now_ms()
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
                await self.call(self.scheduler.note_status, opened.sender_peer_id, opened.message, self.now_ms())

    async def _on_request(self, peer: str, opened: Opened) -> bytes:
        message = opened.message
        if isinstance(message, Claim):
            answer = await self.call(self.scheduler.on_claim, message, peer, self.now_ms())
            return seal(self.host.identity, answer, now_ms=self.now_ms())
        if isinstance(message, Pull):
            pulled = await self.call(self.scheduler.on_pull, message, peer, self.now_ms())
            return seal(self.host.identity, pulled, now_ms=self.now_ms())
        if isinstance(message, Result):
            try:
                receipt, others = await self.call(self.scheduler.on_result, opened, self.now_ms())
            except NotFound as exc:
                raise Refused(f"unknown lease: {exc}") from None
            assert self._nursery is not None
            for outgoing in others:
                self._nursery.start_soon(self._push, outgoing)
            return receipt
        raise Refused(f"{type(message).__name__} is not a request")

    async def _on_refused(self, peer: str, error: ProtocolError) -> None:
        kind = getattr(error, "kind", None)
        await self.call(self.scheduler.charge_refusal, peer, reason_of(error), self.now_ms(), kind=kind)

    async def _push(self, outgoing: Outgoing) -> None:
        """Deliver a receipt decided after its result was answered; the node may be gone (that is fine)."""
        try:
            await self.host.request(
                outgoing.peer_id, RECEIPTS_PROTOCOL, outgoing.envelope, expect={MessageKind.NODE_STATUS}, timeout=10
            )
        except NetworkError as exc:
            log.debug("receipt for %s not delivered: %s", outgoing.peer_id, exc)
