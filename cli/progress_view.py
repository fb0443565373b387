"""Live per-stage progress bars for a job (used by `demo`, `coordinator start --request` and `request`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from coordinator import job_states
from coordinator.pipeline.progress import JobProgress

FINAL = job_states.FINAL
DELIVERED = job_states.DELIVERED
"""Final states with a dataset: a partial job ran out of attempts and delivered fewer rows than asked."""


def state_note(p: JobProgress) -> str:
    """The job's state as the rows bar shows it; a job waiting for nodes says for how many."""
    return p.waiting.describe() if p.waiting is not None else p.state


def partial_line(job_id: str, rows: int, target: int, reason: str) -> str:
    """What every command prints for a partial job: a success, with fewer rows, and why."""
    why = reason or "fewer rows passed verification than were requested"
    return f"job {job_id} is partial: {min(rows, target)} of {target} requested rows delivered. Why: {why}"


async def follow(
    poll: Callable[[], Awaitable[JobProgress]], console: Console, *, interval: float = 0.5, live: bool = True
) -> JobProgress:
    """Show progress until the job reaches a final state; returns the last snapshot."""
    if not live:
        while (p := await poll()).state not in FINAL:
            await trio.sleep(interval)
        return p
    columns = (
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        ids: dict[str, TaskID] = {}
        rows_id = bars.add_task("rows", total=1, note="")
        while True:
            p = await poll()
            for s in p.stages:
                if s.stage not in ids:
                    ids[s.stage] = bars.add_task(s.stage, total=max(1, s.tasks), note="")
                failed = f"  {s.failed} failed" if s.failed else ""
                bars.update(ids[s.stage], total=max(1, s.tasks), completed=s.done + s.failed, note=failed)
            rejected = sum(p.rejections.values())
            # escaped: "[running]" is rich markup, and an unknown style tag prints nothing
            bars.update(rows_id, total=max(1, p.target), completed=min(p.rows, p.target),
                        note=escape(f"{rejected} rejected  [{state_note(p)}]"))  # fmt: skip
            if p.state in FINAL:
                return p
            await trio.sleep(interval)
