"""Coordinator cost per task, and the verified-cost ratio of a real job.

Part 1 (P3): CPU milliseconds per task and tasks/s for the full offer -> claim -> grant ->
result -> verify -> store path (task creation included) with 100 simulated nodes. The nodes are DOUBLES: they skip
the LLM and the network and answer with canned, correctly signed results, so the figure is
the coordinator's own cost (scheduler, verifier, SQLite store, signatures) and nothing else.
Goal: <= 2 ms CPU per task, >= 500 tasks/s.

Part 2 (P2): verified cost = LLM compute per accepted row / compute of one unverified
generation, read from a real job's store (`--db PATH`, e.g. a demo's
~/.cache/dataswarm/demo/coordinator/coordinator.db). Compute is counted in generated-token
equivalents: prefill tokens weigh 1/2.3 of a generated token (measured: prefill runs 2.3x
the generation rate on this CPU, docs/notes/llama.md). Goal <= 1.15 with honest nodes.

The store runs with the coordinator's own durability setting unless `--synchronous` says
otherwise (FULL costs an fsync per commit, NORMAL none: see coordinator/store/db.py).

Run: .venv/bin/python bench/coordinator.py [--tasks N] [--nodes N] [--synchronous MODE] [--db PATH]
     .venv/bin/python bench/coordinator.py --curve 1000,5000,10000  (per-task CPU, store and RSS by job size)
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.scheduler import Scheduler, SchedulerConfig
from coordinator.store import Store
from coordinator.verify.reputation import NodeReputation
from protocol import encoding
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import Claim, Grant, MessageKind, Result
from protocol.tasks import RetrieveOutput, RetrievePayload

PREFILL_WEIGHT = 1 / 2.3
PAGE = "The heapq module provides an implementation of the heap queue algorithm. " * 30


def _rss_mb() -> float:
    """This process's resident set now (not its peak), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass(frozen=True)
class Overhead:
    ms_per_task: float
    tasks_per_s: float
    store_kb_per_task: float
    rss_growth_mb: float


def bench_overhead(n_tasks: int, n_nodes: int, synchronous: str | None = None) -> Overhead:
    """Coordinator CPU ms per task, tasks/s, store size per task and RSS growth over the run."""
    rss_before = _rss_mb()
    coordinator = Identity.generate()
    nodes = [Identity.generate() for _ in range(n_nodes)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        mode = synchronous or inspect.signature(Store).parameters["synchronous"].default
        store = Store(db, synchronous=mode)
        now = 1_700_000_000_000
        store.create_job("bench", {"grounded": False}, now_ms=now)
        for n in nodes:  # established, trusted nodes: r = 1, as in a steady-state network
            store.save_reputation(NodeReputation(n.peer_id, score=0.95, accepted=50, updated_ms=now))
        sched = Scheduler(store, coordinator, SchedulerConfig(), rng=random.Random(0))
        sha = hashlib.sha256(PAGE.encode()).hexdigest()
        # Creating the tasks is coordinator work too (one store transaction each): it is timed.
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        for i in range(n_tasks):
            sched.submit(f"bench:retrieve:{i:06d}", "bench", "retrieve",
                         RetrievePayload(url=f"http://127.0.0.1/p{i}"), now_ms=now)  # fmt: skip
        # Node-side work (the double's opening of the offer and of the grant, and its signing) is
        # timed separately and subtracted: the figure is the coordinator's share only.
        node_cpu = 0.0
        done = 0
        while done < n_tasks:
            offers = sched.offers(now)
            if not offers:
                now += sched.config.reoffer_ms
                continue
            for _, env in offers:
                node = nodes[done % n_nodes]
                t0 = time.process_time()
                offer = open_envelope(env, now_ms=now, replay_cache=None, expect={MessageKind.TASK_OFFER}).message
                claim_env = seal(node, Claim(task_id=offer.task_id, attempt=offer.attempt, free_slots=1), now_ms=now)
                node_cpu += time.process_time() - t0
                claim = open_envelope(claim_env, now_ms=now, replay_cache=None).message
                grant = sched.on_claim(claim, node.peer_id, now)  # type: ignore[arg-type]
                grant_env = seal(coordinator, grant, now_ms=now)
                assert isinstance(grant, Grant), grant
                t0 = time.process_time()
                open_envelope(grant_env, now_ms=now, replay_cache=None)
                out = RetrieveOutput(url=grant.payload.url, final_url=grant.payload.url, status=200,  # type: ignore[union-attr]
                                     content_type="text/html", title="t", text=PAGE, content_sha256=sha,
                                     fetched_at_ms=now)  # fmt: skip
                result = Result(task_id=grant.task_id, job_id=grant.job_id, lease_id=grant.lease_id,
                                attempt=grant.attempt, output=out)  # fmt: skip
                result_env = seal(node, result, now_ms=now)
                node_cpu += time.process_time() - t0
                opened = open_envelope(result_env, now_ms=now, replay_cache=None, transport_peer_id=node.peer_id)
                sched.on_result(opened, now)
                done += 1
        cpu = time.process_time() - start_cpu - node_cpu
        wall = time.perf_counter() - start_wall
        rss_growth = _rss_mb() - rss_before
        store.close()
        store_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir())
    ms = 1000 * cpu / n_tasks
    rate = n_tasks / (wall - node_cpu)
    print(
        f"P3 coordinator overhead, {n_tasks} retrieve tasks, {n_nodes} simulated nodes "
        f"(DOUBLES: no LLM, no network, canned signed results), store synchronous={mode}:"
    )
    print(f"   {ms:.2f} ms coordinator CPU per task (goal <= 2)")
    print(
        f"   {rate:.0f} tasks/s (goal >= 500): wall time of the loop less the doubles' CPU "
        f"({n_tasks / wall:.0f} tasks/s with the doubles' work left in)"
    )
    return Overhead(ms, rate, store_bytes / 1024 / n_tasks, rss_growth)


def curve(sizes: list[int], n_nodes: int) -> None:
    """One job's tasks through the real scheduler and store at growing sizes: the per-task figures must stay flat."""
    rows = [(n, bench_overhead(n, n_nodes)) for n in sizes]
    print(f"\nP3 curve, one job of N retrieve tasks, {n_nodes} node DOUBLES (each size in a fresh store):")
    print("| tasks | CPU ms per task | tasks/s | store KB per task | RSS growth MB |")
    print("|---|---|---|---|---|")
    for n, o in rows:
        kb, rss = o.store_kb_per_task, o.rss_growth_mb
        print(f"| {n} | {o.ms_per_task:.2f} | {o.tasks_per_s:.0f} | {kb:.2f} | {rss:.1f} |")
    first, last = rows[0][1], rows[-1][1]
    print(
        f"largest / smallest: CPU per task {last.ms_per_task / first.ms_per_task:.2f}x, "
        f"store per task {last.store_kb_per_task / first.store_kb_per_task:.2f}x"
    )


def verified_cost(db: Path, *, fabricated: Collection[str] = ()) -> None:
    """P2, and where it goes: generation, replication, validation and waste, per accepted row.

    The unit is the compute of the generations that became the delivered rows (1.00 = one
    unverified generation per row). Replication: the other replicas of the tasks that yielded a
    row; validation: the validate tasks (re-scoring and round trip) of those tasks; waste: all the
    synthesize and validate compute of tasks that yielded no row (rejected candidates, rows the
    gates dropped). Spec and question-generation tasks are not counted (a few per job).

    `fabricated`: nodes whose results are made up (cheaters). Their claimed token counts are no
    compute anyone spent, so they count zero; the honest work they cause (replicas, validations) counts.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    row_results = {r[0] for r in conn.execute("SELECT result_id FROM rows")}
    generation: dict[str, float] = {}  # task -> the cost of its result that became a row
    replicas: dict[str, float] = {}
    validation: dict[str, float] = {}
    cheats = 0
    for rid, task_id, stage, env, node in conn.execute(
        "SELECT r.result_id, r.task_id, t.stage, r.envelope, r.node FROM results r"
        " JOIN tasks t ON t.task_id = r.task_id WHERE t.stage IN ('synthesize', 'validate')"
    ):
        fields = encoding.decode(env, limit=len(env))
        result = open_envelope(env, now_ms=fields["issued_at"], replay_cache=None).message
        assert isinstance(result, Result)
        cost = result.stats.completion_tokens + PREFILL_WEIGHT * result.stats.prompt_tokens
        if node in fabricated:
            cheats += 1
            cost = 0.0
        if stage == "validate":
            parent = task_id.split(".v")[0]  # a validate task's cost belongs to the task it checks
            validation[parent] = validation.get(parent, 0.0) + cost
        elif rid in row_results:
            generation[task_id] = generation.get(task_id, 0.0) + cost
        else:
            replicas[task_id] = replicas.get(task_id, 0.0) + cost
    if not generation:
        print(f"P2: no accepted rows in {db}")
        return
    unit = sum(generation.values())
    yielded = set(generation)
    split = {
        "generation": 1.0,
        "replication": sum(c for t, c in replicas.items() if t in yielded) / unit,
        "validation": sum(c for t, c in validation.items() if t in yielded) / unit,
        "waste": (
            sum(c for t, c in replicas.items() if t not in yielded)
            + sum(c for t, c in validation.items() if t not in yielded)
        )
        / unit,
    }
    verified = split["generation"] + split["replication"] + split["validation"]
    who = f", {cheats} results of cheaters counted as no compute" if fabricated else ", honest nodes"
    print(f"P2 verified cost from {db}: {len(row_results)} rows from {len(yielded)} tasks{who}")
    goal = " (goal <= 1.15 with honest nodes)" if not fabricated else ""
    print(f"   tasks that yielded a row: all replicas + validations / one generation = {verified:.2f}{goal}")
    print(f"   everything the job generated / one generation per delivered row = {sum(split.values()):.2f}")
    print("   per delivered row, in generations: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], help="store durability (default: the store's)")
    parser.add_argument("--db", type=Path, help="a coordinator.db of a finished job, for P2")
    parser.add_argument("--curve", help="comma-separated job sizes (e.g. 1000,5000,10000): per-task figures by size")
    args = parser.parse_args()
    if args.curve:
        curve([int(n) for n in args.curve.split(",")], args.nodes)
        return
    bench_overhead(args.tasks, args.nodes, args.synchronous)
    if args.synchronous is None:
        # Side by side: the same path with an fsync per commit (power-cut durability), a quarter of the tasks.
        print()
        bench_overhead(max(100, args.tasks // 4), args.nodes, "FULL")
    if args.db:
        verified_cost(args.db)


if __name__ == "__main__":
    main()
