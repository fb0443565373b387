"""Tasks in the store: creating them with their replicas, reading them and their payloads back.

Owns: a task row and its payload (inline up to the store's `inline_limit`, in
the blob folder beyond it, always checked against its digest on the way
back), the task-level queries (a job's tasks, a stage's last activity and its
untaken tasks), the validation links (which candidate a validate task re-scores),
and `fail_if_exhausted`, the rule that an open task whose every replica FAILED fails.
Must not: move a replica (`replicas.py` applies replica events), record or judge
results (`results.py`), or read the clock.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic import TypeAdapter

from coordinator.store.connection import Database, fetch_one
from coordinator.store.errors import NotFound, StoreError
from coordinator.store.records import TaskRecord, task_from
from protocol import encoding
from protocol.digests import payload_bytes, sha256_hex
from protocol.state import ReplicaState, TaskEvent, TaskState, next_task_state
from protocol.tasks import TaskKind, TaskPayload

_PAYLOAD_ADAPTER: TypeAdapter[TaskPayload] = TypeAdapter(TaskPayload)


def load_task(c: sqlite3.Connection, task_id: str) -> TaskRecord:
    return fetch_one(c, task_from, "SELECT * FROM tasks WHERE task_id = ?", (task_id,), f"task {task_id!r}")


def fail_if_exhausted(c: sqlite3.Connection, task_id: str, now_ms: int) -> None:
    """An open task whose every replica FAILED can make no more progress."""
    live = c.execute(
        "SELECT COUNT(*) FROM slots WHERE task_id = ? AND state != ?", (task_id, ReplicaState.FAILED.value)
    ).fetchone()[0]
    if live == 0:
        c.execute(
            "UPDATE tasks SET state = ?, updated_ms = ? WHERE task_id = ? AND state = ?",
            (next_task_state(TaskState.OPEN, TaskEvent.EXHAUST).value, now_ms, task_id, TaskState.OPEN.value),
        )


class TaskStore(Database):
    def add_task(
        self,
        task_id: str,
        job_id: str,
        stage: str,
        payload: TaskPayload,
        *,
        replicas: int,
        max_attempts: int,
        est_tokens: int = 0,
        validates: tuple[str, int] | None = None,
        now_ms: int,
    ) -> TaskRecord:
        """Create a task with `replicas` replicas, all OFFERED at attempt 0; a validate task names the
        (parent task, candidate result id) it re-scores in `validates`, written with it."""
        if replicas < 1 or max_attempts < 1:
            raise ValueError(f"replicas ({replicas}) and max_attempts ({max_attempts}) must be >= 1")
        raw = payload_bytes(payload)
        # Refuse now what could not be read back later (model_copy/model_construct skip validation).
        _PAYLOAD_ADAPTER.validate_python(encoding.decode(raw, limit=len(raw), what="payload"))
        digest = sha256_hex(raw)
        inline: bytes | None = raw
        if len(raw) > self._inline_limit:
            # Blob first, row second: a committed row never points at a missing blob.
            self.blobs.put(raw)
            inline = None
        with self._tx() as c:
            c.execute(
                "INSERT INTO tasks (task_id, job_id, stage, kind, payload_sha256, payload, est_tokens, max_attempts,"
                " state, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task_id,
                    job_id,
                    stage,
                    payload.kind.value,
                    digest,
                    inline,
                    est_tokens,
                    max_attempts,
                    TaskState.OPEN.value,
                    now_ms,
                    now_ms,
                ),
            )
            c.executemany(
                "INSERT INTO slots (task_id, replica, state, attempt, updated_ms) VALUES (?, ?, ?, 0, ?)",
                [(task_id, i, ReplicaState.OFFERED.value, now_ms) for i in range(replicas)],
            )
            if validates is not None:
                c.execute(
                    "INSERT INTO validations (validate_task_id, parent_task_id, result_id) VALUES (?, ?, ?)",
                    (task_id, *validates),
                )
        # What the row now holds (built rather than read back: one query less per task).
        return TaskRecord(
            task_id=task_id,
            job_id=job_id,
            stage=stage,
            kind=TaskKind(payload.kind.value),
            payload_sha256=digest,
            est_tokens=est_tokens,
            max_attempts=max_attempts,
            state=TaskState.OPEN,
            canonical_result_id=None,
            created_ms=now_ms,
            updated_ms=now_ms,
        )

    def task(self, task_id: str) -> TaskRecord:
        with self._lock:
            return load_task(self._conn, task_id)

    def validated_by(self, validate_task_id: str) -> tuple[str, int] | None:
        """(parent task id, candidate result id) that a validate task re-scores; None for any other task."""
        with self._lock:
            row = self._conn.execute(
                "SELECT parent_task_id, result_id FROM validations WHERE validate_task_id = ?", (validate_task_id,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def validations(self, parent_task_id: str) -> dict[int, str]:
        """The validate task of each candidate of `parent_task_id` that has one, by candidate result id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT result_id, validate_task_id FROM validations WHERE parent_task_id = ?", (parent_task_id,)
            ).fetchall()
        return {int(r[0]): str(r[1]) for r in rows}

    def tasks(self, job_id: str, *, stage: str | None = None) -> list[TaskRecord]:
        sql = "SELECT * FROM tasks WHERE job_id = ?" + (" AND stage = ?" if stage is not None else "")
        args: tuple[Any, ...] = (job_id, stage) if stage is not None else (job_id,)
        with self._lock:
            return [task_from(r) for r in self._conn.execute(sql + " ORDER BY created_ms, task_id", args)]

    def task_payload(self, task_id: str) -> TaskPayload:
        """The task's payload, read back and checked against its digest."""
        with self._lock:
            row = self._conn.execute(
                "SELECT payload, payload_sha256 FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"task {task_id!r}")
        raw = row["payload"] if row["payload"] is not None else self.blobs.get(row["payload_sha256"])
        if sha256_hex(raw) != row["payload_sha256"]:
            raise StoreError(f"payload of task {task_id!r} does not match its digest")
        return _PAYLOAD_ADAPTER.validate_python(encoding.decode(raw, limit=len(raw), what="stored payload"))

    def stage_activity_ms(self, job_id: str, stage: str) -> int:
        """When a replica of the stage last changed (claim, grant, submit, verdict, expiry); 0 if never."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(s.updated_ms) FROM slots s JOIN tasks t ON t.task_id = s.task_id"
                " WHERE t.job_id = ? AND t.stage = ?",
                (job_id, stage),
            ).fetchone()
            return int(row[0] or 0)

    def untaken_tasks(self, job_id: str, stage: str) -> list[str]:
        """Open tasks of a stage waiting for a node that does not come: a replica OFFERED, none claimed or running."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.task_id FROM tasks t WHERE t.job_id = ? AND t.stage = ? AND t.state = ?"
                " AND EXISTS (SELECT 1 FROM slots s WHERE s.task_id = t.task_id AND s.state = ?)"
                " AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.task_id = t.task_id AND s.state IN (?, ?))",
                (
                    job_id,
                    stage,
                    TaskState.OPEN.value,
                    ReplicaState.OFFERED.value,
                    ReplicaState.CLAIMED.value,
                    ReplicaState.GRANTED.value,
                ),
            )
            return [str(r[0]) for r in rows]
