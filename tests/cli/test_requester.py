"""`dataswarm request`, `jobs` and `nodes` against a real coordinator with its HTTP API on 127.0.0.1.

The coordinator runs in a thread of its own (`LiveApi`); the CLI runs through
typer's CliRunner in the test thread, as a user's shell would run it. Jobs that
must move or finish are driven through the real scheduler and the real compiler
(tests/api/support.py, tests/coordinator/test_compile_fixtures.py).
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from cli import request_cmd
from cli.api_client import ApiClient, sse_events
from cli.main import app
from cli.request_cmd import Eta, derive_job_id
from coordinator.api.auth import Scope
from coordinator.api.events import format_event
from coordinator.pipeline.sizing import plan
from coordinator.request import parse_request
from network import now_ms
from tests.api.support import LiveApi, budget_spent_job, issue, node, report_status, search_job, settle_search
from tests.coordinator.test_compile_fixtures import JOB, compile_into
from tests.coordinator.test_compile_fixtures import spec as fixture_spec

REQUEST = "40 question-answer pairs about the printing press, grounded in sources, JSON with question, answer"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("coordinator")) as server:
        yield server


def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    base: dict[str, str | None] = {"COLUMNS": "200", "DATASWARM_COORDINATOR": None, "DATASWARM_TOKEN": None}
    return CliRunner().invoke(app, list(args), env=base | (env or {}))


def at(live: LiveApi, token: str | None = None) -> list[str]:
    return ["--coordinator", live.url] + (["--token", token] if token else [])


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_background(steps: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=steps, daemon=True)
    thread.start()
    return thread


def attachable(live: LiveApi, job_id: str, text: str, rows: int, *, tasks: int, out: Path) -> list[str]:
    """A running job (search stage with `tasks` open tasks) whose stored request and spec are what
    `dataswarm request TEXT --rows N` submits, so that the CLI attaches to it. Returns the task ids."""
    ids = live.call(search_job, live.coordinator, job_id, tasks, out_dir=out)
    spec_doc = parse_request(text, rows=rows).spec.model_dump(mode="json")
    live.call(live.coordinator.store.update_job_doc, job_id, {"request": text, "spec": spec_doc}, now_ms=now_ms())
    return ids


def finish(live: LiveApi, job_id: str, out: Path) -> None:
    """Compile a real signed dataset into the job's directory and mark it done."""
    live.call(compile_into, out, 4)
    live.call(live.coordinator.store.set_job_state, job_id, "compiling", now_ms=now_ms())
    live.call(live.coordinator.store.set_job_state, job_id, "done", now_ms=now_ms())


# --- request --dry-run ---------------------------------------------------------------------------


def test_dry_run_prints_the_spec_and_plan_without_any_coordinator(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    result = cli("request", REQUEST, "--rows", "25", "--dry-run", "--coordinator", dead)
    assert result.exit_code == 0, result.output
    expected = parse_request(REQUEST, rows=25).spec
    assert "topic: printing press" in result.output or f"topic: {expected.topic}" in result.output
    assert "rows: 25" in result.output and "grounded: true" in result.output and "language: en" in result.output
    assert "max_length:" in result.output and "type: string" in result.output
    assert plan(expected, llm_spec=True).render() in result.output  # a sentence starts with the spec task
    assert "a `spec` task (an LLM node) reads the request too" in result.output


def test_dry_run_with_a_spec_file_and_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "spec.json"
    good.write_text(json.dumps(fixture_spec(rows=8).model_dump(mode="json")))
    result = cli("request", "--spec", str(good), "--rows", "6", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "rows: 6" in result.output and "topic: Python's standard library" in result.output
    assert plan(fixture_spec(rows=6)).render() in result.output
    assert "reads the request too" not in result.output  # a spec file skips the spec task

    bad = tmp_path / "bad.yaml"
    bad.write_text("topic: tea\nrows: 5\nfields:\n  - name: Bad Name\n")
    failed = cli("request", "--spec", str(bad), "--dry-run")
    assert failed.exit_code == 1
    assert "fields[0].name" in failed.output and "lower_snake_case" in failed.output
    no_traceback(failed)


# --- request --detach, jobs, jobs show, jobs cancel -------------------------------------------


def test_detach_then_rerun_attaches_to_the_same_job_which_jobs_lists_shows_and_cancels(
    live: LiveApi, tmp_path: Path
) -> None:
    token = live.token
    text = "12 question-answer pairs about letterpress printing"
    out = tmp_path / "letterpress"
    first = cli("request", text, "--rows", "12", "--out", str(out), "--detach", *at(live, token))
    assert first.exit_code == 0, first.output
    job_id = derive_job_id(text, None, 12, out)
    assert f"submitted job {job_id}" in first.output

    again = cli("request", text, "--rows", "12", "--out", str(out), "--detach", *at(live, token))
    assert again.exit_code == 0, again.output
    assert f"attached to job {job_id}" in again.output
    with ApiClient(live.url) as client:
        assert [j.job_id for j in client.jobs(limit=200)].count(job_id) == 1

    listed = cli("jobs", *at(live))
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if job_id in line)
    # No node is live: once its runner has looked, the job waits for nodes (not final, cancellable).
    assert "/12" in row and any(state in row for state in ("open", "running", "waiting_for_nodes"))
    assert job_id not in cli("jobs", "--state", "done", *at(live)).output

    shown = cli("jobs", "show", job_id, *at(live))
    assert shown.exit_code == 0, shown.output
    assert "stages" in shown.output and "of 12 accepted" in shown.output and "letterpress" in shown.output
    assert "out dir" in shown.output and out.name in shown.output

    cancelled = cli("jobs", "--coordinator", live.url, "cancel", job_id, "--token", token)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {job_id} cancelled" in cancelled.output
    assert "cancelled" in cli("jobs", "show", job_id, *at(live)).output
    twice = cli("jobs", "cancel", job_id, *at(live, token))
    assert twice.exit_code == 1 and "already cancelled" in twice.output
    no_traceback(twice)


def test_a_different_request_with_a_taken_job_id_is_refused(live: LiveApi, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "o"), "--job-id", "taken-1", "--detach", *at(live, live.token)]
    assert cli("request", "10 rows about ink", *args).exit_code == 0
    clash = cli("request", "10 rows about paper", *args)
    assert clash.exit_code == 1 and "taken by a different request" in clash.output
    no_traceback(clash)


# --- errors -------------------------------------------------------------------------------------


def test_a_bad_token_is_one_sentence_without_traceback(live: LiveApi, tmp_path: Path) -> None:
    result = cli("request", "10 rows about ink", "--out", str(tmp_path / "o"), "--detach", *at(live, "nope"))
    assert result.exit_code == 1
    assert "unknown or revoked" in result.output and "--token" in result.output
    no_traceback(result)

    reader = issue(live.coordinator, "reader", Scope.READ)
    refused = cli("request", "10 rows about ink", "--out", str(tmp_path / "o"), "--detach", *at(live, reader))
    assert refused.exit_code == 1 and "scope 'read'" in refused.output


def test_no_coordinator_is_one_clear_sentence(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for args in (["request", "10 rows about ink", "--out", str(tmp_path / "o")], ["jobs"], ["nodes"]):
        result = cli(*args, "--coordinator", dead)
        assert result.exit_code == 1, result.output
        assert f"no coordinator at {dead}: start one with `dataswarm coordinator start`" in result.output
        no_traceback(result)
    from_env = cli("jobs", "show", "x", env={"DATASWARM_COORDINATOR": dead})
    assert from_env.exit_code == 1 and f"no coordinator at {dead}" in from_env.output


def test_an_unknown_job_is_the_apis_sentence(live: LiveApi) -> None:
    result = cli("jobs", "show", "no-such-job", *at(live))
    assert result.exit_code == 1 and "no job 'no-such-job' on this coordinator" in result.output
    no_traceback(result)


# --- nodes --------------------------------------------------------------------------------------


def test_nodes_says_none_then_lists_a_node_that_reported(tmp_path: Path) -> None:
    with LiveApi(tmp_path / "coordinator") as fresh:
        empty = cli("nodes", *at(fresh))
        assert empty.exit_code == 0 and "no live nodes" in empty.output
        peer = node(5).peer_id
        fresh.call(report_status, fresh.coordinator, node(5), free=3, tok_s=48.0)
        listed = cli("nodes", *at(fresh))
    assert listed.exit_code == 0, listed.output
    assert "no live nodes" not in listed.output
    row = next(line for line in listed.output.splitlines() if peer[-6:] in line)
    assert peer[:6] in row and "SmolLM2-135M-Instruct Q4_1" in row and "48" in row and "3/4" in row
    assert "s ago" in row  # when its status arrived


# --- following a job and downloading its dataset ----------------------------------------------


def test_request_follows_a_running_job_to_done_then_downloads_and_verifies(live: LiveApi, tmp_path: Path) -> None:
    text = "4 question-answer pairs about movable type"
    coordinator_out = tmp_path / "on-coordinator"
    ids = attachable(live, JOB, text, 4, tasks=2, out=coordinator_out)  # the compiled manifest names JOB

    def drive() -> None:
        time.sleep(0.6)  # the CLI has attached and drawn the first snapshot
        for task_id in ids:
            live.call(settle_search, live.coordinator, task_id)
            time.sleep(0.2)
        finish(live, JOB, coordinator_out)

    out = tmp_path / "mine"
    driver = in_background(drive)
    args = ["request", text, "--rows", "4", "--out", str(out), "--job-id", JOB]
    result = cli(*args, *at(live, live.token))
    driver.join(10)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"attached to job {JOB} (running)" in lines[0]
    assert any(line.startswith(f"job {JOB} running:") and "search 0/2" in line for line in lines)
    assert any(line.startswith(f"job {JOB} done:") and "search 2/2" in line for line in lines)
    assert "verified" in result.output and "yes: signatures, digests and Merkle root check out" in result.output
    assert (out / "data.jsonl").read_bytes() == (coordinator_out / "data.jsonl").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in coordinator_out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")], "the unpack directory was left"

    again = cli(*args, "--coordinator", f"http://127.0.0.1:{closed_port()}")  # nothing to ask it
    assert again.exit_code == 0 and f"job {JOB} is already downloaded" in again.output, again.output


def test_request_on_a_failed_job_exits_with_its_error(live: LiveApi, tmp_path: Path) -> None:
    text = "4 question-answer pairs about woodcuts"
    attachable(live, "woodcuts", text, 4, tasks=1, out=tmp_path / "coord")
    store = live.coordinator.store
    live.call(store.update_job_doc, "woodcuts", {"error": "no node offered a model"}, now_ms=now_ms())
    live.call(store.set_job_state, "woodcuts", "failed", now_ms=now_ms())
    out = tmp_path / "mine"
    result = cli("request", text, "--rows", "4", "--out", str(out), "--job-id", "woodcuts", *at(live, live.token))
    assert result.exit_code == 1
    assert "job woodcuts failed: no node offered a model" in result.output
    assert not out.exists()
    no_traceback(result)


def test_request_on_a_partial_job_downloads_it_says_how_many_rows_and_exits_0(live: LiveApi, tmp_path: Path) -> None:
    """The real runner ends the job partial (1 of 2 rows: its synthesize attempt budget is spent) while the CLI
    follows it: that is a success with fewer rows, downloaded and verified like a done job."""
    coordinator_out = tmp_path / "on-coordinator"
    spec = live.call(budget_spent_job, live.coordinator, "short-run", rows=2, accepted=1, out_dir=coordinator_out)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.model_dump(mode="json")))

    def drive() -> None:
        time.sleep(0.6)  # the CLI has attached to the open job
        live.resume_jobs()

    out = tmp_path / "mine"
    args = ["request", "--spec", str(spec_file), "--out", str(out), "--job-id", "short-run"]
    driver = in_background(drive)
    result = cli(*args, *at(live, live.token))
    driver.join(10)
    assert result.exit_code == 0, result.output
    assert "attached to job short-run (open)" in result.output
    assert any(line.startswith("job short-run partial: rows 1/2") for line in result.output.splitlines())
    reason = "1 of 2 rows passed verification after 16 synthesize tasks (the attempt budget: 16 tasks"
    assert f"job short-run is partial: 1 of 2 requested rows delivered. Why: {reason}" in result.output
    assert "1 of 2 requested" in result.output  # the summary's rows line
    assert "yes: signatures, digests and Merkle root check out" in result.output
    assert (out / "data.jsonl").read_bytes() == (coordinator_out / "data.jsonl").read_bytes()
    assert len((out / "data.jsonl").read_text(encoding="utf-8").splitlines()) == 1

    again = cli(*args, "--coordinator", f"http://127.0.0.1:{closed_port()}")  # offline: the manifest says it
    assert again.exit_code == 0, again.output
    assert "job short-run is already downloaded" in again.output
    assert "job short-run is partial: 1 of 2 requested rows delivered" in again.output

    listed = cli("jobs", "--state", "partial", *at(live))
    assert listed.exit_code == 0 and "short-run" in listed.output and "1/2" in listed.output
    shown = cli("jobs", "show", "short-run", *at(live))
    assert shown.exit_code == 0, shown.output
    assert "1 of 2 rows delivered" in shown.output and "passed verification" in shown.output
    assert "/v1/jobs/short-run/dataset" in shown.output  # downloadable, as a done job's
    no_traceback(shown)


def test_the_live_view_draws_stages_and_rows(live: LiveApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the view redraws in place (rich Live) instead of printing lines."""
    text = "4 question-answer pairs about type foundries"
    ids = attachable(live, "foundry", text, 4, tasks=1, out=tmp_path / "coord")
    screen = io.StringIO()
    monkeypatch.setattr(request_cmd, "console", Console(file=screen, force_terminal=True, width=160))

    def drive() -> None:
        time.sleep(0.4)
        live.call(settle_search, live.coordinator, ids[0])
        finish(live, "foundry", tmp_path / "coord")

    driver = in_background(drive)
    with ApiClient(live.url) as client:
        final = request_cmd._follow(client, client.job("foundry"))
    driver.join(10)
    assert final.state == "done" and final.stages[0].done == 1
    drawn = screen.getvalue()
    assert "\x1b[" in drawn and "stages" in drawn and "of 4 accepted" in drawn and "search" in drawn


# --- pieces -------------------------------------------------------------------------------------


def test_demo_accepts_a_partial_result_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dataswarm demo` with the network run replaced by its result (a verified partial dataset): exit 0, and
    the summary and a closing line say how many rows of how many were delivered, and why."""
    from cli import demo as demo_mod
    from coordinator.pipeline.progress import JobProgress

    reason = "1 of 2 rows passed verification after 16 synthesize tasks"

    def ending(state: str) -> Callable[..., Awaitable[demo_mod.DemoResult]]:
        async def run(*, out: Path, **_: object) -> demo_mod.DemoResult:
            progress = JobProgress(job_id="demo-1", state=state, rows=1, target=2)
            return demo_mod.DemoResult(out, progress, 60.0, verified=True, partial_reason=reason)

        return run

    for state, code in (("partial", 0), ("done", 0), ("failed", 1)):
        monkeypatch.setattr(demo_mod, "run_demo", ending(state))
        result = cli("demo", "--rows", "2", "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "o"))
        assert result.exit_code == code, (state, result.output)
        said = f"job demo-1 is partial: 1 of 2 requested rows delivered. Why: {reason}" in result.output
        assert said == (state == "partial"), result.output
        no_traceback(result)


def test_sse_parsing_reads_the_servers_wire_format() -> None:
    wire = b"retry: 3000\n\n" + format_event("progress", '{"a": 1}', 1) + b": keep-alive\n\n"
    wire += format_event("end", '{"a": 2}', 2)
    assert list(sse_events(wire.decode().split("\n"))) == [("progress", '{"a": 1}'), ("end", '{"a": 2}')]


def test_eta_from_the_rate_of_accepted_rows() -> None:
    now = [0.0]
    eta = Eta(clock=lambda: now[0])
    assert eta.update(10, 100) == "unknown"
    now[0] = 30.0
    assert eta.update(10, 100) == "unknown"
    now[0] = 60.0
    assert eta.update(40, 100) == "2m00s"  # 30 rows a minute, 60 to go
    assert eta.update(100, 100) == ""


def test_job_ids_are_stable_and_depend_on_what_was_asked(tmp_path: Path) -> None:
    out = tmp_path / "o"
    a = derive_job_id("x", None, 5, out)
    assert a == derive_job_id("x", None, 5, out) and a.startswith("req-")
    others = [("x", None, 6, out), ("y", None, 5, out), ("x", None, 5, tmp_path / "p"), ("x", {"topic": "x"}, 5, out)]
    assert len({a, *(derive_job_id(*o) for o in others)}) == 5
