"""A job whose synthesize attempt budget runs out with fewer rows than requested ends `partial`, not `done`.

The real JobRunner runs on a real coordinator (tests/api/support.py): the job's
synthesize tasks are settled through the real scheduler from signed results,
the runner finds the budget spent, the real compiler writes the dataset, and
`verify_directory` checks it. A restart is a real one: the coordinator is
closed and opened again on the same data directory, which resumes the job.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from coordinator.compile import verify_directory
from coordinator.pipeline.progress import JobProgress
from coordinator.service import ACTIVE
from network import now_ms
from protocol.tasks import TaskKind
from tests.api.support import Served, api_server, budget_spent_job
from tests.coordinator.factories import leave_job_state

RUN_S = 30


async def run_resumed(s: Served, job_id: str) -> JobProgress:
    """Start every unfinished job's runner (what a restart does) and wait for this one to end."""
    assert job_id in s.coordinator.resume_jobs()
    with trio.fail_after(RUN_S):
        return await s.coordinator.wait(job_id)


def data_rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "data.jsonl").read_text(encoding="utf-8").splitlines()]


async def test_a_spent_budget_with_some_rows_compiles_them_and_ends_partial_with_the_reason(tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    async with api_server(tmp_path / "coord") as s:
        await s.call(budget_spent_job, s.coordinator, "short", rows=2, accepted=1, out_dir=out)
        final = await run_resumed(s, "short")
        job = await s.call(s.coordinator.store.job, "short")
        synth = await s.call(s.coordinator.store.tasks, "short", stage=TaskKind.SYNTHESIZE.value)
        peer = s.coordinator.identity.peer_id

    assert final.state == "partial" and "partial" not in ACTIVE  # final: a restart does not run it again
    assert (final.rows, final.target, final.error) == (1, 2, "")
    assert job.doc["partial"] == (
        "1 of 2 rows passed verification after 16 synthesize tasks (the attempt budget: 16 tasks, "
        "8 per requested row); fewer rows are delivered rather than rows that failed the checks"
    )
    assert len(synth) == 16  # the runner submitted nothing past the budget
    assert [r["question"] for r in data_rows(out)] == ["Who developed the printing press (asked 1 times)?"]
    report = verify_directory(out, trusted_coordinators=[peer])
    assert report.ok, report.summary()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["job_id"] == "short" and manifest["rows"] == 1 and manifest["spec"]["rows"] == 2


async def test_all_rows_passing_is_still_done_with_no_partial_reason(tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    async with api_server(tmp_path / "coord") as s:
        await s.call(budget_spent_job, s.coordinator, "full", rows=1, accepted=1, out_dir=out)
        final = await run_resumed(s, "full")
        job = await s.call(s.coordinator.store.job, "full")
    assert final.state == "done" and (final.rows, final.target) == (1, 1)
    assert "partial" not in job.doc
    assert verify_directory(out).ok


async def test_a_spent_budget_with_no_row_fails_and_compiles_nothing(tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    async with api_server(tmp_path / "coord") as s:
        await s.call(budget_spent_job, s.coordinator, "none", rows=2, accepted=0, out_dir=out)
        final = await run_resumed(s, "none")
        job = await s.call(s.coordinator.store.job, "none")
    assert final.state == "failed" and "no row passed verification" in final.error
    assert "partial" not in job.doc and not (out / "manifest.json").exists()


async def test_a_restart_after_compile_decides_partial_from_the_store(tmp_path: Path) -> None:
    """The coordinator stops after writing the dataset but before the final state: the resumed job must not
    compile again, and it ends partial (from the recorded reason, or from the row count when none is recorded)."""
    coord_dir, out = tmp_path / "coord", tmp_path / "dataset"
    async with api_server(coord_dir) as s:
        await s.call(budget_spent_job, s.coordinator, "short", rows=2, accepted=1, out_dir=out)
        assert (await run_resumed(s, "short")).state == "partial"
        reason = (await s.call(s.coordinator.store.job, "short")).doc["partial"]
        await s.call(leave_job_state, s.coordinator.store, "short", "compiling")
    manifest = (out / "manifest.json").read_bytes()

    async with api_server(coord_dir) as s:  # the restart resumes the compiling job
        with trio.fail_after(RUN_S):
            final = await s.coordinator.wait("short")
        assert final.state == "partial"
        assert (await s.call(s.coordinator.store.job, "short")).doc["partial"] == reason
        # As if an older coordinator had compiled it without recording a reason: the row count decides.
        await s.call(s.coordinator.store.update_job_doc, "short", {"partial": ""}, now_ms=now_ms())
        await s.call(leave_job_state, s.coordinator.store, "short", "compiling")

    async with api_server(coord_dir) as s:
        with trio.fail_after(RUN_S):
            final = await s.coordinator.wait("short")
        again = (await s.call(s.coordinator.store.job, "short")).doc["partial"]
    assert final.state == "partial" and again.startswith("1 of 2 rows passed verification")
    assert (out / "manifest.json").read_bytes() == manifest  # not compiled a second time
