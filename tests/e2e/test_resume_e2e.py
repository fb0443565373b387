"""SIGKILL the coordinator during synthesize, restart it, then SIGKILL half the nodes: the job still completes.

Nothing accepted is lost or redone, and no row is accepted twice.

Real processes on loopback: `dataswarm coordinator start --request … --job-id …` (run
twice, the first time killed), four `dataswarm node start` processes with the bundled
model, the python3.11-doc corpus served over HTTP and indexed. The test reads the
coordinator's SQLite store read-only (WAL allows it while the coordinator writes).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from cli.demo import DEBIAN_DOCS, DEFAULT_REQUEST, node_command
from coordinator.compile import verify_directory
from node.search.corpus import index_corpus
from node.search.corpus_server import CorpusServer
from protocol.identity import Identity
from protocol.keyfile import save_identity

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROWS = 4
NODES = 4
"""Half of them die mid-job; the two left still make the distinct pairs that verification needs."""
JOB = "resume-job"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        conn.close()


def wait_for(
    predicate: object, timeout: float, what: str, procs: list[subprocess.Popen[bytes]], logs: dict[int, Path]
) -> None:
    """`logs`: each process's log by pid, whose tail (a faulthandler dump after a crash) a failure shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        for p in procs:
            if p.poll() is not None:
                tail = logs[p.pid].read_text(errors="replace")[-6000:] if p.pid in logs else ""
                raise AssertionError(
                    f"a process exited early ({p.args[:6]}, exit {p.returncode}) while waiting for {what}:\n{tail}"
                )
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_coordinator_killed_mid_synthesize_resumes_the_same_job(tmp_path: Path) -> None:
    assert (DEBIAN_DOCS / "library").is_dir(), "python3.11-doc is missing: .ci/run installs it"
    key = tmp_path / "coordinator.key"
    coordinator = Identity.generate()
    save_identity(coordinator, key)
    port = free_port()
    data = tmp_path / "coord"
    out = tmp_path / "dataset"
    db = data / "coordinator.db"
    coord_cmd = [
        sys.executable, "-m", "cli", "coordinator", "start", "--no-mdns",
        "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--data-dir", str(data), "--key", str(key),
        "--api", "127.0.0.1:0", "--request", DEFAULT_REQUEST, "--rows", str(ROWS), "--out", str(out), "--job-id", JOB,
    ]  # fmt: skip
    with CorpusServer(DEBIAN_DOCS) as server:
        index = tmp_path / "corpus.sqlite"
        trio.run(lambda: index_corpus(DEBIAN_DOCS, db_path=index, base_url=server.base_url))
        log = open(tmp_path / "coordinator.log", "ab")  # noqa: SIM115
        first = subprocess.Popen(coord_cmd, stdout=log, stderr=subprocess.STDOUT)
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{coordinator.peer_id}"
        nodes = [
            subprocess.Popen(
                node_command(i, tmp_path, addr, coordinator.peer_id, index, server.base_url, 1),
                stdout=open(tmp_path / f"node-{i}.log", "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for i in range(NODES)
        ]
        logs = {first.pid: tmp_path / "coordinator.log"} | {
            p.pid: tmp_path / f"node-{i}.log" for i, p in enumerate(nodes)
        }
        try:
            wait_for(
                lambda: query(db, "SELECT COUNT(*) FROM rows")[:1] not in ([], [(0,)]),
                900,
                "the first accepted row",
                [first, *nodes],
                logs,
            )
            before_rows = set(query(db, "SELECT task_id, idx, result_id, row_sha256 FROM rows"))
            done_before = dict(
                query(
                    db,
                    "SELECT t.task_id, COUNT(r.result_id) FROM tasks t JOIN results r ON r.task_id = t.task_id"
                    " WHERE t.state = 'done' GROUP BY t.task_id",
                )
            )
            assert len(before_rows) < ROWS, "the job finished before the kill; nothing to resume"
            first.send_signal(signal.SIGKILL)
            first.wait()

            second = subprocess.Popen(coord_cmd, stdout=log, stderr=subprocess.STDOUT)
            logs[second.pid] = tmp_path / "coordinator.log"
            wait_for(
                lambda: len(query(db, "SELECT task_id FROM rows")) > len(before_rows),
                900,
                "a row accepted after the restart",
                [second, *nodes],
                logs,
            )
            for p in nodes[NODES // 2 :]:
                os.killpg(p.pid, signal.SIGKILL)  # leases they hold lapse and are offered again
            rows_at_node_kill = set(query(db, "SELECT task_id, idx, result_id, row_sha256 FROM rows"))
            assert second.wait(timeout=1200) == 0, (tmp_path / "coordinator.log").read_text(errors="replace")[-4000:]
        finally:
            for p in nodes:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGINT)
            for p in nodes:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)

    after_rows = set(query(db, "SELECT task_id, idx, result_id, row_sha256 FROM rows"))
    assert before_rows <= after_rows, "a row accepted before the kill was lost or changed"
    assert rows_at_node_kill <= after_rows, "a row accepted before the nodes died was lost"
    keys = [(t, i) for t, i, _, _ in after_rows]
    assert len(keys) == len(set(keys)), "a task row was accepted twice"
    redone = {
        task_id: n
        for task_id, n in query(db, "SELECT task_id, COUNT(*) FROM results GROUP BY task_id")
        if task_id in done_before and n != done_before[task_id]
    }
    assert not redone, f"accepted tasks were run again after the restart: {redone}"
    (state,) = query(db, f"SELECT state FROM jobs WHERE job_id = '{JOB}'")
    assert state[0] in ("done", "partial"), state  # partial: the quota was not reached, nothing padded
    report = verify_directory(out)
    assert report.ok, report.summary()
