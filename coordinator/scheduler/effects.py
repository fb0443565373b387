"""Applying a decision: verdicts, signed receipts, reputations and rows written by one `Store.settle`,
replicas and validate tasks added, tasks abandoned; each decision's writes are one transaction. Each
application returns the receipts to deliver and the tasks to decide next (a closed validate task's
parent), which the scheduler's loop drains."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coordinator.scheduler.audits import create_audit, parent_to_decide
from coordinator.scheduler.config import SchedulerConfig
from coordinator.scheduler.decide import Accept, AddReplica, Decision, NeedAudit, Reject, Wait
from coordinator.scheduler.events import Events
from coordinator.scheduler.nodes import Nodes
from coordinator.scheduler.rows import RowGate
from coordinator.scheduler.view import TaskView
from coordinator.store import Judgement, NewRow, ReplicaRecord, ResultRecord, Store, TaskRecord, TaskState
from coordinator.verify.reasons import Failure
from coordinator.verify.receipts import build_receipt
from coordinator.verify.reputation import NodeReputation, Outcome, new_node, outcome_for, update
from protocol.identity import Identity
from protocol.messages import Result, Verdict
from protocol.tasks import GENERATIVE_KINDS, LLM_KINDS, TaskKind

log = logging.getLogger(__name__)

Judged = tuple[ResultRecord, Result, Failure | None]
"""One result to settle: its record, its message (for the receipt), and why it is rejected (None: accepted)."""


@dataclass(frozen=True)
class Outgoing:
    """A signed envelope the runtime must deliver to one node (a receipt decided later)."""

    peer_id: str
    envelope: bytes


@dataclass
class Applied:
    outgoing: list[Outgoing] = field(default_factory=list)
    receipts: dict[int, bytes] = field(default_factory=dict)
    """The receipt issued for each result settled, by result id."""
    then: list[str] = field(default_factory=list)
    """Tasks to decide next: their state changed because of this one."""

    def add(self, other: Applied) -> Applied:
        self.outgoing += other.outgoing
        self.receipts.update(other.receipts)
        self.then += other.then
        return self


class Effects:
    def __init__(
        self,
        store: Store,
        identity: Identity,
        config: SchedulerConfig,
        nodes: Nodes,
        rows: RowGate,
        allowed_models: Callable[[TaskRecord], list[str]],
        stats: Counter[str],
        events: Events,
    ) -> None:
        self.store = store
        self.identity = identity
        self.config = config
        self.nodes = nodes
        self.rows = rows
        self.allowed_models = allowed_models
        self.stats = stats
        self.events = events

    def apply(self, view: TaskView, decision: Decision, now_ms: int) -> Applied:
        """Carry out one decision as one store transaction: a crash or an error part way writes none of it."""
        with self.store.atomic():
            return self._apply(view, decision, now_ms)

    def _apply(self, view: TaskView, decision: Decision, now_ms: int) -> Applied:
        task = view.task
        if isinstance(decision, Wait):
            return Applied()
        if isinstance(decision, AddReplica):
            self.store.add_replica(task.task_id, now_ms=now_ms)
            return Applied()
        records = {r.result_id: r for r in view.pending}
        if isinstance(decision, NeedAudit):
            for rid, replicas in decision.candidates:
                create_audit(
                    self.store, self.config, task, view.payload, records[rid], view.messages[rid],
                    replicas=replicas, now_ms=now_ms,
                )  # fmt: skip
                self.stats["validations"] += 1
            return Applied()
        if decision.clear_spot_check:
            self.store.clear_spot_check(task.task_id)
        judged: list[Judged] = []
        if isinstance(decision, Accept):
            judged += [(records[rid], view.messages[rid], None) for rid in decision.accepted]
        judged += [(records[rid], view.messages[rid], failure) for rid, failure in decision.rejected]
        if isinstance(decision, Reject):
            return self.settle(task, judged, now_ms=now_ms)
        canonical = records[decision.canonical]
        output = view.messages[decision.canonical].output
        rows = self.rows.rows_for(task, view.payload, output, decision.audit, now_ms)
        return self.settle(task, judged, canonical=canonical, rows=rows, credit=decision.credit, now_ms=now_ms)

    def settle(
        self,
        task: TaskRecord,
        judged: Sequence[Judged],
        *,
        canonical: ResultRecord | None = None,
        rows: Sequence[NewRow] = (),
        credit: bool = True,
        now_ms: int,
    ) -> Applied:
        """Verdicts, receipts, reputations and rows in one store transaction; then what that closed."""
        judgements: list[Judgement] = []
        reputations: dict[str, NodeReputation] = {}
        applied = Applied()
        for record, result, failure in judged:
            verdict = Verdict.ACCEPTED if failure is None else Verdict.REJECTED
            receipt = self.receipt(result, record.node, verdict, now_ms)
            reason = failure.reason if failure else None
            judgements.append(
                Judgement(record.result_id, verdict, reason.value if reason else "", failure.detail if failure else "",
                          receipt=receipt)
            )  # fmt: skip
            applied.outgoing.append(Outgoing(record.node, receipt))
            applied.receipts[record.result_id] = receipt
            self.stats[f"verdict:{task.kind.value}:{verdict.value}:{reason.value if reason else 'ok'}"] += 1
            outcome = outcome_for(verdict, reason)
            if outcome is None or (outcome is Outcome.ACCEPTED and not credit):
                continue
            rep = reputations.get(record.node) or self.reputation(record.node, now_ms)
            reputations[record.node] = update(rep, outcome, now_ms=now_ms, config=self.config.reputation)
        settled = self.store.settle(
            task.task_id,
            judgements,
            canonical_result_id=canonical.result_id if canonical else None,
            rows=list(rows),
            reputations=list(reputations.values()),
            now_ms=now_ms,
        )
        for rep in reputations.values():
            if rep.blacklisted:
                log.warning("node %s blacklisted (score %.2f)", rep.peer_id, rep.score)
        self.events.settled(settled.task)
        if settled.task.state is not TaskState.OPEN:
            applied.then += parent_to_decide(self.store, settled.task)
        elif any(f is not None for _, _, f in judged) and self.exhausted(settled.task, now_ms):
            # The rejected replica is offered again, but every live node that could run it already
            # did: in a small network that replica would only wait for the 60 s stall clock (stalls.py).
            log.info("task %s: no live node left that has not run it; abandoning it", task.task_id)
            applied.add(self.abandon(task.task_id, now_ms))
        return applied

    def abandon(self, task_id: str, now_ms: int) -> Applied:
        """Stop wanting a task no node will take; a validate task's parent is then decided without it."""
        with self.store.atomic():
            task = self.store.abandon_task(task_id, now_ms=now_ms)
            self.stats["abandoned"] += 1
            self.events.settled(task)
            if task.state is not TaskState.OPEN:
                return Applied(then=parent_to_decide(self.store, task))
            # A result is in but its replica never came: it is re-scored rather than taken on trust.
            if task.kind in GENERATIVE_KINDS:
                self.store.pick_spot_check(task_id, now_ms=now_ms)
            return Applied(then=[task_id])

    def exhausted(self, task: TaskRecord, now_ms: int) -> bool:
        """Whether no live node may take this task's next replica (False when no node is known live)."""
        live = self.nodes.live(now_ms)
        if not live or task.kind is TaskKind.VALIDATE:
            return False
        involved = self.involved(task.task_id)
        models = self.allowed_models(task) if task.kind in LLM_KINDS else []
        return not any(p not in involved and self.nodes.serves(p, task.kind, models) for p in live)

    def involved(self, task_id: str, replicas: Sequence[ReplicaRecord] | None = None) -> set[str]:
        """Nodes that produced a result for the task or hold one of its replicas: no other replica for them."""
        nodes = {r.node for r in self.store.results_for(task_id)}
        return nodes | {x.node for x in (self.store.replicas(task_id) if replicas is None else replicas) if x.node}

    def receipt(self, result: Result, peer_id: str, verdict: Verdict, now_ms: int) -> bytes:
        kind = TaskKind(result.output.kind)
        return build_receipt(self.identity, result, node_peer_id=peer_id, task_kind=kind, verdict=verdict,
                             now_ms=now_ms)  # fmt: skip

    def reputation(self, peer_id: str, now_ms: int) -> NodeReputation:
        return self.store.reputation(peer_id) or new_node(peer_id, now_ms=now_ms, config=self.config.reputation)

    def charge(self, peer_id: str, outcome: Outcome, now_ms: int) -> NodeReputation:
        """Count one outcome against a node outside a settle (a refused request, a lapsed lease)."""
        rep = update(self.reputation(peer_id, now_ms), outcome, now_ms=now_ms, config=self.config.reputation)
        self.store.save_reputation(rep)
        return rep
