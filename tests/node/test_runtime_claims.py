"""The node's claim loop against a real coordinator over real libp2p, with one answer lost on the way.

The coordinator is the real one (store, scheduler, runtime); the fault is injected by
holding its first claim answer past the node's claim timeout, as a loaded
coordinator or a dropped stream would. The node must claim again and get the
grant that was issued for it, instead of leaving the lease to lapse.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

import node.runtime
from coordinator.runtime import CoordinatorRuntime
from coordinator.scheduler import Scheduler
from coordinator.service import open_coordinator
from coordinator.store import Store, TaskState
from network import SwarmHost, now_ms, offers_topic
from node.executors.search import SearchExecutor
from node.runtime import NodeRuntime
from node.search.index_db import open_for_writing, upsert_pages
from node.search.local import LocalSearchBackend
from protocol.digests import payload_sha256
from protocol.envelope import Opened
from protocol.messages import Claim, Grant, TaskOffer
from protocol.tasks import SearchPayload, TaskKind
from tests.api.support import config
from tests.coordinator.factories import COORDINATOR, MODEL, NODE_A, NODE_B, T0, synth_payload
from tests.network.support import host_config, identity


def small_index(path: Path) -> Path:
    conn = open_for_writing(path)
    upsert_pages(conn, [("http://127.0.0.1:1/heapq.html", "heapq", "heapq implements the heap queue algorithm.")])
    conn.commit()
    conn.close()
    return path


@pytest.mark.trio
async def test_a_claim_whose_answer_was_lost_is_claimed_again_and_the_grant_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node.runtime, "CLAIM_TIMEOUT_S", 1.0)
    answered = 0
    original = CoordinatorRuntime._on_request

    async def slow_first_claim(self: CoordinatorRuntime, peer: str, opened: Opened) -> bytes:
        nonlocal answered
        if isinstance(opened.message, Claim):
            answered += 1
            if answered == 1:
                await trio.sleep(2.0)  # the node has given up on this answer by now
        return await original(self, peer, opened)

    monkeypatch.setattr(CoordinatorRuntime, "_on_request", slow_first_claim)
    backend = LocalSearchBackend(small_index(tmp_path / "index.sqlite"))
    async with open_coordinator(config(tmp_path)) as coord, SwarmHost(host_config(identity(7))) as host:
        await host.connect(coord.peer_addrs[0])
        runtime = NodeRuntime(
            host,
            {TaskKind.SEARCH: SearchExecutor(backend)},
            [],
            trusted_coordinators={coord.identity.public_key},
            slots={"io": 1},
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            await coord.host.wait_for_subscribers(offers_topic(TaskKind.SEARCH), 1, timeout=10)
            store = coord.runtime.scheduler.store
            await coord.runtime.call(store.create_job, "j1", {"topic": "heaps"}, now_ms=now_ms())
            await coord.runtime.call(
                coord.runtime.scheduler.submit, "t1", "j1", "search",
                SearchPayload(query="heap queue", max_results=3), now_ms=now_ms(),
            )  # fmt: skip
            with trio.fail_after(30):
                while not await coord.runtime.call(store.results_for, "t1"):
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        results = store.results_for("t1")
        assert [r.node for r in results] == [host.peer_id]
        # One lease for this node, granted once and handed back on the second claim.
        assert [s.node for s in store.replicas("t1")].count(host.peer_id) == 1
        assert coord.runtime.scheduler.stats["regrants"] == 1
        assert store.task("t1").state is TaskState.OPEN  # a second, distinct node must still confirm it
        assert runtime.counters.done == 1


def test_a_grant_at_a_later_attempt_than_a_stale_offer_is_run_but_never_an_older_or_another_task(
    tmp_path: Path,
) -> None:
    """A lease lapsed between the offer's gossip and the claim: the real scheduler grants the new attempt."""
    store = Store(tmp_path / "c.db")
    store.create_job("j1", {"topic": "t"}, allowed_models=[MODEL], now_ms=T0)
    sched = Scheduler(store, COORDINATOR)
    payload = synth_payload()
    sched.submit("t1", "j1", "synthesize", payload, est_tokens=10, now_ms=T0)
    stale = TaskOffer(
        task_id="t1", job_id="j1", task_kind=TaskKind.SYNTHESIZE,
        payload_sha256=payload_sha256(payload),
        est_tokens=10, model_sha256=[MODEL], offer_expires_ms=T0 + 600_000, attempt=0,
    )  # fmt: skip
    first = sched.on_claim(Claim(task_id="t1", attempt=0, model_sha256=MODEL, free_slots=1, tok_s=50.0),
                           NODE_B.peer_id, T0)  # fmt: skip
    assert isinstance(first, Grant)
    sched.tick(first.lease_deadline_ms + 1)  # B's lease lapses: that replica is offered again at attempt 1
    late = sched.on_claim(Claim(task_id="t1", attempt=0, model_sha256=MODEL, free_slots=1, tok_s=50.0),
                          NODE_A.peer_id, first.lease_deadline_ms + 2)  # fmt: skip
    assert isinstance(late, Grant)
    ok = node.runtime.grant_problem(stale, late, peer_id=NODE_A.peer_id, models={MODEL})
    assert ok is None, ok
    newer = stale.model_copy(update={"attempt": late.attempt + 1})
    assert "older attempt" in str(node.runtime.grant_problem(newer, late, peer_id=NODE_A.peer_id, models={MODEL}))
    other = stale.model_copy(update={"task_id": "t2"})
    assert "another task" in str(node.runtime.grant_problem(other, late, peer_id=NODE_A.peer_id, models={MODEL}))
    assert "is for" in str(node.runtime.grant_problem(stale, late, peer_id=NODE_B.peer_id, models={MODEL}))
    assert "not loaded" in str(node.runtime.grant_problem(stale, late, peer_id=NODE_A.peer_id, models={"cd" * 32}))


@pytest.mark.trio
async def test_a_node_that_finishes_a_task_pulls_the_next_one_without_waiting_for_a_re_offer(tmp_path: Path) -> None:
    """Four tasks offered at once to a node with one slot: it claims one from gossip and skips the rest
    (no free slot). Re-offers are an hour away here, so it gets the other three only by pulling."""
    backend = LocalSearchBackend(small_index(tmp_path / "index.sqlite"))
    async with open_coordinator(config(tmp_path)) as coord, SwarmHost(host_config(identity(8))) as host:
        sched = coord.runtime.scheduler
        sched.config = dataclasses.replace(sched.config, reoffer_ms=3_600_000)
        await host.connect(coord.peer_addrs[0])
        runtime = NodeRuntime(
            host,
            {TaskKind.SEARCH: SearchExecutor(backend)},
            [],
            trusted_coordinators={coord.identity.public_key},
            slots={"io": 1},
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            await coord.host.wait_for_subscribers(offers_topic(TaskKind.SEARCH), 1, timeout=10)
            store = sched.store
            await coord.runtime.call(store.create_job, "j1", {"topic": "heaps"}, now_ms=now_ms())
            ids = [f"t{i}" for i in range(4)]
            for task_id in ids:
                await coord.runtime.call(
                    sched.submit, task_id, "j1", "search", SearchPayload(query=f"heap queue {task_id}", max_results=3),
                    now_ms=now_ms(),
                )  # fmt: skip
            with trio.fail_after(30):
                while True:
                    ran = [t for t in ids if any(r.node == host.peer_id for r in store.results_for(t))]
                    if len(ran) == len(ids):
                        break
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    assert runtime.counters.pull_grants >= 3
    assert runtime.counters.claims <= 2  # gossip brought one; the rest came by pulling
