"""The node and coordinator runtimes together in one process, on the in-memory transport double.

The subject is the runtimes' exchange (offer -> claim -> grant -> result ->
receipt, and pulling the next task), not the network: `MemoryTransport` stands
in for libp2p (tests/node/test_runtime_claims.py runs the same exchange over
real hosts). The coordinator is the real runtime, scheduler and store.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from coordinator.runtime import CoordinatorRuntime
from coordinator.scheduler import Scheduler
from coordinator.store import Store
from network import now_ms
from network.memory import MemoryNetwork, MemoryTransport
from network.topics import RECEIPTS_PROTOCOL
from node.executors.base import ExecutionResult
from node.runtime import NodeRuntime
from protocol.tasks import DecodingParams, Frozen, SearchHit, SearchOutput, SearchPayload, TaskKind
from tests.network.support import identity

COORDINATOR = identity(100)


class FixedSearch:
    """A search executor that always finds the same page: the test is about who runs what, not search."""

    kind = TaskKind.SEARCH

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        assert isinstance(payload, SearchPayload)
        self.ran.append(payload.query)
        hit = SearchHit(url="http://127.0.0.1:1/heapq.html", title="heapq", snippet="the heap queue algorithm")
        return ExecutionResult(output=SearchOutput(backend="fixed", hits=[hit]))


@contextlib.asynccontextmanager
async def coordinator(tmp_path: Path, network: MemoryNetwork) -> AsyncIterator[CoordinatorRuntime]:
    store = Store(tmp_path / "coordinator.db")
    try:
        async with network.transport(COORDINATOR) as transport, trio.open_nursery() as nursery:
            runtime = CoordinatorRuntime(transport, Scheduler(store, COORDINATOR), tick_s=0.05)
            await nursery.start(runtime.run)
            yield runtime
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def node_runtime(transport: MemoryTransport, executor: FixedSearch) -> NodeRuntime:
    return NodeRuntime(
        transport,
        {TaskKind.SEARCH: executor},
        [],
        trusted_coordinators={COORDINATOR.public_key},
        slots={"io": 1},
        status_interval_s=0.5,
    )


async def submit(coord: CoordinatorRuntime, task_ids: list[str]) -> None:
    store = coord.scheduler.store
    await coord.call(store.create_job, "j1", {"topic": "heaps"}, now_ms=now_ms())
    for task_id in task_ids:
        payload = SearchPayload(query=f"heap queue {task_id}", max_results=3)
        await coord.call(coord.scheduler.submit, task_id, "j1", "search", payload, now_ms=now_ms())


async def until(condition: Callable[[], bool], *, timeout: float = 20) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def test_two_nodes_claim_run_and_get_receipts_for_a_gossiped_task(tmp_path: Path) -> None:
    network = MemoryNetwork()
    searches = [FixedSearch(), FixedSearch()]
    async with (
        coordinator(tmp_path, network) as coord,
        network.transport(identity(1)) as t1,
        network.transport(identity(2)) as t2,
        trio.open_nursery() as nursery,
    ):
        nodes = [node_runtime(t1, searches[0]), node_runtime(t2, searches[1])]
        for node in nodes:
            await nursery.start(node.run)
        await submit(coord, ["t1"])
        store = coord.scheduler.store
        # Each node holds a receipt with a verdict: the coordinator compared the two results.
        await until(lambda: all(n.counters.accepted + n.counters.rejected == 1 for n in nodes))
        assert sorted(r.node for r in store.results_for("t1")) == sorted([t1.peer_id, t2.peer_id])
        nursery.cancel_scope.cancel()
    assert [n.counters.accepted for n in nodes] == [1, 1]
    assert [s.ran for s in searches] == [["heap queue t1"], ["heap queue t1"]]
    assert all(n.counters.claims >= 1 and n.counters.done == 1 for n in nodes)
    # The first result was answered with a pending receipt; its verdict came later, pushed to the node.
    assert sum(t.stats.requests_served[RECEIPTS_PROTOCOL] for t in (t1, t2)) >= 1
    # Envelopes were checked on both sides, as a SwarmHost checks them: nothing was refused.
    for transport in (t1, t2):
        assert transport.stats.gossip_dropped == {} and transport.stats.responses_refused == {}


async def test_a_node_with_one_slot_pulls_the_next_tasks_without_waiting_for_re_offers(tmp_path: Path) -> None:
    """Four tasks offered at once to a node with one slot: it claims one from gossip and skips the rest
    (no free slot). Re-offers are an hour away here, so it gets the other three only by pulling."""
    network = MemoryNetwork()
    search = FixedSearch()
    ids = [f"t{i}" for i in range(4)]
    async with (
        coordinator(tmp_path, network) as coord,
        network.transport(identity(1)) as transport,
        trio.open_nursery() as nursery,
    ):
        coord.scheduler.config = dataclasses.replace(coord.scheduler.config, reoffer_ms=3_600_000)
        node = node_runtime(transport, search)
        await nursery.start(node.run)
        await submit(coord, ids)
        store = coord.scheduler.store
        await until(lambda: all(store.results_for(t) for t in ids))
        nursery.cancel_scope.cancel()
    assert sorted(search.ran) == sorted(f"heap queue {t}" for t in ids)
    assert node.counters.pull_grants >= 3
    assert node.counters.claims <= 2  # gossip brought one; the rest came by pulling
