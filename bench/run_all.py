"""Run every benchmark in sequence and write bench/RESULTS.md (what `make bench` does).

Run: .venv/bin/python bench/run_all.py [--full] [--only NAME,...] [--out PATH]

Each benchmark runs as its own process (a fresh interpreter, so none inherits another's
threads, models or sockets); its stdout is shown live and recorded with its wall time, and
its stderr is shown live and recorded only when it fails. RESULTS.md then holds the date,
the machine (CPU model, cores, RAM, load), the git commit, the command, a table of the
headline figures against their goals, and each benchmark's whole output. Everything under a
`## Notes` heading in the existing RESULTS.md is kept as it is (hand-written analysis).

The settings fit the whole run in under 20 minutes on a 2-core machine. The pipeline jobs
(P4, scaling curve, P2) are small there, so per-job fixed costs weigh on them, and 1000
in-process hosts rarely connect within the budget on 2 cores. `--full` (`make bench-full`,
about an hour on 2 cores, written to bench/RESULTS-full.md) runs what the goals are stated
for: the 100-row job of P4/P2 with 2 nodes, a 20-row job with 25% cheating nodes, and the
1000-host gossip network without a time budget. The quality section only reports: its rows
and hand labels are cached in bench/quality/ (`python bench/quality.py generate` makes new ones).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
NOTES_HEADING = "## Notes"


@dataclass(frozen=True)
class Bench:
    name: str
    what: str
    argv: list[str]


def benches(full: bool) -> list[Bench]:
    if full:
        return [
            Bench(
                "network",
                "P5 gossip delivery at 1000 in-process hosts, no time budget",
                [PY, "bench/network.py", "--skip-processes", "--sizes", "1000", "--messages", "5"],
            ),
            Bench(
                "pipeline",
                "P4 and P2 on a 100-row job with 2 nodes; P2 with 25% cheating nodes",
                [PY, "bench/pipeline.py", "--rows", "100", "--nodes", "2", "--cheat-rows", "20",
                 "--workdir", "/tmp/dataswarm-bench-full"],
            ),
        ]  # fmt: skip
    return [
        Bench("protocol", "envelope encode+sign / verify+decode rates", [PY, "bench/protocol.py", "--seconds", "1"]),
        Bench(
            "coordinator",
            "P3 coordinator CPU per task with 100 node doubles (and with an fsync per commit)",
            [PY, "bench/coordinator.py", "--tasks", "2000", "--nodes", "100"],
        ),
        Bench(
            "coordinator_curve",
            "P3 by job size: one job of 1k, 5k and 10k tasks through the real scheduler and store (node doubles)",
            [PY, "bench/coordinator.py", "--curve", "1000,5000,10000", "--nodes", "100"],
        ),
        Bench(
            "two_coordinators",
            "two coordinators sharing 3 node processes: each job's rows/min alone and side by side",
            [PY, "bench/two_coordinators.py", "--rows", "6", "--nodes", "3"],
        ),
        Bench(
            "network",
            "P5 gossip delivery: 5 processes, then 50/200/1000 in-process hosts (60 s to start and connect each)",
            [PY, "bench/network.py", "--quick", "--sizes", "50,200,1000", "--messages", "4", "--budget-s", "60"],
        ),
        Bench("retrieval", "index, extraction, retrieval, local search", [PY, "bench/retrieval.py", "--pages", "40"]),
        Bench("spot_checks", "spot-check rate vs catch rate (doubles)", [PY, "bench/spot_checks.py", "--runs", "50"]),
        Bench(
            "node",
            "P1 network path vs raw llama-cpp-python; engine, grammar, validation",
            [PY, "bench/node.py", "--sections", "network,llm", "--prompts", "3", "--rounds", "2", "--repeats", "1"],
        ),
        Bench(
            "pipeline",
            "P4, rows/min for 1/2/4 node processes, projection, P2 (honest, and 25% cheating nodes)",
            [PY, "bench/pipeline.py", "--rows", "8", "--nodes", "1,2,4", "--single-node-cap-s", "60",
             "--cheat-rows", "3"],
        ),
        Bench(
            "quality",
            "row precision of the old and new pipelines and of each gate, against hand labels (cached rows)",
            [PY, "bench/quality.py", "report"],
        ),
    ]  # fmt: skip


# Headline figures: (label, goal, pattern on the benchmark's stdout); the first group is the value.
FIGURES: list[tuple[str, str, str, str]] = [
    ("node", "P1 network path / raw llama-cpp-python tok/s", ">= 0.95", r"P1 = network / raw: ([\d.]+)"),
    ("pipeline", "P2 verified cost, honest nodes", "<= 1.15", r"honest nodes\n.*one generation = ([\d.]+)"),
    ("pipeline", "P2 verified cost, 25% cheating nodes", "", r"as no compute\n.*one generation = ([\d.]+)"),
    ("coordinator", "P3 coordinator CPU ms/task (store default)", "<= 2", r"([\d.]+) ms coordinator CPU per task"),
    ("coordinator", "P3 tasks/s (store default)", ">= 500", r"([\d.]+) tasks/s \(goal"),
    ("coordinator", "P3 tasks/s with an fsync per commit (FULL)", "", r"synchronous=FULL:\n.*\n\s+([\d.]+) tasks/s"),
    ("coordinator_curve", "P3 CPU per task, 10k-task job / 1k-task job", "flat (~1.0)", r"CPU per task ([\d.]+)x"),
    ("coordinator_curve", "store size per task, 10k / 1k", "flat (~1.0)", r"store per task ([\d.]+)x"),
    (
        "pipeline",
        "P4 job wall / generation, last job",
        "<= 1.3 (100 rows)",
        r"P4 of the last job: ([\d.]+ with \d+ nodes, \d+ rows)",
    ),
    ("network", "P5 gossip at 50 hosts", "", r"P5 50 hosts: gossip delivery (p50 \d+ ms, p95 \d+ ms)"),
    ("network", "P5 gossip at 200 hosts", "", r"P5 200 hosts: gossip delivery (p50 \d+ ms, p95 \d+ ms)"),
    ("network", "P5 gossip at 1000 hosts", "p95 <= 250 ms", r"P5 1000 hosts: gossip delivery (p50 \d+ ms, p95 \d+ ms)"),
    ("pipeline", "accepted rows/min by node processes", "", r"^rows/min by node processes: (.*)"),
    ("pipeline", "candidate rows/min by node processes", "", r"candidate rows/min by node processes: (.*)"),
    ("pipeline", "projected rows/hour, 100 volunteer machines", "", r"^\s+100\s+([\d,]+)\s"),
    ("pipeline", "projected rows/hour, 1000 volunteer machines", "", r"^\s+1000\s+([\d,]+)\s"),
    ("quality", "precision of accepted rows, new pipeline (hand labels)", "", r"^quality new: (.*)"),
    ("quality", "precision of accepted rows, old pipeline (hand labels)", "", r"^quality old: (.*)"),
]


def machine() -> list[str]:
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    flags = set(info.get("flags", "").split())
    simd = [f for f in ("avx", "avx2", "fma", "f16c", "avx512f") if f in flags]
    return [
        f"- CPU: {info.get('model name', platform.processor() or '?')} ({', '.join(simd) or 'no AVX'}), "
        f"{os.cpu_count()} logical cores",
        f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB; load average at start {load}",
        f"- OS: {platform.platform()}; Python {platform.python_version()}; llama-cpp-python {_llama_version()}",
    ]


def _llama_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:
        return "?"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def _pump(stream: IO[str], sink: IO[str], keep: list[str] | None) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()
        if keep is not None:
            keep.append(line)


def run(bench: Bench) -> tuple[str, str, float, int]:
    """Run one benchmark, echoing it live; returns (stdout, stderr tail, wall seconds, exit code)."""
    print(f"\n=== {bench.name}: {bench.what}\n$ {shlex.join(_shown(bench.argv))}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    proc = subprocess.Popen(bench.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, out), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, err), daemon=True),
    ]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join()
    wall = time.perf_counter() - started
    print(f"=== {bench.name}: exit {code}, {wall:.0f} s", flush=True)
    return "".join(out), "".join(err[-40:]), wall, code


def _shown(argv: list[str]) -> list[str]:
    return [".venv/bin/python" if a == PY else a for a in argv]


def summary(outputs: dict[str, str]) -> list[str]:
    rows = ["| figure | result | goal |", "|---|---|---|"]
    for bench, label, goal, pattern in FIGURES:
        m = re.search(pattern, outputs.get(bench, ""), re.M)
        value = m.group(1) if m else "not measured"
        rows.append(f"| {label} | {value} | {goal or '-'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the 100-row pipeline job (P4, P2) instead of 1/2/4 nodes")
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    selected = benches(args.full)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {b.name for b in selected}
        if unknown:
            parser.error(
                f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(b.name for b in selected)}"
            )
        selected = [b for b in selected if b.name in wanted]
    command = "make bench-full" if args.full else "make bench"
    if args.only:
        command = f".venv/bin/python bench/run_all.py{' --full' if args.full else ''} --only {args.only}"
    started = time.perf_counter()
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = machine()
    outputs: dict[str, str] = {}
    sections: list[str] = []
    failed = []
    for bench in selected:
        out, err, wall, code = run(bench)
        outputs[bench.name] = out
        status = f"{wall:.0f} s" + ("" if code == 0 else f", FAILED with exit code {code}")
        if code != 0:
            failed.append(bench.name)
        block = [f"### {bench.name}: {bench.what}", "", f"`{shlex.join(_shown(bench.argv))}`: {status}", ""]
        block += ["```", out.rstrip() or "(no output)", "```"]
        if code != 0 and err.strip():
            block += ["", "stderr (last lines):", "", "```", err.rstrip(), "```"]
        sections.append("\n".join(block))
    total = time.perf_counter() - started
    notes = ""
    if args.out.exists():
        old = args.out.read_text(encoding="utf-8")
        at = old.find("\n" + NOTES_HEADING)
        if at >= 0:
            notes = old[at + 1 :].rstrip() + "\n"
    doc = [
        "# Benchmark results",
        "",
        f"Written by `{command}` (bench/run_all.py) on {when}, in {total / 60:.1f} min; commit {git_commit()}.",
        "Every ratio is measured side by side in the same run; absolute rates depend on the machine and on",
        "whatever else it ran at the time (the load average below), so compare figures from one run only.",
        "",
        *head,
        "",
        "## Headline figures",
        "",
        *summary(outputs),
        "",
        "## Output of each benchmark",
        "",
        "\n\n".join(sections),
        "",
    ]
    if notes:
        doc += [notes]
    args.out.write_text("\n".join(doc), encoding="utf-8")
    print(f"\nwrote {args.out} ({total / 60:.1f} min in all)" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
