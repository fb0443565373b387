"""Pull: a node with a free slot asks for any open task it can run (real store and signatures)."""

from __future__ import annotations

from pathlib import Path

from protocol.messages import Grant, Pull, Reject, RejectReason
from protocol.tasks import TaskKind, ValidatePayload
from tests.coordinator.factories import (
    GOOD_ROW,
    MODEL,
    NODE_A,
    NODE_B,
    NODE_C,
    OTHER_MODEL,
    T0,
    result_for,
    rows_output,
    synth_payload,
)
from tests.coordinator.test_scheduler import HONEST_TEXT, claim, new_scheduler, submit


def pull(kinds: list[TaskKind], models: list[str] | None = None) -> Pull:
    return Pull(task_kinds=kinds, model_sha256=[MODEL] if models is None else models, free_slots=1, tok_s=50.0)


def test_a_pull_is_granted_the_oldest_open_task_as_a_claim_would_be(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    s.submit("t2", "j1", "synthesize", synth_payload(), now_ms=T0 + 1)
    g = s.on_pull(pull([TaskKind.SYNTHESIZE]), NODE_A.peer_id, T0)
    assert isinstance(g, Grant) and g.task_id == "t1" and g.node_peer_id == NODE_A.peer_id
    again = s.on_pull(pull([TaskKind.SYNTHESIZE]), NODE_A.peer_id, T0)
    assert isinstance(again, Reject) and again.reason is RejectReason.NO_CAPACITY  # one slot, held


def test_audits_come_first_and_never_go_to_a_producer(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    ga, gb = claim(s, "t1", NODE_A), claim(s, "t1", NODE_B)
    assert isinstance(ga, Grant) and isinstance(gb, Grant)
    submit(s, result_for(ga, rows_output(GOOD_ROW), raw_text=HONEST_TEXT), NODE_A)
    cheat = ("Who developed the printing press?", "Johannes Brahms in 1789.", GOOD_ROW[2])
    submit(s, result_for(gb, rows_output(cheat), raw_text='{"answer": "Brahms"}'), NODE_B)
    s.submit("t2", "j1", "synthesize", synth_payload(), now_ms=T0 + 5)  # newer work is also open
    kinds = [TaskKind.SYNTHESIZE, TaskKind.VALIDATE]
    g = s.on_pull(pull(kinds), NODE_C.peer_id, T0 + 2000)
    assert isinstance(g, Grant) and isinstance(g.payload, ValidatePayload)
    own = s.on_pull(pull([TaskKind.VALIDATE]), NODE_A.peer_id, T0 + 2000)
    assert isinstance(own, Reject) and own.reason is RejectReason.NONE_OPEN


def test_a_pull_for_kinds_or_models_with_no_open_task_is_answered_none_open(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    for p in (pull([TaskKind.SEARCH]), pull([TaskKind.SYNTHESIZE], [OTHER_MODEL]), pull([TaskKind.SYNTHESIZE], [])):
        answer = s.on_pull(p, NODE_A.peer_id, T0)
        assert isinstance(answer, Reject) and answer.reason is RejectReason.NONE_OPEN
    assert s.store.replicas("t1")[0].node is None  # nothing was claimed on the way
