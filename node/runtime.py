"""The node's main loop: offers in, claims out, executors run, results out, receipts kept.

Owns: deciding which offers to claim (kind served, model held, a slot free,
signer trusted), the claim -> grant -> execute -> result -> receipt exchange
with the coordinator that signed the offer, the NodeStatus it gossips, and the
local receipt ledger. A freed slot pulls its next task from the coordinators with work in turn
(sharing.py).
Must not: verify other nodes' work or decide verdicts (the coordinator does),
or run more tasks than it has slots: a node never claims without a free slot,
so backpressure reaches the coordinator as claims that do not come.

Everything runs in the runtime's own nursery; cancelling it stops the node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from network import (
    STATUS_TOPIC,
    TASK_PROTOCOL,
    TASK_RESPONSE_KINDS,
    ConnectionLost,
    NetworkError,
    Refused,
    RequestTimeout,
    Subscription,
    Transport,
    now_ms,
    offers_topic,
    run_periodic_publisher,
)
from network.topics import RECEIPTS_PROTOCOL
from node.executors.base import ExecutionError, Executor
from node.ledger import ReceiptLedger
from node.sharing import SharePolicy
from protocol.digests import payload_sha256
from protocol.envelope import Opened, seal
from protocol.errors import ProtocolError
from protocol.messages import (
    Claim,
    Grant,
    MessageKind,
    ModelInfo,
    NodeStatus,
    Pull,
    Receipt,
    Reject,
    RejectReason,
    Result,
    TaskOffer,
)
from protocol.tasks import LLM_KINDS, TaskKind

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (installed with libp2p) shadow trio's own types

log = logging.getLogger(__name__)

VERSION = "dataswarm-node/0.1.0"
CLAIM_TIMEOUT_S = 15.0
RETRYABLE = frozenset({RejectReason.ALREADY_FILLED, RejectReason.NO_CAPACITY, RejectReason.DEFERRED})
RESULT_TIMEOUT_S = 60.0


@dataclass
class SlotPool:
    """Free execution slots per pool ("llm" for model kinds, "io" for search/retrieve)."""

    sizes: Mapping[str, int]
    held: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def pool_of(kind: TaskKind) -> str:
        return "llm" if kind in LLM_KINDS else "io"

    def try_take(self, kind: TaskKind) -> bool:
        pool = self.pool_of(kind)
        if self.held.get(pool, 0) >= self.sizes.get(pool, 0):
            return False
        self.held[pool] = self.held.get(pool, 0) + 1
        return True

    def give_back(self, kind: TaskKind) -> None:
        pool = self.pool_of(kind)
        self.held[pool] = max(0, self.held.get(pool, 0) - 1)

    @property
    def free(self) -> int:
        return sum(max(0, n - self.held.get(p, 0)) for p, n in self.sizes.items())

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


@dataclass
class NodeCounters:
    offers_seen: int = 0
    claims: int = 0
    grants: int = 0
    rejects: int = 0
    done: int = 0
    failed: int = 0
    accepted: int = 0
    rejected: int = 0
    pulls: int = 0
    pull_grants: int = 0


ResultHook = Callable[[Grant, Result], Result]
"""Transforms a result before it is signed; None in production. Tests use it to build adversarial nodes."""


def grant_problem(offer: TaskOffer, grant: Grant, *, peer_id: str, models: Collection[str]) -> str | None:
    """Why this node must not run `grant` for the `offer` it claimed, or None."""
    if grant.node_peer_id != peer_id:
        return f"the grant is for {grant.node_peer_id}"
    if grant.task_id != offer.task_id:
        return "the grant names another task than the offer"
    if grant.attempt < offer.attempt:
        # A later attempt is fine: the offer was gossiped before a lease of this task lapsed.
        return "the grant is for an older attempt than the offer"
    if payload_sha256(grant.payload) != offer.payload_sha256:
        return "the payload does not match the digest in the offer"
    if grant.payload.kind != offer.task_kind:
        return "the payload kind does not match the offer"
    if grant.model_sha256 is not None and grant.model_sha256 not in models:
        return f"model {grant.model_sha256} is not loaded here"
    return None


def pulled_grant_problem(
    grant: Grant, *, peer_id: str, kinds: Collection[TaskKind], models: Collection[str]
) -> str | None:
    """Why this node must not run a grant it pulled (no offer to hold it against), or None. The grant is
    signed by a trusted coordinator; what is left to check is that it is for this node and runnable here."""
    if grant.node_peer_id != peer_id:
        return f"the grant is for {grant.node_peer_id}"
    if TaskKind(grant.payload.kind) not in kinds:
        return f"this node did not ask for {grant.payload.kind} tasks"
    if TaskKind(grant.payload.kind) in LLM_KINDS and grant.model_sha256 not in models:
        return f"model {grant.model_sha256} is not loaded here"
    return None


class NodeRuntime:
    def __init__(
        self,
        host: Transport,
        executors: Mapping[TaskKind, Executor],
        models: list[ModelInfo],
        *,
        trusted_coordinators: set[bytes],
        slots: Mapping[str, int],
        ledger: ReceiptLedger | None = None,
        status_interval_s: float = 10.0,
        result_hook: ResultHook | None = None,
    ) -> None:
        self.host = host
        self.executors = dict(executors)
        self.models = models
        self.trusted = trusted_coordinators
        self.slots = SlotPool(slots)
        self.ledger = ledger
        self.status_interval_s = status_interval_s
        self.result_hook = result_hook
        self.counters = NodeCounters()
        self.receipt_hook: Callable[[Receipt], None] | None = None
        """Called with every receipt kept (the live status line of `dataswarm node start` counts credit)."""
        self._claimed: set[tuple[str, int]] = set()
        self._model_digests = {m.sha256 for m in models}
        self.sharing = SharePolicy()

    @property
    def kinds(self) -> list[TaskKind]:
        return [k for k in self.executors if k not in LLM_KINDS or self.models]

    def status(self) -> NodeStatus:
        return NodeStatus(
            version=VERSION,
            models=self.models,
            task_kinds=self.kinds,
            free_slots=self.slots.free,
            total_slots=self.slots.total,
            tasks_done=self.counters.done,
        )

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.serve(RECEIPTS_PROTOCOL, self._on_pushed_receipt, expect={MessageKind.RECEIPT})
        async with trio.open_nursery() as nursery:
            for kind in self.kinds:
                sub = await self.host.subscribe(offers_topic(kind), trusted=self.trusted)
                nursery.start_soon(self._consume, sub, nursery)
            nursery.start_soon(
                lambda: run_periodic_publisher(self.host, STATUS_TOPIC, self.status, interval=self.status_interval_s)
            )
            task_status.started()

    async def _consume(self, sub: Subscription, nursery: trio.Nursery) -> None:
        async for opened in sub:
            offer = opened.message
            assert isinstance(offer, TaskOffer)
            self.counters.offers_seen += 1
            if not self._wants(offer):
                continue
            self.sharing.offered(opened.sender_peer_id, trio.current_time())
            if not self.slots.try_take(offer.task_kind):
                continue  # no free slot: do not claim (backpressure)
            self._claimed.add((offer.task_id, offer.attempt))
            nursery.start_soon(self._work, opened, offer)

    def _wants(self, offer: TaskOffer) -> bool:
        if (offer.task_id, offer.attempt) in self._claimed:
            return False  # gossip delivers re-offers and duplicates; tasks are handled once
        if offer.task_kind not in self.executors or offer.offer_expires_ms < now_ms():
            return False
        return not (offer.task_kind in LLM_KINDS and offer.model_sha256 and not self._model_for(offer))

    def _model_for(self, offer: TaskOffer) -> str | None:
        if offer.task_kind not in LLM_KINDS:
            return None
        if not offer.model_sha256:
            return self.models[0].sha256 if self.models else None
        return next((m for m in offer.model_sha256 if m in self._model_digests), None)

    async def _work(self, opened: Opened, offer: TaskOffer) -> None:
        coordinator = opened.sender_peer_id
        try:
            try:
                grant = await self._claim(coordinator, offer)
            except (RequestTimeout, ConnectionLost):
                # The claim or its answer was lost (a slow coordinator, a dropped stream): claim
                # again on the next re-offer. A grant that did go out is handed back again.
                self._claimed.discard((offer.task_id, offer.attempt))
                raise
            while grant is not None:
                result = await self._execute(grant)
                if result is not None:
                    await self._submit(coordinator, grant, result)
                self.sharing.ran(coordinator)
                # The slot is free again: ask on the connections it holds instead of waiting for a re-offer.
                grant, coordinator = await self._pull_next(coordinator, offer.task_kind)
        except (NetworkError, ProtocolError) as exc:
            log.warning("task %s with %s: %s", offer.task_id, coordinator, exc)
        finally:
            self.slots.give_back(offer.task_kind)

    async def _pull_next(self, served: str, kind: TaskKind) -> tuple[Grant | None, str]:
        """The freed slot's next grant and whose it is: pulled from each coordinator with work in turn
        (`SharePolicy.pull_order`), so two jobs on one network share the node. One coordinator that cannot
        be reached does not keep the slot from the others."""
        for coordinator in self.sharing.pull_order(served, trio.current_time()):
            try:
                grant = await self._pull(coordinator, kind)
            except (NetworkError, ProtocolError) as exc:
                log.warning("pull from %s: %s", coordinator, exc)
                continue
            if grant is not None:
                return grant, coordinator
        return None, served

    async def _claim(self, coordinator: str, offer: TaskOffer) -> Grant | None:
        claim = Claim(
            task_id=offer.task_id,
            attempt=offer.attempt,
            model_sha256=self._model_for(offer),
            free_slots=self.slots.free,
            tok_s=self.models[0].tok_s if self.models and offer.task_kind in LLM_KINDS else 0.0,
        )
        self.counters.claims += 1
        message = await self._ask(coordinator, claim)
        if isinstance(message, Reject):
            self.counters.rejects += 1
            if message.reason in RETRYABLE:
                # A replica may open up (adaptive replication adds one) or a slot free up: claim again later.
                self._claimed.discard((offer.task_id, offer.attempt))
            log.debug("claim for %s refused: %s %s", offer.task_id, message.reason.value, message.detail)
            return None
        problem = grant_problem(offer, message, peer_id=self.host.peer_id, models=self._model_digests)
        if problem:
            log.warning("grant for %s refused: %s", offer.task_id, problem)
            return None
        self.counters.grants += 1
        return message

    async def _ask(self, coordinator: str, request: Claim | Pull) -> Grant | Reject:
        """Send a claim or a pull on the task protocol; the coordinator answers with a Grant or a Reject."""
        answer = await self.host.request(
            coordinator,
            TASK_PROTOCOL,
            seal(self.host.identity, request, now_ms=now_ms()),
            expect=TASK_RESPONSE_KINDS,
            trusted=self.trusted,
            timeout=CLAIM_TIMEOUT_S,
        )
        message = answer.message
        if not isinstance(message, Grant | Reject):
            raise ProtocolError(f"coordinator answered a {request.kind} with {type(message).__name__}")
        return message

    async def _pull(self, coordinator: str, kind: TaskKind) -> Grant | None:
        """A grant for any open task of the freed slot's pool, or None (then offers bring the next one)."""
        pool = SlotPool.pool_of(kind)
        kinds = [k for k in self.kinds if SlotPool.pool_of(k) == pool]
        pull = Pull(
            task_kinds=kinds,
            model_sha256=sorted(self._model_digests)[:8] if pool == "llm" else [],
            free_slots=max(1, self.slots.free + 1),  # this slot is still held while it asks
            tok_s=self.models[0].tok_s if self.models and pool == "llm" else 0.0,
        )
        self.counters.pulls += 1
        message = await self._ask(coordinator, pull)
        if isinstance(message, Reject):
            return None
        problem = pulled_grant_problem(message, peer_id=self.host.peer_id, kinds=kinds, models=self._model_digests)
        if problem:
            log.warning("pulled grant for %s refused: %s", message.task_id, problem)
            return None
        self._claimed.add((message.task_id, message.attempt))  # its gossiped offer is not claimed again
        self.counters.pull_grants += 1
        self.counters.grants += 1
        return message

    async def _execute(self, grant: Grant) -> Result | None:
        executor = self.executors[TaskKind(grant.payload.kind)]
        try:
            done = await executor.execute(grant.payload, grant.decoding, grant.model_sha256)
        except ExecutionError as exc:
            self.counters.failed += 1
            log.warning("task %s failed here: %s", grant.task_id, exc)
            return None
        result = Result(
            task_id=grant.task_id,
            job_id=grant.job_id,
            lease_id=grant.lease_id,
            attempt=grant.attempt,
            output=done.output,
            model_sha256=done.model_sha256,
            decoding=grant.decoding,
            prompt=done.prompt,
            raw_text=done.raw_text,
            stats=done.stats,
        )
        return self.result_hook(grant, result) if self.result_hook else result

    async def _submit(self, coordinator: str, grant: Grant, result: Result) -> None:
        answer = await self.host.request(
            coordinator,
            TASK_PROTOCOL,
            seal(self.host.identity, result, now_ms=now_ms()),
            expect={MessageKind.RECEIPT},
            trusted=self.trusted,
            timeout=RESULT_TIMEOUT_S,
        )
        self.counters.done += 1
        self._keep(answer)

    def _keep(self, opened: Opened) -> None:
        receipt = opened.message
        assert isinstance(receipt, Receipt)
        if receipt.node_peer_id != self.host.peer_id:
            log.warning("receipt for another node (%s) ignored", receipt.node_peer_id)
            return
        if receipt.verdict.value == "accepted":
            self.counters.accepted += 1
        elif receipt.verdict.value == "rejected":
            self.counters.rejected += 1
        if self.ledger is not None:
            self.ledger.append(opened.raw, receipt)
        if self.receipt_hook is not None:
            self.receipt_hook(receipt)

    async def _on_pushed_receipt(self, peer: str, opened: Opened) -> bytes:
        if opened.sender not in self.trusted:
            raise Refused("receipts are accepted only from trusted coordinators")
        self._keep(opened)
        return seal(self.host.identity, self.status(), now_ms=now_ms())
