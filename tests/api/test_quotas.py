"""Quotas on the API: per-token request rate, caps on running jobs and rows, and the coordinator's task maximum.

Each refusal is checked for its status, its `Retry-After`, a detail that names the setting, and
that it wrote nothing: no job in the store, no dataset folder.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from coordinator.api.auth import Scope
from coordinator.config import CoordinatorConfig
from coordinator.pipeline.sizing import planned_tasks, rows_within
from coordinator.request import parse_request
from coordinator.service import PlanTooLarge, open_coordinator
from tests.api.support import Served, api_server, auth, config, issue

REQUEST = "question-answer pairs about the printing press"


async def _jobs(served: Served) -> list[str]:
    return [j.job_id for j in await served.call(served.coordinator.store.jobs)]


async def test_a_token_over_its_request_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    async with api_server(tmp_path, api_requests_per_minute=3) as served:
        busy, other = issue(served.coordinator, "busy"), issue(served.coordinator, "other")
        async with httpx.AsyncClient(base_url=served.url) as client:
            for _ in range(3):
                assert (await client.delete("/v1/jobs/nope", headers=auth(busy))).status_code == 404
            over = await client.delete("/v1/jobs/nope", headers=auth(busy))
            assert over.status_code == 429 and over.json()["error"] == "rate_limited"
            assert 1 <= int(over.headers["retry-after"]) <= 60
            detail = over.json()["detail"]
            assert "3 requests in a minute" in detail and "api_requests_per_minute" in detail
            # A write is refused too, before anything is written; another token is not affected.
            refused = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}"}, headers=auth(busy))
            assert refused.status_code == 429 and await _jobs(served) == []
            assert (await client.delete("/v1/jobs/nope", headers=auth(other))).status_code == 404
            # Open reads on loopback carry no token and are not counted.
            for _ in range(5):
                assert (await client.get("/v1/jobs")).status_code == 200


async def test_running_jobs_per_token_are_capped_until_one_ends(tmp_path: Path) -> None:
    async with api_server(tmp_path, api_jobs_per_token=1) as served:
        token, admin = issue(served.coordinator, "r"), issue(served.coordinator, "ops", Scope.ADMIN)
        async with httpx.AsyncClient(base_url=served.url, headers=auth(token)) as client:
            first = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}", "job_id": "first"})
            assert first.status_code == 201
            second = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}", "job_id": "second"})
            assert second.status_code == 429 and second.json()["error"] == "quota_exceeded"
            assert second.headers["retry-after"] == "60"
            assert "1 jobs running" in second.json()["detail"] and "api_jobs_per_token = 1" in second.json()["detail"]
            assert await _jobs(served) == ["first"]
            assert not (served.coordinator.config.data_dir / "datasets" / "second").exists()
            # Retrying the job it already has is not a new job: still 200.
            again = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}", "job_id": "first"})
            assert again.status_code == 200
            # The operator's admin token is not capped.
            as_admin = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}"}, headers=auth(admin))
            assert as_admin.status_code == 201
            # Once its job ends, the token may submit again.
            assert (await client.delete("/v1/jobs/first")).status_code == 200
            later = await client.post("/v1/jobs", json={"request": f"5 {REQUEST}", "job_id": "second"})
            assert later.status_code == 201


async def test_rows_in_running_jobs_per_token_are_capped(tmp_path: Path) -> None:
    async with api_server(tmp_path, api_rows_per_token=30) as served:
        token = issue(served.coordinator, "r")
        async with httpx.AsyncClient(base_url=served.url, headers=auth(token)) as client:
            assert (await client.post("/v1/jobs", json={"request": f"20 {REQUEST}"})).status_code == 201
            over = await client.post("/v1/jobs", json={"request": REQUEST, "rows": 20})
            assert over.status_code == 429 and over.json()["error"] == "quota_exceeded"
            detail = over.json()["detail"]
            assert "40 rows in running jobs" in detail and "at most 10 rows" in detail
            assert "api_rows_per_token" in detail
            assert len(await _jobs(served)) == 1
            assert (await client.post("/v1/jobs", json={"request": REQUEST, "rows": 10})).status_code == 201


async def test_a_job_that_plans_too_many_tasks_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    spec = parse_request(f"1000 grounded {REQUEST}").spec
    limit = planned_tasks(spec.model_copy(update={"rows": 40}), llm_spec=True)
    fits = rows_within(limit, spec, llm_spec=True)
    assert 40 <= fits < 1000
    async with api_server(tmp_path, max_job_tasks=limit) as served:
        token = issue(served.coordinator, "r")
        async with httpx.AsyncClient(base_url=served.url, headers=auth(token)) as client:
            big = await client.post("/v1/jobs", json={"request": f"1000 grounded {REQUEST}", "job_id": "big"})
            assert big.status_code == 422 and big.json()["error"] == "plan_too_large"
            detail = big.json()["detail"]
            assert f"maximum of {limit} (max_job_tasks)" in detail and f"at most {fits} rows" in detail
            assert await _jobs(served) == []
            assert not (served.coordinator.config.data_dir / "datasets" / "big").exists()
            # The dry run says so before anyone submits.
            preview = (await client.get("/v1/spec", params={"request": f"1000 grounded {REQUEST}"})).json()
            assert any(n.startswith("refused if submitted") and f"at most {fits} rows" in n for n in preview["notes"])
            # The size it names is accepted.
            ok = await client.post("/v1/jobs", json={"request": f"{fits} grounded {REQUEST}", "job_id": "fits"})
            assert ok.status_code == 201


async def test_the_cli_path_refuses_an_oversized_plan_too(tmp_path: Path) -> None:
    cfg: CoordinatorConfig = config(tmp_path, max_job_tasks=100)
    async with open_coordinator(cfg) as coord:
        with pytest.raises(PlanTooLarge, match=r"ask for at most \d+ rows"):
            await coord.submit(f"5000 grounded {REQUEST}", job_id="huge")
        assert await coord.runtime.call(coord.store.jobs) == []


def test_rows_within_is_the_largest_count_that_fits() -> None:
    spec = parse_request(f"grounded {REQUEST}").spec
    for limit in (20, 300, 10_000):
        n = rows_within(limit, spec)
        assert planned_tasks(spec.model_copy(update={"rows": n})) <= limit
        assert planned_tasks(spec.model_copy(update={"rows": n + 1})) > limit
    assert rows_within(1, spec) == 0  # not even one row fits in a single task
