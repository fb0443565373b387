"""End-to-end figures of real jobs: P4, the scaling curve, and what a job's rows went through.

Each run is `dataswarm demo` in this process (a coordinator, K node processes with the bundled
model, the local corpus on 127.0.0.1), followed by a read of the coordinator's store:

- P4 = wall time of the job (submitted -> done, read from the store) / sum of the raw
  generation seconds of the results whose rows were delivered (what one perfect,
  overhead-free generator would have spent). Goal <= 1.3 for a 100-row job.
- rows/minute for each node count in `--nodes` (the scaling curve). The node processes share
  this machine's cores (threads per node = cores / nodes, at least 1), so on 2 cores the rate
  saturates at 2 nodes and 4 nodes oversubscribe the cores.
- rows requested / generated / accepted, rejections by reason, grounding and duplicate rates.
- a projection for N volunteer machines: each adds the per-node rate measured here (node
  seconds of every result of the job, all stages, replicas and validations, per accepted
  row), up to the coordinator's ceiling (its CPU per task, P3, measured in this run with
  node doubles, times the tasks one row costs).
- P2 (bench/coordinator.py `verified_cost`) on the last job's store.

Small jobs weigh per-job fixed costs (the stages before synthesize, the last rows' tail): the
goals of P4 and P2 are for a 100-row job, `--rows 100 --nodes 2` (`make bench-full`).

A 1-node job is stopped at `--single-node-cap-s` (a network of one cannot verify: see
`SINGLE_NODE`). `--cheat-rows N` adds a job of N rows on 3 honest nodes and one cheating node
(25%; a real node runtime from tests/e2e/cheaters.py that fabricates its rows) for P2 under attack.

Run: .venv/bin/python bench/pipeline.py [--rows 20] [--nodes 1,2,4] [--single-node-cap-s S]
                                        [--cheat-rows N] [--cheater BEHAVIOUR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import trio
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.coordinator import bench_overhead, verified_cost
from cli.demo import DEFAULT_REQUEST, clear_workdir, find_corpus, node_command, run_demo, stop_processes
from coordinator.config import CoordinatorConfig
from coordinator.service import open_coordinator
from node.search.corpus import index_corpus
from node.search.corpus_server import CorpusServer
from protocol import encoding
from protocol.envelope import open_envelope
from protocol.messages import Result
from protocol.tasks import SynthesizeOutput

ROOT = Path(__file__).resolve().parents[1]
SINGLE_NODE = (
    "a network of one node cannot verify: a node not yet trusted gets a second replica of each task, which only\n"
    "   another node may run, so every task waits for the job runner to abandon its replica (60 s) and the\n"
    "   generative ones then need a validator other than their producer. So the 1-node job is stopped at its cap."
)
GROUNDING_REASONS = {"evidence_not_found", "unsupported_answer", "question_off_source"}
DUPLICATE_REASONS = {"duplicate", "near_duplicate"}


@dataclass
class JobFigures:
    nodes: int
    rows_requested: int
    rows_accepted: int
    rows_generated: int
    synth_tasks: int
    all_tasks: int
    demo_s: float
    """The whole demo: starting the nodes (model load, self-benchmark), the job, compiling."""
    wall_s: float
    """The job alone: submitted -> done, from the store."""
    generation_s: float
    node_s: float
    """Seconds every result of the job took on its node (all stages, replicas, validations)."""
    drops: Counter[str]
    verdicts: Counter[str]
    stopped: bool = False
    """Stopped unfinished at the time cap (a 1-node network: see `SINGLE_NODE`)."""

    @property
    def p4(self) -> float:
        return self.wall_s / self.generation_s if self.generation_s else float("inf")

    @property
    def rows_per_min(self) -> float:
        return 60 * self.rows_accepted / self.wall_s

    @property
    def node_s_per_row(self) -> float:
        return self.node_s / self.rows_accepted if self.rows_accepted else float("inf")


def _results(conn: sqlite3.Connection, stage: str) -> list[tuple[int, Result]]:
    out = []
    for rid, env in conn.execute(
        "SELECT r.result_id, r.envelope FROM results r JOIN tasks t ON t.task_id = r.task_id WHERE t.stage = ?",
        (stage,),
    ):
        fields = encoding.decode(env, limit=len(env))
        message = open_envelope(env, now_ms=fields["issued_at"], replay_cache=None).message
        assert isinstance(message, Result)
        out.append((rid, message))
    return out


def read_job(db: Path, *, nodes: int, rows: int, demo_s: float, stopped_ms: int | None = None) -> JobFigures:
    """The figures of the job in `db`; `stopped_ms`: when it was stopped unfinished (its wall time ends there)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    delivered = {r[0] for r in conn.execute("SELECT DISTINCT result_id FROM rows")}
    synth = _results(conn, "synthesize")
    generated = sum(len(r.output.rows) for _, r in synth if isinstance(r.output, SynthesizeOutput))
    generation_s = sum(r.stats.seconds for rid, r in synth if rid in delivered)
    stages = [str(s_[0]) for s_ in conn.execute("SELECT DISTINCT stage FROM tasks")]
    node_s = sum(r.stats.seconds for stage in stages for _, r in _results(conn, stage))
    created, updated = conn.execute("SELECT MIN(created_ms), MAX(updated_ms) FROM jobs").fetchone()
    all_tasks = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    drops = Counter(dict(conn.execute("SELECT reason, COUNT(*) FROM row_drops GROUP BY reason").fetchall()))
    verdicts = Counter(
        dict(
            conn.execute(
                "SELECT v.verdict || ':' || (CASE v.reason WHEN '' THEN 'ok' ELSE v.reason END), COUNT(*)"
                " FROM verdicts v JOIN results r ON r.result_id = v.result_id"
                " JOIN tasks t ON t.task_id = r.task_id WHERE t.stage = 'synthesize' GROUP BY 1"
            ).fetchall()
        )
    )
    accepted = conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
    tasks = conn.execute("SELECT COUNT(*) FROM tasks WHERE stage = 'synthesize'").fetchone()[0]
    conn.close()
    wall_s = ((stopped_ms if stopped_ms is not None else updated) - created) / 1000
    return JobFigures(
        nodes, rows, accepted, generated, tasks, all_tasks, demo_s, wall_s, generation_s, node_s, drops, verdicts,
        stopped=stopped_ms is not None,
    )  # fmt: skip


async def cheater_job(rows: int, honest: int, behaviour: str, workdir: Path, console: Console) -> set[str]:
    """One job with `honest` real nodes and one cheating node (tests/e2e/cheaters.py); returns the cheaters' ids.

    The store is left in `workdir`/coordinator for `verified_cost`. Same request and corpus as the demo.
    """
    clear_workdir(workdir)
    corpus = find_corpus(workdir, console)
    threads = max(1, (os.cpu_count() or 2) // honest)
    procs: list[subprocess.Popen[bytes]] = []
    with CorpusServer(corpus) as server:
        db = workdir / f"corpus-{hashlib.sha256(str(corpus).encode()).hexdigest()[:12]}.sqlite"
        if not db.exists():
            await index_corpus(corpus, db_path=db, base_url=server.base_url)
        cfg = CoordinatorConfig(
            key_path=workdir / "coordinator.key", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False, relay_hop=False,
            data_dir=workdir / "coordinator",
        )  # fmt: skip
        async with open_coordinator(cfg) as coord:
            addr, peer = coord.peer_addrs[0], coord.identity.peer_id
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            for i in range(honest):
                cmd = node_command(i, workdir, addr, peer, db, server.base_url, threads)
                procs.append(_spawn(cmd, workdir / f"node-{i}.log", env))
            cheat = [sys.executable, "-m", "tests.e2e.cheaters", "--bootstrap", addr, "--trust", peer,
                     "--workdir", str(workdir), behaviour]  # fmt: skip
            procs.append(_spawn(cheat, workdir / "cheaters.log", env))
            try:
                with trio.fail_after(300):
                    while len(coord.runtime.scheduler.node_statuses()) < honest + 1:
                        if any(p_.poll() is not None for p_ in procs):
                            raise SystemExit(f"a node process of the cheater job exited; see {workdir}/*.log")
                        await trio.sleep(0.5)
                out = workdir / f"dataset-cheat-{rows}r"
                shutil.rmtree(out, ignore_errors=True)
                jid = await coord.submit(DEFAULT_REQUEST, rows=rows, out_dir=out)
                console.print(f"job {jid}: {rows} rows, {honest} honest nodes + 1 {behaviour!r} cheater")
                final = await coord.wait(jid)
                if final.state != "done":
                    raise SystemExit(f"the job with a cheater did not finish: {final.state}")
                cheater = (workdir / f"{behaviour}.peer").read_text().strip()
                rep = coord.store.reputation(cheater)
                producers = {coord.store.result(r.result_id).node for r in coord.store.rows(jid)}
                caught = bool(rep and rep.blacklisted)
                print(f"   the {behaviour!r} cheater: blacklisted {caught}, results rejected "
                      f"{rep.rejected if rep else 0}, rows of its delivered: {int(cheater in producers)}")  # fmt: skip
                return {cheater}
            finally:
                stop_processes(procs)


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, env=env)


async def one_job(rows: int, nodes: int, workdir: Path, console: Console, cap_s: float | None) -> JobFigures:
    """One demo job; stopped after `cap_s` seconds (then reported as stopped) if that is given."""
    clear_workdir(workdir)
    out = workdir / f"dataset-{nodes}n-{rows}r"
    shutil.rmtree(out, ignore_errors=True)  # the previous run's dataset: a job refuses a non-empty output dir
    started = time.monotonic()
    with trio.move_on_after(cap_s if cap_s is not None else float("inf")) as scope:
        result = await run_demo(
            rows=rows, nodes=nodes, out=out, workdir=workdir, request=DEFAULT_REQUEST, console=console
        )
    wall = time.monotonic() - started
    db = workdir / "coordinator" / "coordinator.db"
    if scope.cancelled_caught:
        return read_job(db, nodes=nodes, rows=rows, demo_s=wall, stopped_ms=int(time.time() * 1000))
    if not result.verified:
        raise SystemExit(f"the {nodes}-node job did not deliver a verified dataset ({result.progress.state})")
    return read_job(db, nodes=nodes, rows=rows, demo_s=wall)


def report(figures: list[JobFigures], *, largest: Path, coordinator_ms: float) -> None:
    cores = os.cpu_count() or 1
    print("\nP4 and the scaling curve (dataswarm demo: real node processes, bundled SmolLM2-135M, local corpus)")
    print(f"{'nodes':>5} {'threads':>7} {'rows':>5} {'job s':>7} {'demo s':>7} {'rows/min':>9} {'cand/min':>9} "
          f"{'gen s':>7} {'P4':>6}")  # fmt: skip
    for f in figures:
        threads = max(1, cores // f.nodes)
        p4 = "-" if f.stopped else f"{f.p4:.2f}"
        note = "  stopped at the cap" if f.stopped else ""
        cand = 60 * f.rows_generated / f.wall_s
        print(f"{f.nodes:>5} {threads:>7} {f.rows_accepted:>5} {f.wall_s:>7.0f} {f.demo_s:>7.0f} "
              f"{f.rows_per_min:>9.2f} {cand:>9.2f} {f.generation_s:>7.0f} {p4:>6}{note}")  # fmt: skip
    if any(f.stopped and f.nodes == 1 for f in figures):
        print("   1 node: " + SINGLE_NODE)
    print("   job s: submitted -> done; demo s adds starting the nodes (model load, self-benchmark) and stopping")
    print("   rows/min = accepted rows / job s; cand/min = rows generated (before the quality gates) / job s, steadier")
    print("   on small jobs, where the share of rows the grounding gate drops swings; P4 = job s / raw generation")
    print("   seconds of the delivered rows' results")
    print("rows/min by node processes: " + ", ".join(f"{g.nodes}: {g.rows_per_min:.2f}" for g in figures))
    print("candidate rows/min by node processes: "
          + ", ".join(f"{g.nodes}: {60 * g.rows_generated / g.wall_s:.2f}" for g in figures))  # fmt: skip
    f = figures[-1]
    print(f"P4 of the last job: {f.p4:.2f} with {f.nodes} nodes, {f.rows_accepted} rows (goal <= 1.3 for 100 rows)")
    finished = [g for g in figures if not g.stopped]
    if len(finished) > 1:
        base = finished[0]
        ups = ", ".join(f"{g.nodes} nodes x{g.rows_per_min / base.rows_per_min:.2f}" for g in finished[1:])
        print(f"   speed-up over {base.nodes} node(s): {ups}")
        print(
            f"   this machine has {cores} cores: each node process gets cores / nodes llama.cpp threads (at least 1),"
        )
        print("   so the node processes share one fixed pool of cores. Beyond 1 node the added rate can only come")
        print("   from overlapping the coordinator's and the network's waits with generation; past one process per")
        print("   core the threads oversubscribe the cores (docs/notes/llama.md: 2 x 2 threads on 2 cores fell")
        print("   to 20 tok/s), so the curve saturates at 2 nodes here. Volunteers bring their own cores: see the")
        print("   projection below.")
    candidates = f.rows_generated
    print(f"\nrows of the last job ({f.nodes} nodes): requested {f.rows_requested}, generated {candidates} "
          f"in {f.synth_tasks} synthesize tasks ({f.all_tasks} in all), accepted {f.rows_accepted}")  # fmt: skip
    print("   row drops by reason: " + (", ".join(f"{k} {v}" for k, v in f.drops.most_common()) or "none"))
    print("   synthesize verdicts: " + ", ".join(f"{k} {v}" for k, v in f.verdicts.most_common()))
    if candidates:
        grounding = sum(f.drops[r] for r in GROUNDING_REASONS) / candidates
        dup = sum(f.drops[r] for r in DUPLICATE_REASONS) / candidates
        print(f"   grounding failures {grounding:.0%} of generated rows, duplicates {dup:.0%}")

    # Projection: steady state, one node per volunteer machine like this one.
    # A node of this machine running k node processes has 1/k of its cores: machine-seconds per row.
    best = min(finished or figures, key=lambda g: g.node_s_per_row / g.nodes)
    machine_s_per_row = best.node_s_per_row / best.nodes
    per_node = 60 / machine_s_per_row  # rows/min one never-idle machine like this one adds
    measured = max(finished or figures, key=lambda g: g.rows_per_min)
    tasks_per_row = f.all_tasks / f.rows_accepted if f.rows_accepted else float("inf")
    ceiling = 60_000 / (coordinator_ms * tasks_per_row)  # rows/min at 100% of one coordinator core
    print("\nprojection for N volunteer machines, each like this one running one node, never idle:")
    print(f"   per machine: {machine_s_per_row:.1f} s of its cores per accepted row ({best.nodes} node(s): every "
          f"result's node seconds / nodes; all stages,")  # fmt: skip
    print(f"   replicas, validations, dropped rows) -> {per_node:.2f} rows/min; measured whole-job rate here: "
          f"{measured.rows_per_min:.2f} rows/min ({measured.nodes} nodes)")  # fmt: skip
    print(f"   coordinator: {coordinator_ms:.2f} ms CPU per task (P3 in this run, node doubles) x {tasks_per_row:.1f} "
          f"tasks per row -> ceiling {ceiling:,.0f} rows/min on one core")  # fmt: skip
    print(f"   {'machines':>8} {'rows/hour':>12} {'coordinator CPU':>16}  limit")
    for n in (1, 10, 100, 1000, 10000):
        rate = min(n * per_node, ceiling)
        load = n * per_node / ceiling
        limit = "coordinator" if n * per_node >= ceiling else "nodes"
        print(f"   {n:>8} {60 * rate:>12,.0f} {min(load, 1):>15.0%}  {limit}")
    print("   assumes the job has enough open tasks for every node and gossip keeps up (P5)")
    verified_cost(largest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--nodes", default="2", help="comma-separated node counts, e.g. 1,2,4")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dataswarm-bench-pipeline"))
    parser.add_argument("--single-node-cap-s", type=float, default=150.0, help="time cap of a 1-node job")
    parser.add_argument("--cheat-rows", type=int, default=0, help="also run a job of this many rows with 25%% cheaters")
    parser.add_argument("--cheater", default="garbage", help="behaviour of the cheating node (tests/e2e/cheaters.py)")
    args = parser.parse_args()
    console = Console(stderr=True)
    figures = []
    for n in (int(x) for x in args.nodes.split(",")):
        cap = args.single_node_cap_s if n == 1 else None
        figures.append(trio.run(one_job, args.rows, n, args.workdir, console, cap))
        stopped = " (stopped at the cap)" if figures[-1].stopped else ""
        print(f"{n} node(s): {figures[-1].rows_accepted} rows in {figures[-1].wall_s:.0f} s{stopped}", flush=True)
    # The coordinator's cost per task for the projection, measured now (node doubles, no LLM).
    coordinator_ms = bench_overhead(500, 100).ms_per_task
    if args.rows < 100:
        print(f"\n(small jobs of {args.rows} rows: P4 and P2 goals are for 100 rows, measured by `make bench-full`"
              " or `python bench/pipeline.py --rows 100 --nodes 2`)")  # fmt: skip
    report(figures, largest=args.workdir / "coordinator" / "coordinator.db", coordinator_ms=coordinator_ms)
    if args.cheat_rows:
        honest = 3  # 1 cheater of 4 nodes: 25%
        print(f"\nP2 with 25% cheating nodes: {honest} honest nodes + 1 {args.cheater!r} cheater (a real node runtime"
              f" that returns fabricated rows: tests/e2e/cheaters.py), {args.cheat_rows} rows", flush=True)  # fmt: skip
        workdir = args.workdir / "cheat"
        cheaters = trio.run(cheater_job, args.cheat_rows, honest, args.cheater, workdir, console)
        verified_cost(workdir / "coordinator" / "coordinator.db", fabricated=cheaters)


if __name__ == "__main__":
    main()
