"""Crash safety: SIGKILL a real coordinator-shaped process at random moments, reopen, check invariants.

The worker (crash_worker.py) prints a line after each commit that accepts a
task; anything printed was committed before it was said, so it must be in the
database after the kill. Then the structural invariants must hold whatever
moment the kill hit, and the next run must resume from there.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from coordinator.store import Store, TaskState
from protocol.messages import Verdict
from protocol.state import ReplicaState

REPO = Path(__file__).resolve().parents[2]
ROUNDS = 5
START_MS = 1_700_000_000_000


def _run_and_kill(db: Path, seed: int, start_ms: int, rng: random.Random) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.coordinator.crash_worker", str(db), str(seed), str(start_ms)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if first.strip() != "READY":
        proc.kill()
        raise AssertionError(f"worker did not start: {first!r} {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(rng.uniform(0.2, 1.2))
    assert proc.poll() is None, f"worker died by itself: {proc.stderr.read() if proc.stderr else ''}"
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return [line for line in out.splitlines() if line.startswith("DONE ")]


def _check_invariants(db: Path, acked: list[str], now_ms: int) -> int:
    """Assert what must hold after any crash; returns the number of done tasks."""
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(db) as store:
        assert list(store.blobs._tmp.iterdir()) == []  # no half-written blob survives a reopen
        # 1. Nothing the coordinator acknowledged was lost.
        for line in acked:
            _, task_id, a, b = line.split()
            task = store.task(task_id)
            assert task.state is TaskState.DONE and task.canonical_result_id == int(a)
            for rid in (int(a), int(b)):
                verdict = store.verdict(rid)
                assert verdict is not None and verdict.verdict is Verdict.ACCEPTED
        # 2. Every done task has exactly its canonical rows (accepted once, never redone).
        done = [t for t in store.tasks("job") if t.state is TaskState.DONE]
        rows_per_task: dict[str, int] = {}
        for row in store.rows("job"):
            rows_per_task[row.task_id] = rows_per_task.get(row.task_id, 0) + 1
        assert rows_per_task == {t.task_id: 1 for t in done}
        for task in done:
            granted_after = raw.execute(
                "SELECT COUNT(*) FROM leases WHERE task_id = ? AND granted_ms > ?", (task.task_id, task.updated_ms)
            ).fetchone()[0]
            assert granted_after == 0, f"done task {task.task_id} was granted again"
        # 3. Slot states are consistent with leases and results (transitions were atomic).
        for task in store.tasks("job"):
            store.task_payload(task.task_id)  # inline or blob, it reads back and matches its digest
            for slot in store.replicas(task.task_id):
                assert slot.state not in (ReplicaState.EXPIRED, ReplicaState.REJECTED), "follow-up was not atomic"
                if slot.state in (ReplicaState.GRANTED, ReplicaState.SUBMITTED, ReplicaState.VERIFIED):
                    assert slot.lease_id is not None
                    lease = store.lease(slot.lease_id)
                    assert (lease.task_id, lease.replica, lease.attempt) == (task.task_id, slot.replica, slot.attempt)
                if slot.state in (ReplicaState.SUBMITTED, ReplicaState.VERIFIED):
                    filled = [r for r in store.results_for(task.task_id) if r.lease_id == slot.lease_id and r.counted]
                    assert len(filled) == 1
                if slot.state is ReplicaState.VERIFIED:
                    verdict = store.verdict(filled[0].result_id)
                    assert verdict is not None and verdict.verdict is Verdict.ACCEPTED
        # 4. Expired leases are re-offered on restart, and nothing stays held past its deadline.
        store.expire_due(now_ms=now_ms)
        assert store.expired_replicas(now_ms=now_ms) == []
        for task in store.tasks("job", stage="synthesize"):
            for slot in store.replicas(task.task_id):
                assert slot.state not in (ReplicaState.CLAIMED, ReplicaState.GRANTED)
                if task.state is TaskState.OPEN:
                    assert slot.state in (ReplicaState.OFFERED, ReplicaState.SUBMITTED, ReplicaState.FAILED)
        return len(done)


def test_sigkill_at_random_points_loses_nothing_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random(20240501)
    acked: list[str] = []
    done_counts = []
    for round_ in range(ROUNDS):
        # Each run starts later in virtual time, as a real restart would.
        start = START_MS + round_ * 10**9
        acked += _run_and_kill(db, seed=round_ + 1, start_ms=start, rng=rng)
        done_counts.append(_check_invariants(db, acked, now_ms=start + 10**8))
    assert acked, "the worker never completed a task; the test proved nothing"
    assert done_counts == sorted(done_counts), "a completed task was lost between runs"
    assert done_counts[-1] > done_counts[0], "later runs did not resume work"
