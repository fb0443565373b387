"""A partial job over HTTP: final in the job view, the list, the event stream and /metrics; its dataset downloads.

The job is made partial by the real JobRunner (its synthesize attempt budget spent
with 1 of 2 rows, tests/api/support.py `budget_spent_job`), and compiled by the
real compiler.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import trio

from coordinator.api.auth import Scope
from coordinator.compile import verify_directory
from tests.api.support import Served, api_server, auth, budget_spent_job, issue
from tests.api.test_events import sse
from tests.api.test_nodes_metrics import samples


async def partial_job(s: Served, job_id: str, out: Path) -> None:
    await s.call(budget_spent_job, s.coordinator, job_id, rows=2, accepted=1, out_dir=out)
    s.coordinator.resume_jobs()
    with trio.fail_after(30):
        assert (await s.coordinator.wait(job_id)).state == "partial"


async def test_a_partial_job_is_final_listed_and_its_dataset_downloads(tmp_path: Path) -> None:
    out = tmp_path / "datasets" / "short"
    async with api_server(tmp_path / "coord") as s, httpx.AsyncClient(base_url=s.url) as client:
        await partial_job(s, "short", out)
        reason = (await s.call(s.coordinator.store.job, "short")).doc["partial"]

        view = (await client.get("/v1/jobs/short")).json()
        assert view["state"] == "partial" and (view["rows"], view["target"]) == (1, 2)
        assert view["partial_reason"] == reason and reason.startswith("1 of 2 rows passed verification")
        assert view["error"] == ""
        listed = (await client.get("/v1/jobs", params={"state": "partial"})).json()["jobs"]
        assert [j["job_id"] for j in listed] == ["short"]
        assert (await client.get("/v1/jobs", params={"state": "done"})).json()["jobs"] == []

        tgz = await client.get("/v1/jobs/short/dataset")
        assert tgz.status_code == 200 and tgz.headers["content-type"] == "application/gzip"
        with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tar:
            tar.extractall(tmp_path / "got", filter="data")
        got = tmp_path / "got" / "short"
        report = verify_directory(got, trusted_coordinators=[s.coordinator.identity.peer_id])
        assert report.ok, report.summary()
        assert len((got / "data.jsonl").read_text(encoding="utf-8").splitlines()) == 1

        with trio.fail_after(10):  # a final state: the stream sends one `end` and closes
            async with client.stream("GET", "/v1/jobs/short/events") as response:
                events = [(e, json.loads(d)) for e, d in [x async for x in sse(response)] if e != "comment"]
        assert [e for e, _ in events] == ["end"] and events[0][1]["state"] == "partial"

        admin = issue(s.coordinator, "admin", Scope.ADMIN)
        refused = await client.delete("/v1/jobs/short", headers=auth(admin))
        assert refused.status_code == 409 and "already partial" in refused.json()["detail"]

        m = samples((await client.get("/metrics")).text)
        assert m[("dataswarm_jobs", (("state", "partial"),))] == 1
        assert m[("dataswarm_jobs", (("state", "done"),))] == 0
