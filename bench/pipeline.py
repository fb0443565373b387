"""End-to-end figures of real jobs: P4, the scaling curve, and what a job's rows went through.

Each run is `dataswarm demo` in this process (a coordinator, K node processes with the bundled
model, the local corpus on 127.0.0.1), followed by a read of the coordinator's store:

- P4 = wall time of the job / sum of the raw generation seconds of the results whose rows were
  delivered (what one perfect, overhead-free generator would have spent). Goal <= 1.3.
- rows/minute for each node count in `--nodes` (the scaling curve); on a 2-core machine
  generation saturates the cores at 2 nodes, so more nodes add no rate there.
- rows requested / generated / accepted, rejections by reason, grounding and duplicate rates.
- a projection for N volunteer machines from the measured per-node rate.

Run: .venv/bin/python bench/pipeline.py [--rows 20] [--nodes 1,2,4]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import trio
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.coordinator import verified_cost
from cli.demo import DEFAULT_REQUEST, clear_workdir, run_demo
from protocol import encoding
from protocol.envelope import open_envelope
from protocol.messages import Result
from protocol.tasks import SynthesizeOutput

GROUNDING_REASONS = {"evidence_not_found", "unsupported_answer"}
DUPLICATE_REASONS = {"duplicate", "near_duplicate"}


@dataclass
class JobFigures:
    nodes: int
    rows_requested: int
    rows_accepted: int
    rows_generated: int
    synth_tasks: int
    wall_s: float
    generation_s: float
    drops: Counter[str]
    verdicts: Counter[str]

    @property
    def p4(self) -> float:
        return self.wall_s / self.generation_s if self.generation_s else float("inf")

    @property
    def rows_per_min(self) -> float:
        return 60 * self.rows_accepted / self.wall_s


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


def read_job(db: Path, *, nodes: int, rows: int, wall_s: float) -> JobFigures:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    delivered = {r[0] for r in conn.execute("SELECT DISTINCT result_id FROM rows")}
    synth = _results(conn, "synthesize")
    generated = sum(len(r.output.rows) for _, r in synth if isinstance(r.output, SynthesizeOutput))
    generation_s = sum(r.stats.seconds for rid, r in synth if rid in delivered)
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
    return JobFigures(nodes, rows, accepted, generated, tasks, wall_s, generation_s, drops, verdicts)


async def one_job(rows: int, nodes: int, workdir: Path, console: Console) -> JobFigures:
    clear_workdir(workdir)
    out = workdir / f"dataset-{nodes}n-{rows}r"
    started = time.monotonic()
    result = await run_demo(rows=rows, nodes=nodes, out=out, workdir=workdir, request=DEFAULT_REQUEST, console=console)
    wall = time.monotonic() - started
    if not result.verified:
        raise SystemExit(f"the {nodes}-node job did not deliver a verified dataset ({result.progress.state})")
    return read_job(workdir / "coordinator" / "coordinator.db", nodes=nodes, rows=rows, wall_s=wall)


def report(figures: list[JobFigures], *, largest: Path) -> None:
    print("\nP4 and the scaling curve (dataswarm demo, bundled SmolLM2-135M, local corpus)")
    print(f"{'nodes':>5} {'rows':>5} {'wall s':>8} {'rows/min':>9} {'gen s':>7} {'P4':>6}")
    for f in figures:
        print(f"{f.nodes:>5} {f.rows_accepted:>5} {f.wall_s:>8.0f} {f.rows_per_min:>9.2f} "
              f"{f.generation_s:>7.0f} {f.p4:>6.2f}")  # fmt: skip
    print("   P4 = job wall time / raw generation seconds of the delivered rows' results (goal <= 1.3)")
    best = max(figures, key=lambda f: f.rows_per_min)
    f = figures[-1]
    candidates = f.rows_generated
    print(f"\nrows of the last job ({f.nodes} nodes): requested {f.rows_requested}, generated {candidates} "
          f"in {f.synth_tasks} synthesize tasks, accepted {f.rows_accepted}")  # fmt: skip
    print("   row drops by reason: " + (", ".join(f"{k} {v}" for k, v in f.drops.most_common()) or "none"))
    print("   synthesize verdicts: " + ", ".join(f"{k} {v}" for k, v in f.verdicts.most_common()))
    if candidates:
        grounding = sum(f.drops[r] for r in GROUNDING_REASONS) / candidates
        dup = sum(f.drops[r] for r in DUPLICATE_REASONS) / candidates
        print(f"   grounding failures {grounding:.0%} of generated rows, duplicates {dup:.0%}")
    per_machine = best.rows_per_min  # this whole 2-core machine, at its best node count
    print(f"\nprojection from {per_machine:.2f} rows/min for this 2-core machine ({best.nodes} node processes),")
    print("   one such machine per volunteer, the coordinator far from its limit (bench/coordinator.py):")
    for n in (10, 100, 1000):
        print(f"   {n:>5} volunteer machines: ~{per_machine * n * 60:,.0f} verified rows/hour")
    verified_cost(largest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--nodes", default="2", help="comma-separated node counts, e.g. 1,2,4")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dataswarm-bench-pipeline"))
    args = parser.parse_args()
    console = Console(stderr=True)
    figures = []
    for n in (int(x) for x in args.nodes.split(",")):
        figures.append(trio.run(one_job, args.rows, n, args.workdir, console))
        print(f"{n} node(s): {figures[-1].rows_accepted} rows in {figures[-1].wall_s:.0f} s", flush=True)
    report(figures, largest=args.workdir / "coordinator" / "coordinator.db")


if __name__ == "__main__":
    main()
