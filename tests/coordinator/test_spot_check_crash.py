"""kill -9 the coordinator while a trusted node runs a spot-checked task: the result is still re-scored.

Real processes and a real network on loopback: `dataswarm coordinator start` (run twice, the first
time SIGKILLed), with the operator's node A in `--trust-node` and the spot-check rate forced to 1 through
the environment (`DATASWARM_COORDINATOR_SPOT_CHECK_P`). The nodes are this test's own libp2p hosts, which
send exactly what a node sends: A claims the task, the coordinator dies while A "runs" it, A sends its
result to the restarted coordinator. Node B is live, so nothing but the stored pick would re-score A's
result (alone, A would check itself anyway). The test seeds and reads the coordinator's SQLite store
directly (WAL allows a second connection while the coordinator writes): the job is created after the
first start, so no job runner drives it; the restarted coordinator's runner finds no spec in it and marks
it failed, which changes nothing here (validate tasks are created and offered whatever their job's state).
About 5-20 s, nearly all of it the two coordinator starts (imports), depending on the machine's load.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from coordinator.scheduler import VALIDATE_MARK
from coordinator.store import Store
from network import STATUS_TOPIC, TASK_PROTOCOL, TASK_RESPONSE_KINDS, SwarmHost, now_ms, run_periodic_publisher
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.keyfile import save_identity
from protocol.messages import Claim, Grant, NodeStatus, Receipt, Verdict
from protocol.tasks import TaskKind
from tests.coordinator.factories import GOOD_ROW, MODEL, result_for, rows_output, synth_payload
from tests.coordinator.test_scheduler import HONEST_TEXT
from tests.network.support import free_port, host_config, identity

REPO = Path(__file__).resolve().parents[2]
JOB = "spot-job"
TASK = f"{JOB}.synthesize.0"
STATUS = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)


class Coordinator:
    """`dataswarm coordinator start` as an OS process, started again on the same port, key and data."""

    def __init__(self, tmp: Path, trusted: str) -> None:
        self.key = Identity.generate()
        save_identity(self.key, tmp / "coordinator.key")
        (tmp / "coordinator.toml").write_text("")  # not the user's own config
        self.data = tmp / "data"
        self.addr_file = tmp / "addr"
        self.log = tmp / "coordinator.log"
        self.cmd = [
            sys.executable, "-m", "cli", "coordinator", "start", "--config", str(tmp / "coordinator.toml"),
            "--no-mdns", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}", "--data-dir", str(self.data),
            "--key", str(tmp / "coordinator.key"), "--no-api", "--trust-node", trusted,
            "--addr-file", str(self.addr_file),
        ]  # fmt: skip
        self.env = dict(os.environ, DATASWARM_COORDINATOR_SPOT_CHECK_P="1.0")
        self.proc: subprocess.Popen[bytes] | None = None

    def store(self) -> Store:
        return Store(self.data / "coordinator.db", blob_dir=self.data / "blobs")

    async def start(self) -> str:
        """Start it and return its dialable address once it listens."""
        self.addr_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        with trio.fail_after(60):
            while not (self.addr_file.exists() and self.addr_file.read_text().strip()):
                assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
                await trio.sleep(0.05)
        return self.addr_file.read_text().split()[0]

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "the coordinator died by itself"
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


async def connect(host: SwarmHost, addr: str) -> None:
    """Dial, again and again while the previous (killed) coordinator's connection is being torn down."""
    with trio.fail_after(30):
        while True:
            peer = await host.connect(addr)
            await trio.sleep(0.1)
            if host.is_connected(peer):
                return


async def seen_since(coordinator: Coordinator, peer_id: str, since_ms: int) -> None:
    """Until the coordinator has noted a status from `peer_id` sent after `since_ms` (it is live there)."""
    db = f"file:{coordinator.data / 'coordinator.db'}?mode=ro"
    with trio.fail_after(30):
        while True:
            conn = sqlite3.connect(db, uri=True, timeout=5)
            try:
                row = conn.execute("SELECT last_seen_ms FROM nodes WHERE peer_id = ?", (peer_id,)).fetchone()
            finally:
                conn.close()
            if row is not None and row[0] >= since_ms:
                return
            await trio.sleep(0.1)


async def test_a_spot_checked_result_of_a_trusted_node_is_still_re_scored_after_kill_9(tmp_path: Path) -> None:
    node_a, node_b = identity(71), identity(72)  # A: the operator's node; B: any other node, live
    coordinator = Coordinator(tmp_path, trusted=node_a.peer_id)
    try:
        addr = await coordinator.start()
        with coordinator.store() as store:  # a job no runner drives (created after the start): one task
            store.create_job(JOB, {"topic": "spot-check"}, allowed_models=[MODEL], now_ms=now_ms())
            store.set_job_state(JOB, "running", now_ms=now_ms())
            store.add_task(TASK, JOB, "synthesize", synth_payload(), replicas=1, max_attempts=4, est_tokens=3_000,
                           now_ms=now_ms())  # fmt: skip
        async with SwarmHost(host_config(node_a)) as a, SwarmHost(host_config(node_b)) as b:
            await connect(a, addr)
            claim = Claim(task_id=TASK, attempt=0, model_sha256=MODEL, free_slots=1, tok_s=1.0)  # an hour's lease
            coord_peer = coordinator.key.peer_id
            answer = await a.request(coord_peer, TASK_PROTOCOL, seal(node_a, claim, now_ms=now_ms()),
                                     expect=TASK_RESPONSE_KINDS, timeout=20)  # fmt: skip
            grant = answer.message
            assert isinstance(grant, Grant), grant
            with coordinator.store() as store:
                assert len(store.replicas(TASK)) == 1  # r = 1: the operator's node runs it alone...
                assert store.spot_checked(TASK)  # ...picked for a spot-check, and the pick is on disk

            coordinator.kill()  # while A runs the task
            with trio.fail_after(10):
                while a.is_connected(coord_peer):  # the kernel closed the dead process's sockets
                    await trio.sleep(0.05)
            restarted_ms = now_ms()
            addr = await coordinator.start()
            await connect(a, addr)
            await connect(b, addr)
            async with trio.open_nursery() as nursery:
                for host in (a, b):  # what a node gossips every few seconds: the coordinator counts it live
                    gossip = partial(run_periodic_publisher, host, STATUS_TOPIC, lambda: STATUS, interval=0.25)
                    nursery.start_soon(gossip)
                await seen_since(coordinator, node_b.peer_id, restarted_ms)  # B could re-score A's result now
                result = result_for(grant, rows_output(GOOD_ROW), raw_text=HONEST_TEXT)
                answer = await a.request(coord_peer, TASK_PROTOCOL, seal(node_a, result, now_ms=now_ms()),
                                         expect=TASK_RESPONSE_KINDS, timeout=20)  # fmt: skip
                nursery.cancel_scope.cancel()
        receipt = answer.message
        assert isinstance(receipt, Receipt), receipt
        assert receipt.verdict is Verdict.PENDING, "the restarted coordinator took the result on trust"
        with coordinator.store() as store:
            [mine] = store.results_for(TASK)
            assert mine.node == node_a.peer_id and store.verdict(mine.result_id) is None
            [audit] = store.tasks(JOB, stage="validate")  # the re-score of A's result, waiting for B
            assert audit.task_id == f"{TASK}{VALIDATE_MARK}{mine.result_id}"
            assert store.rows(JOB) == []
    finally:
        coordinator.stop()
