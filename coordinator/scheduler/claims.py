"""Claims and pulls: each answered with a Grant (the replica claimed, replicas planned, the lease written) or a
Reject that says why. A node that may take an audit waiting for a validator is sent to it first."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable

from coordinator.scheduler.audits import audited, parent_producers, row_writers
from coordinator.scheduler.config import (
    ACTIVE_JOB_STATES,
    DEFER_WINDOW_MS,
    PULL_SCAN,
    PULL_TASK_ID,
    PULL_TRIES,
    VALIDATION_SCAN_MS,
    SchedulerConfig,
)
from coordinator.scheduler.grants import allowed_models, decoding_for
from coordinator.scheduler.nodes import Nodes
from coordinator.scheduler.offers import Offers
from coordinator.scheduler.view import Payloads
from coordinator.store import NotFound, ReplicaRecord, Store, TaskRecord, TaskState
from coordinator.store.replicas import grant_for
from coordinator.verify.reputation import NodeReputation, plan_replication
from protocol.messages import Claim, Grant, Pull, Reject, RejectReason
from protocol.state import ReplicaState, lease_deadline_ms
from protocol.tasks import DETERMINISTIC_KINDS, GENERATIVE_KINDS, LLM_KINDS, TaskKind

log = logging.getLogger(__name__)


class Claims:
    def __init__(
        self,
        store: Store,
        config: SchedulerConfig,
        nodes: Nodes,
        offers: Offers,
        payloads: Payloads,
        involved: Callable[..., set[str]],
        rng: random.Random,
        stats: Counter[str],
    ) -> None:
        self.store = store
        self.config = config
        self.nodes = nodes
        self.offers = offers
        self.payloads = payloads
        self.involved = involved
        self.rng = rng
        self.stats = stats
        self._deferred: dict[tuple[str, tuple[str, int]], int] = {}
        self._waiting_validations: tuple[int, list[tuple[str, int]]] = (-(10**12), [])

    def on_claim(self, claim: Claim, peer_id: str, now_ms: int) -> Grant | Reject:
        """Answer one claim. `peer_id` is the Noise-authenticated sender (= the envelope signer)."""

        def reject(reason: RejectReason, detail: str = "") -> Reject:
            self.stats[f"reject:{reason.value}"] += 1
            return Reject(task_id=claim.task_id, reason=reason, detail=detail)

        rep = self.store.reputation(peer_id)
        if rep is not None and rep.blacklisted:
            log.info("claim refused: node %s is blacklisted", peer_id)
            return reject(RejectReason.NODE_BLACKLISTED, "this node's results failed verification too often")
        try:
            task = self.store.task(claim.task_id)
        except NotFound:
            return reject(RejectReason.TASK_UNKNOWN)
        if task.state is not TaskState.OPEN:
            return reject(RejectReason.ALREADY_FILLED, f"task is {task.state.value}")
        job = None
        if task.kind is not TaskKind.VALIDATE:
            job = self.store.job(task.job_id)
            if job.state not in ACTIVE_JOB_STATES:
                return reject(RejectReason.ALREADY_FILLED, f"job is {job.state}")
        allowed = allowed_models(self.store, self.payloads, task, job)
        if task.kind in LLM_KINDS and allowed and claim.model_sha256 not in allowed:
            return reject(RejectReason.MODEL_NOT_ALLOWED, f"allowed models: {', '.join(allowed)}")
        replicas = self.store.replicas(task.task_id)
        held = self._live_grant(task, replicas, claim.attempt, peer_id, now_ms)
        if held is not None:
            # The node claims what it already holds: its first answer was lost on the way.
            self.stats["regrants"] += 1
            return held
        producers = parent_producers(self.store, task.task_id) if task.kind is TaskKind.VALIDATE else None
        if (
            producers is not None
            and peer_id in producers
            and peer_id not in self.nodes.validators_for(producers, allowed[0], now_ms)
        ):
            return reject(RejectReason.ALREADY_HELD, "a producer of a candidate cannot validate it")
        if task.kind is TaskKind.JUDGE and peer_id in row_writers(self.store, task.task_id):
            return reject(RejectReason.ALREADY_HELD, "a node that wrote the row cannot judge it")
        status = self.nodes.status(peer_id)
        capacity = max(1, status.total_slots) if status is not None else 1
        if self.store.count_held(peer_id) >= capacity:
            return reject(RejectReason.NO_CAPACITY, f"node already holds {capacity} lease(s)")
        if task.kind in LLM_KINDS and task.kind is not TaskKind.VALIDATE:
            waiting = self._validation_waiting_for(peer_id, now_ms)
            if waiting is not None:
                self._deferred.setdefault((peer_id, waiting), now_ms)
                self.offers.forget(waiting)  # offered again on the next tick
                self.stats["deferred"] += 1
                return reject(RejectReason.DEFERRED, f"validate {waiting[0]} first: a finished result waits on it")
        # The claim, the replicas and spot-check pick it plans, and the lease: all written, or none.
        with self.store.atomic():
            claimed = self.store.claim(
                task.task_id, peer_id, claim_deadline_ms=now_ms + self.config.claim_hold_ms, now_ms=now_ms
            )
            if claimed is None:
                return reject(RejectReason.ALREADY_FILLED, "no free replica for this node")
            if task.kind is not TaskKind.VALIDATE:
                self._plan(task, len(replicas), rep, peer_id, now_ms)
            deadline = lease_deadline_ms(now_ms, task.est_tokens, claim.tok_s)
            lease = self.store.grant(
                task.task_id,
                claimed.replica,
                lease_id=f"{task.task_id}.r{claimed.replica}.a{claimed.attempt}",
                deadline_ms=deadline,
                model_sha256=claim.model_sha256 if task.kind in LLM_KINDS else None,
                decoding=decoding_for(task, self.config, claimed.attempt),
                now_ms=now_ms,
            )
        self.stats["grants"] += 1
        return grant_for(lease, task, self.payloads.get(task.task_id))

    def _plan(self, task: TaskRecord, have: int, rep: NodeReputation | None, peer_id: str, now_ms: int) -> None:
        """Replicas for the task now that `peer_id` claimed it (BOINC-style adaptive replication)."""
        plan = plan_replication(
            rep,
            draw=self.rng.random(),
            now_ms=now_ms,
            config=self.config.reputation,
            operator_trusted=peer_id in self.config.trusted_nodes,
        )
        one_run = task.kind is TaskKind.SYNTHESIZE and audited(self.payloads.get(task.task_id))
        replicas = 1 if one_run else plan.replicas
        if plan.spot_check and task.kind in DETERMINISTIC_KINDS and self._another_serves(peer_id, task, now_ms):
            replicas = 2  # a deterministic spot-check is a second replica, from any other node that is here
        for _ in range(max(0, min(replicas, self.config.max_replicas) - have)):
            self.store.add_replica(task.task_id, now_ms=now_ms)
        if plan.spot_check and task.kind in GENERATIVE_KINDS and max(have, replicas) == 1:
            # Only a task that runs once is spot-checked: replicas are compared anyway, and a trusted node
            # claiming a newcomer's second replica would otherwise send agreeing replicas to re-scoring.
            # Stored before the grant: a restart while the node runs the task still re-scores its result.
            self.store.pick_spot_check(task.task_id, now_ms=now_ms)

    def _live_grant(
        self, task: TaskRecord, replicas: list[ReplicaRecord], attempt: int, peer_id: str, now_ms: int
    ) -> Grant | None:
        for replica in replicas:
            if (
                replica.node == peer_id
                and replica.attempt >= attempt  # granted at a later attempt than a stale offer said
                and replica.state is ReplicaState.GRANTED
                and replica.lease_id is not None
                and (replica.deadline_ms is None or replica.deadline_ms > now_ms)
            ):
                return grant_for(self.store.lease(replica.lease_id), task, self.payloads.get(task.task_id))
        return None

    def _another_serves(self, peer_id: str, task: TaskRecord, now_ms: int) -> bool:
        return any(p != peer_id and self.nodes.serves(p, task.kind) for p in self.nodes.live(now_ms))

    def on_pull(self, pull: Pull, peer_id: str, now_ms: int) -> Grant | Reject:
        """Answer a node that asks for any open task of its kinds: the oldest one it may take (audits
        first: finished results wait on them), granted exactly as a claim for it would be."""
        self.stats["pulls"] += 1
        rest: list[TaskKind] = [k for k in dict.fromkeys(pull.task_kinds) if k is not TaskKind.VALIDATE]
        groups: list[list[TaskKind]] = [[TaskKind.VALIDATE]] if TaskKind.VALIDATE in pull.task_kinds else []
        groups += [rest] if rest else []
        tried = 0
        for group in groups:
            seen: set[tuple[str, int]] = set()
            for offered in self.store.offered_replicas(limit=PULL_SCAN, kinds=group):
                key = (offered.task_id, offered.attempt)
                if key in seen:
                    continue
                seen.add(key)
                task = self.store.task(offered.task_id)
                if peer_id in self.involved(task.task_id):
                    continue
                if task.kind is TaskKind.JUDGE and peer_id in row_writers(self.store, task.task_id):
                    continue  # its own row: not a refusal worth counting against the tries
                if task.kind is not TaskKind.VALIDATE and self.store.job(task.job_id).state not in ACTIVE_JOB_STATES:
                    continue  # a job waiting for nodes: not a refusal worth counting against the tries
                allowed = allowed_models(self.store, self.payloads, task)
                model = next((m for m in pull.model_sha256 if not allowed or m in allowed), None)
                if task.kind in LLM_KINDS and model is None:
                    continue
                claim = Claim(
                    task_id=task.task_id,
                    attempt=offered.attempt,
                    model_sha256=model if task.kind in LLM_KINDS else None,
                    free_slots=pull.free_slots,
                    tok_s=pull.tok_s,
                )
                answer = self.on_claim(claim, peer_id, now_ms)
                if isinstance(answer, Grant):
                    self.stats["pull_grants"] += 1
                    return answer
                tried += 1
                if tried >= PULL_TRIES or answer.reason in (RejectReason.NODE_BLACKLISTED, RejectReason.NO_CAPACITY):
                    return Reject(task_id=PULL_TASK_ID, reason=answer.reason, detail=answer.detail)
        return Reject(task_id=PULL_TASK_ID, reason=RejectReason.NONE_OPEN, detail="no open task for this node now")

    def _validation_waiting_for(self, peer_id: str, now_ms: int) -> tuple[str, int] | None:
        """An offered validate replica this node may fill, and was not yet sent to: (task id, attempt).

        A node with a free slot claims whichever offer reaches it first. Offers are re-gossiped every
        `reoffer_ms`, and a wave of synthesize offers outnumbers the validations they produce, so a busy
        network left audits untaken until the stall timer abandoned them (and the results they decide).
        A node is sent to a given validation for DEFER_WINDOW_MS at most: other offers reach it before
        the audit's does, and each is refused in that window; after it, a node that could not take the
        audit after all gets work again (no livelock).
        """
        if len(self._deferred) > 10_000:
            self._deferred = {k: t for k, t in self._deferred.items() if now_ms - t <= DEFER_WINDOW_MS}
        at, keys = self._waiting_validations
        if now_ms - at >= VALIDATION_SCAN_MS:  # one scan per tick, not one per claim
            offered = self.store.offered_replicas(limit=16, kinds=[TaskKind.VALIDATE])
            keys = list(dict.fromkeys((x.task_id, x.attempt) for x in offered))
            self._waiting_validations = (now_ms, keys)
        for key in keys:
            first = self._deferred.get((peer_id, key))
            if first is not None and now_ms - first > DEFER_WINDOW_MS:
                continue
            replicas = self.store.replicas(key[0])
            if not any(x.state is ReplicaState.OFFERED and x.attempt == key[1] for x in replicas):
                continue  # taken since the scan
            payload = self.payloads.get(key[0])
            if payload.kind is not TaskKind.VALIDATE or not self.nodes.serves(
                peer_id, TaskKind.VALIDATE, [payload.model_sha256]
            ):
                continue
            producers = parent_producers(self.store, key[0])
            if producers is None or peer_id in self.involved(key[0], replicas):
                continue
            if peer_id not in producers or peer_id in self.nodes.validators_for(
                producers, payload.model_sha256, now_ms
            ):
                return key
        return None
