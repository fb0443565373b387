"""Operator-trusted nodes (config `trusted_nodes`): r = 1 with spot-checks, and alone they check themselves.

Real store, real signatures, hand-made outputs, as in test_scheduler.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coordinator.compile import ValidatorRecord, compile_dataset, verify_directory
from coordinator.config import ConfigError, load_coordinator_config
from coordinator.scheduler import Scheduler, SchedulerConfig
from coordinator.store import Store, TaskState
from coordinator.verify.reputation import ReputationConfig, new_node, plan_replication
from protocol.envelope import seal
from protocol.messages import Grant, NodeStatus, Reject, RejectReason, Verdict
from protocol.tasks import TaskKind, ValidatePayload
from tests.coordinator.factories import (
    COORDINATOR,
    GOOD_ROW,
    MODEL,
    NODE_A,
    NODE_B,
    T0,
    page,
    result_for,
    retrieve_output,
    retrieve_payload,
    synth_payload,
)
from tests.coordinator.test_compile_fixtures import (
    DOCS,
    NODES,
    REQUEST,
    build_rows,
    read_jsonl,
    spec,
    validate_result,
)
from tests.coordinator.test_scheduler import claim, honest, measurement, submit

STATUS = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)


def scheduler(tmp_path: Path, *, live: tuple[str, ...], spot_check_p: float = 0.0) -> Scheduler:
    store = Store(tmp_path / "c.db")
    store.create_job("j1", {"topic": "printing", "grounded": True}, allowed_models=[MODEL], now_ms=T0)
    config = SchedulerConfig(
        trusted_nodes=frozenset({NODE_A.peer_id}), reputation=ReputationConfig(spot_check_p=spot_check_p)
    )
    s = Scheduler(store, COORDINATOR, config, rng=random.Random(1))
    for peer in live:
        s.note_status(peer, STATUS, T0)
    return s


def test_a_trusted_node_alone_checks_its_own_generation_in_a_separate_validate_task(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=(NODE_A.peer_id,))
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant)
    assert len(s.store.replicas("t1")) == 1  # no second replica for the operator's node
    assert submit(s, honest(g), NODE_A).verdict is Verdict.PENDING  # not taken on trust: it waits on a re-score
    [vtask] = s.store.tasks("j1", stage="validate")
    vg = claim(s, vtask.task_id, NODE_A)
    assert isinstance(vg, Grant) and isinstance(vg.payload, ValidatePayload)
    submit(s, result_for(vg, measurement(True)), NODE_A, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.DONE
    assert [r.data["question"] for r in s.store.rows("j1")] == [GOOD_ROW[0]]


def test_a_trusted_node_alone_that_lies_about_its_model_is_still_caught_by_its_own_re_score(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=(NODE_A.peer_id,))
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant)
    submit(s, honest(g), NODE_A)
    [vtask] = s.store.tasks("j1", stage="validate")
    vg = claim(s, vtask.task_id, NODE_A)
    assert isinstance(vg, Grant)
    submit(s, result_for(vg, measurement(False)), NODE_A, now=T0 + 2000)  # its prefill says: not this model
    assert s.store.rows("j1") == []


def test_once_another_node_is_live_it_re_scores_instead_and_the_producer_may_not(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=1.0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant)
    assert len(s.store.replicas("t1")) == 1
    submit(s, honest(g), NODE_A)
    [vtask] = s.store.tasks("j1", stage="validate")  # the spot-check
    refused = claim(s, vtask.task_id, NODE_A)
    assert isinstance(refused, Reject) and refused.reason is RejectReason.ALREADY_HELD
    vg = claim(s, vtask.task_id, NODE_B)
    assert isinstance(vg, Grant)
    submit(s, result_for(vg, measurement(True)), NODE_B, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.DONE


def test_with_another_node_live_and_no_spot_check_drawn_the_trusted_result_is_taken_alone(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=0.0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant)
    assert submit(s, honest(g), NODE_A).verdict is Verdict.ACCEPTED
    assert s.store.tasks("j1", stage="validate") == []


def test_a_spot_check_picked_before_a_restart_still_re_scores_the_result_after_it(tmp_path: Path) -> None:
    """The pick is in the store: a coordinator restarted while the trusted node runs the task does not
    take its result on trust (the new scheduler draws nothing: spot_check_p is 0 there)."""
    s = scheduler(tmp_path, live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=1.0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_A)
    assert isinstance(g, Grant) and len(s.store.replicas("t1")) == 1
    assert s.store.spot_checked("t1")
    s.store.close()  # the coordinator stops while node A runs the task

    config = SchedulerConfig(trusted_nodes=frozenset({NODE_A.peer_id}), reputation=ReputationConfig(spot_check_p=0.0))
    restarted = Scheduler(Store(tmp_path / "c.db"), COORDINATOR, config, rng=random.Random(1))
    assert restarted.resume(T0 + 500) == []
    for peer in (NODE_A.peer_id, NODE_B.peer_id):
        restarted.note_status(peer, STATUS, T0 + 500)
    assert submit(restarted, honest(g), NODE_A).verdict is Verdict.PENDING  # not accepted alone
    [mine] = restarted.store.results_for("t1")
    assert restarted.store.verdict(mine.result_id) is None
    [vtask] = restarted.store.tasks("j1", stage="validate")
    assert restarted.store.validated_by(vtask.task_id) == ("t1", mine.result_id)
    vg = claim(restarted, vtask.task_id, NODE_B, now=T0 + 1500)
    assert isinstance(vg, Grant)
    submit(restarted, result_for(vg, measurement(True)), NODE_B, now=T0 + 2000)
    assert restarted.store.task("t1").state is TaskState.DONE
    verdict = restarted.store.verdict(mine.result_id)
    assert verdict is not None and verdict.verdict is Verdict.ACCEPTED
    assert not restarted.store.spot_checked("t1")  # decided: the pick is spent


def test_an_untrusted_node_alone_never_validates_itself(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=(NODE_B.peer_id,))
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    g = claim(s, "t1", NODE_B)
    assert isinstance(g, Grant)
    assert len(s.store.replicas("t1")) == 2  # a newcomer's work needs a second node
    submit(s, honest(g), NODE_B)
    assert s.store.task("t1").state is TaskState.OPEN and s.store.rows("j1") == []


def test_a_deterministic_spot_check_is_a_second_replica_only_when_another_node_can_run_it(tmp_path: Path) -> None:
    alone = scheduler(tmp_path / "alone", live=(NODE_A.peer_id,), spot_check_p=1.0)
    alone.submit("r1", "j1", "retrieve", retrieve_payload(), now_ms=T0)
    assert isinstance(claim(alone, "r1", NODE_A), Grant)
    assert len(alone.store.replicas("r1")) == 1  # nobody else could take a second replica: it would only stall

    (tmp_path / "pair").mkdir()
    pair = scheduler(tmp_path / "pair", live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=1.0)
    pair.submit("r1", "j1", "retrieve", retrieve_payload(), now_ms=T0)
    ga = claim(pair, "r1", NODE_A)
    assert isinstance(ga, Grant)
    assert len(pair.store.replicas("r1")) == 2
    gb = claim(pair, "r1", NODE_B)
    assert isinstance(gb, Grant)
    text = page()
    submit(pair, result_for(ga, retrieve_output(text)), NODE_A)
    submit(pair, result_for(gb, retrieve_output(text)), NODE_B)
    assert pair.store.task("r1").state is TaskState.DONE


def test_plan_replication_trusts_the_operators_node_but_not_once_blacklisted() -> None:
    fresh = new_node("p", now_ms=T0)
    assert plan_replication(fresh, draw=0.5, now_ms=T0).replicas == 2
    trusted = plan_replication(fresh, draw=0.5, now_ms=T0, operator_trusted=True)
    assert trusted.replicas == 1 and not trusted.spot_check
    assert plan_replication(fresh, draw=0.01, now_ms=T0, operator_trusted=True).spot_check
    banned = fresh.__class__(**{**fresh.__dict__, "blacklisted": True})
    assert plan_replication(banned, draw=0.5, now_ms=T0, operator_trusted=True).replicas == 0


def test_config_refuses_a_trusted_node_that_is_not_a_peer_id() -> None:
    assert load_coordinator_config(None, trusted_nodes=[NODE_A.peer_id]).trusted_nodes == [NODE_A.peer_id]
    with pytest.raises(ConfigError, match="trusted_nodes"):
        load_coordinator_config(None, trusted_nodes=["not-a-peer"])


def test_rows_checked_only_by_their_writer_say_so_in_provenance_and_on_the_card(tmp_path: Path) -> None:
    built = build_rows(2)
    rows = []
    for i, row in enumerate(built.rows):
        writer = next(n for n in NODES if n.peer_id == row.producer.peer_id)
        vtask = f"self-validate-{i}"
        own = ValidatorRecord(
            peer_id=writer.peer_id, task_id=vtask, envelope=seal(writer, validate_result(vtask), now_ms=T0 + i)
        )
        rows.append(row.model_copy(update={"replicas": [], "validators": [own]}))
    out = tmp_path / "dataset"
    compile_dataset(
        out, spec=spec(rows=2), request=REQUEST, rows=rows, stats=built.stats, coordinator=COORDINATOR,
        created_at_ms=T0 + 120_000, documents=DOCS,
    )  # fmt: skip
    lines = read_jsonl(out / "provenance.jsonl")
    checks = [list(line["checks"]) for line in lines]  # type: ignore[call-overload]
    assert all("rescored_by_producer" in c and "rescored" not in c for c in checks)
    card = (out / "README.md").read_text()
    assert "verified by the operator's own node only**: 2 of 2 rows" in card
    assert "re-scored by an independent validator: 0 of 2" in card
    assert "verified by redundancy" not in card
    assert verify_directory(out).ok


def test_the_card_states_the_verifiers_measured_error_rates_for_the_model_or_that_none_were_measured() -> None:
    from coordinator.verify.error_rates import BUNDLED_SMOLLM2, card_lines

    measured = "\n".join(card_lines([BUNDLED_SMOLLM2]))
    assert "honest output charged by re-scoring (false positive): 7 of 2106" in measured
    assert "another llama.cpp build" in measured and "earlier verifier error rates" in measured
    assert "another model's output" in measured
    unknown = card_lines(["ab" * 32])
    assert len(unknown) == 1 and "not measured" in unknown[0]


def test_a_trusted_node_that_claims_a_newcomers_second_replica_draws_no_spot_check(tmp_path: Path) -> None:
    """Agreeing replicas need no re-score: a spot-check drawn on the second claim would send both to one."""
    s = scheduler(tmp_path, live=(NODE_A.peer_id, NODE_B.peer_id), spot_check_p=1.0)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    gb = claim(s, "t1", NODE_B)  # a newcomer first: the task runs at r = 2
    ga = claim(s, "t1", NODE_A)  # the operator's node takes the second replica, at p = 1
    assert isinstance(gb, Grant) and isinstance(ga, Grant) and len(s.store.replicas("t1")) == 2
    assert not s.store.spot_checked("t1")
    submit(s, honest(gb), NODE_B)
    assert submit(s, honest(ga), NODE_A).verdict is Verdict.ACCEPTED
    assert s.store.tasks("j1", stage="validate") == []
