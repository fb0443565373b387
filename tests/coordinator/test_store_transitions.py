"""Slot and lease transitions in the store: every path, illegal events rolling back, idempotency."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.job_states import StageState
from coordinator.store import (
    BlobCorrupted,
    Conflict,
    Judgement,
    NewRow,
    NotFound,
    Recorded,
    Store,
    TaskState,
    payload_sha256,
)
from coordinator.verify.reasons import Reason
from coordinator.verify.reputation import NodeReputation
from protocol.envelope import open_envelope, seal
from protocol.errors import BadSignature, IllegalTransition
from protocol.identity import Identity
from protocol.messages import Verdict
from protocol.state import ReplicaState
from protocol.tasks import RetrievePayload
from tests.coordinator.factories import (
    GOOD_ROW,
    NODE_A,
    NODE_B,
    NODE_C,
    T0,
    claim_and_grant,
    opened,
    result_for,
    rows_output,
    seed_job,
    synth_payload,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "c.db")
    seed_job(s)
    return s


def _submit(store: Store, task_id: str, node: Identity, lease_id: str, now_ms: int = T0) -> Recorded:
    g = store.grant_message(lease_id)
    return store.record_result(opened(result_for(g, rows_output(GOOD_ROW)), node, now_ms), now_ms=now_ms)


def test_two_replicas_claim_grant_submit_accept_complete(store: Store) -> None:
    task = store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=2, max_attempts=3, now_ms=T0)
    assert task.payload_sha256 == payload_sha256(synth_payload())
    assert [s.state for s in store.replicas("t1")] == [ReplicaState.OFFERED] * 2

    g_a = claim_and_grant(store, "t1", NODE_A, lease_id="la")
    assert g_a.node_peer_id == NODE_A.peer_id and g_a.payload == synth_payload()
    # The same node may not take the second replica: redundancy needs distinct nodes.
    assert store.claim("t1", NODE_A.peer_id, claim_deadline_ms=T0 + 5_000, now_ms=T0) is None
    claim_and_grant(store, "t1", NODE_B, lease_id="lb")
    assert [s.state for s in store.replicas("t1")] == [ReplicaState.GRANTED] * 2

    ra = _submit(store, "t1", NODE_A, "la", T0 + 1_000)
    rb = _submit(store, "t1", NODE_B, "lb", T0 + 2_000)
    assert ra.replica is not None and ra.replica.state is ReplicaState.SUBMITTED and ra.result.counted
    assert rb.replica is not None and rb.replica.state is ReplicaState.SUBMITTED
    assert store.lease("la").state == "submitted"

    rep = NodeReputation(peer_id=NODE_A.peer_id, score=0.55, accepted=1, updated_ms=T0 + 3_000)
    settled = store.settle(
        "t1",
        [
            Judgement(ra.result.result_id, Verdict.ACCEPTED, receipt=b"receipt-a"),
            Judgement(rb.result.result_id, Verdict.ACCEPTED),
        ],
        canonical_result_id=ra.result.result_id,
        rows=[NewRow(0, {"question": GOOD_ROW[0], "answer": GOOD_ROW[1]}, GOOD_ROW[2])],
        reputations=[rep],
        now_ms=T0 + 3_000,
    )
    assert settled.task.state is TaskState.DONE and settled.task.canonical_result_id == ra.result.result_id
    assert [s.state for s in store.replicas("t1")] == [ReplicaState.VERIFIED] * 2
    [row] = store.rows("j1")
    assert row.data["answer"] == GOOD_ROW[1] and row.evidence == GOOD_ROW[2] and row.result_id == ra.result.result_id
    assert store.reputation(NODE_A.peer_id) == rep
    assert store.receipt(ra.result.result_id) == b"receipt-a"
    # Hours later the stored envelope still re-verifies (as of its own issue time).
    assert store.result_message(ra.result.result_id) == result_for(g_a, rows_output(GOOD_ROW))
    assert store.verdict(rb.result.result_id) is not None
    # A done task is never offered or claimed again.
    assert store.offered_replicas() == []
    assert store.claim("t1", NODE_C.peer_id, claim_deadline_ms=T0 + 9_000, now_ms=T0 + 4_000) is None


def test_illegal_event_raises_and_changes_nothing(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la")
    granted = store.replicas("t1")
    with pytest.raises(IllegalTransition) as info:
        store.grant("t1", 0, lease_id="again", deadline_ms=T0 + 1, now_ms=T0 + 2)  # granted twice
    assert (info.value.state, info.value.event) == ("granted", "grant")
    assert store.replicas("t1") == granted
    with pytest.raises(NotFound):
        store.lease("again")  # the lease insert never happened


def test_a_stage_closes_once_and_a_second_close_names_the_stage_machine(store: Store) -> None:
    store.add_stage("j1", "search", now_ms=T0)
    assert store.stages("j1")["search"] is StageState.OPEN
    store.set_stage_state("j1", "search", StageState.DONE, now_ms=T0 + 1)
    assert store.stages("j1")["search"] is StageState.DONE
    with pytest.raises(IllegalTransition) as info:
        store.set_stage_state("j1", "search", StageState.DONE, now_ms=T0 + 2)
    assert (info.value.machine, info.value.state, info.value.event) == ("stage", "done", "done")
    with pytest.raises(NotFound):
        store.set_stage_state("j1", "compile", StageState.DONE, now_ms=T0 + 3)  # never added


def test_failure_after_the_transition_rolls_the_transition_back(store: Store) -> None:
    for t in ("t1", "t2"):
        store.add_task(t, "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="dup")
    store.claim("t2", NODE_B.peer_id, claim_deadline_ms=T0 + 5_000, now_ms=T0)
    claimed = store.replica("t2", 0)
    # The GRANT transition succeeds, then the lease insert hits the duplicate id: all of it rolls back.
    with pytest.raises(sqlite3.IntegrityError):
        store.grant("t2", 0, lease_id="dup", deadline_ms=T0 + 60_000, now_ms=T0 + 1)
    assert store.replica("t2", 0) == claimed
    assert store.lease("dup").task_id == "t1"


def test_rejected_result_retries_on_another_node_then_gives_up(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=2, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="l0")
    r0 = _submit(store, "t1", NODE_A, "l0")
    settled = store.settle(
        "t1",
        [Judgement(r0.result.result_id, Verdict.REJECTED, Reason.SCHEMA_INVALID.value, "row 0: bad")],
        now_ms=T0 + 10,
    )
    [replica] = settled.reoffered
    assert replica.state is ReplicaState.OFFERED and replica.attempt == 1 and replica.node is None
    assert store.verdict(r0.result.result_id).reason == "schema_invalid"  # type: ignore[union-attr]
    # The node whose result was rejected does not get the task again.
    assert store.claim("t1", NODE_A.peer_id, claim_deadline_ms=T0 + 99, now_ms=T0 + 20) is None
    g = claim_and_grant(store, "t1", NODE_B, lease_id="l1", now_ms=T0 + 20)
    assert g.attempt == 1
    r1 = _submit(store, "t1", NODE_B, "l1", T0 + 30)
    settled = store.settle("t1", [Judgement(r1.result.result_id, Verdict.REJECTED, "rescore_failed")], now_ms=T0 + 40)
    assert [s.state for s in settled.failed] == [ReplicaState.FAILED]
    assert settled.task.state is TaskState.FAILED


def test_expired_leases_are_found_and_reoffered(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=2, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la", lease_ms=30_000)
    store.claim("t1", NODE_B.peer_id, claim_deadline_ms=T0 + 5_000, now_ms=T0)  # claimed, never granted
    assert store.expired_replicas(now_ms=T0 + 4_999) == []
    assert [s.replica for s in store.expired_replicas(now_ms=T0 + 6_000)] == [1]
    assert [s.replica for s in store.expired_replicas(now_ms=T0 + 30_001)] == [1, 0]

    expiries = store.expire_due(now_ms=T0 + 30_001)
    assert sorted((e.after.replica, e.after.state, e.after.attempt) for e in expiries) == [
        (0, ReplicaState.OFFERED, 1),
        (1, ReplicaState.OFFERED, 1),
    ]
    # Who let each one lapse, so the scheduler can charge Outcome.EXPIRED.
    assert {(e.before.node, e.before.state, e.before.lease_id) for e in expiries} == {
        (NODE_A.peer_id, ReplicaState.GRANTED, "la"),
        (NODE_B.peer_id, ReplicaState.CLAIMED, None),
    }
    assert store.lease("la").state == "expired"
    assert store.expire_due(now_ms=T0 + 30_002) == []  # nothing left to do

    # The late result for the old lease is recorded, but does not fill the re-offered replica.
    late = _submit(store, "t1", NODE_A, "la", T0 + 40_000)
    assert late.replica is None and not late.result.counted
    assert store.replica("t1", 0).state is ReplicaState.OFFERED


def test_expiry_gives_up_when_attempts_are_spent(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=1, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la", lease_ms=30_000)
    [expiry] = store.expire_due(now_ms=T0 + 31_000)
    assert expiry.after.state is ReplicaState.FAILED
    assert store.task("t1").state is TaskState.FAILED


def test_same_result_twice_is_recorded_once(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    g = claim_and_grant(store, "t1", NODE_A, lease_id="la")
    result = result_for(g, rows_output(GOOD_ROW))
    envelope = seal(NODE_A, result, now_ms=T0)
    first = store.record_result(open_envelope(envelope, now_ms=T0, replay_cache=None), now_ms=T0)
    again = store.record_result(open_envelope(envelope, now_ms=T0, replay_cache=None), now_ms=T0 + 5)
    resealed = store.record_result(opened(result, NODE_A, T0 + 9), now_ms=T0 + 9)  # new nonce, same body
    assert not first.duplicate and again.duplicate and resealed.duplicate
    assert again.result == first.result == resealed.result
    assert len(store.results_for("t1")) == 1
    assert store.replica("t1", 0).state is ReplicaState.SUBMITTED

    j = [Judgement(first.result.result_id, Verdict.ACCEPTED)]
    rows = [NewRow(0, {"question": GOOD_ROW[0], "answer": GOOD_ROW[1]}, GOOD_ROW[2])]
    store.settle("t1", j, canonical_result_id=first.result.result_id, rows=rows, now_ms=T0 + 10)
    # A settle repeated after a crash (same verdicts) changes nothing and duplicates no row.
    store.settle("t1", j, canonical_result_id=first.result.result_id, rows=rows, now_ms=T0 + 20)
    assert len(store.rows("j1")) == 1
    assert store.verdict(first.result.result_id).decided_ms == T0 + 10  # type: ignore[union-attr]


def test_result_signed_by_someone_else_does_not_fill_the_slot(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    g = claim_and_grant(store, "t1", NODE_A, lease_id="la")
    stray = store.record_result(opened(result_for(g, rows_output(GOOD_ROW)), NODE_C), now_ms=T0)
    assert stray.replica is None and not stray.result.counted and stray.result.node == NODE_C.peer_id
    assert store.replica("t1", 0).state is ReplicaState.GRANTED
    # It can still be judged (and its signer penalised) without touching the replica.
    store.settle("t1", [Judgement(stray.result.result_id, Verdict.REJECTED, "signer_not_lease_holder")], now_ms=T0)
    assert store.replica("t1", 0).state is ReplicaState.GRANTED


def test_unknown_lease_is_refused(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    g = claim_and_grant(store, "t1", NODE_A, lease_id="la")
    forged = result_for(g, rows_output(GOOD_ROW), lease_id="never-granted")
    with pytest.raises(NotFound):
        store.record_result(opened(forged), now_ms=T0)
    assert store.results_for("t1") == []


def test_surplus_replicas_of_a_done_task_never_retry(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=3, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la")
    claim_and_grant(store, "t1", NODE_B, lease_id="lb")
    claim_and_grant(store, "t1", NODE_C, lease_id="lc", lease_ms=10_000)
    ra, rb = _submit(store, "t1", NODE_A, "la"), _submit(store, "t1", NODE_B, "lb")
    store.settle(
        "t1",
        [Judgement(ra.result.result_id, Verdict.ACCEPTED), Judgement(rb.result.result_id, Verdict.REJECTED, "x")],
        canonical_result_id=ra.result.result_id,
        now_ms=T0 + 1,
    )
    assert [s.state for s in store.replicas("t1")] == [ReplicaState.VERIFIED, ReplicaState.FAILED, ReplicaState.GRANTED]
    [expiry] = store.expire_due(now_ms=T0 + 20_000)
    assert expiry.after.state is ReplicaState.FAILED
    assert store.task("t1").state is TaskState.DONE


def test_settle_refuses_a_canonical_result_that_was_not_accepted(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la")
    r = _submit(store, "t1", NODE_A, "la")
    with pytest.raises(Conflict):
        store.settle("t1", [], canonical_result_id=r.result.result_id, now_ms=T0 + 1)
    assert store.task("t1").state is TaskState.OPEN
    with pytest.raises(Conflict):  # a verdict written in the same call is rolled back too
        store.settle(
            "t1",
            [Judgement(r.result.result_id, Verdict.REJECTED, "x")],
            canonical_result_id=r.result.result_id,
            now_ms=T0 + 1,
        )
    assert store.verdict(r.result.result_id) is None
    assert store.replica("t1", 0).state is ReplicaState.SUBMITTED


def test_add_replica_only_for_open_tasks(store: Store) -> None:
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=2, max_attempts=3, now_ms=T0)
    extra = store.add_replica("t1", now_ms=T0 + 1)
    assert (extra.replica, extra.state) == (2, ReplicaState.OFFERED)
    store.add_task("t2", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=1, now_ms=T0)
    claim_and_grant(store, "t2", NODE_A, lease_id="l2", lease_ms=1_000)
    store.expire_due(now_ms=T0 + 2_000)
    with pytest.raises(Conflict):
        store.add_replica("t2", now_ms=T0 + 3_000)


def test_large_payloads_live_in_verified_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db", inline_limit=1024)
    seed_job(store)
    small = RetrievePayload(url="http://127.0.0.1/small")
    big = synth_payload().model_copy(update={"instruction": "Ask about the chunk. " * 150})
    store.add_task("small", "j1", "retrieve", small, replicas=1, max_attempts=1, now_ms=T0)
    store.add_task("big", "j1", "synthesize", big, replicas=1, max_attempts=1, now_ms=T0)
    assert store.task_payload("small") == small
    assert store.task_payload("big") == big
    digest = store.task("big").payload_sha256
    assert store.blobs.has(digest) and not store.blobs.has(store.task("small").payload_sha256)
    # Flip one byte on disk: the read is refused rather than handing back wrong data.
    path = store.blobs.path(digest)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorrupted):
        store.task_payload("big")


def test_reputation_and_nodes_persist_across_reopen(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db") as store:
        rep = NodeReputation(peer_id="p1", score=0.1, rejected=4, blacklisted=True, updated_ms=T0)
        store.save_reputation(rep)
        store.touch_node("p1", now_ms=T0, status=b"\x80")
        store.touch_node("p1", now_ms=T0 - 5)  # an older sighting does not move last_seen back
    with Store(tmp_path / "c.db") as store:
        assert store.reputation("p1") == rep
        assert store.reputations() == [rep]
        assert store.reputation("p2") is None
        assert store.nodes() == ["p1"]


def test_a_tampered_stored_result_fails_to_reverify(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    seed_job(store)
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la")
    rid = _submit(store, "t1", NODE_A, "la").result.result_id
    raw = sqlite3.connect(tmp_path / "c.db")
    envelope = bytearray(raw.execute("SELECT envelope FROM results WHERE result_id = ?", (rid,)).fetchone()[0])
    at = envelope.find(b"Johannes")
    envelope[at] = ord("X")
    raw.execute("UPDATE results SET envelope = ? WHERE result_id = ?", (bytes(envelope), rid))
    raw.commit()
    with pytest.raises(BadSignature):
        store.result_message(rid)


def _strand(db: Path, lease_id: str) -> None:
    """Leave a replica EXPIRED without its follow-up, as a coordinator that stopped between the two might."""
    raw = sqlite3.connect(db)
    raw.execute("UPDATE slots SET state = 'expired' WHERE lease_id = ?", (lease_id,))
    raw.execute("UPDATE leases SET state = 'expired' WHERE lease_id = ?", (lease_id,))
    raw.commit()
    raw.close()


def test_a_late_result_for_a_still_expired_slot_fills_it_via_late_submit(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    seed_job(store)
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la", lease_ms=1_000)
    _strand(tmp_path / "c.db", "la")
    late = _submit(store, "t1", NODE_A, "la", T0 + 5_000)
    assert late.result.counted and late.replica is not None and late.replica.state is ReplicaState.SUBMITTED


def test_expire_due_converges_stranded_slots(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    seed_job(store)
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=1, max_attempts=3, now_ms=T0)
    claim_and_grant(store, "t1", NODE_A, lease_id="la", lease_ms=1_000)
    _strand(tmp_path / "c.db", "la")
    [expiry] = store.expire_due(now_ms=T0 + 2_000)
    assert expiry.before.state is ReplicaState.EXPIRED
    assert (expiry.after.state, expiry.after.attempt) == (ReplicaState.OFFERED, 1)


def test_a_job_moves_only_as_its_state_table_allows(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    store.create_job("j", {"topic": "t"}, now_ms=T0)
    for state in ("running", "waiting_for_nodes", "running", "compiling", "partial"):
        store.set_job_state("j", state, now_ms=T0)
    with pytest.raises(IllegalTransition) as info:
        store.set_job_state("j", "running", now_ms=T0 + 1)
    assert (info.value.machine, info.value.state, info.value.event) == ("job", "partial", "running")
    assert store.job("j").state == "partial" and store.job("j").updated_ms == T0
    assert not store.cancel_job("j", now_ms=T0)
    with pytest.raises(NotFound):
        store.set_job_state("nope", "running", now_ms=T0)
