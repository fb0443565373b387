"""`decide(view)` as a table: one task's snapshot in, one decision out. No store, no clock, no network.

Each row states the task kind, its replicas and pending results (by producer and output), the spot-check
pick, the audits' outcomes, which nodes could validate, and the decision expected, summarised as
(decision, canonical, accepted, rejected with reasons, credit, spot-check cleared) or (decision, detail).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from coordinator.scheduler import (
    Accept,
    AddReplica,
    Decision,
    NeedAudit,
    Reject,
    SchedulerConfig,
    TaskView,
    Wait,
    decide,
)
from coordinator.scheduler.nodes import choose_validators
from coordinator.scheduler.rows import answer_first_failure
from coordinator.store import ReplicaRecord, ResultRecord, TaskRecord, TaskState
from coordinator.verify.reasons import Reason
from coordinator.verify.rescoring import RoundTripThresholds
from protocol.messages import Result
from protocol.state import ReplicaState
from protocol.tasks import (
    AnswerTarget,
    RoundTrip,
    SynthesizePayload,
    TaskKind,
    TaskOutput,
    TaskPayload,
    ValidateOutput,
    ValidatePayload,
)
from tests.coordinator.factories import (
    GOOD_ROW,
    MODEL,
    T0,
    chunk,
    grant,
    page,
    result_for,
    retrieve_output,
    retrieve_payload,
    rows_output,
    synth_payload,
)

HONEST = '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg."}'
OTHER = '{"answer": "Johannes Brahms in 1789, in Vienna, on a Tuesday afternoon."}'
TRUSTED = "trusted-node"
SENTENCE = "The printing press was developed by Johannes Gutenberg around 1440 in Mainz."

# Validator outputs: a pass, a fail, and round trips.
PASS = ValidateOutput(n_tokens=2, mean_logprob=-1.2, topk_rate=0.97, token_logprobs=[-1.0, -1.4])
FAIL = ValidateOutput(n_tokens=2, mean_logprob=-6.0, topk_rate=0.2, token_logprobs=[-5.0, -7.0])
TRIP = RoundTrip(answer_rank=0, margin=0.4, gain=1.2, n_sentences=2)
MISSED = RoundTrip(answer_rank=1, margin=-0.2, gain=0.5, n_sentences=2)
PASS_TRIP = PASS.model_copy(update={"roundtrip": TRIP})
PASS_MISSED = PASS.model_copy(update={"roundtrip": MISSED})


def answer_first() -> SynthesizePayload:
    target = AnswerTarget(sentence=SENTENCE, question_field="question", answer_field="answer")
    return synth_payload().model_copy(update={"target": target, "chunk": chunk()})


@dataclass(frozen=True)
class Out:
    """One result of the task: who produced it and what."""

    node: str
    output: TaskOutput | None = None
    raw_text: str = HONEST
    model: str | None = MODEL
    counted: bool = True
    judged: bool = False


@dataclass(frozen=True)
class Row:
    kind: TaskKind
    results: Sequence[Out]
    replicas: Sequence[ReplicaState] | None = None
    """Replica states (default: one SUBMITTED replica per result)."""
    state: TaskState = TaskState.OPEN
    payload: TaskPayload | None = None
    spot_checked: bool = False
    audits: Mapping[int, tuple[ValidateOutput, ...] | None] = field(default_factory=dict)
    """By result index (1-based result id)."""
    live: Collection[str] = ("v1", "v2", "v3")
    """Live nodes that serve VALIDATE on the model."""
    trusted: frozenset[str] = frozenset({TRUSTED})


def default_output(kind: TaskKind) -> TaskOutput:
    if kind is TaskKind.RETRIEVE:
        return retrieve_output(page())
    if kind is TaskKind.VALIDATE:
        return PASS
    return rows_output(GOOD_ROW)


def view_of(row: Row) -> TaskView:
    payloads: dict[TaskKind, TaskPayload] = {
        TaskKind.RETRIEVE: retrieve_payload(),
        TaskKind.SYNTHESIZE: synth_payload(),
        TaskKind.VALIDATE: ValidatePayload(model_sha256=MODEL, prompt="p", candidate=HONEST),
    }
    payload = row.payload or payloads[row.kind]
    task = TaskRecord("t1", "j1", row.kind.value, row.kind, "00" * 32, 10, 4, row.state, None, T0, T0)
    replica_states = row.replicas or [ReplicaState.SUBMITTED] * len(row.results)
    replicas = tuple(ReplicaRecord("t1", i, s, 0, None, None, None, T0) for i, s in enumerate(replica_states))
    records, messages = [], {}
    for i, out in enumerate(row.results, start=1):
        g = grant(payload, lease_id=f"l{i}", model=out.model)
        llm = g.model_sha256 is not None
        msg: Result = result_for(
            g, out.output or default_output(row.kind), **({"raw_text": out.raw_text} if llm else {})
        )
        records.append(ResultRecord(i, f"{i:064x}", "t1", f"l{i}", i - 1, 0, out.node, b"", out.counted, T0))
        if out.counted and not out.judged:
            messages[i] = msg
    pending = tuple(r for r in records if r.result_id in messages)

    def validators(producers: Collection[str], model: str | None) -> list[str]:
        return choose_validators(list(row.live), producers, row.trusted)

    return TaskView(
        task,
        replicas,
        tuple(records),
        pending,
        messages,
        payload=payload if row.kind is TaskKind.SYNTHESIZE else None,
        spot_checked=row.spot_checked,
        audits=dict(row.audits),
        validators=validators,
    )


def summary(d: Decision) -> tuple[object, ...]:
    if isinstance(d, Accept):
        rejected = tuple((rid, f.reason) for rid, f in d.rejected)
        return ("accept", d.canonical, d.accepted, rejected, d.credit, d.clear_spot_check)
    if isinstance(d, Reject):
        return ("reject", tuple((rid, f.reason) for rid, f in d.rejected), d.clear_spot_check)
    if isinstance(d, NeedAudit):
        return ("audit", d.candidates)
    if isinstance(d, AddReplica):
        return ("replica",)
    assert isinstance(d, Wait)
    return ("wait", d.why)


R, S, V = TaskKind.RETRIEVE, TaskKind.SYNTHESIZE, TaskKind.VALIDATE
SUB, GRANTED, OFFERED = ReplicaState.SUBMITTED, ReplicaState.GRANTED, ReplicaState.OFFERED
QM, UNV, RSF = Reason.QUORUM_MINORITY, Reason.UNVERIFIABLE, Reason.RESCORE_FAILED
PAGE_A, PAGE_B, PAGE_C = (retrieve_output(page(variant=v)) for v in (0, 1, 2))
LIAR = ValidateOutput(n_tokens=2, mean_logprob=-6.0, topk_rate=0.2, token_logprobs=[-5.0, -7.0])

TABLE = [
    # --- any kind: nothing to decide yet
    pytest.param(Row(S, [Out("a")], state=TaskState.DONE), ("wait", "task is done"), id="closed"),
    pytest.param(Row(S, [Out("a")], replicas=[SUB, GRANTED]), ("wait", "replicas running"), id="replica-out"),
    pytest.param(Row(S, [Out("a", judged=True)]), ("wait", "no result pending"), id="all-judged"),
    pytest.param(
        Row(S, [Out("a", counted=False)], replicas=[ReplicaState.FAILED]),
        ("wait", "no result pending"),
        id="uncounted-only",
    ),
    # --- deterministic: quorum
    pytest.param(Row(R, [Out("a"), Out("b")]), ("accept", 1, (1, 2), (), True, False), id="quorum-agree"),
    pytest.param(Row(R, [Out("a")]), ("accept", 1, (1,), (), False, False), id="quorum-lone-uncredited"),
    pytest.param(
        Row(R, [Out("a", PAGE_A), Out("b", PAGE_B), Out("c", PAGE_A)]),
        ("accept", 1, (1, 3), ((2, QM),), True, False),
        id="quorum-minority-rejected",
    ),
    pytest.param(Row(R, [Out("a", PAGE_A), Out("b", PAGE_B)]), ("replica",), id="quorum-disagree-tiebreaker"),
    pytest.param(
        Row(R, [Out("a", PAGE_A), Out("b", PAGE_B), Out("c", PAGE_C)]),
        ("reject", ((1, QM), (2, QM), (3, QM)), False),
        id="quorum-disagree-at-max",
    ),
    # --- validate: validators' measurements must agree
    pytest.param(Row(V, [Out("v1")]), ("accept", 1, (1,), (), True, False), id="validate-single"),
    pytest.param(Row(V, [Out("v1"), Out("v2")]), ("accept", 1, (1, 2), (), True, False), id="validate-agree"),
    pytest.param(Row(V, [Out("v1"), Out("v2", LIAR)]), ("replica",), id="validate-disagree-tiebreaker"),
    pytest.param(
        Row(V, [Out("v1"), Out("v2", LIAR), Out("v3")]),
        ("accept", 1, (1, 3), ((2, QM),), True, False),
        id="validate-liar-outvoted",
    ),
    pytest.param(
        Row(V, [Out("v1"), Out("v2", LIAR), Out("v3", PASS_TRIP)]),
        ("reject", ((1, UNV), (2, UNV), (3, UNV)), False),
        id="validate-no-majority-at-max",
    ),
    # --- generative: replicas, trust, spot-checks, audits
    pytest.param(Row(S, [Out("a"), Out("b")]), ("accept", 1, (1, 2), (), True, False), id="replicas-agree"),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)]), ("audit", ((1, 2), (2, 2))), id="replicas-diverge-audit-both"
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], live=("a", "b", "v1")),
        ("audit", ((1, 1), (2, 1))),
        id="small-network-one-validator",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], live=("a", "b")),
        ("reject", ((1, UNV), (2, UNV)), False),
        id="no-validator-unverifiable",
    ),
    pytest.param(
        Row(S, [Out("a", model=None), Out("b", raw_text=OTHER)]), ("audit", ((2, 2),)), id="no-model-cannot-be-audited"
    ),
    pytest.param(Row(S, [Out(TRUSTED)]), ("accept", 1, (1,), (), False, False), id="trusted-lone-uncredited"),
    pytest.param(Row(S, [Out(TRUSTED)], live=(TRUSTED,)), ("audit", ((1, 1),)), id="trusted-alone-checks-itself"),
    pytest.param(Row(S, [Out(TRUSTED)], spot_checked=True), ("audit", ((1, 2),)), id="spot-check-picked"),
    pytest.param(
        Row(S, [Out(TRUSTED)], spot_checked=True, audits={1: None}), ("wait", "audits running"), id="spot-check-pending"
    ),
    pytest.param(
        Row(S, [Out(TRUSTED)], spot_checked=True, audits={1: (PASS, PASS)}),
        ("accept", 1, (1,), (), True, True),
        id="spot-check-passed",
    ),
    pytest.param(
        Row(S, [Out(TRUSTED)], spot_checked=True, audits={1: (FAIL,)}),
        ("reject", ((1, RSF),), True),
        id="spot-check-failed",
    ),
    pytest.param(
        Row(S, [Out("a")], replicas=[SUB, ReplicaState.FAILED], spot_checked=True),
        ("audit", ((1, 2),)),
        id="abandoned-replica-rescored",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], audits={1: (PASS, PASS), 2: None}),
        ("wait", "audits running"),
        id="one-audit-still-out",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], audits={1: (PASS, PASS), 2: (FAIL, FAIL)}),
        ("accept", 1, (1,), ((2, RSF),), True, False),
        id="rescore-picks-the-honest-one",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], audits={1: (FAIL,), 2: (FAIL,)}),
        ("reject", ((1, RSF), (2, RSF)), False),
        id="rescore-rejects-both",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b")], audits={1: (PASS,), 2: (PASS,)}),
        ("accept", 1, (1, 2), (), True, False),
        id="rescore-accepts-both",
    ),
    pytest.param(
        Row(S, [Out("a"), Out("b", raw_text=OTHER)], audits={1: (), 2: (PASS,)}),
        ("accept", 2, (2,), ((1, UNV),), True, False),
        id="failed-audit-unverifiable",
    ),
    # --- answer-first: one run, always audited
    pytest.param(Row(S, [Out("a")], payload=answer_first()), ("audit", ((1, 2),)), id="answer-first-audited"),
    pytest.param(Row(S, [Out(TRUSTED)], payload=answer_first()), ("audit", ((1, 2),)), id="answer-first-trusted-too"),
    pytest.param(
        Row(S, [Out("a")], payload=answer_first(), audits={1: (PASS_TRIP, PASS_TRIP)}),
        ("accept", 1, (1,), (), True, False),
        id="answer-first-audit-in",
    ),
    pytest.param(
        Row(S, [Out("a")], payload=answer_first(), audits={1: (PASS_MISSED,)}),
        ("accept", 1, (1,), (), True, False),
        id="answer-first-roundtrip-missed-honest-compute",
    ),
]


@pytest.mark.parametrize(("row", "expected"), TABLE)
def test_decide(row: Row, expected: tuple[object, ...]) -> None:
    config = SchedulerConfig(trusted_nodes=row.trusted)
    assert summary(decide(view_of(row), config)) == expected


def test_every_decision_type_is_in_the_table() -> None:
    kinds = {p.values[1][0] for p in TABLE}  # type: ignore[index]
    assert kinds == {"wait", "replica", "audit", "accept", "reject"}


def test_an_accepted_answer_first_row_carries_its_audit_and_the_round_trip_gate_reads_it() -> None:
    """A missed round trip is honest compute (accepted, credited) and a weak question: the row gate drops it."""
    for audit, reason in ((PASS_TRIP, None), (PASS_MISSED, Reason.ROUNDTRIP_FAILED)):
        row = Row(S, [Out("a")], payload=answer_first(), audits={1: (audit,)})
        decision = decide(view_of(row), SchedulerConfig())
        assert isinstance(decision, Accept) and decision.audit == (audit,)
        data: dict[str, object] = {"question": "Who developed the printing press?", "answer": SENTENCE}
        failure = answer_first_failure(answer_first(), data, decision.audit, RoundTripThresholds())
        assert (failure.reason if failure else None) is reason


def test_decide_reads_nothing_but_its_view() -> None:
    """The same snapshot gives the same decision, however often it is asked."""
    view = view_of(Row(S, [Out("a"), Out("b", raw_text=OTHER)], audits={1: (PASS,), 2: (FAIL,)}))
    first = decide(view, SchedulerConfig())
    assert all(decide(view, SchedulerConfig()) == first for _ in range(3))


def test_a_question_gen_or_judge_task_is_decided_as_generative() -> None:
    row = Row(S, [Out("a"), Out("b")])
    view = view_of(row)
    judge = TaskRecord("t1", "j1", "judge", TaskKind.JUDGE, "00" * 32, 10, 4, TaskState.OPEN, None, T0, T0)
    as_judge = TaskView(judge, view.replicas, view.results, view.pending, view.messages)
    assert summary(decide(as_judge, SchedulerConfig())) == ("accept", 1, (1, 2), (), True, False)
