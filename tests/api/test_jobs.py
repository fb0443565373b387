"""Jobs over HTTP: submit (a sentence or a spec), read, list, cancel, dry-run, and the errors in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from coordinator.request import parse_request
from coordinator.spec import DatasetSpec
from network import now_ms
from tests.api.support import Served, api_server, auth, issue, search_job, settle_search
from tests.coordinator.test_compile_fixtures import spec as fixture_spec

REQUEST = "30 question-answer pairs about the printing press"


@pytest.fixture
async def served(tmp_path: Path) -> Any:
    async with api_server(tmp_path) as s:
        yield s


@pytest.fixture
async def client(served: Served) -> Any:
    token = issue(served.coordinator, "tests")
    async with httpx.AsyncClient(base_url=served.url, headers=auth(token)) as c:
        yield c


async def test_submit_a_request_then_read_it_back(served: Served, client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/jobs", json={"request": REQUEST, "rows": 12})
    assert created.status_code == 201
    job = created.json()
    assert created.headers["location"] == f"/v1/jobs/{job['job_id']}" == job["links"]["self"]
    assert job["target"] == 12 and job["topic"] and job["request"] == REQUEST
    assert job["state"] in ("open", "running", "waiting_for_nodes")  # no node is live: it soon waits for them

    got = (await client.get(f"/v1/jobs/{job['job_id']}")).json()
    assert got["job_id"] == job["job_id"] and got["target"] == 12
    listed = (await client.get("/v1/jobs")).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    # The real job runner put its first stage into the store: the API shows it.
    record = await served.call(served.coordinator.store.job, job["job_id"])
    assert record.doc["request"] == REQUEST
    # A sentence starts with the LLM spec task, on the rules' reading (with its notes) until then.
    assert record.doc["llm_spec"] is True and record.doc["rows_given"] == 12
    rule_notes = list(parse_request(REQUEST, rows=12).notes)
    notes = record.doc["spec_notes"]
    assert notes[: len(rule_notes)] == rule_notes
    # No node serves spec tasks here: the stage is skipped at once, not left to the stall timer.
    assert notes[len(rule_notes) :] in ([], ["llm: the spec task did not run (no live node serves spec tasks); "
                                             "using the rule-based spec"])  # fmt: skip
    assert record.doc["submitted_spec"] == record.doc["spec"]


async def test_submit_a_spec(served: Served, client: httpx.AsyncClient) -> None:
    spec = fixture_spec(rows=5).model_dump(mode="json")
    created = await client.post("/v1/jobs", json={"spec": spec, "rows": 3, "job_id": "my-job.1"})
    assert created.status_code == 201
    assert created.json()["job_id"] == "my-job.1" and created.json()["target"] == 3 and created.json()["grounded"]
    stored = await served.call(served.coordinator.store.job, "my-job.1")
    assert DatasetSpec.model_validate(stored.doc["spec"]).rows == 3
    assert stored.doc["llm_spec"] is False  # a spec file is taken as it is


async def test_job_id_retry_is_idempotent_and_a_clash_is_409(served: Served, client: httpx.AsyncClient) -> None:
    body = {"request": REQUEST, "job_id": "retry-me"}
    assert (await client.post("/v1/jobs", json=body)).status_code == 201
    # The spec stage may have refined the job's spec since: a retry still matches what was submitted.
    refined = fixture_spec(rows=99).model_dump(mode="json")
    await served.call(lambda: served.coordinator.store.update_job_doc("retry-me", {"spec": refined}, now_ms=now_ms()))
    again = await client.post("/v1/jobs", json=body)
    assert again.status_code == 200 and again.json()["job_id"] == "retry-me"
    clash = await client.post("/v1/jobs", json={"request": "10 rows about tea", "job_id": "retry-me"})
    assert clash.status_code == 409 and clash.json()["error"] == "conflict"
    assert len((await client.get("/v1/jobs")).json()["jobs"]) == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "give `request`"),
        ({"request": "   "}, "request: must not be blank"),
        ({"request": REQUEST, "colour": "red"}, "colour"),
        ({"request": REQUEST, "rows": 0}, "rows"),
        ({"request": REQUEST, "rows": 100_001}, "rows"),
        ({"request": REQUEST, "job_id": "../etc"}, "job_id: must be 1-64 letters"),
        ({"request": REQUEST, "job_id": ".hidden"}, "job_id"),
        ({"request": "x" * 4001}, "request"),
        ({"spec": {"topic": "tea"}}, "fields"),
        ({"spec": {"topic": "tea", "fields": [{"name": "Bad Name"}]}}, "fields[0].name"),
        ({"request": 42}, "request"),
    ],
)
async def test_bad_bodies_are_422_naming_the_problem(
    client: httpx.AsyncClient, body: dict[str, Any], needle: str
) -> None:
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] in ("invalid", "invalid_spec", "invalid_request")
    assert needle in payload["detail"] + " ".join(payload["problems"])
    assert (await client.get("/v1/jobs")).json()["jobs"] == []


async def test_unparseable_json_and_oversized_bodies(served: Served, client: httpx.AsyncClient) -> None:
    broken = await client.post("/v1/jobs", content=b'{"request": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"] == "the body is not valid JSON"
    for size in (70_000, 2_000_000):
        big = await client.post("/v1/jobs", json={"request": "tea " * (size // 4)})
        assert big.status_code == 413 and big.json()["error"] == "too_large"
    # A declared length over the limit is refused before the body is read (httpx will not lie about it).
    port = int(served.url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"POST /v1/spec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 70000\r\n\r\n{}")  # fmt: skip
        with trio.fail_after(5):
            head = await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 413")


async def test_unknown_jobs_and_routes_are_404_json(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/v1/jobs/nope"), ("DELETE", "/v1/jobs/nope"), ("GET", "/v1/jobs/nope/events"),
                         ("GET", "/v1/jobs/nope/dataset"), ("GET", "/v1/nowhere")]:  # fmt: skip
        response = await client.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    wrong_method = await client.put("/v1/jobs")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


async def test_cancel_then_cancel_again_is_409(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", json={"request": REQUEST})).json()["job_id"]
    assert (await client.delete(f"/v1/jobs/{job_id}")).json()["state"] == "cancelled"
    again = await client.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert (await client.get("/v1/jobs", params={"state": "cancelled"})).json()["jobs"][0]["job_id"] == job_id
    assert (await client.get("/v1/jobs", params={"state": "running"})).json()["jobs"] == []


async def test_progress_and_rejections_show_in_the_job(served: Served, client: httpx.AsyncClient) -> None:
    ids = await served.call(search_job, served.coordinator, "press", 3)
    await served.call(settle_search, served.coordinator, ids[0])
    await served.call(settle_search, served.coordinator, ids[1], dissent=True)
    job = (await client.get("/v1/jobs/press")).json()
    assert job["stages"] == [{"stage": "search", "state": "open", "tasks": 3, "done": 2, "failed": 0, "open": 1}]
    assert job["rejections"] == {"quorum_minority": 1}


async def test_spec_dry_run_by_query_and_body(client: httpx.AsyncClient) -> None:
    by_query = await client.get("/v1/spec", params={"request": REQUEST, "rows": 40})
    assert by_query.status_code == 200
    preview = by_query.json()
    assert preview["spec"]["rows"] == 40 and "rows: 40" in preview["spec_yaml"]
    kinds = [s["kind"] for s in preview["plan"]["stages"]]
    assert "synthesize" in kinds
    assert preview["plan"]["total_tasks"] == sum(s["tasks"] for s in preview["plan"]["stages"])

    spec = fixture_spec(rows=7).model_dump(mode="json")
    assert kinds[0] == "spec" and any("a `spec` task (an LLM node)" in n for n in preview["notes"])
    by_body = (await client.post("/v1/spec", json={"spec": spec})).json()
    assert by_body["spec"]["rows"] == 7 and by_body["plan"]["stages"][0]["kind"] == "question_gen"
    assert (await client.get("/v1/jobs")).json()["jobs"] == []  # nothing was submitted

    assert (await client.get("/v1/spec")).status_code == 422
    bad = await client.post("/v1/spec", json={"spec": {"topic": "tea", "fields": [], "rows": 5}})
    assert bad.status_code == 422 and "fields" in bad.json()["detail"]


async def test_info_and_openapi(client: httpx.AsyncClient, served: Served) -> None:
    info = (await client.get("/v1/info")).json()
    assert info["peer_id"] == served.coordinator.identity.peer_id and info["open_reads"] is True
    assert info["models"] == served.coordinator.models
    schema = (await client.get("/openapi.json")).json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/dataset",
                 "/v1/nodes", "/v1/spec"):  # fmt: skip
        assert path in schema["paths"], path
    assert (await client.get("/docs")).status_code == 200
