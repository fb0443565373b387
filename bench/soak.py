"""Soak: one long job on the real network under churn, and what it leaves behind.

What runs: real OS processes on loopback only. A coordinator (`dataswarm coordinator start --request …
--job-id soak-1`, the demo's request over the python3.11-doc corpus, served by an in-process CorpusServer and
indexed for the `local` search backend) and `--nodes` `dataswarm node start` processes with the bundled
SmolLM2 model (cli.demo.node_command, one llama.cpp thread each on this 2-core machine). For `--minutes`:

- every `--kill-every` seconds one node (round robin) is SIGKILLed and started again at once, same key and
  data directory (the first kill half a period in, so kills fall between the per-minute samples);
- the coordinator is kill -9ed `--coordinator-kills` times, spread evenly over the run (at i/(k+1) of it,
  plus 15 s), and started again at once with the same command: it resumes the same job from its store;
- the last node's wall clock is `--skew-s` seconds off. That is bench/soak_clock/sitecustomize.py, a
  bench-only double for a wrong system clock: that folder goes first on that node's PYTHONPATH and shifts
  its `time.time`/`time.time_ns` (monotonic clocks, which trio uses, are untouched, as on a real machine).
  The soak checks it took effect twice: a pre-flight `python -c` under the same environment, and on the
  wire at the end (the `issued_at` of that node's signed Result envelopes against the coordinator's
  `received_ms` of them, per node, from the store).

If the job is delivered before the time is up, the next one (`soak-2`, …, same row count, its own output
folder) is started, so the network never idles. When the churn is over, the job still running gets up to
`--drain-minutes` (no more kills) to be delivered, so that its dataset can be verified; then everything is
stopped with SIGINT. A node or coordinator process that dies without being killed is started again and
counted. `--rows` is sized so that the first job takes most of the 30 minutes here (see `DEFAULT_ROWS`).

Measured every minute (printed, and in the JSON): coordinator RSS (VmRSS of the current coordinator pid:
restarts are followed), store size (coordinator.db + -wal + -shm + blobs/ under the coordinator's data
dir), rows accepted so far (all soak jobs), RSS per row and store bytes per row. The store's `rows` table
is read read-only (WAL) every 5 s and right before and after each coordinator kill; every row ever seen
is remembered by (job, task, idx) with its result id and digest.

Every process runs from a copy of the source packages taken at start (`WORKDIR/src`; `--no-copy` runs the
working tree): a node restarted every minute imports the code again, and an edit made during the run must
not reach some processes and not others.

Invariants at the end (any failing one makes the exit status 1):
- rows accepted > 0;
- rows lost = 0: a row seen accepted at any time that the final store lacks or holds with another
  result/digest, plus rows of a delivered dataset's first N store rows that the dataset lacks;
- rows accepted twice = 0: in the final store the same (task, idx) twice, one task's rows from two results,
  or the same row digest twice in a job; in each delivered dataset the same (task, output_row) or the same
  row digest twice in provenance.jsonl;
- credit lost = 0: an ACCEPTED receipt in a node's ledger (signature re-checked) whose result the store lacks;
- none of the (all honest) nodes blacklisted, from the store's `reputation` table;
- the coordinator never exited on its own except after delivering a job, and no job failed;
- every delivered dataset passes `coordinator.compile.verify_directory`;
- the clock skew is seen on the wire: the skewed node's median issued_at - received_ms is within 5 s
  of --skew-s, the other nodes' within 5 s of 0;
- flat per row: store bytes per row at the end <= 1.25 x its value at half time (a flat store amortises its
  fixed part, so this only grows if each row costs more than the last), and the last coordinator's RSS at
  the end <= 1.5 x the first coordinator's peak (a restarted coordinator that reloads a store with more
  rows must not need more memory for them). Not measured (and not failed) before two samples have rows.

Run (30 minutes of churn with defaults, up to 10 more for the last job to be delivered):
    .venv/bin/python bench/soak.py [--minutes 30] [--nodes 4] [--kill-every 60] [--coordinator-kills 2]
                                   [--skew-s 20] [--rows N] [--drain-minutes 10] [--workdir DIR]
                                   [--json-out FILE] [--no-copy]
    make soak SOAK_ARGS="--minutes 4 --kill-every 45 --coordinator-kills 1"
A smoke run: `--minutes 4 --kill-every 45 --coordinator-kills 1`. The workdir (default a new folder in
/tmp) keeps every process's log, the store and the datasets; a reused one keeps only its corpus index.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from cli.demo import DEBIAN_DOCS, DEFAULT_REQUEST, node_command  # noqa: E402
from coordinator.compile import verify_directory  # noqa: E402
from node.ledger import ReceiptLedger  # noqa: E402
from node.search.corpus import index_corpus  # noqa: E402
from node.search.corpus_server import CorpusServer  # noqa: E402
from protocol import encoding  # noqa: E402
from protocol.identity import Identity  # noqa: E402
from protocol.keyfile import load_or_create_identity, save_identity  # noqa: E402
from protocol.messages import Verdict  # noqa: E402

SHIM_DIR = ROOT / "bench" / "soak_clock"
PACKAGES = ("cli", "coordinator", "network", "node", "protocol")
SKEW_ENV = "DATASWARM_SOAK_CLOCK_SKEW_S"
DEFAULT_ROWS = 40
"""Rows per job. Measured on this 2-core machine (4 nodes, default churn, load average 7-10 from other work):
a 40-row job ran 29.2 of the 30 minutes and ended partial with 33 rows (its sources offered 70 answer
sentences, each tried twice); a 4-minute smoke run got 6 rows. A job that ends earlier is followed by the next."""
ROW_POLL_S = 5.0
SAMPLE_S = 60.0
STOP_GRACE_S = 15.0
SKEW_TOLERANCE_MS = 5_000
STORE_FLAT_FACTOR = 1.25
RSS_FLAT_FACTOR = 1.5
MAX_UNEXPECTED_RESTARTS = 10
"""Of one process (a node or the coordinator) before the soak gives up on it."""

RowKey = tuple[str, str, int]
"""(job_id, task_id, idx) of an accepted row."""
RowValue = tuple[int, str]
"""(result_id, row_sha256) of an accepted row."""


# --- processes -------------------------------------------------------------------------------------------


@dataclass
class Managed:
    """One OS process the soak starts, kills and restarts (in its own process group)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    unexpected_exits: list[int] = field(default_factory=list)
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in close())
        self._log.write(f"\n=== soak: start #{self.starts + 1} at {time.strftime('%H:%M:%S')} ===\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.cwd, env=self.env
        )
        self.starts += 1

    def kill9(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.kills += 1
        self.popen.wait()

    def stop(self) -> int | None:
        """SIGINT (a clean shutdown), SIGKILL after STOP_GRACE_S; the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int | None) -> int | None:
    """VmRSS of `pid` from /proc (psutil where /proc has no such file); None if it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None  # a zombie has no VmRSS
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


# --- the store, read-only ------------------------------------------------------------------------------


@contextlib.contextmanager
def read_only(db: Path, *, immutable: bool = False) -> Iterator[sqlite3.Connection]:
    """A read-only connection (WAL lets it read while the coordinator writes). `immutable` for a stopped one."""
    uri = f"file:{db}?immutable=1" if immutable else f"file:{db}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def query(db: Path, sql: str, params: tuple[Any, ...] = (), *, immutable: bool = False) -> list[tuple[Any, ...]] | None:
    """Rows of `sql`, or None when the store cannot be read now (missing, schema not there yet, locked)."""
    if not db.exists():
        return None
    try:
        with read_only(db, immutable=immutable) as conn:
            return conn.execute(sql, params).fetchall()
    except sqlite3.Error:
        return None


def final_query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """`query` on a store nobody writes any more: read-only, else immutable; [] if neither opens it."""
    got = query(db, sql, params)
    if got is None:
        got = query(db, sql, params, immutable=True)
    return got or []


def row_snapshot(db: Path, *, immutable: bool = False) -> dict[RowKey, RowValue] | None:
    """Every accepted row in the store, or None when it cannot be read now (never mistaken for 'no rows')."""
    got = query(db, "SELECT job_id, task_id, idx, result_id, row_sha256 FROM rows", immutable=immutable)
    if got is None:
        return None
    return {(str(j), str(t), int(i)): (int(r), str(s)) for j, t, i, r, s in got}


def store_bytes(data_dir: Path) -> int:
    """coordinator.db, its -wal and -shm, and every file under blobs/."""
    total = 0
    for name in ("coordinator.db", "coordinator.db-wal", "coordinator.db-shm"):
        with contextlib.suppress(OSError):
            total += (data_dir / name).stat().st_size
    blobs = data_dir / "blobs"
    if blobs.is_dir():
        for path in blobs.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    total += path.stat().st_size
    return total


# --- records -------------------------------------------------------------------------------------------


@dataclass
class Sample:
    minute: int
    elapsed_s: float
    coordinator_pid: int | None
    rss_bytes: int | None
    store_bytes: int
    rows: int
    nodes_up: int
    events: list[str]

    @property
    def rss_per_row(self) -> float | None:
        return self.rss_bytes / self.rows if self.rss_bytes is not None and self.rows else None

    @property
    def store_per_row(self) -> float | None:
        return self.store_bytes / self.rows if self.rows else None


@dataclass
class CoordinatorKill:
    at_s: float
    pid: int
    rows_before: int
    rows_after: int
    restarted_pid: int
    killed_unix_ms: int
    first_new_row_s: float | None = None
    """Seconds from the kill to the first row accepted after it (None: none before the next kill or end).
    Rows come only when a task's last check is in, so this also measures how far the job was from its next row."""
    first_result_s: float | None = None
    """Seconds from the kill to the first Result the restarted coordinator recorded (store's received_ms):
    how long the network was without a coordinator, start-up and the nodes' reconnection included."""


@dataclass
class Job:
    job_id: str
    out: Path
    started_s: float
    finished_s: float | None = None
    state: str = "running"


@dataclass
class Check:
    name: str
    ok: bool
    value: Any
    detail: str = ""


# --- the soak ------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path, src: Path, base_url: str, index: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.src = src
        self.data = workdir / "coordinator"
        self.db = self.data / "coordinator.db"
        self.coordinator_identity = Identity.generate()
        key = workdir / "coordinator.key"
        save_identity(self.coordinator_identity, key)
        self.port = free_port()
        addr = f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.coordinator_identity.peer_id}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DATASWARM_")}
        self.env = clean | {"PYTHONPATH": str(src), "PYTHONFAULTHANDLER": "1"}
        (workdir / "coordinator.toml").write_text("# the soak's coordinator: defaults only\n")
        (workdir / "node.toml").write_text("# the soak's nodes: defaults only\n")
        self.base_coordinator_cmd = [
            sys.executable,
            "-m",
            "cli",
            "coordinator",
            "start",
            "--config",
            str(workdir / "coordinator.toml"),
            "--no-mdns",
            "--listen",
            f"/ip4/127.0.0.1/tcp/{self.port}",
            "--data-dir",
            str(self.data),
            "--key",
            str(key),
            "--api",
            "127.0.0.1:0",
            "--request",
            DEFAULT_REQUEST,
            "--rows",
            str(args.rows),
        ]
        threads = max(1, (os.cpu_count() or 2) // args.nodes)
        self.skewed = args.nodes - 1 if args.skew_s else None
        self.node_ids: list[str] = []
        self.nodes: list[Managed] = []
        for i in range(args.nodes):
            home = workdir / f"node-{i}"
            self.node_ids.append(load_or_create_identity(home / "node.key").peer_id)
            cmd = node_command(i, workdir, addr, self.coordinator_identity.peer_id, index, base_url, threads)
            env = dict(self.env)
            if i == self.skewed:
                env["PYTHONPATH"] = f"{shim_dir(src)}{os.pathsep}{src}"
                env[SKEW_ENV] = repr(float(args.skew_s))
            self.nodes.append(
                Managed(
                    f"node-{i}", [*cmd, "--config", str(workdir / "node.toml")], env, workdir / f"node-{i}.log", src
                )
            )
        self.jobs: list[Job] = []
        self.coordinator = self._coordinator_for_next_job(0.0)
        self.seen: dict[RowKey, RowValue] = {}
        self.first_seen_s: dict[RowKey, float] = {}
        self.changed: list[str] = []
        self.vanished_midway: set[RowKey] = set()
        self.last_snapshot: dict[RowKey, RowValue] = {}
        self.samples: list[Sample] = []
        self.events: list[tuple[float, str]] = []
        self.coordinator_kills: list[CoordinatorKill] = []
        self.coordinator_crashes: list[str] = []
        self.node_kills = 0
        self.t0 = 0.0
        self.ended_s = 0.0

    # -- helpers --

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str) -> None:
        at = self.now()
        self.events.append((at, text))
        print(f"  [{at / 60:5.1f} min] {text}", flush=True)

    def _coordinator_for_next_job(self, at_s: float) -> Managed:
        n = len(self.jobs) + 1
        job = Job(f"soak-{n}", self.workdir / f"dataset-{n}", at_s)
        self.jobs.append(job)
        cmd = [*self.base_coordinator_cmd, "--out", str(job.out), "--job-id", job.job_id]
        return Managed("coordinator", cmd, self.env, self.workdir / "coordinator.log", self.src)

    def snapshot(self) -> dict[RowKey, RowValue] | None:
        snap = row_snapshot(self.db)
        if snap is None:
            return None
        at = self.now()
        for key, value in snap.items():
            old = self.seen.get(key)
            if old is None:
                self.seen[key] = value
                self.first_seen_s[key] = at
            elif old != value:
                self.changed.append(f"{key}: {old} -> {value} at {at:.0f} s")
                self.seen[key] = value
        self.vanished_midway |= set(self.last_snapshot) - set(snap)
        self.last_snapshot = snap
        for kill in self.coordinator_kills:
            if kill.first_new_row_s is None and len(snap) > kill.rows_after:
                kill.first_new_row_s = at - kill.at_s
        return snap

    def job_state(self, job_id: str) -> str | None:
        got = query(self.db, "SELECT state FROM jobs WHERE job_id = ?", (job_id,))
        return str(got[0][0]) if got else None

    def sample(self, minute: int, events: list[str]) -> Sample:
        pid = self.coordinator.pid if self.coordinator.alive() else None
        s = Sample(
            minute=minute,
            elapsed_s=round(self.now(), 1),
            coordinator_pid=pid,
            rss_bytes=rss_bytes(pid),
            store_bytes=store_bytes(self.data),
            rows=len(self.seen),
            nodes_up=sum(n.alive() for n in self.nodes),
            events=events,
        )
        self.samples.append(s)
        print(sample_line(s), flush=True)
        return s

    # -- churn --

    def kill_node(self, i: int) -> None:
        node = self.nodes[i]
        pid = node.pid
        node.kill9()
        node.start()
        self.node_kills += 1
        skewed = ", skewed clock" if i == self.skewed else ""
        self.event(f"kill -9 node-{i} (pid {pid}{skewed}); restarted as pid {node.pid}")

    def kill_coordinator(self) -> None:
        before = self.snapshot()
        pid = self.coordinator.pid or 0
        self.coordinator.kill9()
        killed_ms = time.time_ns() // 1_000_000
        at = round(self.now(), 1)
        after = self.snapshot()  # what the store kept: every row seen before must still be there
        self.coordinator.start()
        kill = CoordinatorKill(
            at_s=at,
            pid=pid,
            rows_before=len(before) if before is not None else -1,
            rows_after=len(after) if after is not None else -1,
            restarted_pid=self.coordinator.pid or 0,
            killed_unix_ms=killed_ms,
        )
        self.coordinator_kills.append(kill)
        self.event(
            f"kill -9 coordinator (pid {pid}, {kill.rows_after} rows in the store); restarted as pid "
            f"{kill.restarted_pid}"
        )

    def watch_processes(self, *, chain: bool = True) -> bool:
        """Restart what died on its own; a coordinator that delivered its job goes on with the next one
        (`chain`). True when the last job has been delivered and no next one was started."""
        for i, node in enumerate(self.nodes):
            if node.popen is not None and node.popen.poll() is not None:
                code = node.popen.returncode
                node.unexpected_exits.append(code)
                self.event(f"node-{i} exited on its own (code {code}); restarting it. Log tail:\n{node.tail(800)}")
                if len(node.unexpected_exits) > MAX_UNEXPECTED_RESTARTS:
                    raise SoakAbort(f"node-{i} keeps exiting; see {node.log_path}")
                node.start()
        c = self.coordinator
        if self.jobs[-1].finished_s is not None:
            return True
        if c.popen is None or c.popen.poll() is None:
            return False
        code = c.popen.returncode
        job = self.jobs[-1]
        state = self.job_state(job.job_id)
        if code == 0 and state in ("done", "partial"):
            self.snapshot()
            job.finished_s, job.state = round(self.now(), 1), state
            took = (job.finished_s - job.started_s) / 60
            self.event(f"job {job.job_id} {state} after {took:.1f} min" + ("; starting the next job" if chain else ""))
            if not chain:
                return True
            c.close()
            self.coordinator = self._coordinator_for_next_job(self.now())
            self.coordinator.start()
            return False
        msg = f"coordinator exited on its own (code {code}, job {job.job_id} {state})"
        self.coordinator_crashes.append(msg)
        c.unexpected_exits.append(code)
        self.event(f"{msg}; restarting it. Log tail:\n{c.tail(1500)}")
        if state == "failed":
            job.state = "failed"
            c.close()
            self.coordinator = self._coordinator_for_next_job(self.now())
        elif len(c.unexpected_exits) > MAX_UNEXPECTED_RESTARTS:
            raise SoakAbort(f"the coordinator keeps exiting; see {c.log_path}")
        self.coordinator.start()
        return False

    def run(self) -> None:
        args = self.args
        total = args.minutes * 60.0
        drain_until = total + args.drain_minutes * 60.0
        self.t0 = time.monotonic()
        self.coordinator.start()
        for node in self.nodes:
            node.start()
        print(
            f"coordinator {self.coordinator_identity.peer_id} on 127.0.0.1:{self.port}; "
            f"{args.nodes} nodes; job {self.jobs[0].job_id}: {args.rows} rows",
            flush=True,
        )
        print(sample_header(), flush=True)
        kill_times = [total * (j + 1) / (args.coordinator_kills + 1) + 15.0 for j in range(args.coordinator_kills)]
        next_node_kill = args.kill_every / 2
        next_poll, minute, victim = 0.0, 0, 0
        minute_events: list[str] = []
        seen_events = 0
        draining = False
        while True:
            at = self.now()
            if at >= total and not draining:
                if self.jobs[-1].finished_s is not None or args.drain_minutes <= 0:
                    break
                draining = True
                self.event(
                    f"churn over: no more kills; up to {args.drain_minutes:g} min for job "
                    f"{self.jobs[-1].job_id} to be delivered"
                )
            if draining and at >= drain_until:
                self.event(f"job {self.jobs[-1].job_id} not delivered {args.drain_minutes:g} min after the churn")
                break
            if self.watch_processes(chain=not draining):
                break
            if not draining and kill_times and at >= kill_times[0]:
                kill_times.pop(0)
                self.kill_coordinator()
            if not draining and at >= next_node_kill:
                self.kill_node(victim % args.nodes)
                victim += 1
                next_node_kill += args.kill_every
            if at >= next_poll:
                self.snapshot()
                next_poll = at + ROW_POLL_S
            if at >= (minute + 1) * SAMPLE_S:
                minute += 1
                self.snapshot()
                minute_events = [text.split(";")[0] for _, text in self.events[seen_events:]]
                seen_events = len(self.events)
                self.sample(minute, minute_events)
            time.sleep(0.5)
        self.snapshot()
        self.ended_s = self.now()
        self.event("stopping the coordinator and the nodes (SIGINT)")
        job = self.jobs[-1]
        code = self.coordinator.stop()
        state = self.job_state(job.job_id)
        if state in ("done", "partial") and job.finished_s is None:
            job.finished_s, job.state = round(self.now(), 1), state
        elif job.finished_s is None:
            job.state = f"unfinished ({state}; coordinator stopped, exit {code})"
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        for p in [self.coordinator, *self.nodes]:
            if p.alive():
                p.kill9()
            p.close()

    # -- the verdicts (everything stopped; the store is read read-only) --

    def checks(self) -> tuple[list[Check], dict[str, Any]]:
        final = row_snapshot(self.db)
        if final is None:
            final = row_snapshot(self.db, immutable=True)
        if final is None:
            return [Check("store readable at the end", False, str(self.db))], {}
        facts: dict[str, Any] = {
            "rows_final": len(final),
            "rows_seen": len(self.seen),
            "rows_vanished_between_polls": len(self.vanished_midway),
        }
        jobs, lost_from_datasets, twice_in_datasets, verify_failures = self._datasets()
        facts["jobs"] = jobs
        facts["reputation"] = self._reputation()
        facts["clock_offset_ms"] = self._clock_offsets()
        for kill in self.coordinator_kills:
            got = final_query(
                self.db, "SELECT MIN(received_ms) FROM results WHERE received_ms > ?", (kill.killed_unix_ms,)
            )
            if got and got[0][0] is not None:
                kill.first_result_s = round((int(got[0][0]) - kill.killed_unix_ms) / 1000, 1)
        checks = [
            Check("rows accepted", len(final) > 0, len(final), "a soak that accepts no row shows nothing"),
            self._rows_lost(final, lost_from_datasets),
            self._rows_twice(final, twice_in_datasets),
            self._credit_lost(),
            self._blacklisted(facts["reputation"]),
            Check(
                "coordinator exits on its own",
                not self.coordinator_crashes,
                len(self.coordinator_crashes),
                "; ".join(self.coordinator_crashes) or "none",
            ),
            self._jobs_failed(),
            self._datasets_verify(jobs, verify_failures),
            self._skew_seen(facts["clock_offset_ms"]),
            self._store_flat(),
            self._rss_flat(),
        ]
        return checks, facts

    def _datasets(self) -> tuple[dict[str, Any], int, int, list[str]]:
        """Per job: delivered or not; rows of the store's first N a dataset lacks; duplicates; verify failures."""
        jobs: dict[str, Any] = {}
        lost_total = twice_total = 0
        failures: list[str] = []
        for job in self.jobs:
            if not (job.out / "manifest.json").exists():
                jobs[job.job_id] = {"state": job.state, "delivered": False}
                continue
            text = (job.out / "provenance.jsonl").read_text()
            lines = [json.loads(x) for x in text.splitlines() if x.strip()]
            pairs = [(str(p["task_id"]), int(p["producer"]["output_row"])) for p in lines]
            digests = [str(p["row_sha256"]) for p in lines]
            in_store = final_query(
                self.db, "SELECT task_id, idx FROM rows WHERE job_id = ? ORDER BY row_id", (job.job_id,)
            )
            first = {(str(t), int(i)) for t, i in in_store[: self.args.rows]}  # what compile delivers
            lost = len(first - set(pairs))
            twice = (len(pairs) - len(set(pairs))) + (len(digests) - len(set(digests)))
            report = verify_directory(job.out)
            if not report.ok:
                failures.append(f"{job.job_id}: {report.summary()[:500]}")
            lost_total += lost
            twice_total += twice
            jobs[job.job_id] = {
                "state": job.state,
                "delivered": True,
                "rows": len(lines),
                "verified": report.ok,
                "store_rows_missing_from_dataset": lost,
                "duplicates_in_dataset": twice,
                "out": str(job.out),
            }
        return jobs, lost_total, twice_total, failures

    def _rows_lost(self, final: dict[RowKey, RowValue], from_datasets: int) -> Check:
        missing = sorted(k for k in self.seen if k not in final)
        altered = sorted(k for k, v in self.seen.items() if k in final and final[k] != v)
        total = len(missing) + len(altered) + from_datasets
        detail = (
            f"{len(self.seen)} rows seen accepted during the run, {len(final)} in the final store; missing at the end "
            f"{len(missing)}, changed {len(altered)} ({len(self.changed)} changes seen mid-run, "
            f"{len(self.vanished_midway)} rows absent from a later poll); missing from a delivered dataset "
            f"{from_datasets}"
        )
        if missing:
            detail += f"; e.g. {missing[:3]}"
        return Check("rows lost", total == 0, total, detail)

    @staticmethod
    def _rows_twice(final: dict[RowKey, RowValue], in_datasets: int) -> Check:
        by_slot = Counter((task, idx) for _, task, idx in final)
        slot_twice = sum(n - 1 for n in by_slot.values() if n > 1)
        results_of: dict[str, set[int]] = {}
        for (_, task, _), (result_id, _) in final.items():
            results_of.setdefault(task, set()).add(result_id)
        task_twice = sum(len(ids) - 1 for ids in results_of.values() if len(ids) > 1)
        by_digest = Counter((job, digest) for (job, _, _), (_, digest) in final.items())
        digest_twice = sum(n - 1 for n in by_digest.values() if n > 1)
        total = slot_twice + task_twice + digest_twice + in_datasets
        detail = (
            f"store: same (task, idx) {slot_twice}, one task's rows from two results {task_twice}, same digest "
            f"in a job {digest_twice}; delivered datasets: same (task, row) or digest {in_datasets}"
        )
        return Check("rows accepted twice", total == 0, total, detail)

    def _credit_lost(self) -> Check:
        """ACCEPTED receipts in the nodes' ledgers (signatures re-checked) that the store does not back."""
        sql = "SELECT r.result_sha256, v.verdict FROM results r LEFT JOIN verdicts v ON v.result_id = r.result_id"
        verdict_of = {str(digest): str(verdict) for digest, verdict in final_query(self.db, sql)}
        trusted = {self.coordinator_identity.public_key}
        accepted = unbacked = invalid = 0
        for i, peer in enumerate(self.node_ids):
            ledger = ReceiptLedger(self.workdir / f"node-{i}" / "receipts.jsonl")
            read = ledger.read(trusted=trusted, node_peer_id=peer)
            invalid += read.invalid
            for entry in read.entries:
                if entry.receipt.verdict is Verdict.ACCEPTED:
                    accepted += 1
                    unbacked += verdict_of.get(entry.receipt.result_sha256) != Verdict.ACCEPTED.value
        detail = (
            f"{accepted} accepted receipts in the nodes' ledgers, {unbacked} of them name a result the store "
            f"lacks or did not accept; {invalid} ledger lines failed to verify (a line torn by a kill -9)"
        )
        return Check("credit lost", unbacked == 0, unbacked, detail)

    def _reputation(self) -> list[dict[str, Any]]:
        sql = "SELECT peer_id, score, accepted, rejected, expired, consecutive_expired, blacklisted FROM reputation"
        by_peer = {str(row[0]): row for row in final_query(self.db, sql)}
        out: list[dict[str, Any]] = []
        for i, peer in enumerate(self.node_ids):
            row = by_peer.get(peer)
            out.append(
                {
                    "node": f"node-{i}",
                    "peer_id": peer,
                    "skewed": i == self.skewed,
                    "score": round(float(row[1]), 3) if row else None,
                    "accepted": int(row[2]) if row else 0,
                    "rejected": int(row[3]) if row else 0,
                    "expired": int(row[4]) if row else 0,
                    "consecutive_expired": int(row[5]) if row else 0,
                    "blacklisted": bool(row[6]) if row else False,
                    "kills": self.nodes[i].kills,
                    "unexpected_exits": len(self.nodes[i].unexpected_exits),
                }
            )
        strangers = sorted(set(by_peer) - set(self.node_ids))
        for peer in strangers:
            out.append({"node": "?", "peer_id": peer, "stranger": True, "blacklisted": bool(by_peer[peer][6])})
        return out

    @staticmethod
    def _blacklisted(reputation: list[dict[str, Any]]) -> Check:
        black = [str(r["node"]) for r in reputation if r["blacklisted"] and not r.get("stranger")]
        strangers = [str(r["peer_id"]) for r in reputation if r.get("stranger")]
        detail = "blacklisted: " + (", ".join(black) if black else "none")
        if strangers:
            detail += f"; peers in the table that are not soak nodes: {strangers}"
        return Check("honest nodes blacklisted", not black, len(black), detail)

    def _jobs_failed(self) -> Check:
        failed = [j.job_id for j in self.jobs if j.state == "failed"]
        return Check("jobs failed", not failed, len(failed), ", ".join(failed) or "none")

    @staticmethod
    def _datasets_verify(jobs: dict[str, Any], failures: list[str]) -> Check:
        delivered = sum(1 for d in jobs.values() if d["delivered"])
        if failures:
            detail = "; ".join(failures)
        elif delivered:
            detail = f"{delivered} delivered, every one verified"
        else:
            detail = "no job was delivered within the run: nothing to verify"
        return Check("delivered datasets verify", not failures, f"{delivered - len(failures)}/{delivered}", detail)

    def _clock_offsets(self) -> dict[str, float | None]:
        """Per node: median of (issued_at of its signed Result envelopes - the coordinator's received_ms)."""
        offsets: dict[str, list[int]] = {}
        for node, raw, received in final_query(self.db, "SELECT node, envelope, received_ms FROM results"):
            with contextlib.suppress(Exception):
                fields = encoding.decode(bytes(raw), limit=len(raw), what="result envelope")
                offsets.setdefault(str(node), []).append(int(fields["issued_at"]) - int(received))
        return {
            f"node-{i}": float(statistics.median(offsets[peer])) if offsets.get(peer) else None
            for i, peer in enumerate(self.node_ids)
        }

    def _skew_seen(self, medians: dict[str, float | None]) -> Check:
        ok, parts = True, []
        for i, (name, median) in enumerate(medians.items()):
            expect = self.args.skew_s * 1000 if i == self.skewed else 0.0
            fine = median is not None and abs(median - expect) <= SKEW_TOLERANCE_MS
            ok = ok and (fine or (median is None and i != self.skewed))
            shown = "no results" if median is None else f"{median / 1000:+.1f} s"
            parts.append(f"{name} {shown} (expected {expect / 1000:+.0f})")
        value = medians.get(f"node-{self.skewed}") if self.skewed is not None else None
        detail = "median issued_at - received_ms of each node's Results: " + ", ".join(parts)
        return Check("clock skew seen on the wire", ok, value, detail)

    def _store_flat(self) -> Check:
        with_rows = [s for s in self.samples if s.rows > 0]
        if len(with_rows) < 2:
            return Check("store flat per row", True, None, "not measured: fewer than two samples with rows")
        end = with_rows[-1]
        mid = min(with_rows, key=lambda s: abs(s.elapsed_s - end.elapsed_s / 2))
        mid_pr, end_pr = mid.store_bytes / mid.rows, end.store_bytes / end.rows
        detail = (
            f"{mid_pr / 1024:.1f} KB/row at minute {mid.minute} ({mid.rows} rows), {end_pr / 1024:.1f} KB/row at "
            f"minute {end.minute} ({end.rows} rows); limit x{STORE_FLAT_FACTOR}"
        )
        return Check("store flat per row", end_pr <= STORE_FLAT_FACTOR * mid_pr, round(end_pr / mid_pr, 3), detail)

    def _rss_flat(self) -> Check:
        by_pid: dict[int, list[int]] = {}
        for s in self.samples:
            if s.coordinator_pid is not None and s.rss_bytes is not None:
                by_pid.setdefault(s.coordinator_pid, []).append(s.rss_bytes)
        if not by_pid:
            return Check("coordinator RSS flat", False, None, "no RSS sample")
        runs = list(by_pid.values())
        first_peak, last = max(runs[0]), runs[-1][-1]
        detail = (
            f"first coordinator's peak {first_peak / 2**20:.0f} MB, the last one's final {last / 2**20:.0f} MB "
            f"({len(runs)} coordinator processes sampled); limit x{RSS_FLAT_FACTOR}"
        )
        return Check("coordinator RSS flat", last <= RSS_FLAT_FACTOR * first_peak, round(last / first_peak, 3), detail)


class SoakAbort(RuntimeError):
    """A process keeps dying: the soak cannot go on."""


# --- output --------------------------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _kb(x: float | None) -> str:
    return "-" if x is None else f"{x / 1024:.1f}"


def sample_header() -> str:
    return (
        f"{'min':>4} {'elapsed':>8} {'coord pid':>9} {'RSS MB':>7} {'store MB':>8} {'rows':>5} "
        f"{'RSS/row KB':>10} {'store/row KB':>12} {'nodes up':>8}  events in the minute"
    )


def sample_line(s: Sample) -> str:
    return (
        f"{s.minute:>4} {s.elapsed_s:>7.0f}s {s.coordinator_pid or '-':>9} {_mb(s.rss_bytes):>7} "
        f"{_mb(s.store_bytes):>8} {s.rows:>5} {_kb(s.rss_per_row):>10} {_kb(s.store_per_row):>12} "
        f"{s.nodes_up:>8}  {'; '.join(s.events) if s.events else ''}"
    )


def summary(soak: Soak, checks: list[Check], facts: dict[str, Any]) -> str:
    out = ["", "summary"]
    out.append(
        f"  run: {soak.args.minutes:g} min of churn, {soak.ended_s / 60:.1f} min in all; {soak.args.nodes} nodes,"
        f" {soak.node_kills} node kills (every "
        f"{soak.args.kill_every:g} s), {len(soak.coordinator_kills)} coordinator kills, node-{soak.skewed} "
        f"clock {soak.args.skew_s:+g} s, {soak.args.rows} rows per job"
    )
    for k in soak.coordinator_kills:
        row = "no row after it" if k.first_new_row_s is None else f"next row {k.first_new_row_s:.0f} s after it"
        result = "none" if k.first_result_s is None else f"{k.first_result_s:.0f} s after it"
        out.append(
            f"  coordinator kill at {k.at_s / 60:.1f} min: {k.rows_before} rows before, {k.rows_after} in the "
            f"store after; first result to the restarted coordinator {result}; {row}"
        )
    for job_id, d in facts.get("jobs", {}).items():
        job = next(j for j in soak.jobs if j.job_id == job_id)
        took = f" in {(job.finished_s - job.started_s) / 60:.1f} min" if job.finished_s is not None else ""
        if d["delivered"]:
            out.append(f"  job {job_id}: {d['state']}{took}, {d['rows']} rows delivered, verified {d['verified']}")
        else:
            rows = sum(1 for k in soak.seen if k[0] == job_id)
            out.append(f"  job {job_id}: {d['state']}, {rows} rows accepted, not delivered")
    out.append("  reputation at the end (store):")
    out.append(
        f"    {'node':<7} {'peer':<14} {'score':>6} {'accepted':>8} {'rejected':>8} {'expired':>7} "
        f"{'lapses':>6} {'kills':>5}  blacklisted"
    )
    for r in facts.get("reputation", []):
        score = "-" if r["score"] is None else f"{r['score']:.3f}"
        out.append(
            f"    {r['node'] + ('*' if r['skewed'] else ''):<7} {r['peer_id'][-12:]:<14} {score:>6} "
            f"{r['accepted']:>8} {r['rejected']:>8} {r['expired']:>7} {r['consecutive_expired']:>6} "
            f"{r['kills']:>5}  {'YES' if r['blacklisted'] else 'no'}"
        )
    if soak.skewed is not None:
        out.append(f"    * clock {soak.args.skew_s:+g} s")
    out.append("  invariants:")
    for c in checks:
        out.append(f"    {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.value}  ({c.detail})")
    return "\n".join(out)


# --- setup ---------------------------------------------------------------------------------------------


def shim_dir(src: Path) -> Path:
    return src / "soak_clock" if (src / "soak_clock").is_dir() else SHIM_DIR


def frozen_source(workdir: Path) -> Path:
    """A copy of the source packages and the clock shim, taken now, that every process of the soak runs from.

    A node restarted every minute imports the code again: without the copy, an edit to the working tree
    during the run would reach some processes and not others.
    """
    src = workdir / "src"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SHIM_DIR, src / "soak_clock", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def source_state() -> str:
    """The commit and how many paths of the working tree differ from it (for the JSON)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    changed = len([x for x in dirty.stdout.splitlines() if x.strip()])
    return f"{head.stdout.strip() or 'unknown'}" + (f" + {changed} changed paths" if changed else "")


def check_shim(skew_s: float, src: Path) -> float:
    """The wall-clock offset the shim gives a process started as the skewed node is (seconds)."""
    env = dict(os.environ, PYTHONPATH=f"{shim_dir(src)}{os.pathsep}{src}", **{SKEW_ENV: repr(float(skew_s))})
    probe = "import datetime, time; print(time.time() - datetime.datetime.now().timestamp())"
    got = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, cwd=src)
    return float(got.stdout.strip())


def prepare_workdir(workdir: Path) -> None:
    """A reused workdir keeps its corpus index only."""
    workdir.mkdir(parents=True, exist_ok=True)
    for path in workdir.iterdir():
        if path.name.startswith("corpus-"):
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=30.0, help="How long the churn runs (default 30).")
    p.add_argument("--nodes", type=int, default=4, help="Node processes (default 4).")
    p.add_argument("--kill-every", type=float, default=60.0, help="Seconds between node kills (default 60).")
    p.add_argument("--coordinator-kills", type=int, default=2, help="kill -9 of the coordinator (default 2).")
    p.add_argument("--skew-s", type=float, default=20.0, help="Wall-clock offset of the last node (default 20; 0 off).")
    p.add_argument(
        "--drain-minutes",
        type=float,
        default=10.0,
        help="After the churn, wait up to this long (no kills) for the running job to be delivered (default 10).",
    )
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"Rows per job (default {DEFAULT_ROWS}).")
    p.add_argument("--workdir", type=Path, default=None, help="Logs, store, datasets (default a new /tmp folder).")
    p.add_argument(
        "--no-copy", action="store_true", help="Run the processes from the working tree, not a copy taken at start."
    )
    p.add_argument("--json-out", type=Path, default=None, help="Write the samples and the verdicts here as JSON.")
    args = p.parse_args(argv)
    if args.nodes < 2:
        p.error("--nodes must be at least 2 (verification needs distinct nodes)")
    if args.minutes <= 0 or args.kill_every <= 0 or args.coordinator_kills < 0 or args.rows < 1:
        p.error("--minutes, --kill-every and --rows must be positive, --coordinator-kills >= 0")
    if abs(args.skew_s) * 1000 >= 30_000:
        print(f"note: --skew-s {args.skew_s:g} is outside the protocol's ±30 s skew window", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (DEBIAN_DOCS / "library").is_dir():
        print(f"{DEBIAN_DOCS} is missing: apt-get install python3.11-doc (make system-deps)", file=sys.stderr)
        return 2
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="dataswarm-soak-"))).resolve()
    prepare_workdir(workdir)
    src = ROOT if args.no_copy else frozen_source(workdir)
    source = source_state()
    started = time.time()
    print(f"soak in {workdir}; processes run from {src} ({source})", flush=True)
    if args.skew_s:
        offset = check_shim(args.skew_s, src)
        print(f"clock shim: a process started as the skewed node reads a wall clock {offset:+.3f} s off", flush=True)
        if abs(offset - args.skew_s) > 0.5:
            print("the clock shim did not take effect", file=sys.stderr)
            return 2
    with CorpusServer(DEBIAN_DOCS) as server:
        index = workdir / "corpus-python3.11-doc.sqlite"
        if not index.exists():
            t = time.monotonic()
            stats = trio.run(lambda: index_corpus(DEBIAN_DOCS, db_path=index, base_url=server.base_url))
            print(f"indexed {stats.pages} pages of {DEBIAN_DOCS} in {time.monotonic() - t:.0f} s", flush=True)
        soak = Soak(args, workdir, src, server.base_url, index)
        aborted = ""
        try:
            soak.run()
        except SoakAbort as exc:
            aborted = str(exc)
            print(f"soak aborted: {aborted}", file=sys.stderr)
        except KeyboardInterrupt:
            aborted = "interrupted"
        finally:
            soak.close()
    checks, facts = soak.checks()
    if aborted:
        checks.append(Check("soak ran to the end", False, aborted))
    print(summary(soak, checks, facts), flush=True)
    ok = all(c.ok for c in checks)
    print(f"\n{'PASS' if ok else 'FAIL'}: soak of {args.minutes:g} min; logs, store and datasets in {workdir}")
    if args.json_out:
        doc = {
            "started_unix": round(started),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "workdir": str(workdir),
            "source": source,
            "ran_from": str(src),
            "coordinator": soak.coordinator_identity.peer_id,
            "nodes": soak.node_ids,
            "skewed_node": soak.skewed,
            "samples": [
                asdict(s) | {"rss_per_row": s.rss_per_row, "store_per_row": s.store_per_row} for s in soak.samples
            ],
            "events": [{"at_s": round(t, 1), "event": e} for t, e in soak.events],
            "coordinator_kills": [asdict(k) for k in soak.coordinator_kills],
            "node_kills": soak.node_kills,
            "jobs": [asdict(j) | {"out": str(j.out)} for j in soak.jobs],
            "facts": facts,
            "checks": [asdict(c) for c in checks],
            "ok": ok,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        print(f"figures: {args.json_out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
