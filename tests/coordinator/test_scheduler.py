"""The scheduler end to end without a network: real store, real signatures, hand-made outputs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import coordinator.scheduler.results
from coordinator.scheduler import DEFER_WINDOW_MS, Scheduler, seed_for
from coordinator.store import Store, TaskState
from coordinator.verify.reasons import Reason
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import (
    Claim,
    Grant,
    MessageKind,
    ModelInfo,
    NodeStatus,
    Receipt,
    Reject,
    RejectReason,
    Result,
    TaskOffer,
    Verdict,
)
from protocol.state import ReplicaState
from protocol.tasks import TaskKind, ValidateOutput, ValidatePayload
from tests.coordinator.factories import (
    COORDINATOR,
    GOOD_ROW,
    MODEL,
    NODE_A,
    NODE_B,
    NODE_C,
    T0,
    result_for,
    rows_output,
    synth_payload,
)

NODE_D = Identity.from_seed(b"\x0d" * 32)
HONEST_TEXT = '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg developed it."}'


def new_scheduler(tmp_path: Path, *, grounded: bool = True, live: int = 6) -> Scheduler:
    store = Store(tmp_path / "c.db")
    store.create_job("j1", {"topic": "printing", "grounded": grounded}, allowed_models=[MODEL], now_ms=T0)
    s = Scheduler(store, COORDINATOR, rng=random.Random(1))
    status = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)
    for seed in range(live):  # nodes seen on the status topic: candidates for validation
        s.note_status(Identity.from_seed(bytes([0x0A + seed]) * 32).peer_id, status, T0)
    return s


def claim(s: Scheduler, task_id: str, node: Identity, now: int = T0) -> Grant | Reject:
    return s.on_claim(
        Claim(task_id=task_id, attempt=0, model_sha256=MODEL, free_slots=1, tok_s=50.0), node.peer_id, now
    )


def submit(s: Scheduler, result: Result, node: Identity, now: int = T0 + 1000) -> Receipt:
    opened = open_envelope(seal(node, result, now_ms=now), now_ms=now, replay_cache=None)
    receipt_env, _ = s.on_result(opened, now)
    receipt = open_envelope(receipt_env, now_ms=now, replay_cache=None, trusted={COORDINATOR.public_key}).message
    assert isinstance(receipt, Receipt)
    return receipt


def measurement(own: bool, *, lie: bool = False) -> ValidateOutput:
    """What a validator reports: the measured separation for own vs foreign text, or the reverse if it lies."""
    good = own != lie
    return ValidateOutput(
        n_tokens=2,
        mean_logprob=-1.2 if good else -6.0,
        topk_rate=0.97 if good else 0.2,
        token_logprobs=[-1.0, -1.4] if good else [-5.0, -7.0],
    )


def honest(g: Grant) -> Result:
    return result_for(g, rows_output(GOOD_ROW), raw_text=HONEST_TEXT)


def test_offers_carry_the_payload_digest_and_are_not_repeated_at_once(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    task = s.submit("t1", "j1", "synthesize", synth_payload(), est_tokens=100, now_ms=T0)
    offers = s.offers(T0)
    assert len(offers) == 1 and offers[0][0] is TaskKind.SYNTHESIZE
    offer = open_envelope(offers[0][1], now_ms=T0, replay_cache=None, expect={MessageKind.TASK_OFFER}).message
    assert isinstance(offer, TaskOffer)
    assert offer.payload_sha256 == task.payload_sha256 and offer.model_sha256 == [MODEL]
    assert s.offers(T0 + 100) == []  # not re-gossiped before reoffer_ms
    assert len(s.offers(T0 + s.config.reoffer_ms)) == 1


def test_two_agreeing_untrusted_replicas_are_accepted_with_rows_and_receipts(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga = claim(s, "t1", NODE_A)
    assert isinstance(ga, Grant) and ga.decoding is not None and ga.decoding.seed == seed_for("t1")
    assert len(s.store.replicas("t1")) == 2  # a new node's work is replicated
    again = claim(s, "t1", NODE_A)  # never the same node twice: a re-claim is the same lease
    assert isinstance(again, Grant) and again.lease_id == ga.lease_id
    assert [x.node for x in s.store.replicas("t1")].count(NODE_A.peer_id) == 1
    gb = claim(s, "t1", NODE_B)
    assert isinstance(gb, Grant)
    first = submit(s, honest(ga), NODE_A)
    assert first.verdict is Verdict.PENDING  # waiting for the second replica
    second = submit(s, honest(gb), NODE_B)
    assert second.verdict is Verdict.ACCEPTED
    assert s.store.task("t1").state is TaskState.DONE
    assert [r.data["question"] for r in s.store.rows("j1")] == [GOOD_ROW[0]]
    assert s.store.receipt(s.store.results_for("t1")[0].result_id) is not None
    rep = s.store.reputation(NODE_A.peer_id)
    assert rep is not None and rep.score > 0.5


def test_divergent_replicas_are_rescored_by_a_third_node_and_the_cheater_loses(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    cheat = ("Who developed the printing press?", "Johannes Brahms in 1789.", GOOD_ROW[2])
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(cheat), raw_text='{"answer": "Brahms"}'), NODE_B)
    validate_ids = [t.task_id for t in s.store.tasks("j1", stage="validate")]
    candidates = {r.result_id for r in s.store.results_for("t1")}
    assert len(validate_ids) == 2 and {s.store.validated_by(v) for v in validate_ids} == {("t1", c) for c in candidates}
    assert s.store.validations("t1") == {s.store.validated_by(v)[1]: v for v in validate_ids}  # type: ignore[index]
    # A producer may not validate either candidate.
    refused = claim(s, validate_ids[0], NODE_A)
    assert isinstance(refused, Reject) and refused.reason is RejectReason.ALREADY_HELD
    for vid in validate_ids:
        for validator in (NODE_C, NODE_D):  # two validators per candidate, and they must agree
            g = claim(s, vid, validator)
            assert isinstance(g, Grant) and isinstance(g.payload, ValidatePayload)
            submit(s, result_for(g, measurement(g.payload.candidate == HONEST_TEXT)), validator, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.DONE
    verdicts = {r.node: s.store.verdict(r.result_id) for r in s.store.results_for("t1")}
    assert verdicts[NODE_A.peer_id].verdict is Verdict.ACCEPTED  # type: ignore[union-attr]
    assert verdicts[NODE_B.peer_id].reason == Reason.RESCORE_FAILED  # type: ignore[union-attr]
    assert [r.data["answer"] for r in s.store.rows("j1")] == [GOOD_ROW[1]]
    rep_b = s.store.reputation(NODE_B.peer_id)
    assert rep_b is not None and rep_b.score < 0.5


def test_result_failing_checks_is_rejected_and_reoffered(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga = claim(s, "t1", NODE_A)
    assert isinstance(ga, Grant)
    bad = result_for(ga, rows_output(GOOD_ROW), raw_text=HONEST_TEXT, model_sha256="ee" * 32)
    receipt = submit(s, bad, NODE_A)
    assert receipt.verdict is Verdict.REJECTED
    verdict = s.store.verdict(s.store.results_for("t1")[0].result_id)
    assert verdict is not None and verdict.reason == Reason.MODEL_NOT_ALLOWED
    assert any(r.state is ReplicaState.OFFERED and r.attempt == 1 for r in s.store.replicas("t1"))


def test_blacklisted_nodes_get_no_work(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    for i in range(10):
        task_id = f"x{i}"
        s.submit(task_id, "j1", "synthesize", synth_payload(), now_ms=T0)
        g = claim(s, task_id, NODE_B)
        if isinstance(g, Reject):
            break
        submit(s, result_for(g, rows_output(GOOD_ROW), model_sha256="ee" * 32), NODE_B)
    rep = s.store.reputation(NODE_B.peer_id)
    assert rep is not None and rep.blacklisted and rep.rejected <= 10
    refused = claim(s, "t1", NODE_B)
    assert isinstance(refused, Reject) and refused.reason is RejectReason.NODE_BLACKLISTED


def test_a_repeated_claim_gets_the_same_grant_back_until_the_lease_lapses(tmp_path: Path) -> None:
    """A node whose grant was lost on the way claims again: it must get its lease, not a lapse later."""
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), est_tokens=10, now_ms=T0)
    first = claim(s, "t1", NODE_A)
    again = claim(s, "t1", NODE_A, now=T0 + 500)
    assert isinstance(first, Grant) and isinstance(again, Grant)
    assert again.lease_id == first.lease_id and again.payload == first.payload
    assert [x.node for x in s.store.replicas("t1")].count(NODE_A.peer_id) == 1
    assert s.stats["regrants"] == 1
    # Once the lease has lapsed the old grant is dead: the node may not resurrect it.
    late = claim(s, "t1", NODE_A, now=first.lease_deadline_ms + 1)
    assert not (isinstance(late, Grant) and late.lease_id == first.lease_id)


def test_lapsed_lease_is_reoffered_and_charged(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), est_tokens=10, now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant)
    s.tick(g.lease_deadline_ms + 1)
    replicas = s.store.replicas("t1")
    assert any(x.state is ReplicaState.OFFERED and x.attempt == 1 for x in replicas)
    rep = s.store.reputation(NODE_A.peer_id)
    assert rep is not None and rep.expired == 1


def test_a_retried_replica_samples_with_another_seed(tmp_path: Path) -> None:
    """The same seed can only write the same bytes: a re-run of an output that failed its re-score on
    another node would fail again, and charge that honest node too."""
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), est_tokens=10, now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant) and g.decoding is not None and g.decoding.seed == seed_for("t1")
    s.tick(g.lease_deadline_ms + 1)  # its lease lapses: the replica is offered again, attempt 1
    retry = claim(s, "t1", NODE_C, now=g.lease_deadline_ms + 2)
    assert isinstance(retry, Grant) and retry.attempt == 1 and retry.decoding is not None
    assert retry.decoding.seed == seed_for("t1", 1) != seed_for("t1")
    other = claim(s, "t1", NODE_B, now=g.lease_deadline_ms + 2)  # the untouched replica keeps the first seed
    assert isinstance(other, Grant) and other.attempt == 0 and other.decoding is not None
    assert other.decoding.seed == seed_for("t1")


def test_a_restarted_scheduler_decides_what_was_pending(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    # Results recorded, then the coordinator dies before deciding (simulated by recording directly).
    for g, node in ((ga, NODE_A), (gb, NODE_B)):
        env = seal(node, honest(g), now_ms=T0 + 1000)
        s.store.record_result(open_envelope(env, now_ms=T0 + 1000, replay_cache=None), now_ms=T0 + 1000)
    assert s.store.open_tasks_with_pending_results() == ["t1"]
    s.store.close()
    store = Store(tmp_path / "c.db")
    again = Scheduler(store, COORDINATOR)
    receipts = again.resume(T0 + 2000)
    assert store.task("t1").state is TaskState.DONE
    assert {o.peer_id for o in receipts} == {NODE_A.peer_id, NODE_B.peer_id}
    assert len(store.rows("j1")) == 1


def test_a_lying_validator_is_outvoted_and_penalised(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    cheat = ("Who developed the printing press?", "Johannes Brahms in 1789.", GOOD_ROW[2])
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(cheat), raw_text='{"answer": "Brahms"}'), NODE_B)
    liar, extra = Identity.from_seed(b"\x0e" * 32), Identity.from_seed(b"\x0f" * 32)
    for vid in [t.task_id for t in s.store.tasks("j1", stage="validate")]:
        for validator, lies in ((NODE_C, False), (liar, True), (extra, False)):
            g = claim(s, vid, validator)
            if isinstance(g, Reject):
                continue  # the first two agreed already, or the task is closed
            assert isinstance(g.payload, ValidatePayload)
            own = g.payload.candidate == HONEST_TEXT
            submit(s, result_for(g, measurement(own, lie=lies)), validator, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.DONE
    assert [r.data["answer"] for r in s.store.rows("j1")] == [GOOD_ROW[1]]  # the cheater's row is not delivered
    rep_liar = s.store.reputation(liar.peer_id)
    assert rep_liar is not None and rep_liar.rejected >= 1 and rep_liar.score < 0.5


def test_a_check_that_raises_stores_nothing_so_no_result_is_left_without_a_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No wire input was found that makes check_result raise (the canonical encoding bounds nesting far
    below what its schema checks recurse into), so the fault is injected. Were the result recorded
    before the check, it would sit counted and unjudged, and `resume` would decide it unchecked."""
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, honest(gb), NODE_B)

    def garbage_breaks_the_checker(*args: object, **kwargs: object) -> list[object]:
        raise RecursionError("maximum recursion depth exceeded while getting the repr of an object")

    monkeypatch.setattr(coordinator.scheduler.results, "check_result", garbage_breaks_the_checker)
    with pytest.raises(RecursionError):
        submit(s, honest(ga), NODE_A)
    assert [r.node for r in s.store.results_for("t1")] == [NODE_B.peer_id]  # A's result was not stored
    assert [x.state for x in s.store.replicas("t1")] == [ReplicaState.GRANTED, ReplicaState.SUBMITTED]
    assert s.resume(T0 + 1500) == [] and s.store.task("t1").state is TaskState.OPEN  # nothing decided unchecked

    monkeypatch.undo()  # the node sends its result again: checked, recorded and decided as usual
    assert submit(s, honest(ga), NODE_A, now=T0 + 2000).verdict is Verdict.ACCEPTED
    assert s.store.task("t1").state is TaskState.DONE


def test_an_abandoned_replica_sends_the_lone_result_to_rescoring_not_to_the_dataset(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga = claim(s, "t1", NODE_A)  # an untrusted node: a second replica is added
    assert isinstance(ga, Grant)
    submit(s, honest(ga), NODE_A)
    assert s.store.untaken_tasks("j1", "synthesize") == ["t1"]  # the replica nobody took
    s.abandon("t1", T0 + 5000)
    assert s.store.task("t1").state is TaskState.OPEN
    assert s.store.rows("j1") == []  # not delivered on one untrusted node's word
    assert [t.task_id for t in s.store.tasks("j1", stage="validate")] != []


def test_abandoning_an_untaken_task_fails_it_and_stops_offering_it(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    s.abandon("t1", T0 + 1000)
    assert s.store.task("t1").state is TaskState.FAILED
    assert all(x.state is ReplicaState.FAILED for x in s.store.replicas("t1"))
    assert s.offers(T0 + 10_000) == []


def test_a_small_network_audits_with_the_one_validator_it_has(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path, live=3)  # A, B and C are up
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(GOOD_ROW), raw_text='{"answer": "x"}'), NODE_B)
    for vid in [t.task_id for t in s.store.tasks("j1", stage="validate")]:
        assert len(s.store.replicas(vid)) == 1  # only C is eligible: producers never validate
        g = claim(s, vid, NODE_C)
        assert isinstance(g, Grant) and isinstance(g.payload, ValidatePayload)
        submit(s, result_for(g, measurement(g.payload.candidate == HONEST_TEXT)), NODE_C, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.DONE


def test_validators_are_counted_among_nodes_that_run_validate_on_the_model(tmp_path: Path) -> None:
    """Live nodes that do not validate, or lack the candidate's model, cannot fill a validator slot."""
    s = new_scheduler(tmp_path, live=2)  # A and B: the producers
    synth_only = NodeStatus(version="t", models=[], task_kinds=[TaskKind.SYNTHESIZE], free_slots=1, total_slots=1)
    other_model = NodeStatus(
        version="t", models=[ModelInfo(name="m", sha256="cd" * 32, tok_s=9.0, n_ctx=2048, slots=1)],
        task_kinds=[TaskKind.VALIDATE], free_slots=1, total_slots=1,
    )  # fmt: skip
    s.note_status(NODE_C.peer_id, synth_only, T0)
    s.note_status(NODE_D.peer_id, other_model, T0)
    right = NodeStatus(
        version="t", models=[ModelInfo(name="m", sha256=MODEL, tok_s=9.0, n_ctx=2048, slots=1)],
        task_kinds=[TaskKind.VALIDATE], free_slots=1, total_slots=1,
    )  # fmt: skip
    s.note_status(Identity.from_seed(b"\x0e" * 32).peer_id, right, T0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(GOOD_ROW), raw_text='{"answer": "x"}'), NODE_B)
    validations = s.store.tasks("j1", stage="validate")
    assert validations and all(len(s.store.replicas(v.task_id)) == 1 for v in validations)


def test_a_node_that_may_validate_is_sent_to_a_waiting_validation_first(tmp_path: Path) -> None:
    """Audits decide finished work: a free validator takes them before new synthesize tasks."""
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    s.submit("t2", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(GOOD_ROW), raw_text='{"answer": "x"}'), NODE_B)  # divergent
    validations = sorted(t.task_id for t in s.store.tasks("j1", stage="validate"))
    assert len(validations) == 2
    first_offers = {opened_offer(env).task_id for _, env in s.offers(T0 + 2000)}
    assert set(validations) <= first_offers
    assert not {opened_offer(env).task_id for _, env in s.offers(T0 + 2100)}  # nothing is due again yet

    # C may validate: its claims for new work are refused, and the audit is offered again at once.
    deferred = claim(s, "t2", NODE_C, now=T0 + 2200)
    assert isinstance(deferred, Reject) and deferred.reason is RejectReason.DEFERRED
    waiting = next(v for v in validations if v in deferred.detail)
    assert [opened_offer(env).task_id for _, env in s.offers(T0 + 2300)] == [waiting]
    again = claim(s, "t2", NODE_C, now=T0 + 2400)  # another offer reached C before the audit's did
    assert isinstance(again, Reject) and again.reason is RejectReason.DEFERRED and waiting in again.detail
    g = claim(s, waiting, NODE_C, now=T0 + 2500)
    assert isinstance(g, Grant) and isinstance(g.payload, ValidatePayload)
    # D is sent to the audits still waiting, but only for DEFER_WINDOW_MS: then it gets new work.
    d = claim(s, "t2", NODE_D, now=T0 + 2600)
    assert isinstance(d, Reject) and d.reason is RejectReason.DEFERRED
    later = T0 + 2600 + DEFER_WINDOW_MS + 1  # (it may be sent to the other waiting audit first, once)
    answers = [claim(s, "t2", NODE_D, now=later), claim(s, "t2", NODE_D, now=later + DEFER_WINDOW_MS + 1)]
    assert any(isinstance(a, Grant) for a in answers), answers  # no livelock
    # A producer cannot validate its own task's candidates: it is never deferred for them.
    s.submit("t3", "j1", "synthesize", synth_payload(), now_ms=T0)
    assert isinstance(claim(s, "t3", NODE_A, now=T0 + 2800), Grant)


def opened_offer(envelope: bytes) -> TaskOffer:
    offer = open_envelope(envelope, now_ms=T0 + 2000, replay_cache=None).message
    assert isinstance(offer, TaskOffer)
    return offer


def test_a_task_every_live_node_has_run_is_given_up_at_once_not_after_the_stall_timer(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path, live=2)  # A and B: both produce, nobody is left to audit or retry
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, honest(ga), NODE_A)
    submit(s, result_for(gb, rows_output(GOOD_ROW), raw_text='{"answer": "x"}'), NODE_B)
    assert s.store.task("t1").state is TaskState.FAILED
    assert all(x.state is not ReplicaState.OFFERED for x in s.store.replicas("t1"))
    assert s.stats["abandoned"] == 1

    # With a third live node the rejected replica is offered again instead.
    s2 = new_scheduler(tmp_path / "three", live=3)
    s2.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g1, g2 = claim(s2, "t1", NODE_A), claim(s2, "t1", NODE_B)
    assert isinstance(g1, Grant) and isinstance(g2, Grant)
    submit(s2, result_for(g1, rows_output(GOOD_ROW), raw_text=HONEST_TEXT, model_sha256="ee" * 32), NODE_A)
    assert s2.store.task("t1").state is TaskState.OPEN and s2.stats["abandoned"] == 0
    assert any(x.state is ReplicaState.OFFERED and x.attempt == 1 for x in s2.store.replicas("t1"))  # for C


def test_token_ceilings_cover_what_the_nodes_grammar_admits_for_pipeline_payloads() -> None:
    """The grant states the real budget: a node raises a grant below its grammar's bound to that bound."""
    from coordinator.pipeline.synthesize import grounded_row_schema
    from coordinator.request import parse_request
    from coordinator.scheduler import SchedulerConfig
    from node.executors import judge, question_gen, spec, synthesize
    from node.llm.schema import compile_schema
    from node.llm.structured import TOKEN_SLACK
    from protocol.tasks import QuestionGenPayload, SpecPayload

    qa = parse_request("question-answer pairs about heapq, grounded in the docs").spec
    payload = synth_payload().model_copy(update={"row_schema": grounded_row_schema(qa)})
    bounds = {
        TaskKind.SPEC: compile_schema(spec.output_schema(SpecPayload(request="x"))).max_chars,
        TaskKind.QUESTION_GEN: compile_schema(question_gen.output_schema(QuestionGenPayload(topic="x"))).max_chars,
        TaskKind.JUDGE: compile_schema(judge.OUTPUT_SCHEMA).max_chars,
        TaskKind.SYNTHESIZE: compile_schema(synthesize.output_schema(payload)[0]).max_chars,
    }
    ceilings = SchedulerConfig().max_tokens
    for kind, bound in bounds.items():
        assert ceilings[kind] >= bound + TOKEN_SLACK, (kind, bound)
