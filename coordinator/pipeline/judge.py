"""Judge, within synthesize: a row that no round trip can check waits for a judge node's score.

A spec that is neither question/answer nor text/label (instruction/response, free columns) has no round
trip. When the operator configured judge models (verify/judge.py), every row that passed the gates and
re-scoring gets a judge task (id: `scheduler.judge_task_id`), run by a node with one of those models that
wrote none of the row's replicas; only rows it scores at or above the minimum count towards the job and
are delivered. A refused row is recorded as a row drop (`judge_refused`), and so is a row whose judge
task failed (`unjudged`): fewer rows rather than unchecked ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.pipeline import synthesize
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.stage import TaskPlan
from coordinator.scheduler import judge_task_id
from coordinator.store import RowRecord, Store, TaskState
from coordinator.verify.judge import JudgeSettings, criteria
from coordinator.verify.reasons import Reason
from protocol.tasks import JudgeOutput, JudgePayload, SynthesizePayload, TaskKind

STAGE = TaskKind.JUDGE.value
EST_TOKENS = 120
"""A rationale of one or two sentences and a score, in JSON."""


def settings(ctx: JobContext) -> JudgeSettings | None:
    """The job's judge, for a spec whose rows have no round trip; None when its rows are not judged."""
    if synthesize.sentence_field(ctx.spec) is not None:
        return None
    return JudgeSettings.from_doc(ctx.store.job(ctx.job_id).doc)


@dataclass
class Tally:
    """The job's rows by their judge's verdict."""

    passed: list[RowRecord] = field(default_factory=list)
    pending: int = 0
    """Rows whose judge task is not submitted or still open."""
    refused: list[RowRecord] = field(default_factory=list)
    unjudged: list[RowRecord] = field(default_factory=list)


def tally(store: Store, job_id: str, judge: JudgeSettings) -> Tally:
    tasks = {t.task_id: t for t in store.tasks(job_id, stage=STAGE)}
    out = Tally()
    for row in store.rows(job_id):
        task = tasks.get(judge_task_id(row.task_id, row.idx))
        if task is None or task.state is TaskState.OPEN:
            out.pending += 1
        elif task.state is TaskState.DONE and task.canonical_result_id is not None:
            output = store.result_message(task.canonical_result_id).output
            assert isinstance(output, JudgeOutput)
            (out.passed if judge.passes(output) else out.refused).append(row)
        else:
            out.unjudged.append(row)
    return out


def tasks(ctx: JobContext) -> list[TaskPlan]:
    """A judge task for each row that has none yet."""
    store = ctx.store
    have = {t.task_id for t in store.tasks(ctx.job_id, stage=STAGE)}
    rubric = criteria(ctx.spec)
    out: list[TaskPlan] = []
    for row in store.rows(ctx.job_id):
        task_id = judge_task_id(row.task_id, row.idx)
        if task_id in have:
            continue
        payload = store.task_payload(row.task_id)
        chunk = payload.chunk if isinstance(payload, SynthesizePayload) else None
        out.append(TaskPlan(task_id, JudgePayload(row=row.data, criteria=rubric, chunk=chunk), EST_TOKENS))
    return out


def record_drops(ctx: JobContext, counted: Tally, now_ms: int) -> None:
    """Record refused and unjudged rows as row drops, for the card (idempotent)."""
    for reason, rows in ((Reason.JUDGE_REFUSED, counted.refused), (Reason.UNJUDGED, counted.unjudged)):
        for row in rows:
            ctx.store.record_row_drop(ctx.job_id, row.task_id, row.idx, reason.value, now_ms=now_ms)
