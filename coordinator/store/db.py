"""The coordinator's durable state: jobs, tasks, slots, leases, results, verdicts, rows.

Owns: every read and write of the coordinator database, and the rule that each
slot transition is one SQLite transaction decided by `protocol.state.next_state`
(an illegal event raises `IllegalTransition` and the transaction rolls back,
leaving the database as it was).
Must not: read the clock (every method takes `now_ms`), sign or verify
anything, decide verdicts (that is `coordinator.verify`), or do network I/O.

Threading
---------
The store is synchronous (stdlib `sqlite3`). One `Store` holds one connection
guarded by a lock, so it may be called from the trio thread directly or from
`trio.to_thread.run_sync` workers, one call at a time. Each call is one short
transaction. Measured on the dev VM (200 iterations, median / p95): a write
(add_task, record_result, settle; claim and grant each) takes 3-4 / 8 ms with
`synchronous=FULL`, nearly all of it the commit's fsync, and 0.15 / 0.25 ms with
NORMAL; reads such as `offered_slots` take 0.1 ms. The runtime still calls
writes through `trio.to_thread.run_sync`, so a checkpoint's fsync never stalls
the event loop.

Durability and crash recovery
-----------------------------
WAL mode with `synchronous=NORMAL` (the default): a committed transaction is in
the WAL file when COMMIT returns, so it survives a kill of the coordinator
process (SIGKILL, OOM, crash: tests/coordinator/test_store_crash.py), which is
what the coordinator promises. A power cut or kernel crash may lose the last
transactions before a checkpoint, never consistency. `synchronous="FULL"`
adds an fsync per commit and survives a power cut too, at 20x the cost of a
write (figures above; P3 in bench/coordinator.py measures both). Recovery
after a crash needs no special step: open the store, then call
`expire_due(now_ms)` to turn leases that ran out while the coordinator was
down into retries. Accepted results are immutable (a verdict is written once),
and a task marked done is never offered or claimed again.

Verified results are cached
---------------------------
`result_message` re-verifies a stored envelope's signature; the verifier reads
the same result several times while deciding a task (the profile of P3 showed
three verifications per task, a third of the coordinator's CPU). Verified
messages are kept in a small LRU keyed by result id *and compared with the
envelope bytes read from the database*, so a row changed on disk is verified
again (and fails) exactly as without the cache. `record_result` seeds it with
the caller's `Opened`, which is verified by construction.

Digests: a payload's digest is sha256 of its canonical msgpack (what
`TaskOffer.payload_sha256` carries); a result's digest is sha256 of the
canonical `Result` body bytes (what `Receipt.result_sha256` carries, and the
idempotency key: the same result arriving twice is recorded once).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from coordinator import job_states
from coordinator.store.blobs import BlobStore
from coordinator.store.schema import migrate
from coordinator.verify.reputation import NodeReputation
from protocol import encoding
from protocol.envelope import Opened, max_envelope_size, open_envelope
from protocol.messages import Grant, MessageKind, Result, Verdict
from protocol.state import SlotEvent, SlotState, after_failure, next_state
from protocol.tasks import DecodingParams, JsonObject, TaskKind, TaskPayload

INLINE_PAYLOAD_LIMIT = 16 * 1024
"""Payloads up to this many bytes stay in the tasks row; larger ones (documents) go to the blob folder."""

_PAYLOAD_ADAPTER: TypeAdapter[TaskPayload] = TypeAdapter(TaskPayload)

VERIFIED_CACHE_ENTRIES = 1024
VERIFIED_CACHE_BYTES = 32 * 1024 * 1024
"""Bounds of the verified-result cache (see the module docstring): entries, and envelope bytes held."""
_RESULT_ENVELOPE_LIMIT = max_envelope_size({MessageKind.RESULT})


class StoreError(Exception):
    """Base of the store's own refusals (IllegalTransition comes from protocol.state)."""


class NotFound(StoreError, KeyError):
    """No such job, task, slot, lease or result."""


class Conflict(StoreError):
    """The request contradicts what is recorded (wrong node, task closed, ...)."""


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"
    """A canonical result was accepted: never offered or claimed again."""
    FAILED = "failed"
    """Every slot gave up without an accepted result."""


# --- records (immutable snapshots handed to callers) ---------------------------


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    spec: JsonObject
    allowed_models: frozenset[str]
    state: str
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    job_id: str
    stage: str
    kind: TaskKind
    payload_sha256: str
    est_tokens: int
    max_attempts: int
    state: TaskState
    canonical_result_id: int | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True)
class SlotRecord:
    task_id: str
    replica: int
    state: SlotState
    attempt: int
    node: str | None
    lease_id: str | None
    deadline_ms: int | None
    updated_ms: int


@dataclass(frozen=True)
class LeaseRecord:
    lease_id: str
    task_id: str
    replica: int
    attempt: int
    node: str
    model_sha256: str | None
    decoding: DecodingParams | None
    granted_ms: int
    deadline_ms: int
    state: str
    """live | submitted | expired"""


@dataclass(frozen=True)
class ResultRecord:
    result_id: int
    result_sha256: str
    task_id: str
    lease_id: str
    replica: int
    attempt: int
    node: str
    envelope: bytes
    counted: bool
    """True if this result filled its slot; False if only recorded (late after re-offer, stray, second try)."""
    received_ms: int


@dataclass(frozen=True)
class VerdictRecord:
    result_id: int
    verdict: Verdict
    reason: str
    detail: str
    decided_ms: int


@dataclass(frozen=True)
class RowRecord:
    row_id: int
    job_id: str
    task_id: str
    result_id: int
    idx: int
    data: JsonObject
    evidence: str
    row_sha256: str
    accepted_ms: int


@dataclass(frozen=True)
class Recorded:
    """What `record_result` did."""

    result: ResultRecord
    duplicate: bool
    """The same Result body was already recorded; nothing changed."""
    slot: SlotRecord | None
    """The slot after SUBMIT / LATE_SUBMIT, or None if the result did not fill a slot."""


@dataclass(frozen=True)
class Judgement:
    """The verifier's decision on one recorded result, applied by `settle`."""

    result_id: int
    verdict: Verdict
    reason: str = ""
    """A `coordinator.verify.reasons.Reason` value; empty for an accepted result."""
    detail: str = ""
    receipt: bytes | None = None
    """The signed Receipt envelope for the producer, stored in the same transaction."""


@dataclass(frozen=True)
class NewRow:
    idx: int
    """Index of the row in the canonical result's output."""
    data: JsonObject
    evidence: str = ""


@dataclass(frozen=True)
class Expiry:
    """One slot handled by `expire_due`."""

    before: SlotRecord
    """As it was: CLAIMED or GRANTED past its deadline, with the node that let it lapse."""
    after: SlotRecord
    """OFFERED at the next attempt, or FAILED."""


@dataclass(frozen=True)
class Settled:
    task: TaskRecord
    reoffered: list[SlotRecord]
    failed: list[SlotRecord]


def payload_bytes(payload: TaskPayload) -> bytes:
    """Canonical bytes of a task payload (what its digest is taken over)."""
    return encoding.encode(payload.model_dump(mode="python"))


def payload_sha256(payload: TaskPayload) -> str:
    return hashlib.sha256(payload_bytes(payload)).hexdigest()


def row_sha256(data: JsonObject, evidence: str) -> str:
    return encoding.digest({"data": data, "evidence": evidence}).hex()


def _decoding_bytes(decoding: DecodingParams | None) -> bytes | None:
    return None if decoding is None else encoding.encode(decoding.model_dump(mode="python"))


def _decoding_from(raw: bytes | None) -> DecodingParams | None:
    if raw is None:
        return None
    return DecodingParams.model_validate(encoding.decode(raw, limit=len(raw), what="stored decoding params"))


# --- the store -----------------------------------------------------------------


class Store:
    """The coordinator database plus its blob folder. See the module docstring for threading."""

    def __init__(
        self,
        path: Path,
        *,
        blob_dir: Path | None = None,
        synchronous: str = "NORMAL",
        inline_limit: int = INLINE_PAYLOAD_LIMIT,
    ) -> None:
        self.path = Path(path)
        self.blobs = BlobStore(blob_dir if blob_dir is not None else self.path.with_name(self.path.name + ".blobs"))
        self._inline_limit = inline_limit
        self._lock = threading.RLock()
        self._verified: OrderedDict[int, tuple[bytes, Result]] = OrderedDict()
        self._verified_bytes = 0
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per call.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"could not put {self.path} in WAL mode (got {mode!r})")
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls everything in it back."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- jobs and stages --------------------------------------------------------

    def create_job(
        self, job_id: str, spec: JsonObject, *, allowed_models: Iterable[str] = (), now_ms: int
    ) -> JobRecord:
        with self._tx() as c:
            c.execute(
                "INSERT INTO jobs (job_id, spec, allowed_models, state, created_ms, updated_ms)"
                " VALUES (?, ?, ?, 'open', ?, ?)",
                (job_id, json.dumps(spec, sort_keys=True), json.dumps(sorted(set(allowed_models))), now_ms, now_ms),
            )
            return self._job(c, job_id)

    def job(self, job_id: str) -> JobRecord:
        with self._lock:
            return self._job(self._conn, job_id)

    def set_job_state(self, job_id: str, state: str, *, now_ms: int) -> None:
        with self._tx() as c:
            cur = c.execute("UPDATE jobs SET state = ?, updated_ms = ? WHERE job_id = ?", (state, now_ms, job_id))
            if cur.rowcount != 1:
                raise NotFound(f"job {job_id!r}")

    def update_job_spec(self, job_id: str, changes: Mapping[str, Any], *, now_ms: int) -> JobRecord:
        """Merge `changes` into the job's stored spec document (request, output dir, error...)."""
        with self._tx() as c:
            job = self._job(c, job_id)
            merged = {**job.spec, **changes}
            c.execute(
                "UPDATE jobs SET spec = ?, updated_ms = ? WHERE job_id = ?",
                (json.dumps(merged, sort_keys=True), now_ms, job_id),
            )
            return self._job(c, job_id)

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
                self._job(c, job_id)  # NotFound for an unknown job
            return n == 1

    def jobs(self) -> list[JobRecord]:
        """Every job, newest first."""
        with self._lock:
            ids = [str(r[0]) for r in self._conn.execute("SELECT job_id FROM jobs ORDER BY created_ms DESC")]
            return [self._job(self._conn, i) for i in ids]

    def add_stage(self, job_id: str, stage: str, *, now_ms: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO stages (job_id, stage, state, created_ms, updated_ms) VALUES (?, ?, 'open', ?, ?)",
                (job_id, stage, now_ms, now_ms),
            )

    def set_stage_state(self, job_id: str, stage: str, state: str, *, now_ms: int) -> None:
        with self._tx() as c:
            n = c.execute(
                "UPDATE stages SET state = ?, updated_ms = ? WHERE job_id = ? AND stage = ?",
                (state, now_ms, job_id, stage),
            ).rowcount
            if n != 1:
                raise NotFound(f"stage {stage!r} of job {job_id!r}")

    def stages(self, job_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute("SELECT stage, state FROM stages WHERE job_id = ?", (job_id,)).fetchall()
        return {r["stage"]: r["state"] for r in rows}

    # --- tasks and slots --------------------------------------------------------

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
        now_ms: int,
    ) -> TaskRecord:
        """Create a task with `replicas` slots, all OFFERED at attempt 0."""
        if replicas < 1 or max_attempts < 1:
            raise ValueError(f"replicas ({replicas}) and max_attempts ({max_attempts}) must be >= 1")
        raw = payload_bytes(payload)
        # Refuse now what could not be read back later (model_copy/model_construct skip validation).
        _PAYLOAD_ADAPTER.validate_python(encoding.decode(raw, limit=len(raw), what="payload"))
        digest = hashlib.sha256(raw).hexdigest()
        inline: bytes | None = raw
        if len(raw) > self._inline_limit:
            # Blob first, row second: a committed row never points at a missing blob.
            self.blobs.put(raw)
            inline = None
        with self._tx() as c:
            c.execute(
                "INSERT INTO tasks (task_id, job_id, stage, kind, payload_sha256, payload, est_tokens, max_attempts,"
                " state, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                (task_id, job_id, stage, payload.kind.value, digest, inline, est_tokens, max_attempts, now_ms, now_ms),
            )
            c.executemany(
                "INSERT INTO slots (task_id, replica, state, attempt, updated_ms) VALUES (?, ?, ?, 0, ?)",
                [(task_id, i, SlotState.OFFERED.value, now_ms) for i in range(replicas)],
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

    def add_replica(self, task_id: str, *, now_ms: int) -> SlotRecord:
        """One more OFFERED slot for an open task (replicas disagreed, or a spot-check)."""
        with self._tx() as c:
            task = self._task(c, task_id)
            if task.state is not TaskState.OPEN:
                raise Conflict(f"task {task_id!r} is {task.state}; no replica can be added")
            replica = c.execute("SELECT COALESCE(MAX(replica), -1) + 1 FROM slots WHERE task_id = ?", (task_id,))
            n = int(replica.fetchone()[0])
            c.execute(
                "INSERT INTO slots (task_id, replica, state, attempt, updated_ms) VALUES (?, ?, ?, 0, ?)",
                (task_id, n, SlotState.OFFERED.value, now_ms),
            )
            return self._slot(c, task_id, n)

    def task(self, task_id: str) -> TaskRecord:
        with self._lock:
            return self._task(self._conn, task_id)

    def tasks(self, job_id: str, *, stage: str | None = None) -> list[TaskRecord]:
        sql = "SELECT * FROM tasks WHERE job_id = ?" + (" AND stage = ?" if stage is not None else "")
        args: tuple[Any, ...] = (job_id, stage) if stage is not None else (job_id,)
        with self._lock:
            return [self._task_from(r) for r in self._conn.execute(sql + " ORDER BY created_ms, task_id", args)]

    def task_payload(self, task_id: str) -> TaskPayload:
        """The task's payload, read back and checked against its digest."""
        with self._lock:
            row = self._conn.execute(
                "SELECT payload, payload_sha256 FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"task {task_id!r}")
        raw = row["payload"] if row["payload"] is not None else self.blobs.get(row["payload_sha256"])
        if hashlib.sha256(raw).hexdigest() != row["payload_sha256"]:
            raise StoreError(f"payload of task {task_id!r} does not match its digest")
        return _PAYLOAD_ADAPTER.validate_python(encoding.decode(raw, limit=len(raw), what="stored payload"))

    def slot(self, task_id: str, replica: int) -> SlotRecord:
        with self._lock:
            return self._slot(self._conn, task_id, replica)

    def slots(self, task_id: str) -> list[SlotRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM slots WHERE task_id = ? ORDER BY replica", (task_id,))
            return [self._slot_from(r) for r in rows]

    def offered_slots(self, *, limit: int = 100, kinds: Iterable[TaskKind] | None = None) -> list[SlotRecord]:
        """Slots waiting for a claim, oldest first, of tasks that are still open."""
        sql = "SELECT s.* FROM slots s JOIN tasks t ON t.task_id = s.task_id WHERE s.state = ? AND t.state = 'open'"
        args: list[Any] = [SlotState.OFFERED.value]
        if kinds is not None:
            ks = [k.value for k in kinds]
            sql += f" AND t.kind IN ({','.join('?' * len(ks))})"
            args += ks
        sql += " ORDER BY s.updated_ms, s.task_id, s.replica LIMIT ?"
        args.append(limit)
        with self._lock:
            return [self._slot_from(r) for r in self._conn.execute(sql, args)]

    # --- spot-checks ------------------------------------------------------------

    def pick_spot_check(self, task_id: str, *, now_ms: int) -> None:
        """Mark a task whose result a validator must re-score rather than take on trust (idempotent).

        Stored, not kept in the scheduler's memory: a coordinator restarted between the pick and the
        result (a trusted node runs the task meanwhile) must still re-score that result.
        """
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO spot_checks (task_id, picked_ms) VALUES (?, ?)", (task_id, now_ms))

    def spot_checked(self, task_id: str) -> bool:
        """Whether the task is picked for a spot-check that is not yet decided."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM spot_checks WHERE task_id = ?", (task_id,)).fetchone()
        return row is not None

    def clear_spot_check(self, task_id: str) -> None:
        """The spot-check was decided (its re-scores are in): a later replica is not picked by it."""
        with self._tx() as c:
            c.execute("DELETE FROM spot_checks WHERE task_id = ?", (task_id,))

    # --- slot transitions -----------------------------------------------------

    def claim(self, task_id: str, node: str, *, claim_deadline_ms: int, now_ms: int) -> SlotRecord | None:
        """OFFERED -> CLAIMED for `node` on the lowest free replica, or None if there is none for it.

        None when the task is not open, no slot is OFFERED, or `node` already holds
        or produced another replica of this task (redundancy needs distinct nodes).
        `claim_deadline_ms` bounds how long the claim may wait for its GRANT (then it expires).
        """
        with self._tx() as c:
            task = self._task(c, task_id)
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
                (task_id, SlotState.OFFERED.value),
            ).fetchone()
            if row is None:
                return None
            slot = self._slot_from(row)
            return self._move(c, slot, SlotEvent.CLAIM, now_ms, node=node, lease_id=None, deadline_ms=claim_deadline_ms)

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
            slot = self._slot(c, task_id, replica)
            if slot.node is None:
                raise Conflict(f"slot {task_id}#{replica} has no claiming node")
            self._move(c, slot, SlotEvent.GRANT, now_ms, node=slot.node, lease_id=lease_id, deadline_ms=deadline_ms)
            raw_decoding = _decoding_bytes(decoding)
            c.execute(
                "INSERT INTO leases (lease_id, task_id, replica, attempt, node, model_sha256, decoding, granted_ms,"
                " deadline_ms, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'live')",
                (
                    lease_id,
                    task_id,
                    replica,
                    slot.attempt,
                    slot.node,
                    model_sha256,
                    raw_decoding,
                    now_ms,
                    deadline_ms,
                ),
            )
            return LeaseRecord(
                lease_id=lease_id,
                task_id=task_id,
                replica=replica,
                attempt=slot.attempt,
                node=slot.node,
                model_sha256=model_sha256,
                decoding=_decoding_from(raw_decoding),  # as `lease()` would read it back
                granted_ms=now_ms,
                deadline_ms=deadline_ms,
                state="live",
            )

    def lease(self, lease_id: str) -> LeaseRecord:
        with self._lock:
            return self._lease(self._conn, lease_id)

    def grant_message(self, lease_id: str) -> Grant:
        """The Grant as it was sent for `lease_id` (rebuilt from the lease and the task)."""
        lease = self.lease(lease_id)
        task = self.task(lease.task_id)
        return Grant(
            task_id=task.task_id,
            job_id=task.job_id,
            lease_id=lease.lease_id,
            attempt=lease.attempt,
            node_peer_id=lease.node,
            payload=self.task_payload(task.task_id),
            decoding=lease.decoding,
            model_sha256=lease.model_sha256,
            lease_deadline_ms=lease.deadline_ms,
        )

    def record_result(self, opened: Opened, *, now_ms: int) -> Recorded:
        """Record a Result envelope once, and fill its slot if it is the one the slot awaits.

        Idempotent: the same Result body (gossip or stream duplicate, even re-sealed
        with a new nonce) returns the existing record with `duplicate=True`.
        The slot moves (GRANTED -SUBMIT-> SUBMITTED, or EXPIRED -LATE_SUBMIT->
        SUBMITTED) only when the signer holds the lease, the lease is the slot's
        current one, and the result names the lease's task and attempt. Anything
        else is recorded with `counted=False` for the verifier to judge.
        Raises NotFound for a lease this coordinator never granted.
        """
        result = opened.message
        if not isinstance(result, Result):
            raise TypeError(f"expected a Result envelope, got {type(result).__name__}")
        digest = hashlib.sha256(opened.body).hexdigest()
        signer = opened.sender_peer_id
        with self._tx() as c:
            existing = c.execute("SELECT * FROM results WHERE result_sha256 = ?", (digest,)).fetchone()
            if existing is not None:
                return Recorded(self._result_from(existing), duplicate=True, slot=None)
            lease = self._lease(c, result.lease_id)
            slot = self._slot(c, lease.task_id, lease.replica)
            task = self._task(c, lease.task_id)
            fills = (
                signer == lease.node
                and slot.lease_id == lease.lease_id
                and slot.attempt == lease.attempt
                and result.task_id == lease.task_id
                and result.job_id == task.job_id
                and result.attempt == lease.attempt
                and (
                    (slot.state is SlotState.GRANTED and lease.state == "live")
                    or (slot.state is SlotState.EXPIRED and lease.state == "expired")
                )
            )
            moved: SlotRecord | None = None
            if fills:
                event = SlotEvent.SUBMIT if slot.state is SlotState.GRANTED else SlotEvent.LATE_SUBMIT
                moved = self._move(c, slot, event, now_ms, node=slot.node, lease_id=slot.lease_id, deadline_ms=None)
                c.execute("UPDATE leases SET state = 'submitted' WHERE lease_id = ?", (lease.lease_id,))
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
            self._touch_node(c, signer, now_ms)
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
            self._remember_verified(record.result_id, record.envelope, result)
        return Recorded(record, duplicate=False, slot=moved)

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

        For each judgement whose result filled its slot: SUBMITTED -ACCEPT-> VERIFIED,
        or -REJECT-> REJECTED followed at once by RETRY (attempt + 1, back to
        OFFERED) or GIVE_UP (FAILED) per `protocol.state.after_failure`; a task that
        is done never retries. A verdict is written once: judging an already
        judged result again is a no-op, so a settle repeated after a crash is safe.
        `canonical_result_id` marks the task DONE with that (accepted) result and
        stores `rows` from it. `reputations` are upserted in the same transaction.
        """
        if rows and canonical_result_id is None:
            raise ValueError("rows need the canonical_result_id they come from")
        reoffered: list[SlotRecord] = []
        failed: list[SlotRecord] = []
        with self._tx() as c:
            task = self._task(c, task_id)
            if canonical_result_id is not None:
                if task.state is TaskState.FAILED:
                    raise Conflict(f"task {task_id!r} already failed")
                if task.state is TaskState.DONE and task.canonical_result_id != canonical_result_id:
                    raise Conflict(f"task {task_id!r} is already done with result {task.canonical_result_id}")
            for j in judgements:
                if j.verdict is Verdict.PENDING:
                    raise ValueError("settle takes final verdicts; PENDING needs no call")
                res = self._result(c, j.result_id)
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
                slot = self._slot(c, task_id, res.replica)
                if slot.state is not SlotState.SUBMITTED or slot.lease_id != res.lease_id:
                    continue
                event = SlotEvent.ACCEPT if j.verdict is Verdict.ACCEPTED else SlotEvent.REJECT
                slot = self._move(c, slot, event, now_ms, node=slot.node, lease_id=slot.lease_id, deadline_ms=None)
                if slot.state is SlotState.REJECTED:
                    closing = canonical_result_id is not None or task.state is not TaskState.OPEN
                    after = self._follow_up(c, slot, task, closing, now_ms)
                    (reoffered if after.state is SlotState.OFFERED else failed).append(after)
            if canonical_result_id is not None:
                self._complete(c, task, canonical_result_id, rows, now_ms)
            else:
                self._fail_if_exhausted(c, task_id, now_ms)
            for rep in reputations:
                self._save_reputation(c, rep)
            return Settled(self._task(c, task_id), reoffered, failed)

    def expired_slots(self, *, now_ms: int) -> list[SlotRecord]:
        """Slots whose claim or lease deadline passed before `now_ms`."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM slots WHERE state IN (?, ?) AND deadline_ms < ? ORDER BY deadline_ms",
                (SlotState.CLAIMED.value, SlotState.GRANTED.value, now_ms),
            )
            return [self._slot_from(r) for r in rows]

    def expire_due(self, *, now_ms: int) -> list[Expiry]:
        """EXPIRE every slot past its deadline, then RETRY or GIVE_UP it, per `after_failure`.

        Returns what happened to each slot, including which node let it lapse (the
        caller charges that node `Outcome.EXPIRED`; a crash before it does so only
        forgoes that mild penalty). One transaction per slot, so each commit stays
        short and a crash part-way leaves the rest for the next call. Also finishes
        any slot found EXPIRED or REJECTED without its follow-up (none should
        exist, but a restart must converge whatever it finds).
        """
        out: list[Expiry] = []
        for due in self.expired_slots(now_ms=now_ms) + self._stranded():
            with self._tx() as c:
                slot = self._slot(c, due.task_id, due.replica)
                before = slot
                if slot.state in (SlotState.CLAIMED, SlotState.GRANTED):
                    if slot.deadline_ms is None or slot.deadline_ms >= now_ms:
                        continue  # moved on since the query
                    if slot.lease_id is not None:
                        c.execute("UPDATE leases SET state = 'expired' WHERE lease_id = ?", (slot.lease_id,))
                    slot = self._move(
                        c,
                        slot,
                        SlotEvent.EXPIRE,
                        now_ms,
                        node=slot.node,
                        lease_id=slot.lease_id,
                        deadline_ms=slot.deadline_ms,
                    )
                if slot.state not in (SlotState.EXPIRED, SlotState.REJECTED):
                    continue
                task = self._task(c, slot.task_id)
                after = self._follow_up(c, slot, task, task.state is not TaskState.OPEN, now_ms)
                self._fail_if_exhausted(c, slot.task_id, now_ms)
                out.append(Expiry(before=before, after=after))
        return out

    def abandon_task(self, task_id: str, *, now_ms: int) -> TaskRecord:
        """Stop waiting for nodes on an open task: its waiting slots are cancelled (FAILED). The task
        fails, unless a submitted result is still to be judged (then it stays open for that)."""
        with self._tx() as c:
            task = self._task(c, task_id)
            if task.state is not TaskState.OPEN:
                return task
            for row in c.execute(
                "SELECT * FROM slots WHERE task_id = ? AND state IN (?, ?)",
                (task_id, SlotState.OFFERED.value, SlotState.CLAIMED.value),
            ).fetchall():
                slot = self._slot_from(row)
                self._move(c, slot, SlotEvent.CANCEL, now_ms, node=slot.node, lease_id=None, deadline_ms=None)
            busy = c.execute(
                "SELECT 1 FROM slots WHERE task_id = ? AND state IN (?, ?)",
                (task_id, SlotState.GRANTED.value, SlotState.SUBMITTED.value),
            ).fetchone()
            if not busy:
                c.execute(
                    "UPDATE tasks SET state = ?, updated_ms = ? WHERE task_id = ?",
                    (TaskState.FAILED.value, now_ms, task_id),
                )
            return self._task(c, task_id)

    def stage_activity_ms(self, job_id: str, stage: str) -> int:
        """When a slot of the stage last changed (claim, grant, submit, verdict, expiry); 0 if never."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(s.updated_ms) FROM slots s JOIN tasks t ON t.task_id = s.task_id"
                " WHERE t.job_id = ? AND t.stage = ?",
                (job_id, stage),
            ).fetchone()
            return int(row[0] or 0)

    def untaken_tasks(self, job_id: str, stage: str) -> list[str]:
        """Open tasks of a stage waiting for a node that does not come: a slot OFFERED, none claimed or running."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.task_id FROM tasks t WHERE t.job_id = ? AND t.stage = ? AND t.state = 'open'"
                " AND EXISTS (SELECT 1 FROM slots s WHERE s.task_id = t.task_id AND s.state = ?)"
                " AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.task_id = t.task_id AND s.state IN (?, ?))",
                (job_id, stage, SlotState.OFFERED.value, SlotState.CLAIMED.value, SlotState.GRANTED.value),
            )
            return [str(r[0]) for r in rows]

    def row_count(self, job_id: str) -> int:
        """Accepted rows of a job (what progress polling needs, without loading the rows)."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM rows WHERE job_id = ?", (job_id,)).fetchone()[0])

    def count_held(self, node: str) -> int:
        """Slots `node` holds right now (claimed or granted): its outstanding leases."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM slots WHERE node = ? AND state IN (?, ?)",
                (node, SlotState.CLAIMED.value, SlotState.GRANTED.value),
            ).fetchone()
            return int(row[0])

    def open_tasks_with_pending_results(self) -> list[str]:
        """Open tasks holding a counted result without a verdict (what a restart must re-decide)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT r.task_id FROM results r JOIN tasks t ON t.task_id = r.task_id"
                " LEFT JOIN verdicts v ON v.result_id = r.result_id"
                " WHERE t.state = 'open' AND r.counted = 1 AND v.result_id IS NULL ORDER BY r.task_id"
            )
            return [str(r[0]) for r in rows]

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

    def verdict_counts(self, job_id: str) -> dict[str, int]:
        """Verdicts on a job's results by `verdict:reason` (reason empty for accepted)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT v.verdict, v.reason, COUNT(*) FROM verdicts v JOIN results r ON r.result_id = v.result_id"
                " JOIN tasks t ON t.task_id = r.task_id WHERE t.job_id = ? GROUP BY v.verdict, v.reason",
                (job_id,),
            )
            return {f"{r[0]}:{r[1]}" if r[1] else str(r[0]): int(r[2]) for r in rows}

    # --- results, verdicts, rows, receipts ---------------------------------------

    def result(self, result_id: int) -> ResultRecord:
        with self._lock:
            return self._result(self._conn, result_id)

    def result_message(self, result_id: int) -> Result:
        """The stored Result, re-verified (signature and schema) as of its own issue time.

        For the verifier and the compiler, which read results long after the
        envelope's replay window closed; a tampered database row fails here.
        """
        envelope = self.result(result_id).envelope
        with self._lock:
            cached = self._verified.get(result_id)
            if cached is not None and cached[0] == envelope:  # the very bytes that were verified
                self._verified.move_to_end(result_id)
                return cached[1]
        outer = encoding.decode(envelope, limit=_RESULT_ENVELOPE_LIMIT, what="stored result")
        opened = open_envelope(envelope, now_ms=outer["issued_at"], replay_cache=None, expect={MessageKind.RESULT})
        if not isinstance(opened.message, Result):  # expect= guarantees it; this narrows the type
            raise StoreError(f"result {result_id} holds a {type(opened.message).__name__}")
        self._remember_verified(result_id, envelope, opened.message)
        return opened.message

    def _remember_verified(self, result_id: int, envelope: bytes, message: Result) -> None:
        """Keep a verified Result (immutable) for `result_message`, within the cache's bounds."""
        with self._lock:
            old = self._verified.pop(result_id, None)
            if old is not None:
                self._verified_bytes -= len(old[0])
            self._verified[result_id] = (envelope, message)
            self._verified_bytes += len(envelope)
            while self._verified and (
                len(self._verified) > VERIFIED_CACHE_ENTRIES or self._verified_bytes > VERIFIED_CACHE_BYTES
            ):
                _, (dropped, _) = self._verified.popitem(last=False)
                self._verified_bytes -= len(dropped)

    def results_for(self, task_id: str) -> list[ResultRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM results WHERE task_id = ? ORDER BY result_id", (task_id,))
            return [self._result_from(r) for r in rows]

    def verdict(self, result_id: int) -> VerdictRecord | None:
        with self._lock:
            r = self._conn.execute("SELECT * FROM verdicts WHERE result_id = ?", (result_id,)).fetchone()
        if r is None:
            return None
        return VerdictRecord(r["result_id"], Verdict(r["verdict"]), r["reason"], r["detail"], r["decided_ms"])

    def rows(self, job_id: str) -> list[RowRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM rows WHERE job_id = ? ORDER BY row_id", (job_id,)).fetchall()
        return [
            RowRecord(
                r["row_id"],
                r["job_id"],
                r["task_id"],
                r["result_id"],
                r["idx"],
                json.loads(r["data"]),
                r["evidence"],
                r["row_sha256"],
                r["accepted_ms"],
            )
            for r in rows
        ]

    def receipt(self, result_id: int) -> bytes | None:
        with self._lock:
            r = self._conn.execute("SELECT envelope FROM receipts WHERE result_id = ?", (result_id,)).fetchone()
        return None if r is None else bytes(r[0])

    def record_receipt(self, result_id: int, envelope: bytes, *, now_ms: int) -> None:
        """Store a receipt issued outside `settle` (idempotent: the first one stays)."""
        with self._tx() as c:
            res = self._result(c, result_id)
            c.execute(
                "INSERT OR IGNORE INTO receipts (result_id, lease_id, node, envelope, issued_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (result_id, res.lease_id, res.node, envelope, now_ms),
            )

    # --- nodes and reputation ---------------------------------------------------

    def touch_node(self, peer_id: str, *, now_ms: int, status: bytes | None = None) -> None:
        with self._tx() as c:
            self._touch_node(c, peer_id, now_ms, status)

    def nodes(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT peer_id FROM nodes ORDER BY peer_id")]

    def reputation(self, peer_id: str) -> NodeReputation | None:
        with self._lock:
            r = self._conn.execute("SELECT * FROM reputation WHERE peer_id = ?", (peer_id,)).fetchone()
        return None if r is None else self._reputation_from(r)

    def reputations(self) -> list[NodeReputation]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM reputation ORDER BY score DESC, peer_id").fetchall()
        return [self._reputation_from(r) for r in rows]

    def save_reputation(self, rep: NodeReputation) -> None:
        with self._tx() as c:
            self._save_reputation(c, rep)

    # --- internals (called with the lock held, inside a transaction for writes) ----

    def _move(
        self,
        c: sqlite3.Connection,
        slot: SlotRecord,
        event: SlotEvent,
        now_ms: int,
        *,
        node: str | None,
        lease_id: str | None,
        deadline_ms: int | None,
        attempt: int | None = None,
    ) -> SlotRecord:
        """Apply one event to one slot; IllegalTransition aborts the whole transaction."""
        new = next_state(slot.state, event)
        n = c.execute(
            "UPDATE slots SET state = ?, node = ?, lease_id = ?, deadline_ms = ?, attempt = ?, updated_ms = ?"
            " WHERE task_id = ? AND replica = ? AND state = ?",
            (
                new.value,
                node,
                lease_id,
                deadline_ms,
                slot.attempt if attempt is None else attempt,
                now_ms,
                slot.task_id,
                slot.replica,
                slot.state.value,
            ),
        ).rowcount
        if n != 1:  # the caller's snapshot is stale; cannot happen under the lock, but never write blind
            raise Conflict(f"slot {slot.task_id}#{slot.replica} is no longer {slot.state}")
        # Every column but the key was just written: the row is this (no read-back query).
        return SlotRecord(
            task_id=slot.task_id,
            replica=slot.replica,
            state=new,
            attempt=slot.attempt if attempt is None else attempt,
            node=node,
            lease_id=lease_id,
            deadline_ms=deadline_ms,
            updated_ms=now_ms,
        )

    def _follow_up(
        self, c: sqlite3.Connection, slot: SlotRecord, task: TaskRecord, closing: bool, now_ms: int
    ) -> SlotRecord:
        """EXPIRED/REJECTED -> OFFERED at the next attempt, or FAILED."""
        event = SlotEvent.GIVE_UP if closing else after_failure(slot.attempt, task.max_attempts)
        if event is SlotEvent.RETRY:
            return self._move(
                c, slot, event, now_ms, node=None, lease_id=None, deadline_ms=None, attempt=slot.attempt + 1
            )
        return self._move(c, slot, event, now_ms, node=slot.node, lease_id=slot.lease_id, deadline_ms=None)

    def _stranded(self) -> list[SlotRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM slots WHERE state IN (?, ?)", (SlotState.EXPIRED.value, SlotState.REJECTED.value)
            )
            return [self._slot_from(r) for r in rows]

    def _complete(
        self, c: sqlite3.Connection, task: TaskRecord, result_id: int, rows: Sequence[NewRow], now_ms: int
    ) -> None:
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
            "UPDATE tasks SET state = 'done', canonical_result = ?, updated_ms = ? WHERE task_id = ?",
            (result_id, now_ms, task.task_id),
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

    def _fail_if_exhausted(self, c: sqlite3.Connection, task_id: str, now_ms: int) -> None:
        """An open task whose every slot FAILED can make no more progress."""
        live = c.execute(
            "SELECT COUNT(*) FROM slots WHERE task_id = ? AND state != ?", (task_id, SlotState.FAILED.value)
        ).fetchone()[0]
        if live == 0:
            c.execute(
                "UPDATE tasks SET state = 'failed', updated_ms = ? WHERE task_id = ? AND state = 'open'",
                (now_ms, task_id),
            )

    def _touch_node(self, c: sqlite3.Connection, peer_id: str, now_ms: int, status: bytes | None = None) -> None:
        c.execute(
            "INSERT INTO nodes (peer_id, first_seen_ms, last_seen_ms, status) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(peer_id) DO UPDATE SET last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms),"
            " status = COALESCE(excluded.status, status)",
            (peer_id, now_ms, now_ms, status),
        )

    def _save_reputation(self, c: sqlite3.Connection, rep: NodeReputation) -> None:
        c.execute(
            "INSERT INTO reputation (peer_id, score, accepted, rejected, expired, consecutive_ok, blacklisted,"
            " updated_ms, consecutive_expired) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(peer_id) DO UPDATE SET"
            " score = excluded.score, accepted = excluded.accepted, rejected = excluded.rejected,"
            " expired = excluded.expired, consecutive_ok = excluded.consecutive_ok,"
            " blacklisted = excluded.blacklisted, updated_ms = excluded.updated_ms,"
            " consecutive_expired = excluded.consecutive_expired",
            (
                rep.peer_id,
                rep.score,
                rep.accepted,
                rep.rejected,
                rep.expired,
                rep.consecutive_ok,
                int(rep.blacklisted),
                rep.updated_ms,
                rep.consecutive_expired,
            ),
        )

    @staticmethod
    def _reputation_from(r: Mapping[str, Any]) -> NodeReputation:
        return NodeReputation(
            peer_id=r["peer_id"],
            score=r["score"],
            accepted=r["accepted"],
            rejected=r["rejected"],
            expired=r["expired"],
            consecutive_ok=r["consecutive_ok"],
            blacklisted=bool(r["blacklisted"]),
            updated_ms=r["updated_ms"],
            consecutive_expired=r["consecutive_expired"],
        )

    def _job(self, c: sqlite3.Connection, job_id: str) -> JobRecord:
        r = c.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if r is None:
            raise NotFound(f"job {job_id!r}")
        return JobRecord(
            r["job_id"],
            json.loads(r["spec"]),
            frozenset(json.loads(r["allowed_models"])),
            r["state"],
            r["created_ms"],
            r["updated_ms"],
        )

    def _task(self, c: sqlite3.Connection, task_id: str) -> TaskRecord:
        r = c.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        if r is None:
            raise NotFound(f"task {task_id!r}")
        return self._task_from(r)

    @staticmethod
    def _task_from(r: Mapping[str, Any]) -> TaskRecord:
        return TaskRecord(
            task_id=r["task_id"],
            job_id=r["job_id"],
            stage=r["stage"],
            kind=TaskKind(r["kind"]),
            payload_sha256=r["payload_sha256"],
            est_tokens=r["est_tokens"],
            max_attempts=r["max_attempts"],
            state=TaskState(r["state"]),
            canonical_result_id=r["canonical_result"],
            created_ms=r["created_ms"],
            updated_ms=r["updated_ms"],
        )

    def _slot(self, c: sqlite3.Connection, task_id: str, replica: int) -> SlotRecord:
        r = c.execute("SELECT * FROM slots WHERE task_id = ? AND replica = ?", (task_id, replica)).fetchone()
        if r is None:
            raise NotFound(f"slot {task_id}#{replica}")
        return self._slot_from(r)

    @staticmethod
    def _slot_from(r: Mapping[str, Any]) -> SlotRecord:
        return SlotRecord(
            task_id=r["task_id"],
            replica=r["replica"],
            state=SlotState(r["state"]),
            attempt=r["attempt"],
            node=r["node"],
            lease_id=r["lease_id"],
            deadline_ms=r["deadline_ms"],
            updated_ms=r["updated_ms"],
        )

    def _lease(self, c: sqlite3.Connection, lease_id: str) -> LeaseRecord:
        r = c.execute("SELECT * FROM leases WHERE lease_id = ?", (lease_id,)).fetchone()
        if r is None:
            raise NotFound(f"lease {lease_id!r}")
        return LeaseRecord(
            lease_id=r["lease_id"],
            task_id=r["task_id"],
            replica=r["replica"],
            attempt=r["attempt"],
            node=r["node"],
            model_sha256=r["model_sha256"],
            decoding=_decoding_from(r["decoding"]),
            granted_ms=r["granted_ms"],
            deadline_ms=r["deadline_ms"],
            state=r["state"],
        )

    def _result(self, c: sqlite3.Connection, result_id: int) -> ResultRecord:
        r = c.execute("SELECT * FROM results WHERE result_id = ?", (result_id,)).fetchone()
        if r is None:
            raise NotFound(f"result {result_id}")
        return self._result_from(r)

    @staticmethod
    def _result_from(r: Mapping[str, Any]) -> ResultRecord:
        return ResultRecord(
            result_id=r["result_id"],
            result_sha256=r["result_sha256"],
            task_id=r["task_id"],
            lease_id=r["lease_id"],
            replica=r["replica"],
            attempt=r["attempt"],
            node=r["node"],
            envelope=bytes(r["envelope"]),
            counted=bool(r["counted"]),
            received_ms=r["received_ms"],
        )
