"""A job's progress, read from the store: what the CLI, the API and the dashboard show.

Owns: one snapshot of a job (state, rows, stages, rejections, and while it waits for nodes, the wait).
Must not: change anything, or decide a job's state (the job runner does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator import job_states
from coordinator.pipeline import judge
from coordinator.pipeline.waiting import WAIT_KEY, NodeWait
from coordinator.store import Store, TaskState
from coordinator.verify.judge import JudgeSettings
from protocol.tasks import TaskKind

STAGE_ORDER = [k.value for k in (TaskKind.SPEC, TaskKind.QUESTION_GEN, TaskKind.SEARCH, TaskKind.RETRIEVE,
                                 TaskKind.CURATE, TaskKind.SYNTHESIZE, TaskKind.JUDGE,
                                 TaskKind.VALIDATE)] + ["compile"]  # fmt: skip


@dataclass(frozen=True)
class StageProgress:
    stage: str
    state: str
    tasks: int
    done: int
    failed: int

    @property
    def open(self) -> int:
        return self.tasks - self.done - self.failed


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    state: str
    rows: int
    target: int
    stages: list[StageProgress] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    error: str = ""
    out_dir: str = ""
    waiting: NodeWait | None = None
    """Set while the state is waiting_for_nodes: the stage, its live nodes and how many it needs."""

    def as_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "rows": self.rows,
            "target": self.target,
            "stages": [s.__dict__ | {"open": s.open} for s in self.stages],
            "rejections": self.rejections,
            "error": self.error,
            "out_dir": self.out_dir,
            "waiting": None if self.waiting is None else self.waiting.as_doc() | {"message": self.waiting.describe()},
        }


def job_progress(store: Store, job_id: str) -> JobProgress:
    job = store.job(job_id)
    states = store.stages(job_id)
    stages = []
    for stage in STAGE_ORDER:
        tasks = store.tasks(job_id, stage=stage) if stage != "compile" else []
        if stage not in states and not tasks:
            continue
        stages.append(
            StageProgress(
                stage=stage,
                state=states.get(stage, "running"),
                tasks=len(tasks),
                done=sum(t.state is TaskState.DONE for t in tasks),
                failed=sum(t.state is TaskState.FAILED for t in tasks),
            )
        )
    rejections = {k.removeprefix("rejected:"): v for k, v in store.verdict_counts(job_id).items() if ":" in k}
    for reason, n in store.row_drops(job_id).items():
        rejections[reason] = rejections.get(reason, 0) + n
    spec = job.doc.get("spec", {})
    target = int(spec.get("rows", 0)) if isinstance(spec, dict) else 0
    return JobProgress(
        job_id=job_id,
        state=job.state,
        rows=_rows(store, job_id),
        target=target,
        stages=stages,
        rejections=rejections,
        error=str(job.doc.get("error", "")),
        out_dir=str(job.doc.get("out_dir", "")),
        waiting=NodeWait.from_doc(job.doc.get(WAIT_KEY)) if job.state == job_states.WAITING_FOR_NODES else None,
    )


def _rows(store: Store, job_id: str) -> int:
    """Rows that count: of a judged job, those its judge passed (pipeline/judge.py)."""
    settings = JudgeSettings.from_doc(store.job(job_id).doc)
    if settings is None or not store.tasks(job_id, stage=TaskKind.JUDGE.value):
        return store.row_count(job_id)
    return len(judge.tally(store, job_id, settings).passed)
