"""The stall clock: tasks of a job's current stage that no node takes for `SchedulerConfig.stall_ms` are
abandoned, so the job goes on with what is done (checked on each `Scheduler.tick`).

A stage with no replica activity at all for that long has tasks no node will take (every node already
ran a replica, or the only capable nodes were blacklisted). Busy nodes make activity, so slow progress
never trips it. The job runner says which stage it waits on and whether the job waits for nodes
(pipeline/waiting.py): while it does, the clock stands still, and it starts again from the end of the
wait. The job's validate tasks are watched with its stage (a stage's tasks may wait on their audits).
A change in the live nodes makes every watch stale until its runner has looked again, so nothing is
abandoned on a judgement of the nodes made before they changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from coordinator.scheduler.config import VALIDATE_STAGE
from coordinator.store import Store


@dataclass
class Watch:
    stage: str | None
    """The stage the job's runner waits on (None: none now; the clock's start is kept for the next)."""
    from_ms: int = 0
    """The clock counts from no earlier than this: the end of the last wait for nodes."""
    waiting: bool = False
    """The job waits for nodes: the clock stands still."""
    stale: bool = False
    """The live nodes changed since the runner last said whether the job waits for them."""


class Stalls:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._watches: dict[str, Watch] = {}

    def watch(self, job_id: str, stage: str, now_ms: int, *, waiting: bool) -> None:
        w = self._watches.setdefault(job_id, Watch(stage))
        if waiting or w.waiting:
            w.from_ms = now_ms  # waiting, or the wait just ended
        w.stage, w.waiting, w.stale = stage, waiting, False

    def unwatch(self, job_id: str) -> None:
        """The runner waits on no stage now (between stages, compiling)."""
        if job_id in self._watches:
            self._watches[job_id].stage = None

    def forget(self, job_id: str) -> None:
        self._watches.pop(job_id, None)

    def active(self) -> bool:
        return any(w.stage is not None for w in self._watches.values())

    def nodes_changed(self) -> None:
        for w in self._watches.values():
            w.stale = True

    def due(self, job_id: str, now_ms: int, stall_ms: int) -> Iterator[tuple[str, list[str]]]:
        """For each watched stage of the job whose clock ran out, its untaken tasks: the stage first, then
        validate, each read when the caller is done with the one before (abandoning the first may be
        what the second waits on)."""
        w = self._watches.get(job_id)
        if w is None or w.stage is None or w.waiting or w.stale:
            return
        for stage in dict.fromkeys((w.stage, VALIDATE_STAGE)):
            last = max(self.store.stage_activity_ms(job_id, stage), w.from_ms)
            if now_ms - last >= stall_ms:
                yield stage, self.store.untaken_tasks(job_id, stage)

    def jobs(self) -> list[str]:
        return [j for j, w in self._watches.items() if w.stage is not None]
