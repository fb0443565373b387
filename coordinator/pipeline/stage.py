"""The shape of a stage: which tasks to run, given the job so far."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.tasks import TaskKind, TaskPayload


@dataclass(frozen=True)
class TaskSpec:
    """One task a stage wants run."""

    task_id: str
    payload: TaskPayload
    est_tokens: int = 0
    """Expected generated tokens (LLM kinds): sizes the lease deadline."""


@dataclass(frozen=True)
class StageName:
    kind: TaskKind

    @property
    def name(self) -> str:
        return self.kind.value
