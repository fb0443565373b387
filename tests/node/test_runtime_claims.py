"""The node's claim loop against a real coordinator over real libp2p, with one answer lost on the way.

The coordinator is the real one (store, scheduler, runtime); the fault is injected by
holding its first claim answer past the node's claim timeout, as a loaded
coordinator or a dropped stream would. The node must claim again and get the
grant that was issued for it, instead of leaving the lease to lapse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import node.runtime
from coordinator.runtime import CoordinatorRuntime
from coordinator.service import open_coordinator
from coordinator.store import TaskState
from network import SwarmHost, now_ms, offers_topic
from node.executors.search import SearchExecutor
from node.runtime import NodeRuntime
from node.search.index_db import open_for_writing, upsert_pages
from node.search.local import LocalSearchBackend
from protocol.envelope import Opened
from protocol.messages import Claim
from protocol.tasks import SearchPayload, TaskKind
from tests.api.support import config
from tests.network.support import host_config, identity

pytestmark = pytest.mark.trio


def small_index(path: Path) -> Path:
    conn = open_for_writing(path)
    upsert_pages(conn, [("http://127.0.0.1:1/heapq.html", "heapq", "heapq implements the heap queue algorithm.")])
    conn.commit()
    conn.close()
    return path


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
        assert [s.node for s in store.slots("t1")].count(host.peer_id) == 1
        assert coord.runtime.scheduler.stats["regrants"] == 1
        assert store.task("t1").state is TaskState.OPEN  # a second, distinct node must still confirm it
        assert runtime.counters.done == 1
