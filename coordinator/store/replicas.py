"""Replicas and leases in the store: every replica transition short of a verdict.

Owns: adding a replica, the replica reads (one, a task's, the offered ones,
the expired ones, how many a node holds), CLAIM, GRANT with its lease and the
Grant rebuilt from it, EXPIRE with its RETRY or GIVE_UP, CANCEL when a task is
abandoned, and `move`, the one place a replica row changes state: each event is
decided by `protocol.state.next_replica_state` inside the caller's transaction (an
illegal event raises `IllegalTransition` and the transaction rolls back).
Must not: record results or write verdicts (`results.py` moves a replica on
SUBMIT, ACCEPT and REJECT through `move`), or read the clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from coordinator.store.connection import fetch_one
from coordinator.store.errors import Conflict
from coordinator.store.records import (
    Expiry,
    LeaseRecord,
    ReplicaRecord,
    TaskRecord,
    decoding_bytes,
    decoding_from,
    lease_from,
    replica_from,
)
from coordinator.store.tasks import TaskStore, fail_if_exhausted, load_task
from protocol.messages import Grant
from protocol.state import (
    LeaseState,
    ReplicaEvent,
    ReplicaState,
    TaskEvent,
    TaskState,
    after_failure,
    next_lease_state,
    next_replica_state,
    next_task_state,
)
from protocol.tasks import DecodingParams, TaskKind, TaskPayload


def load_replica(c: sqlite3.Connection, task_id: str, replica: int) -> ReplicaRecord:
    sql = "SELECT * FROM slots WHERE task_id = ? AND replica = ?"
    return fetch_one(c, replica_from, sql, (task_id, replica), f"replica {task_id}#{replica}")


def load_lease(c: sqlite3.Connection, lease_id: str) -> LeaseRecord:
    return fetch_one(c, lease_from, "SELECT * FROM leases WHERE lease_id = ?", (lease_id,), f"lease {lease_id!r}")


def move(
    c: sqlite3.Connection,
    current: ReplicaRecord,
    event: ReplicaEvent,
    now_ms: int,
    *,
    node: str | None,
    lease_id: str | None,
    deadline_ms: int | None,
    attempt: int | None = None,
) -> ReplicaRecord:
    """Apply one event to one replica (`current`, as last read); IllegalTransition aborts the whole transaction."""
    new = next_replica_state(current.state, event)
    n = c.execute(
        "UPDATE slots SET state = ?, node = ?, lease_id = ?, deadline_ms = ?, attempt = ?, updated_ms = ?"
        " WHERE task_id = ? AND replica = ? AND state = ?",
        (
            new.value,
            node,
            lease_id,
            deadline_ms,
            current.attempt if attempt is None else attempt,
            now_ms,
            current.task_id,
            current.replica,
            current.state.value,
        ),
    ).rowcount
    if n != 1:  # the caller's snapshot is stale; cannot happen under the lock, but never write blind
        raise Conflict(f"replica {current.task_id}#{current.replica} is no longer {current.state}")
    # Every column but the key was just written: the row is this (no read-back query).
    return ReplicaRecord(
        task_id=current.task_id,
        replica=current.replica,
        state=new,
        attempt=current.attempt if attempt is None else attempt,
        node=node,
        lease_id=lease_id,
        deadline_ms=deadline_ms,
        updated_ms=now_ms,
    )


def move_lease(c: sqlite3.Connection, lease: LeaseRecord, event: ReplicaEvent) -> LeaseState:
    """Apply the replica's `event` to the lease it runs under; IllegalTransition aborts the transaction."""
    new = next_lease_state(lease.state, event)
    c.execute(
        "UPDATE leases SET state = ? WHERE lease_id = ? AND state = ?", (new.value, lease.lease_id, lease.state.value)
    )
    return new


def follow_up(
    c: sqlite3.Connection, replica: ReplicaRecord, task: TaskRecord, closing: bool, now_ms: int
) -> ReplicaRecord:
    """EXPIRED/REJECTED -> OFFERED at the next attempt, or FAILED."""
    event = ReplicaEvent.GIVE_UP if closing else after_failure(replica.attempt, task.max_attempts)
    if event is ReplicaEvent.RETRY:
        return move(c, replica, event, now_ms, node=None, lease_id=None, deadline_ms=None, attempt=replica.attempt + 1)
    return move(c, replica, event, now_ms, node=replica.node, lease_id=replica.lease_id, deadline_ms=None)


def grant_for(lease: LeaseRecord, task: TaskRecord, payload: TaskPayload) -> Grant:
    """The Grant a lease was sent with, from the lease, its task and the task's payload."""
    return Grant(
        task_id=task.task_id,
        job_id=task.job_id,
        lease_id=lease.lease_id,
        attempt=lease.attempt,
        node_peer_id=lease.node,
        payload=payload,
        decoding=lease.decoding,
        model_sha256=lease.model_sha256,
        lease_deadline_ms=lease.deadline_ms,
    )


class ReplicaStore(TaskStore):
    def add_replica(self, task_id: str, *, now_ms: int) -> ReplicaRecord:
        """One more OFFERED replica for an open task (replicas disagreed, or a spot-check)."""
        with self._tx() as c:
            task = load_task(c, task_id)
            if task.state is not TaskState.OPEN:
                raise Conflict(f"task {task_id!r} is {task.state}; no replica can be added")
            replica = c.execute("SELECT COALESCE(MAX(replica), -1) + 1 FROM slots WHERE task_id = ?", (task_id,))
            n = int(replica.fetchone()[0])
            c.execute(
                "INSERT INTO slots (task_id, replica, state, attempt, updated_ms) VALUES (?, ?, ?, 0, ?)",
                (task_id, n, ReplicaState.OFFERED.value, now_ms),
            )
            return load_replica(c, task_id, n)

    def replica(self, task_id: str, replica: int) -> ReplicaRecord:
        with self._lock:
            return load_replica(self._conn, task_id, replica)

    def replicas(self, task_id: str) -> list[ReplicaRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM slots WHERE task_id = ? ORDER BY replica", (task_id,))
            return [replica_from(r) for r in rows]

    def offered_replicas(self, *, limit: int = 100, kinds: Iterable[TaskKind] | None = None) -> list[ReplicaRecord]:
        """Replicas waiting for a claim, oldest first, of tasks that are still open."""
        sql = "SELECT s.* FROM slots s JOIN tasks t ON t.task_id = s.task_id WHERE s.state = ? AND t.state = ?"
        args: list[Any] = [ReplicaState.OFFERED.value, TaskState.OPEN.value]
        if kinds is not None:
            ks = [k.value for k in kinds]
            sql += f" AND t.kind IN ({','.join('?' * len(ks))})"
            args += ks
        sql += " ORDER BY s.updated_ms, s.task_id, s.replica LIMIT ?"
        args.append(limit)
        with self._lock:
            return [replica_from(r) for r in self._conn.execute(sql, args)]

    def count_held(self, node: str) -> int:
        """Replicas `node` holds right now (claimed or granted): its outstanding leases."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM slots WHERE node = ? AND state IN (?, ?)",
                (node, ReplicaState.CLAIMED.value, ReplicaState.GRANTED.value),
            ).fetchone()
            return int(row[0])

    def claim(self, task_id: str, node: str, *, claim_deadline_ms: int, now_ms: int) -> ReplicaRecord | None:
        """OFFERED -> CLAIMED for `node` on the lowest free replica, or None if there is none for it.

        None when the task is not open, no replica is OFFERED, or `node` already holds
        or produced another replica of this task (redundancy needs distinct nodes).
        `claim_deadline_ms` bounds how long the claim may wait for its GRANT (then it expires).
        """
        with self._tx() as c:
            task = load_task(c, task_id)
            if task.state is not TaskState.OPEN:
                return None
            taken = c.execute(
                "SELECT 1 FROM slots WHERE task_id = ? AND node = ?"
                " UNION ALL SELECT 1 FROM results WHERE task_id = ? AND node = ? LIMIT 1",
                (task_id, node, task_id, node),
            ).fetchone()
            if taken:
                return None
            row = c.execute(
                "SELECT * FROM slots WHERE task_id = ? AND state = ? ORDER BY replica LIMIT 1",
                (task_id, ReplicaState.OFFERED.value),
            ).fetchone()
            if row is None:
                return None
            offered = replica_from(row)
            return move(c, offered, ReplicaEvent.CLAIM, now_ms, node=node, lease_id=None, deadline_ms=claim_deadline_ms)

    def grant(
        self,
        task_id: str,
        replica: int,
        *,
        lease_id: str,
        deadline_ms: int,
        model_sha256: str | None = None,
        decoding: DecodingParams | None = None,
        now_ms: int,
    ) -> LeaseRecord:
        """CLAIMED -> GRANTED, creating the lease held by the claiming node."""
        with self._tx() as c:
            claimed = load_replica(c, task_id, replica)
            if claimed.node is None:
                raise Conflict(f"replica {task_id}#{replica} has no claiming node")
            move(c, claimed, ReplicaEvent.GRANT, now_ms, node=claimed.node, lease_id=lease_id, deadline_ms=deadline_ms)
            raw_decoding = decoding_bytes(decoding)
            c.execute(
                "INSERT INTO leases (lease_id, task_id, replica, attempt, node, model_sha256, decoding, granted_ms,"
                " deadline_ms, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    lease_id,
                    task_id,
                    replica,
                    claimed.attempt,
                    claimed.node,
                    model_sha256,
                    raw_decoding,
                    now_ms,
                    deadline_ms,
                    LeaseState.LIVE.value,
                ),
            )
            return LeaseRecord(
                lease_id=lease_id,
                task_id=task_id,
                replica=replica,
                attempt=claimed.attempt,
                node=claimed.node,
                model_sha256=model_sha256,
                decoding=decoding_from(raw_decoding),  # as `lease()` would read it back
                granted_ms=now_ms,
                deadline_ms=deadline_ms,
                state=LeaseState.LIVE,
            )

    def lease(self, lease_id: str) -> LeaseRecord:
        with self._lock:
            return load_lease(self._conn, lease_id)

    def grant_message(self, lease_id: str) -> Grant:
        """The Grant as it was sent for `lease_id` (rebuilt from the lease and the task)."""
        lease = self.lease(lease_id)
        task = self.task(lease.task_id)
        return grant_for(lease, task, self.task_payload(task.task_id))

    def expired_replicas(self, *, now_ms: int) -> list[ReplicaRecord]:
        """Replicas whose claim or lease deadline passed before `now_ms`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM slots WHERE state IN (?, ?) AND deadline_ms < ? ORDER BY deadline_ms",
                (ReplicaState.CLAIMED.value, ReplicaState.GRANTED.value, now_ms),
            )
            return [replica_from(r) for r in rows]

    def expire_due(self, *, now_ms: int) -> list[Expiry]:
        """EXPIRE every replica past its deadline, then RETRY or GIVE_UP it, per `after_failure`.

        Returns what happened to each replica, including which node let it lapse (the
        caller charges that node `Outcome.EXPIRED`; a crash before it does so only
        forgoes that mild penalty). One transaction per replica, so each commit stays
        short and a crash part-way leaves the rest for the next call. Also finishes
        any replica found EXPIRED or REJECTED without its follow-up (none should
        exist, but a restart must converge whatever it finds).
        """
        out: list[Expiry] = []
        for due in self.expired_replicas(now_ms=now_ms) + self._stranded():
            with self._tx() as c:
                replica = load_replica(c, due.task_id, due.replica)
                before = replica
                if replica.state in (ReplicaState.CLAIMED, ReplicaState.GRANTED):
                    if replica.deadline_ms is None or replica.deadline_ms >= now_ms:
                        continue  # moved on since the query
                    if replica.lease_id is not None:
                        move_lease(c, load_lease(c, replica.lease_id), ReplicaEvent.EXPIRE)
                    replica = move(
                        c,
                        replica,
                        ReplicaEvent.EXPIRE,
                        now_ms,
                        node=replica.node,
                        lease_id=replica.lease_id,
                        deadline_ms=replica.deadline_ms,
                    )
                if replica.state not in (ReplicaState.EXPIRED, ReplicaState.REJECTED):
                    continue
                task = load_task(c, replica.task_id)
                after = follow_up(c, replica, task, task.state is not TaskState.OPEN, now_ms)
                fail_if_exhausted(c, replica.task_id, now_ms)
                out.append(Expiry(before=before, after=after))
        return out

    def _stranded(self) -> list[ReplicaRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM slots WHERE state IN (?, ?)", (ReplicaState.EXPIRED.value, ReplicaState.REJECTED.value)
            )
            return [replica_from(r) for r in rows]

    def abandon_task(self, task_id: str, *, now_ms: int) -> TaskRecord:
        """Stop waiting for nodes on an open task: its waiting replicas are cancelled (FAILED). The task
        fails, unless a submitted result is still to be judged (then it stays open for that)."""
        with self._tx() as c:
            task = load_task(c, task_id)
            if task.state is not TaskState.OPEN:
                return task
            for row in c.execute(
                "SELECT * FROM slots WHERE task_id = ? AND state IN (?, ?)",
                (task_id, ReplicaState.OFFERED.value, ReplicaState.CLAIMED.value),
            ).fetchall():
                waiting = replica_from(row)
                move(c, waiting, ReplicaEvent.CANCEL, now_ms, node=waiting.node, lease_id=None, deadline_ms=None)
            busy = c.execute(
                "SELECT 1 FROM slots WHERE task_id = ? AND state IN (?, ?)",
                (task_id, ReplicaState.GRANTED.value, ReplicaState.SUBMITTED.value),
            ).fetchone()
            if not busy:
                c.execute(
                    "UPDATE tasks SET state = ?, updated_ms = ? WHERE task_id = ?",
                    (next_task_state(task.state, TaskEvent.ABANDON).value, now_ms, task_id),
                )
            return load_task(c, task_id)
