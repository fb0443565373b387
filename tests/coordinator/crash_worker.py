"""A coordinator-shaped loop over the store, run as a subprocess and SIGKILLed by test_store_crash.py.

Usage: python -m tests.coordinator.crash_worker DB_PATH SEED START_MS

It resumes whatever the database holds (expire_due first, like a restarting
coordinator), then forever: adds tasks (some with payloads big enough for the
blob folder), claims and grants slots to simulated nodes, records results
(some duplicated, some from cheaters), settles verdicts, and lets leases
expire. Time is virtual (START_MS plus steps), as the store never reads the
clock. After each commit that accepts a result it prints an acknowledgement
line; the parent treats a printed line as "the coordinator told someone", so
that fact must survive the kill.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from coordinator.store import Judgement, NewRow, Store, TaskState
from protocol.identity import Identity
from protocol.messages import Verdict
from tests.coordinator.factories import GOOD_ROW, opened, result_for, rows_output, synth_payload

NODES = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(6)]
CHEAT_ROW = ("Who developed the printing press?", "Johannes Brahms, in 1789.", "developed by Johannes Gutenberg")


def main(db: str, seed: int, start_ms: int) -> None:
    rng = random.Random(seed)
    now = start_ms
    store = Store(Path(db), inline_limit=2048)
    try:
        store.job("job")
    except KeyError:
        store.create_job("job", {"topic": "crash"}, now_ms=now)
    store.expire_due(now_ms=now)
    print("READY", flush=True)
    leases: dict[str, tuple[str, Identity]] = {}  # lease id -> (task id, node); lost on kill, like RAM
    n = 0
    while True:
        now += rng.randint(1, 50)
        if rng.random() < 0.3:
            n += 1
            payload = synth_payload()
            if rng.random() < 0.3:  # over the inline limit: goes to the blob folder
                payload = payload.model_copy(update={"instruction": f"task {seed}-{n} " + "pad " * 900})
            store.add_task(f"t{seed}-{n}", "job", "synthesize", payload, replicas=2, max_attempts=3, now_ms=now)
        for slot in store.offered_replicas(limit=3):
            node = rng.choice(NODES)
            claimed = store.claim(slot.task_id, node.peer_id, claim_deadline_ms=now + 2_000, now_ms=now)
            if claimed is None:
                continue
            if rng.random() < 0.1:
                continue  # never granted: the claim lapses at its deadline and the slot is offered again
            lease_id = f"L{seed}-{now}-{claimed.task_id}-{claimed.replica}"
            store.grant(claimed.task_id, claimed.replica, lease_id=lease_id, deadline_ms=now + 3_000, now_ms=now)
            leases[lease_id] = (claimed.task_id, node)
        for lease_id in list(leases)[:4]:
            task_id, node = leases.pop(lease_id)
            if rng.random() < 0.15:
                continue  # the node vanishes; its lease will expire
            cheat = rng.random() < 0.2
            g = store.grant_message(lease_id)
            env = opened(result_for(g, rows_output(CHEAT_ROW if cheat else GOOD_ROW)), node, now)
            rec = store.record_result(env, now_ms=now)
            if rng.random() < 0.2:
                assert store.record_result(env, now_ms=now).duplicate  # a gossip duplicate
            if rec.replica is None:
                continue
            if cheat:
                store.settle(task_id, [Judgement(rec.result.result_id, Verdict.REJECTED, "rescore_failed")], now_ms=now)
                continue
            _settle_if_agreed(store, task_id, now)
        if rng.random() < 0.1:
            now += 4_000  # a stall: outstanding leases run out
            store.expire_due(now_ms=now)


def _settle_if_agreed(store: Store, task_id: str, now: int) -> None:
    if store.task(task_id).state is not TaskState.OPEN:
        return
    pending = [r for r in store.results_for(task_id) if r.counted and store.verdict(r.result_id) is None]
    live = {s.lease_id for s in store.replicas(task_id) if s.state.value == "submitted"}
    honest = [r for r in pending if r.lease_id in live]
    if len(honest) < 2:
        return
    a, b = honest[:2]
    store.settle(
        task_id,
        [Judgement(a.result_id, Verdict.ACCEPTED), Judgement(b.result_id, Verdict.ACCEPTED)],
        canonical_result_id=a.result_id,
        rows=[NewRow(0, {"question": GOOD_ROW[0], "answer": GOOD_ROW[1]}, GOOD_ROW[2])],
        now_ms=now,
    )
    print(f"DONE {task_id} {a.result_id} {b.result_id}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
