"""A job with too few live nodes waits for them, gives nothing up meanwhile, and runs when they come.

The real JobRunner on a real coordinator with its API (tests/api/support.py); nodes "arrive" the way
their status gossip does when it reaches the coordinator (`Scheduler.note_status`). The stall clock is
shortened so that a wait longer than it takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from network import now_ms
from protocol.identity import Identity
from protocol.messages import NodeStatus
from protocol.tasks import TaskKind
from tests.api.support import Served, api_server, auth, issue, node
from tests.api.test_events import sse
from tests.api.test_nodes_metrics import samples

STALL_S = 2.0
REQUEST = "question-answer pairs about Python lists, JSON with question and answer"
WAITING = "waiting_for_nodes"


@contextlib.asynccontextmanager
async def waiting_server(tmp_path: Path) -> AsyncIterator[Served]:
    """A coordinator with its API whose stall clock is STALL_S."""
    async with api_server(tmp_path / "coord") as s:
        sched = s.coordinator.runtime.scheduler
        sched.config = dataclasses.replace(sched.config, stall_ms=int(STALL_S * 1000))
        yield s


def arrive(s: Served, who: Identity) -> None:
    """Worker thread: a node's status gossip reaches the coordinator (every kind, any model)."""
    status = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)
    s.coordinator.runtime.scheduler.note_status(who.peer_id, status, now_ms())


async def until_state(client: httpx.AsyncClient, job_id: str, state: str, timeout_s: float = 10.0) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        while (view := (await client.get(f"/v1/jobs/{job_id}")).json())["state"] != state:
            await trio.sleep(0.05)
    return view  # type: ignore[no-any-return]


async def question_gen_states(s: Served, job_id: str) -> list[str]:
    tasks = await s.call(s.coordinator.store.tasks, job_id, stage=TaskKind.QUESTION_GEN.value)
    return [t.state.value for t in tasks]


async def test_a_job_waits_for_nodes_without_giving_up_then_runs_when_two_are_live(tmp_path: Path) -> None:
    async with waiting_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        jid = await s.coordinator.submit(REQUEST, rows=2, out_dir=tmp_path / "out")
        view = await until_state(client, jid, WAITING)
        assert view["waiting"] == {
            "stage": "question_gen", "live": 0, "needed": 2,
            "message": "waiting for nodes: 0 live, needs 2 for verification of question_gen tasks",
        }  # fmt: skip
        assert [j["job_id"] for j in (await client.get("/v1/jobs", params={"state": WAITING})).json()["jobs"]] == [jid]
        m = samples((await client.get("/metrics")).text)
        assert m[("dataswarm_jobs", (("state", WAITING),))] == 1 and m[("dataswarm_jobs", (("state", "running"),))] == 0
        with trio.fail_after(10):
            async with client.stream("GET", f"/v1/jobs/{jid}/events") as response:
                events = sse(response)
                event, data = await events.__anext__()
                await events.aclose()
        assert event == "progress" and json.loads(data)["state"] == WAITING

        await trio.sleep(STALL_S * 1.5)  # past the stall clock: nothing is given up while the job waits
        assert await question_gen_states(s, jid) == ["open"]
        assert s.coordinator.runtime.scheduler.stats["abandoned"] == 0

        await s.call(arrive, s, node(1))  # one new node cannot verify a generative task alone
        with trio.fail_after(10):
            while (view := (await client.get(f"/v1/jobs/{jid}")).json())["waiting"]["live"] != 1:
                await trio.sleep(0.05)
        assert view["state"] == WAITING and view["waiting"]["needed"] == 2

        await s.call(arrive, s, node(2))
        view = await until_state(client, jid, "running")
        assert view["waiting"] is None
        # The stall clock starts again from the end of the wait, not from when the task was submitted...
        assert await question_gen_states(s, jid) == ["open"]
        # ...and runs again: live nodes that never take the task get it abandoned.
        with trio.fail_after(STALL_S + 5):
            while await question_gen_states(s, jid) == ["open"]:
                await trio.sleep(0.1)
        assert s.coordinator.runtime.scheduler.stats["abandoned"] >= 1


async def test_a_job_waiting_for_nodes_can_be_cancelled(tmp_path: Path) -> None:
    async with waiting_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        jid = await s.coordinator.submit(REQUEST, rows=2, out_dir=tmp_path / "out")
        await until_state(client, jid, WAITING)
        response = await client.delete(f"/v1/jobs/{jid}", headers=auth(issue(s.coordinator, "admin", "admin")))
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
        with trio.fail_after(10):
            final = await s.coordinator.wait(jid)
        assert final.state == "cancelled" and final.waiting is None


async def test_one_live_operator_trusted_node_is_enough(tmp_path: Path) -> None:
    async with waiting_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        sched = s.coordinator.runtime.scheduler
        sched.config = dataclasses.replace(sched.config, trusted_nodes=frozenset({node(1).peer_id}))
        await s.call(arrive, s, node(1))
        jid = await s.coordinator.submit(REQUEST, rows=2, out_dir=tmp_path / "out")
        seen = set()
        with trio.move_on_after(STALL_S):
            while True:
                seen.add((await client.get(f"/v1/jobs/{jid}")).json()["state"])
                await trio.sleep(0.05)
        assert "running" in seen and WAITING not in seen
        # The spec stage ran too: a lone trusted node can run and verify it.
        assert (await s.call(s.coordinator.store.stages, jid)).get("spec") is not None
