"""The store and the verifier together, the way the scheduler will drive them (no network).

Doubles as the worked example of the call sequence:
record_result -> check_result -> quorum / compare_replicas + decide -> gate_row ->
reputation.update -> build_receipt -> settle.
"""

from __future__ import annotations

from pathlib import Path

from coordinator.store import Judgement, NewRow, Store, TaskState
from coordinator.verify.checks import check_result
from coordinator.verify.gates import Deduplicator, gate_row
from coordinator.verify.quorum import QuorumStatus, quorum
from coordinator.verify.reasons import Reason
from coordinator.verify.receipts import build_receipt, verify_receipt
from coordinator.verify.reputation import (
    NodeReputation,
    Outcome,
    new_node,
    outcome_for,
    plan_replication,
    update,
)
from coordinator.verify.rescoring import Agreement, Candidate, compare_replicas, decide
from protocol.envelope import open_envelope
from protocol.identity import Identity
from protocol.messages import MessageKind, Result, Verdict
from protocol.state import ReplicaState
from protocol.tasks import SynthesizeOutput, TaskKind, ValidateOutput
from tests.coordinator.factories import (
    ASYNCIO,
    COORDINATOR,
    GOOD_ROW,
    NODE_A,
    NODE_B,
    NODE_C,
    PATHLIB,
    T0,
    claim_and_grant,
    drifted,
    result_for,
    retrieve_output,
    retrieve_payload,
    rows_output,
    seal_result,
    seed_job,
    synth_payload,
)


def _reputation(store: Store, node: Identity, now_ms: int) -> NodeReputation:
    return store.reputation(node.peer_id) or new_node(node.peer_id, now_ms=now_ms)


def test_generative_task_with_a_cheating_replica(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    seed_job(store)
    job = store.job("j1")
    plan = plan_replication(store.reputation(NODE_A.peer_id), draw=0.5, now_ms=T0)
    assert plan.replicas == 2  # a node never seen runs replicated
    store.add_task("t1", "j1", "synthesize", synth_payload(), replicas=plan.replicas, max_attempts=3, now_ms=T0)

    honest_text = '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg, around 1440."}'
    cheat_row = ("Who developed the printing press?", "Johannes Brahms invented it in 1789.", GOOD_ROW[2])
    submitted: dict[str, int] = {}
    for node, lease, output, raw in [
        (NODE_A, "la", rows_output(GOOD_ROW), honest_text),
        (NODE_B, "lb", rows_output(cheat_row), '{"answer": "Johannes Brahms invented it in 1789."}'),
    ]:
        g = claim_and_grant(store, "t1", node, lease_id=lease)
        envelope = seal_result(result_for(g, output, raw_text=raw), node, T0 + 1_000)
        opened = open_envelope(envelope, now_ms=T0 + 1_000, replay_cache=None, expect={MessageKind.RESULT})
        recorded = store.record_result(opened, now_ms=T0 + 1_000)
        assert isinstance(opened.message, Result)
        failures = check_result(
            opened.message,
            signer_peer_id=opened.sender_peer_id,
            grant=store.grant_message(lease),
            allowed_models=job.allowed_models,
            now_ms=T0 + 1_000,
        )
        assert failures == []  # both are well-formed; only cross-checking can tell them apart
        submitted[node.peer_id] = recorded.result.result_id

    # Read back later (e.g. after a restart): re-verified as of issue time, no replay window involved.
    a = store.result_message(submitted[NODE_A.peer_id])
    b = store.result_message(submitted[NODE_B.peer_id])
    assert compare_replicas(a, b) is Agreement.DIVERGENT
    # A third node (never a producer) re-scores both; its measurements come back as ValidateOutputs.
    decisions = {
        NODE_A.peer_id: decide(Candidate("a", [ValidateOutput(n_tokens=2, mean_logprob=-1.1, topk_rate=0.97,
                                                              token_logprobs=[-1.0, -1.2])], -1.2)),
        NODE_B.peer_id: decide(Candidate("b", [ValidateOutput(n_tokens=2, mean_logprob=-5.5, topk_rate=0.31,
                                                              token_logprobs=[-5.0, -6.0])], -1.2)),
    }  # fmt: skip
    assert decisions[NODE_A.peer_id].accept and not decisions[NODE_B.peer_id].accept

    dedup = Deduplicator()
    assert isinstance(a.output, SynthesizeOutput)
    payload = store.task_payload("t1")
    assert payload.kind is TaskKind.SYNTHESIZE
    assert gate_row("t1/0", a.output.rows[0], chunk=payload.chunk, grounded=True, dedup=dedup) is None

    now = T0 + 2_000
    judgements, reps = [], []
    for node, result in [(NODE_A, a), (NODE_B, b)]:
        d = decisions[node.peer_id]
        verdict = Verdict.ACCEPTED if d.accept else Verdict.REJECTED
        reason = d.failure.reason if d.failure else None
        receipt = build_receipt(
            COORDINATOR, result, node_peer_id=node.peer_id, task_kind=TaskKind.SYNTHESIZE, verdict=verdict, now_ms=now
        )
        judgements.append(Judgement(submitted[node.peer_id], verdict, reason.value if reason else "", receipt=receipt))
        outcome = outcome_for(verdict, reason)
        assert outcome is not None
        reps.append(update(_reputation(store, node, now), outcome, now_ms=now))
    row = a.output.rows[0]
    settled = store.settle(
        "t1",
        judgements,
        canonical_result_id=submitted[NODE_A.peer_id],
        rows=[NewRow(0, row.data, row.evidence)],
        reputations=reps,
        now_ms=now,
    )
    assert settled.task.state is TaskState.DONE
    assert [s.state for s in store.replicas("t1")] == [ReplicaState.VERIFIED, ReplicaState.FAILED]  # done: no retry
    assert store.verdict(submitted[NODE_B.peer_id]).reason == Reason.RESCORE_FAILED  # type: ignore[union-attr]
    assert [r.data for r in store.rows("j1")] == [row.data]
    rep_a, rep_b = store.reputation(NODE_A.peer_id), store.reputation(NODE_B.peer_id)
    assert rep_a is not None and rep_b is not None and rep_a.score > 0.5 > rep_b.score
    # Node A audits its ledger offline.
    stored = store.receipt(submitted[NODE_A.peer_id])
    assert stored is not None
    audited = verify_receipt(stored, coordinator_keys={COORDINATOR.public_key}, node_peer_id=NODE_A.peer_id, result=a)
    assert audited.verdict is Verdict.ACCEPTED


def test_retrieve_task_settled_by_quorum(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    seed_job(store)
    store.add_task("r1", "j1", "retrieve", retrieve_payload(), replicas=3, max_attempts=3, now_ms=T0)
    ids = {}
    for node, lease, text in [(NODE_A, "la", ASYNCIO), (NODE_B, "lb", PATHLIB), (NODE_C, "lc", drifted(ASYNCIO))]:
        g = claim_and_grant(store, "r1", node, lease_id=lease)
        envelope = seal_result(result_for(g, retrieve_output(text)), node, T0 + 1)
        opened = open_envelope(envelope, now_ms=T0 + 1, replay_cache=None)
        ids[node.peer_id] = store.record_result(opened, now_ms=T0 + 1).result.result_id

    outputs = [(rid, store.result_message(rid).output) for rid in ids.values()]
    outcome = quorum(outputs)  # type: ignore[arg-type]
    assert outcome.status is QuorumStatus.AGREED and outcome.minority == (ids[NODE_B.peer_id],)
    assert outcome.canonical is not None
    judgements = [Judgement(rid, Verdict.ACCEPTED) for rid in outcome.majority] + [
        Judgement(rid, Verdict.REJECTED, Reason.QUORUM_MINORITY.value) for rid in outcome.minority
    ]
    store.settle("r1", judgements, canonical_result_id=outcome.canonical, now_ms=T0 + 2)
    assert store.task("r1").canonical_result_id == outcome.canonical
    assert sorted(s.state for s in store.replicas("r1")) == sorted([ReplicaState.VERIFIED] * 2 + [ReplicaState.FAILED])
    assert Outcome.REJECTED is outcome_for(Verdict.REJECTED, Reason.QUORUM_MINORITY)
