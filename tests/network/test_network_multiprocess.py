"""One coordinator and four nodes, each in its own OS process, on 127.0.0.1.

The coordinator gossips 500 signed offers as fast as backpressure allows;
every node must hear every offer of the kinds it subscribed to (and none
other), claim each on its persistent stream, and get an answer; every
connection must be Noise. Then one node is frozen (SIGSTOP): the publisher
must wait and then report backpressure rather than drop, and once the node
thaws it must still receive everything that was published.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from network import NOISE
from protocol import TaskKind
from tests.network.support import PeerProcess, Spawn, identity, peer_processes

KINDS = [TaskKind.SYNTHESIZE, TaskKind.SEARCH, TaskKind.VALIDATE]
NODE_KINDS = {
    1: [TaskKind.SYNTHESIZE],
    2: [TaskKind.SYNTHESIZE, TaskKind.SEARCH],
    3: [TaskKind.SEARCH, TaskKind.VALIDATE],
    4: [TaskKind.SYNTHESIZE, TaskKind.SEARCH, TaskKind.VALIDATE],
}
OFFERS = 500


def expected_tasks(kinds: list[TaskKind], start: int, count: int) -> set[str]:
    return {f"task-{i:06d}" for i in range(start, start + count) if KINDS[i % len(KINDS)] in kinds}


async def start_swarm(
    spawn: Spawn, coordinator_listen: str = "/ip4/127.0.0.1/tcp/0"
) -> tuple[PeerProcess, dict[int, PeerProcess]]:
    coord = await spawn("coordinator", ["coordinator", "--key", "0", "--listen", coordinator_listen])
    (ready,) = await coord.wait_for(lambda e: e["event"] == "ready", timeout=60)
    nodes: dict[int, PeerProcess] = {}
    for n, kinds in NODE_KINDS.items():
        nodes[n] = await spawn(f"node{n}", [
            "node", "--key", str(n), "--bootstrap", ready["addrs"][0], "--trusted", ready["pubkey"],
            "--kinds", ",".join(kinds),
        ])
    for proc in nodes.values():
        await proc.wait_for(lambda e: e["event"] == "ready", timeout=60)
    for kind in KINDS:
        want = sum(kind in kinds for kinds in NODE_KINDS.values())
        await coord.request("subscribers", cmd="wait_subscribers", kind=kind, count=want, timeout=60)
    return coord, nodes


@pytest.mark.timeout(240)
async def test_500_offers_reach_every_subscribed_node_and_every_claim_is_answered(tmp_path: Path) -> None:
    async with peer_processes(tmp_path) as spawn:
        coord, nodes = await start_swarm(spawn)
        published = await coord.request("published", cmd="publish", count=OFFERS, kinds=KINDS, start=0, timeout=60)
        assert published["count"] == OFFERS and 1_200 < published["bytes"] < 2_100

        total_claims = 0
        for n, proc in nodes.items():
            want = expected_tasks(NODE_KINDS[n], 0, OFFERS)
            total_claims += len(want)
            replies = await proc.wait_for(lambda e: e["event"] == "reply", count=len(want), timeout=90)
            offers = proc.find(lambda e: e["event"] == "offer")
            assert {e["task_id"] for e in offers} == want, f"node{n} lost or got foreign offers"
            assert len(offers) == len(want), f"node{n} saw an offer twice"
            assert {e["task_id"] for e in replies} == want
            assert {e["kind"] for e in replies} == {"reject"}
            assert not proc.find(lambda e: e["event"] == "claim_error")

        claims = await coord.wait_for(lambda e: e["event"] == "claim", count=total_claims, timeout=60)
        by_peer: dict[str, set[str]] = {}
        for claim in claims:
            by_peer.setdefault(claim["peer"], set()).add(claim["task_id"])
        for n in nodes:
            assert by_peer[identity(n).peer_id] == expected_tasks(NODE_KINDS[n], 0, OFFERS)

        # Every connection on every side negotiated Noise, nothing else.
        for proc in [coord, *nodes.values()]:
            security = await proc.request("security", cmd="security", timeout=10)
            assert security["peers"], f"{proc.name} has no connections"
            assert all(protos == [NOISE] for protos in security["peers"].values()), security
            stats = (await proc.request("stats", cmd="stats", timeout=10))["stats"]
            assert stats["gossip_dropped"] == {}, f"{proc.name} dropped gossip: {stats['gossip_dropped']}"

        # Liveness gossip both ways: NodeStatus reached the coordinator, CoordinatorAnnounce every node.
        coordinator_id = identity(0).peer_id
        for n, proc in nodes.items():
            node_id = identity(n).peer_id
            await coord.wait_for(lambda e, p=node_id: e["event"] == "status" and e["peer"] == p, timeout=20)
            await proc.wait_for(lambda e: e["event"] == "announce" and e["peer"] == coordinator_id, timeout=20)

        # A frozen subscriber: the publisher waits, then reports; nothing is dropped meanwhile.
        frozen = nodes[4]
        frozen.signal(signal.SIGSTOP)
        try:
            outcome = await coord.request(
                "backpressure", cmd="publish", start=OFFERS, count=20_000, kinds=[TaskKind.VALIDATE],
                publish_timeout=3, timeout=120,
            )
        finally:
            frozen.signal(signal.SIGCONT)
        assert identity(4).peer_id in outcome["congested"]
        sent = outcome["index"] - OFFERS  # offers OFFERS .. index-1 went out before the publisher gave up
        assert sent > 0
        want = {f"task-{i:06d}" for i in range(OFFERS, outcome["index"])}
        for n in (3, 4):  # the two validate subscribers, frozen or not, get every one
            got = await nodes[n].wait_for(
                lambda e: e["event"] == "offer" and e["task_id"] in want, count=len(want), timeout=90
            )
            assert {e["task_id"] for e in got} == want
