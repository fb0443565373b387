"""Audits: the `validate` task that re-scores one candidate result, and how its outcome reaches the parent.

A validate task is stored with the link to its parent and candidate (the store's `validations` table).
The parent reads its audits' outcomes (`read_audits`); a closed validate task sends its parent back to be
decided (`parent_to_decide`), through the scheduler's work queue rather than by a nested call.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.scheduler.config import VALIDATE_STAGE, SchedulerConfig
from coordinator.scheduler.ids import judged_row, validate_task_id
from coordinator.store import ResultRecord, Store, TaskRecord, TaskState
from coordinator.verify.rescoring import validate_payload_for
from protocol.messages import Result, Verdict
from protocol.tasks import RESCORABLE_PAYLOADS, SynthesizePayload, TaskKind, TaskPayload, ValidateOutput


def read_audits(
    store: Store, task_id: str, results: Sequence[ResultRecord]
) -> dict[int, tuple[ValidateOutput, ...] | None]:
    """Per candidate result id with a validate task: None while it is open, else the outputs of the
    validators that agreed (empty when it failed)."""
    out: dict[int, tuple[ValidateOutput, ...] | None] = {}
    audits = store.validations(task_id)
    for r in results:
        vid = audits.get(r.result_id)
        if vid is None:
            continue
        vt = store.task(vid)
        if vt.state is TaskState.OPEN:
            out[r.result_id] = None
        elif vt.state is TaskState.DONE and vt.canonical_result_id is not None:
            agreed = []
            for v in store.results_for(vid):
                verdict = store.verdict(v.result_id)
                if verdict is not None and verdict.verdict is Verdict.ACCEPTED:
                    output = store.result_message(v.result_id).output
                    assert isinstance(output, ValidateOutput)
                    agreed.append(output)
            out[r.result_id] = tuple(agreed)
        else:
            out[r.result_id] = ()
    return out


def audited(payload: TaskPayload | None) -> bool:
    """Whether every result of a task with this payload goes to a validator (answer-first and label-first
    synthesize tasks: only a validator's round trip can pass their rows)."""
    return isinstance(payload, SynthesizePayload) and (payload.target is not None or payload.label is not None)


def parent_to_decide(store: Store, task: TaskRecord) -> list[str]:
    """The task to decide next because `task` closed: a validate task's parent, else none."""
    link = store.validated_by(task.task_id) if task.kind is TaskKind.VALIDATE else None
    return [link[0]] if link is not None else []


def parent_producers(store: Store, validate_id: str) -> set[str] | None:
    """The nodes that produced a result of a validate task's parent (None for a task that is not one)."""
    link = store.validated_by(validate_id)
    return None if link is None else {r.node for r in store.results_for(link[0])}


def row_writers(store: Store, judge_id: str) -> set[str]:
    """The nodes that wrote a result of the synthesize task whose row a judge task scores: none of them
    may judge it (empty for a task id that names no row)."""
    row = judged_row(judge_id)
    return set() if row is None else {r.node for r in store.results_for(row[0])}


def create_audit(
    store: Store,
    config: SchedulerConfig,
    task: TaskRecord,
    payload: TaskPayload | None,
    candidate: ResultRecord,
    result: Result,
    *,
    replicas: int,
    now_ms: int,
) -> None:
    """Create the validate task for one candidate, with `replicas` validator replicas."""
    task_payload = payload if isinstance(payload, RESCORABLE_PAYLOADS) else None
    # An honest answer-first question lies inside the grant's top-k: that is the k to check
    # (docs/notes/verification.md#top-k-misses-on-short-questions).
    top_k = config.validate_top_k
    if audited(task_payload):
        top_k = max(top_k, config.top_k)
    validate = validate_payload_for(result, top_k=top_k, task=task_payload)
    est = max(1, len(result.prompt) // 4 + len(result.raw_text) // 4)
    store.add_task(
        validate_task_id(task.task_id, candidate.result_id),
        task.job_id,
        VALIDATE_STAGE,
        validate,
        replicas=replicas,
        max_attempts=config.max_attempts,
        est_tokens=est // 3,
        validates=(task.task_id, candidate.result_id),
        now_ms=now_ms,
    )
