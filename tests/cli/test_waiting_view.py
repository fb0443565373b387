"""How the CLI draws a job that waits for nodes: `jobs show`, the plain progress line, and the live bars."""

from __future__ import annotations

from collections.abc import Iterator

import trio
from rich.console import Console

from cli.jobs_cmd import job_detail, progress_line
from cli.progress_view import follow
from coordinator.api.schemas import JobLinks, JobView, StageView, WaitingView
from coordinator.pipeline.progress import JobProgress, StageProgress
from coordinator.pipeline.waiting import NodeWait

MESSAGE = "waiting for nodes: 0 live, needs 2 for verification of question_gen tasks"


def view(state: str, waiting: WaitingView | None) -> JobView:
    return JobView(
        job_id="job-1", state=state, topic="Python lists", request="pairs about lists", grounded=False,
        rows=0, target=3, stages=[StageView(stage="question_gen", state="open", tasks=1, done=0, failed=0, open=1)],
        rejections={}, error="", out_dir="", waiting=waiting, created_ms=0, updated_ms=0,
        links=JobLinks(self="/v1/jobs/job-1", events="/v1/jobs/job-1/events", dataset="/v1/jobs/job-1/dataset"),
    )  # fmt: skip


def rendered(renderable: object, *, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_jobs_show_says_what_the_job_waits_for() -> None:
    waiting = WaitingView(stage="question_gen", live=0, needed=2, message=MESSAGE)
    text = rendered(job_detail(view("waiting_for_nodes", waiting)))
    assert "job-1  waiting_for_nodes" in text
    line = next(x for x in text.splitlines() if x.startswith("waiting"))
    assert line.split(None, 1)[1].strip() == MESSAGE
    assert "waiting for nodes" not in rendered(job_detail(view("running", None)))


def test_the_plain_progress_line_carries_the_wait() -> None:
    waiting = WaitingView(stage="question_gen", live=1, needed=2, message=MESSAGE.replace("0 live", "1 live"))
    assert progress_line(view("waiting_for_nodes", waiting)) == (
        "job job-1 waiting_for_nodes: rows 0/3, 0 rejected, question_gen 0/1, "
        "waiting for nodes: 1 live, needs 2 for verification of question_gen tasks"
    )
    assert progress_line(view("running", None)) == "job job-1 running: rows 0/3, 0 rejected, question_gen 0/1"


def snapshots() -> Iterator[JobProgress]:
    stage = [StageProgress("question_gen", "open", 1, 0, 0)]
    for _ in range(20):  # about a second of polls: the bars refresh 10 times a second, on their own thread
        yield JobProgress("job-1", "waiting_for_nodes", 0, 3, stage, waiting=NodeWait("question_gen", 0, 2))
    yield JobProgress("job-1", "done", 3, 3, [StageProgress("question_gen", "done", 1, 1, 0)])


async def test_the_live_bars_show_the_wait_then_the_final_state() -> None:
    console = Console(record=True, width=200, color_system=None, force_terminal=True)
    it = snapshots()

    async def poll() -> JobProgress:
        return next(it)

    with trio.fail_after(10):
        final = await follow(poll, console, interval=0.05)
    assert final.state == "done"
    text = console.export_text()
    assert f"[{MESSAGE}]" in text and "[done]" in text
