"""What a grant carries: the decoding settings and allowed models of a task (the Grant message itself is
`store.replicas.grant_for`, built from the lease the store wrote, not read back)."""

from __future__ import annotations

from coordinator.scheduler.config import SchedulerConfig
from coordinator.scheduler.ids import seed_for
from coordinator.scheduler.view import Payloads
from coordinator.store import JobRecord, Store, TaskRecord
from coordinator.verify.judge import JudgeSettings
from protocol.tasks import GENERATIVE_KINDS, LLM_KINDS, DecodingParams, TaskKind


def decoding_for(task: TaskRecord, config: SchedulerConfig, attempt: int = 0) -> DecodingParams | None:
    """The grant's decoding for attempt `attempt` of a replica (a retry samples with another seed)."""
    if task.kind not in GENERATIVE_KINDS:
        return None
    return DecodingParams(
        seed=seed_for(task.task_id, attempt),
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
        job = job or store.job(task.job_id)
        judge = JudgeSettings.from_doc(job.doc) if task.kind is TaskKind.JUDGE else None
        return sorted(judge.models if judge is not None else job.allowed_models)
    return []
