"""/v1/nodes, /v1/activity and /metrics on the coordinator; the node's own metrics registry and server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from coordinator.api.activity import Activity, Sample
from node.metrics import NodeMetrics, serve_node_metrics
from protocol.messages import GenerationStats, ModelInfo, NodeStatus, Result
from protocol.tasks import SearchOutput, SynthesizeOutput, TaskKind
from tests.api.support import api_server, node, report_status, search_job, settle_search


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}, parsed by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_nodes_show_status_and_reputation(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        assert (await client.get("/v1/nodes")).json() == {"nodes": []}
        await s.call(report_status, s.coordinator, node(1), free=3, tok_s=55.0)
        ids = await s.call(search_job, s.coordinator, "press", 1)
        await s.call(settle_search, s.coordinator, ids[0], dissent=True)
        nodes = {n["peer_id"]: n for n in (await client.get("/v1/nodes")).json()["nodes"]}
        assert set(nodes) == {node(i).peer_id for i in (1, 2, 3)}
        live = nodes[node(1).peer_id]
        assert live["live"] and live["free_slots"] == 3 and live["total_slots"] == 4 and live["tasks_done"] == 7
        assert live["models"][0]["tok_s"] == 55.0 and live["task_kinds"] == ["search", "synthesize"]
        assert live["reputation"]["accepted"] == 1 and not live["reputation"]["blacklisted"]
        dissenter = nodes[node(2).peer_id]
        assert not dissenter["live"] and dissenter["reputation"]["rejected"] == 1
        assert dissenter["reputation"]["score"] < live["reputation"]["score"]
        assert (await client.get("/v1/nodes")).json()["nodes"][0]["peer_id"] == node(1).peer_id  # live first


async def test_metrics_count_tasks_verdicts_queue_and_reputation(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        await s.call(report_status, s.coordinator, node(1), free=3, tok_s=55.0)
        ids = await s.call(search_job, s.coordinator, "press", 3)
        await s.call(settle_search, s.coordinator, ids[0])
        await s.call(settle_search, s.coordinator, ids[1], dissent=True)
        response = await client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        m = samples(response.text)
        assert m[("dataswarm_jobs", (("state", "running"),))] == 1
        assert m[("dataswarm_tasks", (("kind", "search"), ("state", "done")))] == 2
        assert m[("dataswarm_tasks", (("kind", "search"), ("state", "open")))] == 1
        assert m[("dataswarm_queue_depth", (("kind", "search"),))] == 1  # the untouched task's slot
        verdicts = {dict(k[1])["verdict"] + ":" + dict(k[1])["reason"]: v
                    for k, v in m.items() if k[0] == "dataswarm_verdicts_total"}  # fmt: skip
        assert verdicts == {"accepted:": 4, "rejected:quorum_minority": 1}
        # The kind label is empty until the scheduler's stats key carries the task kind; then it is "search".
        assert {dict(k[1])["kind"] for k in m if k[0] == "dataswarm_verdicts_total"} <= {"", "search"}
        assert m[("dataswarm_results_total", ())] == 5
        assert m[("dataswarm_grants_total", ())] == 5
        assert m[("dataswarm_lease_expiries_total", ())] == 0
        assert m[("dataswarm_node_reputation_bucket", (("le", "+Inf"),))] == 3
        assert m[("dataswarm_node_reputation_bucket", (("le", "0.5"),))] == 1  # the dissenter
        assert m[("dataswarm_nodes", (("status", "live"),))] == 1
        assert m[("dataswarm_node_slots", (("state", "free"),))] == 3
        assert m[("dataswarm_network_tokens_per_second", ())] == 55.0

        # A finished job's counts come from the cache, and stay right.
        await s.call(s.coordinator.store.set_job_state, "press", "compiling", now_ms=1)
        await s.call(s.coordinator.store.set_job_state, "press", "done", now_ms=1)
        for _ in range(2):
            m = samples((await client.get("/metrics")).text)
            assert m[("dataswarm_tasks", (("kind", "search"), ("state", "done")))] == 2
            assert m[("dataswarm_queue_depth", (("kind", "search"),))] == 0  # done jobs are not offered


async def test_activity_feed_and_rate(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        ids = await s.call(search_job, s.coordinator, "press", 2)
        await trio.sleep(0.3)  # the sampler takes its baseline
        await s.call(settle_search, s.coordinator, ids[0], dissent=True)
        with trio.fail_after(10):
            while not (feed := (await client.get("/v1/activity")).json())["rejections"]:
                await trio.sleep(0.1)
        assert feed["rejections"][0] == {
            "at_ms": feed["rejections"][0]["at_ms"], "job_id": "press", "scope": "result",
            "reason": "quorum_minority", "count": 1,
        }  # fmt: skip
        assert feed["results_per_s"] > 0


def test_activity_diffs_samples_into_events() -> None:
    activity = Activity()
    base = Sample(0.0, 1000, {"results": 10, "reject:no_capacity": 2}, {"j1": {("result", "schema_invalid"): 1}})
    activity.add(base)
    assert activity.view().rejections == [] and activity.results_per_s() == 0.0
    later = Sample(
        30.0, 31_000, {"results": 40, "reject:no_capacity": 5},
        {"j1": {("result", "schema_invalid"): 3, ("row", "duplicate"): 1}, "j2": {("row", "too_short"): 2}},
    )  # fmt: skip
    activity.add(later)
    got = {(e.job_id, e.scope, e.reason, e.count) for e in activity.view().rejections}
    assert got == {("j1", "result", "schema_invalid", 2), ("j1", "row", "duplicate", 1),
                   ("j2", "row", "too_short", 2), ("", "claim", "no_capacity", 3)}  # fmt: skip
    assert activity.results_per_s() == 1.0  # 30 results in 30 s
    activity.add(Sample(120.0, 121_000, {"results": 100}, {}))
    assert activity.results_per_s() == round(60 / 90, 3)  # from the last sample at least a minute old


def _status() -> NodeStatus:
    return NodeStatus(
        version="dataswarm-node/0.1.0",
        models=[ModelInfo(name="SmolLM2", sha256="ab" * 32, tok_s=31.5, n_ctx=2048, slots=2)],
        task_kinds=[TaskKind.SYNTHESIZE],
        free_slots=1,
        total_slots=2,
    )


def _result(kind_output: SynthesizeOutput | SearchOutput, completion: int, seconds: float) -> Result:
    return Result(
        task_id="t1", job_id="j1", lease_id="l1", attempt=0, output=kind_output,
        stats=GenerationStats(prompt_tokens=100, completion_tokens=completion, seconds=seconds),
    )  # fmt: skip


async def test_node_metrics_registry_and_server() -> None:
    @dataclasses.dataclass
    class Counters:
        done: int = 4
        failed: int = 1

    counters = Counters()
    metrics = NodeMetrics(status=_status, counters=lambda: dataclasses.asdict(counters))
    hook = metrics.chain(None)
    synth = SynthesizeOutput(rows=[])
    assert hook(None, _result(synth, 120, 4.0)) is not None  # type: ignore[arg-type]
    metrics.observe(_result(synth, 80, 2.0))
    metrics.observe(_result(SearchOutput(backend="local", hits=[]), 0, 0.2))

    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_node_metrics, metrics, "127.0.0.1:0")
        async with httpx.AsyncClient(base_url=url) as client:
            counters.failed = 2  # read at scrape time
            m = samples((await client.get("/metrics")).text)
            assert (await client.get("/other")).status_code == 404
        nursery.cancel_scope.cancel()
    assert m[("dataswarm_node_tokens_generated_total", (("kind", "synthesize"),))] == 200
    assert m[("dataswarm_node_prompt_tokens_total", (("kind", "synthesize"),))] == 200
    assert m[("dataswarm_node_task_seconds_count", (("kind", "synthesize"),))] == 2
    assert m[("dataswarm_node_task_seconds_sum", (("kind", "search"),))] == 0.2
    assert m[("dataswarm_node_free_slots", ())] == 1 and m[("dataswarm_node_total_slots", ())] == 2
    assert m[("dataswarm_node_model_tokens_per_second", (("model", "SmolLM2"), ("sha256", "ab" * 6)))] == 31.5
    assert m[("dataswarm_node_tasks_done_total", ())] == 4 and m[("dataswarm_node_tasks_failed_total", ())] == 2


def test_verdict_keys_with_and_without_kind() -> None:
    from coordinator.api.metrics import _split_verdict

    assert _split_verdict("verdict:accepted:ok") == ("", "accepted", "")
    assert _split_verdict("verdict:synthesize:rejected:evidence_not_found") == (
        "synthesize", "rejected", "evidence_not_found",
    )  # fmt: skip
    assert _split_verdict("reject:no_capacity") is None and _split_verdict("verdict:x") is None
