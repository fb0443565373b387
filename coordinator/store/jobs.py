"""Jobs and their stages in the store.

Owns: creating a job, its job document and state (including the atomic
cancel), and the stages of a job with their states.
Must not: touch tasks, replicas or results (a job's tasks live in `tasks.py`),
decide which state a job should be in (`coordinator.job_states` and the
pipeline do), or read the clock (every write takes `now_ms`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from coordinator import job_states
from coordinator.job_states import StageState, check_stage_move
from coordinator.store.connection import Database, fetch_one
from coordinator.store.errors import NotFound
from coordinator.store.records import JobRecord, job_from
from protocol.tasks import JsonObject


def load_job(c: sqlite3.Connection, job_id: str) -> JobRecord:
    return fetch_one(c, job_from, "SELECT * FROM jobs WHERE job_id = ?", (job_id,), f"job {job_id!r}")


class JobStore(Database):
    def create_job(
        self, job_id: str, spec: JsonObject, *, allowed_models: Iterable[str] = (), now_ms: int
    ) -> JobRecord:
        with self._tx() as c:
            c.execute(
                "INSERT INTO jobs (job_id, spec, allowed_models, state, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    json.dumps(spec, sort_keys=True),
                    json.dumps(sorted(set(allowed_models))),
                    job_states.OPEN,
                    now_ms,
                    now_ms,
                ),
            )
            return load_job(c, job_id)

    def job(self, job_id: str) -> JobRecord:
        with self._lock:
            return load_job(self._conn, job_id)

    def set_job_state(self, job_id: str, state: str, *, now_ms: int) -> None:
        """Move the job to `state`; IllegalTransition (nothing written) where `job_states.MOVES` has no such move."""
        with self._tx() as c:
            job = load_job(c, job_id)
            job_states.check_move(job.state, state)
            c.execute(
                "UPDATE jobs SET state = ?, updated_ms = ? WHERE job_id = ? AND state = ?",
                (state, now_ms, job_id, job.state),
            )

    def update_job_doc(self, job_id: str, changes: Mapping[str, Any], *, now_ms: int) -> JobRecord:
        """Merge `changes` into the job's stored job document (request, output dir, error...)."""
        with self._tx() as c:
            job = load_job(c, job_id)
            merged = {**job.doc, **changes}
            c.execute(
                "UPDATE jobs SET spec = ?, updated_ms = ? WHERE job_id = ?",
                (json.dumps(merged, sort_keys=True), now_ms, job_id),
            )
            return load_job(c, job_id)

    def cancel_job(self, job_id: str, *, now_ms: int) -> bool:
        """Cancel a job that is still open, running or waiting for nodes (atomically); False if it was
        already past that."""
        states = sorted(job_states.CANCELLABLE)
        marks = ",".join("?" * len(states))
        with self._tx() as c:
            n = c.execute(
                f"UPDATE jobs SET state = ?, updated_ms = ? WHERE job_id = ? AND state IN ({marks})",
                (job_states.CANCELLED, now_ms, job_id, *states),
            ).rowcount
            if n == 0:
                load_job(c, job_id)  # NotFound for an unknown job
            return n == 1

    def jobs(self) -> list[JobRecord]:
        """Every job, newest first."""
        with self._lock:
            ids = [str(r[0]) for r in self._conn.execute("SELECT job_id FROM jobs ORDER BY created_ms DESC")]
            return [load_job(self._conn, i) for i in ids]

    def add_stage(self, job_id: str, stage: str, *, now_ms: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO stages (job_id, stage, state, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)",
                (job_id, stage, StageState.OPEN.value, now_ms, now_ms),
            )

    def set_stage_state(self, job_id: str, stage: str, state: StageState, *, now_ms: int) -> None:
        """Move a stage; IllegalTransition (naming both states) for a move STAGE_MOVES does not allow."""
        with self._tx() as c:
            row = c.execute("SELECT state FROM stages WHERE job_id = ? AND stage = ?", (job_id, stage)).fetchone()
            if row is None:
                raise NotFound(f"stage {stage!r} of job {job_id!r}")
            check_stage_move(row["state"], state)
            c.execute(
                "UPDATE stages SET state = ?, updated_ms = ? WHERE job_id = ? AND stage = ?",
                (state.value, now_ms, job_id, stage),
            )

    def stages(self, job_id: str) -> dict[str, StageState]:
        with self._lock:
            rows = self._conn.execute("SELECT stage, state FROM stages WHERE job_id = ?", (job_id,)).fetchall()
        return {r["stage"]: StageState(r["state"]) for r in rows}
