"""What every stage reads: the job's spec and the verified outputs of earlier stages.

Owns: reading canonical (accepted) outputs of a stage's tasks from the store,
and the deterministic task ids that make re-submitting a stage after a
restart a no-op (the scheduler's `submit` is idempotent per task id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from coordinator.spec import DatasetSpec
from coordinator.store import Store, TaskState
from protocol.tasks import Frozen, TaskKind

OutputT = TypeVar("OutputT", bound=Frozen)


@dataclass(frozen=True)
class JobContext:
    store: Store
    job_id: str
    spec: DatasetSpec
    request: str

    def task_id(self, kind: TaskKind, index: int) -> str:
        return f"{self.job_id}:{kind.value}:{index:05d}"

    def outputs(self, kind: TaskKind, output_type: type[OutputT]) -> list[tuple[str, OutputT]]:
        """(task id, accepted output) for every done task of `kind`, in task id order."""
        out: list[tuple[str, OutputT]] = []
        for task in self.store.tasks(self.job_id, stage=kind.value):
            if task.state is not TaskState.DONE or task.canonical_result_id is None:
                continue
            output = self.store.result_message(task.canonical_result_id).output
            if isinstance(output, output_type):
                out.append((task.task_id, output))
        return out
