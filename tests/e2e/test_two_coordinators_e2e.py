"""Two coordinators on one network, each with its own job, and one set of node processes.

Real processes on loopback: two coordinators (in this process, each its own key, store and libp2p host,
on one trio loop), two `dataswarm node start` processes with the bundled model that trust both, and
one that trusts only the first but is connected to both. Both jobs are ungrounded so the nodes' time
goes to generation and validation. A node shares its slots by node/sharing.py: a freed slot pulls from
the coordinator with work that it has served least.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import trio

from cli.demo import node_command, stop_processes
from coordinator.config import CoordinatorConfig
from coordinator.service import open_coordinator
from node.ledger import LedgerSummary, ReceiptLedger
from protocol.keyfile import load_identity
from tests.e2e.node_processes import check_alive, spawn

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

KINDS = ["--kind", "spec", "--kind", "question_gen", "--kind", "synthesize", "--kind", "validate"]
REQUESTS = {
    "a": "question-answer pairs about Python lists and dictionaries, JSON with question and answer",
    "b": "question-answer pairs about Python strings and text files, JSON with question and answer",
}
ROWS = 4


def _config(tmp_path: Path, name: str) -> CoordinatorConfig:
    return CoordinatorConfig(
        key_path=tmp_path / f"coordinator-{name}.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=tmp_path / f"coordinator-{name}",
    )


async def test_two_coordinators_share_the_nodes_and_keep_their_own_work(tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    async with open_coordinator(_config(tmp_path, "a")) as a, open_coordinator(_config(tmp_path, "b")) as b:
        coords = {"a": a, "b": b}
        b_addr, b_peer = b.peer_addrs[0], b.identity.peer_id
        for i in range(3):
            cmd = node_command(i, tmp_path, a.peer_addrs[0], a.identity.peer_id, tmp_path / "none.sqlite",
                               "http://127.0.0.1:1/", 1)  # fmt: skip
            cmd += ["--bootstrap", b_addr] + (["--trust", b_peer] if i < 2 else []) + KINDS
            procs.append(spawn(cmd, tmp_path / f"node-{i}.log"))
        try:
            with trio.fail_after(300):
                while min(len(c.runtime.scheduler.node_statuses()) for c in coords.values()) < 3:
                    check_alive(procs, tmp_path)
                    await trio.sleep(1)
            only_a = str(load_identity(tmp_path / "node-2" / "node.key").peer_id)

            finals = {}
            minutes = {}

            async def run(name: str) -> None:
                started = time.monotonic()
                job = await coords[name].submit(REQUESTS[name], rows=ROWS, out_dir=tmp_path / f"dataset-{name}")
                finals[name] = await coords[name].wait(job)
                minutes[name] = (time.monotonic() - started) / 60

            with trio.fail_after(1200):
                async with trio.open_nursery() as nursery:
                    for name in coords:
                        nursery.start_soon(run, name)

            for name, final in finals.items():
                assert final.state in ("done", "partial"), (name, final)  # neither job starved
                assert final.rows > 0, (name, final)
                rate = final.rows / minutes[name]
                print(f"job {name}: {final.rows} rows in {minutes[name]:.1f} min ({rate:.2f} rows/min)")

            # The node that trusts only A never ran B's work: B granted it nothing, and it holds no B receipt.
            assert b.store.reputation(only_a) is None
            by_node = {i: Counter(e.coordinator for e in _ledger(tmp_path, i).entries) for i in range(3)}
            assert set(by_node[2]) == {a.identity.peer_id}, by_node[2]
            # Receipts stay per coordinator: each was signed by the coordinator whose task it was.
            for i in range(3):
                for entry in _ledger(tmp_path, i).entries:
                    assert entry.coordinator in (a.identity.peer_id, b_peer)
                    store = a.store if entry.coordinator == a.identity.peer_id else b.store
                    store.task(entry.receipt.task_id)  # raises KeyError for another coordinator's task
            # The shared nodes served both.
            shared = Counter(c for i in range(2) for c in by_node[i].elements())
            assert shared[a.identity.peer_id] > 0 and shared[b_peer] > 0, by_node
            print(f"receipts per node and coordinator: {by_node}")
        finally:
            stop_processes(procs)


def _ledger(tmp_path: Path, i: int) -> LedgerSummary:
    return ReceiptLedger(tmp_path / f"node-{i}" / "receipts.jsonl").read()
