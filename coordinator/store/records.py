"""The immutable values the store hands out and takes in, and how a database row becomes one.

Owns: the record dataclasses (snapshots of a job, task, replica, lease, result,
verdict or row), the values of the store's operations (`Recorded`,
`Judgement`, `NewRow`, `Expiry`, `Settled`), and the row mappers:
each record is built from a `SELECT *` row by `row_mapper`, which reads the
column named like each field and converts the few that are not stored as they
are (JSON, enums, flags).
Must not: run a query, open a transaction or decide anything: the concept
modules (jobs, tasks, replicas, results, nodes) do that and return these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from coordinator.verify.reputation import NodeReputation
from protocol import encoding
from protocol.messages import Verdict
from protocol.state import LeaseState, ReplicaState, TaskState
from protocol.tasks import DecodingParams, JsonObject, TaskKind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


# --- records (immutable snapshots handed to callers) ---------------------------


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    doc: JsonObject
    """The whole job document (request, dataset spec under "spec", output dir, error, partial...); column `spec`."""
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
class ReplicaRecord:
    task_id: str
    replica: int
    state: ReplicaState
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
    state: LeaseState


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
    """True if this result filled its replica; False if only recorded (late after re-offer, stray, second try)."""
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


# --- what the store's operations take and return --------------------------------


@dataclass(frozen=True)
class Recorded:
    """What `record_result` did."""

    result: ResultRecord
    duplicate: bool
    """The same Result body was already recorded; nothing changed."""
    replica: ReplicaRecord | None
    """The replica after SUBMIT / LATE_SUBMIT, or None if the result did not fill one."""


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
    """One replica handled by `expire_due`."""

    before: ReplicaRecord
    """As it was: CLAIMED or GRANTED past its deadline, with the node that let it lapse."""
    after: ReplicaRecord
    """OFFERED at the next attempt, or FAILED."""


@dataclass(frozen=True)
class Settled:
    task: TaskRecord
    reoffered: list[ReplicaRecord]
    failed: list[ReplicaRecord]


# --- rows -> records ------------------------------------------------------------


def row_mapper(
    cls: type[R], *, columns: Mapping[str, str] | None = None, **convert: Callable[[Any], Any]
) -> Callable[[Mapping[str, Any]], R]:
    """A function building `cls` from a database row: each field from the column of its name
    (or `columns[field]`), passed through `convert[field]` where given."""
    names = {f.name for f in fields(cls)}
    unknown = (set(convert) | set(columns or {})) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)}")
    plan = [(name, (columns or {}).get(name, name), convert.get(name)) for name in (f.name for f in fields(cls))]

    def build(r: Mapping[str, Any]) -> R:
        return cls(**{name: r[col] if conv is None else conv(r[col]) for name, col, conv in plan})

    return build


def decoding_bytes(decoding: DecodingParams | None) -> bytes | None:
    return None if decoding is None else encoding.encode(decoding.model_dump(mode="python"))


def decoding_from(raw: bytes | None) -> DecodingParams | None:
    if raw is None:
        return None
    return DecodingParams.model_validate(encoding.decode(raw, limit=len(raw), what="stored decoding params"))


def _models(raw: str) -> frozenset[str]:
    return frozenset(json.loads(raw))


job_from = row_mapper(JobRecord, columns={"doc": "spec"}, doc=json.loads, allowed_models=_models)
task_from = row_mapper(TaskRecord, columns={"canonical_result_id": "canonical_result"}, kind=TaskKind, state=TaskState)
replica_from = row_mapper(ReplicaRecord, state=ReplicaState)
lease_from = row_mapper(LeaseRecord, decoding=decoding_from, state=LeaseState)
result_from = row_mapper(ResultRecord, envelope=bytes, counted=bool)
verdict_from = row_mapper(VerdictRecord, verdict=Verdict)
row_from = row_mapper(RowRecord, data=json.loads)
reputation_from = row_mapper(NodeReputation, blacklisted=bool)
