"""Two coordinators on one network, sharing one set of nodes: each job's rows per minute alone and side by side.

Real processes on loopback, as in tests/e2e/test_two_coordinators_e2e.py: two coordinators in this process
(each its own key, store and libp2p host), and `--nodes` `dataswarm node start` processes with the bundled
model (1 thread, 1 slot each) that trust both. On the same warm network it runs coordinator A's job alone,
then B's alone, then both at once, and prints each job's rows/min in the three runs. A node shares its
slots by node/sharing.py (a freed slot pulls from the coordinator with work that it has served least), so
side by side each job should get about half the network: rows/min near half of its rows/min alone, and
neither near zero. Ungrounded jobs, so the figure is generation and validation, not retrieval.

Run: .venv/bin/python bench/two_coordinators.py [--rows 6] [--nodes 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from cli.demo import node_command, stop_processes
from coordinator.config import CoordinatorConfig
from coordinator.service import open_coordinator

KINDS = ["--kind", "spec", "--kind", "question_gen", "--kind", "synthesize", "--kind", "validate"]
REQUESTS = {
    "a": "question-answer pairs about Python lists and dictionaries, JSON with question and answer",
    "b": "question-answer pairs about Python strings and text files, JSON with question and answer",
}


def _config(work: Path, name: str) -> CoordinatorConfig:
    return CoordinatorConfig(
        key_path=work / f"coordinator-{name}.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=work / f"coordinator-{name}",
    )


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="dataswarm-two-coordinators-"))
    procs: list[subprocess.Popen[bytes]] = []
    async with open_coordinator(_config(work, "a")) as a, open_coordinator(_config(work, "b")) as b:
        coords = {"a": a, "b": b}
        for i in range(args.nodes):
            cmd = node_command(i, work, a.peer_addrs[0], a.identity.peer_id, work / "none.sqlite",
                               "http://127.0.0.1:1/", 1)  # fmt: skip
            cmd += ["--bootstrap", b.peer_addrs[0], "--trust", b.identity.peer_id, *KINDS]
            with open(work / f"node-{i}.log", "ab") as log:  # the child keeps its own copy of the descriptor
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        try:
            with trio.fail_after(300):
                while min(len(c.runtime.scheduler.node_statuses()) for c in coords.values()) < args.nodes:
                    await trio.sleep(1)
            rates: dict[str, dict[str, float]] = {"a": {}, "b": {}}
            run_no = 0

            async def job(name: str, phase: str) -> None:
                nonlocal run_no
                run_no += 1
                started = time.monotonic()
                out = work / f"dataset-{name}-{run_no}"
                job_id = await coords[name].submit(REQUESTS[name], rows=args.rows, out_dir=out)
                final = await coords[name].wait(job_id)
                minutes = (time.monotonic() - started) / 60
                rates[name][phase] = final.rows / minutes
                print(f"{phase:>8}: job {name} {final.state}, {final.rows} rows in {minutes:.2f} min", flush=True)

            for name in coords:
                await job(name, "alone")
            async with trio.open_nursery() as nursery:
                for name in coords:
                    nursery.start_soon(job, name, "together")
        finally:
            stop_processes(procs)
    print(f"\n{args.nodes} nodes (1 slot each) trusting both coordinators, {args.rows}-row ungrounded jobs:")
    for name, r in rates.items():
        share = r["together"] / r["alone"] if r["alone"] else float("nan")
        print(f"job {name}: {r['alone']:.2f} rows/min alone, {r['together']:.2f} side by side ({share:.2f} of alone)")
    total = sum(r["together"] for r in rates.values()) / (sum(r["alone"] for r in rates.values()) / 2)
    print(f"both together: {total:.2f} of one job's mean rate alone (1.0: the network's throughput is kept)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--nodes", type=int, default=3)
    trio.run(main, p.parse_args())
