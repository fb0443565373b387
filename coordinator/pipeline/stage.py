"""The shape of a stage: which tasks to run, given the job so far."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.tasks import TaskPayload


@dataclass(frozen=True)
class TaskPlan:
    """One task a stage wants run."""

    task_id: str
    payload: TaskPayload
    est_tokens: int = 0
    """Expected generated tokens (LLM kinds): sizes the lease deadline."""
