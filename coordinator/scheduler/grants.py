"""What a grant carries: the decoding settings and allowed models of a task, and the Grant message itself
(built from the lease the store wrote, not read back)."""

from __future__ import annotations

from coordinator.scheduler.config import SchedulerConfig
from coordinator.scheduler.ids import seed_for
from coordinator.scheduler.view import Payloads
from coordinator.store import JobRecord, LeaseRecord, Store, TaskRecord
from protocol.messages import Grant
from protocol.tasks import GENERATIVE_KINDS, LLM_KINDS, DecodingParams, TaskKind, TaskPayload


def decoding_for(task: TaskRecord, config: SchedulerConfig) -> DecodingParams | None:
    if task.kind not in GENERATIVE_KINDS:
        return None
    return DecodingParams(
        seed=seed_for(task.task_id),
        temperature=config.temperatures.get(task.kind, config.temperature),
        top_k=config.top_k,
        max_tokens=config.max_tokens.get(task.kind, 512),
    )


def allowed_models(store: Store, payloads: Payloads, task: TaskRecord, job: JobRecord | None = None) -> list[str]:
    """The model digests a node may run the task with (empty: not an LLM task); `job` if already read."""
    if task.kind is TaskKind.VALIDATE:
        payload = payloads.get(task.task_id)
        assert payload.kind is TaskKind.VALIDATE
        return [payload.model_sha256]
    if task.kind in LLM_KINDS:
        return sorted((job or store.job(task.job_id)).allowed_models)
    return []


def grant_message(lease: LeaseRecord, task: TaskRecord, payload: TaskPayload) -> Grant:
    """The Grant as it was sent for `lease` (what `Store.grant_message` rebuilds with three reads)."""
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
