"""A job on a network with cheaters: no cheater's row is delivered, every cheater is blacklisted.

Real processes on loopback: a coordinator (in this process, on its own trio loop), three honest
`dataswarm node start` processes with the bundled model, and one process hosting seven cheating
nodes (tests/e2e/cheaters.py: each its own key and libp2p host). The job is ungrounded so the
honest nodes' time goes to generation and validation. Work keeps coming (a second job) until every
cheater has been dealt with, so each had its chance to be caught within 10 tasks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from cli.demo import node_command, stop_processes
from coordinator.config import CoordinatorConfig
from coordinator.service import open_coordinator
from coordinator.verify.reputation import DEFAULT_CONFIG
from tests.e2e.cheaters import BEHAVIOURS
from tests.e2e.node_processes import check_alive, spawn

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
"""About 2 minutes on a 2-core machine (11 before offers reached every node: flood publish in
network/patches.py). Forged and replayed results are charged the moment they are refused (the
transport-authenticated peer sent them); a silent node is charged through its lapsed leases."""

HONEST = 3
REQUEST = "question-answer pairs about Python lists and dictionaries, JSON with question and answer"
MAX_TASKS_TO_CATCH = 10
IN_FLIGHT = 3
"""Leases a cheater holds at once (tests/e2e/cheaters.py): results already submitted when it is
blacklisted are still judged, so its totals may exceed the 10 tasks it took to be caught by these."""


async def test_cheaters_are_caught_and_the_job_completes(tmp_path: Path) -> None:
    cfg = CoordinatorConfig(
        key_path=tmp_path / "coordinator.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=tmp_path / "coordinator",
    )
    procs: list[subprocess.Popen[bytes]] = []
    async with open_coordinator(cfg) as coord:
        addr, peer = coord.peer_addrs[0], coord.identity.peer_id
        for i in range(HONEST):
            cmd = node_command(i, tmp_path, addr, peer, tmp_path / "none.sqlite", "http://127.0.0.1:1/", 1)
            cmd += ["--kind", "spec", "--kind", "question_gen", "--kind", "synthesize", "--kind", "validate"]
            procs.append(spawn(cmd, tmp_path / f"honest-{i}.log"))
        cheat_cmd = [sys.executable, "-m", "tests.e2e.cheaters", "--bootstrap", addr, "--trust", peer,
                     "--workdir", str(tmp_path), *BEHAVIOURS]  # fmt: skip
        procs.append(spawn(cheat_cmd, tmp_path / "cheaters.log"))
        try:
            with trio.fail_after(300):
                while len(coord.runtime.scheduler.node_statuses()) < HONEST + len(BEHAVIOURS):
                    check_alive(procs, tmp_path)
                    await trio.sleep(1)
            cheaters = {b: (tmp_path / f"{b}.peer").read_text() for b in BEHAVIOURS}
            honest = set(coord.runtime.scheduler.node_statuses()) - set(cheaters.values())
            assert len(honest) == HONEST

            first = await coord.submit(REQUEST, rows=8, out_dir=tmp_path / "dataset-1")
            final = await coord.wait(first)
            assert final.state in ("done", "partial"), final  # partial: fewer rows passed, none padded
            jobs = [first]
            with trio.move_on_after(900):
                while not _all_caught(coord, cheaters.values()):
                    jobs.append(await coord.submit(REQUEST, rows=4, out_dir=tmp_path / f"dataset-{len(jobs) + 1}"))
                    await coord.wait(jobs[-1])
            store = coord.store
            producers = {r.node for job in jobs for row in store.rows(job) for r in [store.result(row.result_id)]}
            assert producers and producers <= honest, f"rows delivered from cheaters: {producers - honest}"
            for behaviour, cheater in cheaters.items():
                rep = store.reputation(cheater)
                assert rep is not None, f"{behaviour} never got a task"
                assert rep.blacklisted and rep.score < DEFAULT_CONFIG.blacklist_below, (behaviour, rep)
                assert rep.rejected + rep.expired <= MAX_TASKS_TO_CATCH + IN_FLIGHT, (behaviour, rep)
            for node in honest:
                rep = store.reputation(node)
                assert rep is not None and not rep.blacklisted and rep.score >= DEFAULT_CONFIG.blacklist_below
        finally:
            stop_processes(procs)


def _all_caught(coord: object, cheaters: object) -> bool:
    store = coord.store  # type: ignore[attr-defined]
    reps = [store.reputation(c) for c in cheaters]  # type: ignore[attr-defined]
    return all(r is not None and r.blacklisted for r in reps)
