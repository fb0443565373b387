"""A job submitted before any node is up waits for nodes, then completes when two start.

Real processes on loopback: a coordinator with its HTTP API (in this process, on its own trio loop),
and, after 90 s with no node (longer than the 60 s stall clock that used to abandon the job's first
task), two `dataswarm node start` processes with the bundled model. The job's state is read through
the API the whole time. The job is ungrounded and small (2 rows), so it ends within a few minutes.
"""

from __future__ import annotations

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
from coordinator.scheduler.config import STALL_MS
from coordinator.service import open_coordinator
from protocol.tasks import TaskKind

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
"""About 4 minutes on a 2-core machine: 90 s of waiting, then the nodes start and run the job."""

NODES = 2
ROWS = 2
WAIT_S = 90.0
RUN_S = 420
REQUEST = "question-answer pairs about Python lists and dictionaries, JSON with question and answer"


async def test_a_job_waits_for_nodes_then_completes_when_they_start(tmp_path: Path) -> None:
    assert WAIT_S * 1000 > STALL_MS + 20_000  # the wait outlasts the stall clock by a margin
    cfg = CoordinatorConfig(
        key_path=tmp_path / "coordinator.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=tmp_path / "coordinator",
    )
    procs: list[subprocess.Popen[bytes]] = []
    async with open_coordinator(cfg) as coord, trio.open_nursery() as api:
        url = await api.start(serve_api, coord, "127.0.0.1:0")
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                jid = await coord.submit(REQUEST, rows=ROWS, out_dir=tmp_path / "dataset")

                async def view() -> dict[str, Any]:
                    response = await client.get(f"/v1/jobs/{jid}")
                    assert response.status_code == 200, response.text
                    return response.json()  # type: ignore[no-any-return]

                # No node: the job waits, all 90 s, and gives up nothing.
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
                assert v["waiting"]["stage"] == TaskKind.QUESTION_GEN.value and not v["grounded"], v
                assert coord.runtime.scheduler.stats["abandoned"] == 0
                tasks = await coord.runtime.call(coord.store.tasks, jid, stage=TaskKind.QUESTION_GEN.value)
                assert tasks and all(t.state.value == "open" for t in tasks)

                # Two nodes start: the job leaves the wait and completes.
                addr, peer = coord.peer_addrs[0], coord.identity.peer_id
                for i in range(NODES):
                    cmd = node_command(i, tmp_path, addr, peer, tmp_path / "none.sqlite", "http://127.0.0.1:1/", 1)
                    cmd += ["--kind", "spec", "--kind", "question_gen", "--kind", "synthesize", "--kind", "validate"]
                    log = open(tmp_path / f"node-{i}.log", "ab")  # noqa: SIM115 (the process holds it)
                    procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                with trio.move_on_after(RUN_S) as scope:
                    final = await coord.wait(jid)
                assert not scope.cancelled_caught, f"the job did not end within {RUN_S} s:\n{_logs(tmp_path)}"
                v = await view()
        finally:
            stop_processes(procs)
            api.cancel_scope.cancel()

    assert final.state in ("done", "partial") and final.rows > 0, (final, _logs(tmp_path))
    assert v["state"] == final.state and v["waiting"] is None
    report = verify_directory(tmp_path / "dataset", trusted_coordinators=[peer])
    assert report.ok, report.summary()


def _logs(workdir: Path) -> str:
    parts = []
    for log in sorted(workdir.glob("node-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        notable = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        parts += [f"--- {log.name}", *(notable[-30:] or lines[-20:])]
    return "\n".join(parts)
