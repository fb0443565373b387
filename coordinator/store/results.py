"""Results and what is decided about them: verdicts, receipts, accepted rows and dropped rows.

Owns: recording a signed Result envelope once (its digest, `body_sha256`, is
the idempotency key: the same result arriving twice is recorded once) and
filling the replica that awaits it; `settle`, which applies a task's verdicts,
receipts, canonical result, rows and reputations in one transaction; reading
results back (re-verified, through the verified-result cache), verdicts,
receipts and rows; and the per-job counts of rows, drops and verdicts.
Must not: decide a verdict (that is `coordinator.verify`), sign or verify a
receipt, or read the clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from coordinator.store.connection import Database, fetch_one
from coordinator.store.errors import Conflict, NotFound, StoreError
from coordinator.store.nodes import save_reputation_row, touch_node_row
from coordinator.store.records import (
    Judgement,
    NewRow,
    Recorded,
    ReplicaRecord,
    ResultRecord,
    RowRecord,
    Settled,
    TaskRecord,
    VerdictRecord,
    result_from,
    row_from,
    verdict_from,
)
from coordinator.store.replicas import follow_up, load_lease, load_replica, move, move_lease
from coordinator.store.tasks import fail_if_exhausted, load_task
from coordinator.verify.reputation import NodeReputation
from protocol import encoding
from protocol.digests import body_sha256, row_sha256
from protocol.envelope import Opened, max_envelope_size, open_envelope
from protocol.messages import MessageKind, Result, Verdict
from protocol.state import LeaseState, ReplicaEvent, ReplicaState, TaskEvent, TaskState, next_task_state

_RESULT_ENVELOPE_LIMIT = max_envelope_size({MessageKind.RESULT})


def load_result(c: sqlite3.Connection, result_id: int) -> ResultRecord:
    return fetch_one(c, result_from, "SELECT * FROM results WHERE result_id = ?", (result_id,), f"result {result_id}")


def complete(c: sqlite3.Connection, task: TaskRecord, result_id: int, rows: Sequence[NewRow], now_ms: int) -> None:
    """Mark `task` DONE with its accepted canonical result and store `rows` from it (once)."""
    verdict = c.execute("SELECT verdict FROM verdicts WHERE result_id = ?", (result_id,)).fetchone()
    if verdict is None or verdict[0] != Verdict.ACCEPTED.value:
        raise Conflict(f"canonical result {result_id} of task {task.task_id!r} is not accepted")
    owner = c.execute("SELECT task_id FROM results WHERE result_id = ?", (result_id,)).fetchone()
    if owner is None:
        raise NotFound(f"result {result_id}")
    if owner[0] != task.task_id:
        raise Conflict(f"result {result_id} is not a result of task {task.task_id!r}")
    if task.state is TaskState.DONE:
        return  # repeated settle: rows were stored the first time
    c.execute(
        "UPDATE tasks SET state = ?, canonical_result = ?, updated_ms = ? WHERE task_id = ?",
        (next_task_state(task.state, TaskEvent.SETTLE).value, result_id, now_ms, task.task_id),
    )
    c.executemany(
        "INSERT INTO rows (job_id, task_id, result_id, idx, data, evidence, row_sha256, accepted_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                task.job_id,
                task.task_id,
                result_id,
                r.idx,
                json.dumps(r.data, sort_keys=True, ensure_ascii=False),
                r.evidence,
                row_sha256(r.data, r.evidence),
                now_ms,
            )
            for r in rows
        ],
    )


class ResultStore(Database):
    def record_result(self, opened: Opened, *, now_ms: int) -> Recorded:
        """Record a Result envelope once, and fill its replica if it is the one the replica awaits.

        Idempotent: the same Result body (gossip or stream duplicate, even re-sealed
        with a new nonce) returns the existing record with `duplicate=True`.
        The replica moves (GRANTED -SUBMIT-> SUBMITTED, or EXPIRED -LATE_SUBMIT->
        SUBMITTED) only when the signer holds the lease, the lease is the replica's
        current one, and the result names the lease's task and attempt. Anything
        else is recorded with `counted=False` for the verifier to judge.
        Raises NotFound for a lease this coordinator never granted.
        """
        result = opened.message
        if not isinstance(result, Result):
            raise TypeError(f"expected a Result envelope, got {type(result).__name__}")
        digest = body_sha256(opened.body)
        signer = opened.sender_peer_id
        with self._tx() as c:
            existing = c.execute("SELECT * FROM results WHERE result_sha256 = ?", (digest,)).fetchone()
            if existing is not None:
                return Recorded(result_from(existing), duplicate=True, replica=None)
            lease = load_lease(c, result.lease_id)
            replica = load_replica(c, lease.task_id, lease.replica)
            task = load_task(c, lease.task_id)
            fills = (
                signer == lease.node
                and replica.lease_id == lease.lease_id
                and replica.attempt == lease.attempt
                and result.task_id == lease.task_id
                and result.job_id == task.job_id
                and result.attempt == lease.attempt
                and (
                    (replica.state is ReplicaState.GRANTED and lease.state is LeaseState.LIVE)
                    or (replica.state is ReplicaState.EXPIRED and lease.state is LeaseState.EXPIRED)
                )
            )
            moved: ReplicaRecord | None = None
            if fills:
                event = ReplicaEvent.SUBMIT if replica.state is ReplicaState.GRANTED else ReplicaEvent.LATE_SUBMIT
                moved = move(c, replica, event, now_ms, node=replica.node, lease_id=replica.lease_id, deadline_ms=None)
                move_lease(c, lease, event)
            cur = c.execute(
                "INSERT INTO results (result_sha256, task_id, lease_id, replica, attempt, node, envelope, counted,"
                " received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    lease.task_id,
                    lease.lease_id,
                    lease.replica,
                    lease.attempt,
                    signer,
                    opened.raw,
                    int(fills),
                    now_ms,
                ),
            )
            touch_node_row(c, signer, now_ms)
            record = ResultRecord(
                result_id=int(cur.lastrowid or 0),
                result_sha256=digest,
                task_id=lease.task_id,
                lease_id=lease.lease_id,
                replica=lease.replica,
                attempt=lease.attempt,
                node=signer,
                envelope=bytes(opened.raw),
                counted=bool(fills),
                received_ms=now_ms,
            )
        # Committed: `opened` was verified by whoever opened it, so the verifier need not verify it again.
        if opened.kind is MessageKind.RESULT and len(record.envelope) <= _RESULT_ENVELOPE_LIMIT:
            with self._lock:
                self._verified.remember(record.result_id, record.envelope, result)
        return Recorded(record, duplicate=False, replica=moved)

    def settle(
        self,
        task_id: str,
        judgements: Sequence[Judgement],
        *,
        canonical_result_id: int | None = None,
        rows: Sequence[NewRow] = (),
        reputations: Sequence[NodeReputation] = (),
        now_ms: int,
    ) -> Settled:
        """Apply verdicts for a task in one transaction.

        For each judgement whose result filled its replica: SUBMITTED -ACCEPT-> VERIFIED,
        or -REJECT-> REJECTED followed at once by RETRY (attempt + 1, back to
        OFFERED) or GIVE_UP (FAILED) per `protocol.state.after_failure`; a task that
        is done never retries. A verdict is written once: judging an already
        judged result again is a no-op, so a settle repeated after a crash is safe.
        `canonical_result_id` marks the task DONE with that (accepted) result and
        stores `rows` from it. `reputations` are upserted in the same transaction.
        """
        if rows and canonical_result_id is None:
            raise ValueError("rows need the canonical_result_id they come from")
        reoffered: list[ReplicaRecord] = []
        failed: list[ReplicaRecord] = []
        with self._tx() as c:
            task = load_task(c, task_id)
            if canonical_result_id is not None:
                if task.state is TaskState.FAILED:
                    raise Conflict(f"task {task_id!r} already failed")
                if task.state is TaskState.DONE and task.canonical_result_id != canonical_result_id:
                    raise Conflict(f"task {task_id!r} is already done with result {task.canonical_result_id}")
            for j in judgements:
                if j.verdict is Verdict.PENDING:
                    raise ValueError("settle takes final verdicts; PENDING needs no call")
                res = load_result(c, j.result_id)
                if res.task_id != task_id:
                    raise Conflict(f"result {j.result_id} belongs to task {res.task_id!r}, not {task_id!r}")
                if c.execute("SELECT 1 FROM verdicts WHERE result_id = ?", (j.result_id,)).fetchone():
                    continue
                c.execute(
                    "INSERT INTO verdicts (result_id, verdict, reason, detail, decided_ms) VALUES (?, ?, ?, ?, ?)",
                    (j.result_id, j.verdict.value, j.reason, j.detail[:1000], now_ms),
                )
                if j.receipt is not None:
                    c.execute(
                        "INSERT OR IGNORE INTO receipts (result_id, lease_id, node, envelope, issued_ms)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (j.result_id, res.lease_id, res.node, j.receipt, now_ms),
                    )
                if not res.counted:
                    continue
                replica = load_replica(c, task_id, res.replica)
                if replica.state is not ReplicaState.SUBMITTED or replica.lease_id != res.lease_id:
                    continue
                event = ReplicaEvent.ACCEPT if j.verdict is Verdict.ACCEPTED else ReplicaEvent.REJECT
                replica = move(
                    c, replica, event, now_ms, node=replica.node, lease_id=replica.lease_id, deadline_ms=None
                )
                if replica.state is ReplicaState.REJECTED:
                    closing = canonical_result_id is not None or task.state is not TaskState.OPEN
                    after = follow_up(c, replica, task, closing, now_ms)
                    (reoffered if after.state is ReplicaState.OFFERED else failed).append(after)
            if canonical_result_id is not None:
                complete(c, task, canonical_result_id, rows, now_ms)
            else:
                fail_if_exhausted(c, task_id, now_ms)
            for rep in reputations:
                save_reputation_row(c, rep)
            return Settled(load_task(c, task_id), reoffered, failed)

    def open_tasks_with_pending_results(self) -> list[str]:
        """Open tasks holding a counted result without a verdict (what a restart must re-decide)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT r.task_id FROM results r JOIN tasks t ON t.task_id = r.task_id"
                " LEFT JOIN verdicts v ON v.result_id = r.result_id"
                " WHERE t.state = ? AND r.counted = 1 AND v.result_id IS NULL ORDER BY r.task_id",
                (TaskState.OPEN.value,),
            )
            return [str(r[0]) for r in rows]

    def result(self, result_id: int) -> ResultRecord:
        with self._lock:
            return load_result(self._conn, result_id)

    def result_message(self, result_id: int) -> Result:
        """The stored Result, re-verified (signature and schema) as of its own issue time.

        For the verifier and the compiler, which read results long after the
        envelope's replay window closed; a tampered database row fails here.
        """
        envelope = self.result(result_id).envelope
        with self._lock:
            cached = self._verified.get(result_id, envelope)
        if cached is not None:
            return cached
        outer = encoding.decode(envelope, limit=_RESULT_ENVELOPE_LIMIT, what="stored result")
        opened = open_envelope(envelope, now_ms=outer["issued_at"], replay_cache=None, expect={MessageKind.RESULT})
        if not isinstance(opened.message, Result):  # expect= guarantees it; this narrows the type
            raise StoreError(f"result {result_id} holds a {type(opened.message).__name__}")
        with self._lock:
            self._verified.remember(result_id, envelope, opened.message)
        return opened.message

    def results_for(self, task_id: str) -> list[ResultRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM results WHERE task_id = ? ORDER BY result_id", (task_id,))
            return [result_from(r) for r in rows]

    def verdict(self, result_id: int) -> VerdictRecord | None:
        with self._lock:
            r = self._conn.execute("SELECT * FROM verdicts WHERE result_id = ?", (result_id,)).fetchone()
        return None if r is None else verdict_from(r)

    def verdict_counts(self, job_id: str) -> dict[str, int]:
        """Verdicts on a job's results by `verdict:reason` (reason empty for accepted)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT v.verdict, v.reason, COUNT(*) FROM verdicts v JOIN results r ON r.result_id = v.result_id"
                " JOIN tasks t ON t.task_id = r.task_id WHERE t.job_id = ? GROUP BY v.verdict, v.reason",
                (job_id,),
            )
            return {f"{r[0]}:{r[1]}" if r[1] else str(r[0]): int(r[2]) for r in rows}

    def receipt(self, result_id: int) -> bytes | None:
        with self._lock:
            r = self._conn.execute("SELECT envelope FROM receipts WHERE result_id = ?", (result_id,)).fetchone()
        return None if r is None else bytes(r[0])

    def record_receipt(self, result_id: int, envelope: bytes, *, now_ms: int) -> None:
        """Store a receipt issued outside `settle` (idempotent: the first one stays)."""
        with self._tx() as c:
            res = load_result(c, result_id)
            c.execute(
                "INSERT OR IGNORE INTO receipts (result_id, lease_id, node, envelope, issued_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (result_id, res.lease_id, res.node, envelope, now_ms),
            )

    def rows(self, job_id: str) -> list[RowRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM rows WHERE job_id = ? ORDER BY row_id", (job_id,)).fetchall()
        return [row_from(r) for r in rows]

    def row_count(self, job_id: str) -> int:
        """Accepted rows of a job (what progress polling needs, without loading the rows)."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM rows WHERE job_id = ?", (job_id,)).fetchone()[0])

    def record_row_drop(self, job_id: str, task_id: str, idx: int, reason: str, *, now_ms: int) -> None:
        """Remember that row `idx` of a task's accepted result failed a quality gate (idempotent)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO row_drops (job_id, task_id, idx, reason, dropped_ms) VALUES (?, ?, ?, ?, ?)",
                (job_id, task_id, idx, reason, now_ms),
            )

    def row_drops(self, job_id: str) -> dict[str, int]:
        """Dropped-row counts by gate reason for a job."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, COUNT(*) FROM row_drops WHERE job_id = ? GROUP BY reason ORDER BY reason", (job_id,)
            )
            return {str(r[0]): int(r[1]) for r in rows}
