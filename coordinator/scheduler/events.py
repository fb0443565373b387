"""What the scheduler tells the job runners: a task settled, the live nodes changed, a job changed.

The scheduler records these as it goes (synchronously, no I/O) and the runtime takes them after each
call it makes and sends them to the runners listening (`CoordinatorRuntime.job_events`). An event is a
wake-up, not a record: a runner re-reads the store when it wakes, so an event lost (none listening, a
restart) costs nothing but the runner's safety-net timeout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from coordinator.store import TaskRecord, TaskState


@dataclass(frozen=True)
class TaskSettled:
    """A task left OPEN: done, failed (rejected, exhausted) or abandoned."""

    task_id: str
    job_id: str
    stage: str
    state: str
    """The task's final state (`TaskRecord.state`'s value)."""


@dataclass(frozen=True)
class NodesChanged:
    """The live nodes, or what they serve, changed: a job's wait for nodes may be over (or begin). Every
    job hears it."""


@dataclass(frozen=True)
class JobChanged:
    """The job's own record changed outside the scheduler (cancelled): its runner looks again."""

    job_id: str


Event = TaskSettled | NodesChanged | JobChanged


class Events:
    """The events recorded since the runtime last took them. Recorded on the runtime's worker thread and
    taken on its event loop's, possibly while the next call runs: a deque's appends and pops are atomic."""

    def __init__(self) -> None:
        self._pending: deque[Event] = deque()

    def settled(self, task: TaskRecord) -> None:
        """Record `task` as settled, if it is (an OPEN task is not)."""
        if task.state is not TaskState.OPEN:
            self._pending.append(TaskSettled(task.task_id, task.job_id, task.stage, task.state.value))

    def nodes_changed(self) -> None:
        self._pending.append(NodesChanged())

    def take(self) -> list[Event]:
        out = []
        while self._pending:
            try:
                out.append(self._pending.popleft())
            except IndexError:  # taken meanwhile
                break
        return out
