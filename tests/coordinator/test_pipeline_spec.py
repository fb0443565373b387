"""The spec stage: two agreeing replicas of a spec task refine the job's spec; none leaves the rules' reading.

Real store and scheduler with signed results (tests/coordinator/test_scheduler.py's harness); the
draft here is hand-written, the real model's drafts are tested in tests/node/test_executor_spec.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from coordinator.pipeline import spec as spec_stage
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import plan
from coordinator.request import parse_request
from coordinator.spec import FieldType
from coordinator.store import TaskState
from coordinator.verify.checks import check_result
from coordinator.verify.reasons import Reason
from protocol.messages import Grant, Verdict
from protocol.tasks import SpecFieldDraft, SpecOutput, SpecPayload, TaskKind
from tests.coordinator.factories import MODEL, NODE_A, NODE_B, T0, result_for
from tests.coordinator.test_scheduler import claim, new_scheduler, submit

REQUEST = "trivia questions about volcanoes, JSON with question, answer and difficulty"
DRAFT = SpecOutput(
    topic="volcano trivia",
    rows=40,
    grounded=False,
    language="en",
    fields=[
        SpecFieldDraft(name="question", type="string", description="A trivia question", max_length=200, choices=[]),
        SpecFieldDraft(name="answer", type="string", description="The answer", max_length=120, choices=[]),
        SpecFieldDraft(
            name="difficulty", type="enum", description="How hard", max_length=10, choices=["easy", "medium", "hard"]
        ),
    ],
)


def test_an_accepted_draft_refines_the_spec_and_keeps_what_the_request_said(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    ctx = JobContext(s.store, "j1", parse_request(REQUEST).spec, REQUEST)
    (task,) = spec_stage.tasks(ctx)
    assert task.task_id == "j1:spec:00000" and isinstance(task.payload, SpecPayload)
    s.submit(task.task_id, "j1", TaskKind.SPEC.value, task.payload, est_tokens=task.est_tokens, now_ms=T0)
    grants = [claim(s, task.task_id, node) for node in (NODE_A, NODE_B)]
    assert all(isinstance(g, Grant) and g.decoding is not None and g.decoding.temperature == 0.0 for g in grants)
    text = json.dumps(DRAFT.model_dump(mode="json", exclude={"kind"}))
    receipts = [
        submit(s, result_for(g, DRAFT, raw_text=text), node)
        for g, node in zip(grants, (NODE_A, NODE_B), strict=True)
        if isinstance(g, Grant)
    ]
    assert receipts[-1].verdict is Verdict.ACCEPTED and s.store.task(task.task_id).state is TaskState.DONE

    refined = spec_stage.refined(ctx, rows=None)
    assert refined.spec.topic == "volcanoes"  # read from "about volcanoes": the request's words win
    assert refined.spec.field_names == ["question", "answer", "difficulty"]
    assert refined.spec.field("difficulty").type is FieldType.ENUM
    assert refined.spec.field("answer").max_length == 120  # detail the request did not give
    assert refined.spec.field("question").description == "A trivia question"
    assert refined.spec.rows == 100  # the request names no count; the draft's 40 is not taken
    assert spec_stage.refined(ctx, rows=25).spec.rows == 25  # --rows beats both readings


def test_without_a_verified_draft_the_rules_reading_stands(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    rule = parse_request(REQUEST)
    ctx = JobContext(s.store, "j1", rule.spec, REQUEST)
    refined = spec_stage.refined(ctx, rows=None)
    assert refined.spec == rule.spec
    assert refined.notes[-1].startswith("llm: the spec task produced no verified draft")
    skipped = spec_stage.refined(ctx, rows=None, skipped="no live node serves spec tasks")
    assert skipped.spec == rule.spec
    assert skipped.notes[-1] == (
        "llm: the spec task did not run (no live node serves spec tasks); using the rule-based spec"
    )


def test_a_draft_with_more_fields_than_asked_is_rejected(tmp_path: Path) -> None:
    s = new_scheduler(tmp_path)
    payload = SpecPayload(request=REQUEST, max_fields=2)
    s.submit("j1:spec:00000", "j1", TaskKind.SPEC.value, payload, now_ms=T0)
    g = claim(s, "j1:spec:00000", NODE_A)
    assert isinstance(g, Grant)
    failures = check_result(
        result_for(g, DRAFT), signer_peer_id=NODE_A.peer_id, grant=g, allowed_models=[MODEL], now_ms=T0 + 1000
    )
    assert [f.reason for f in failures] == [Reason.OVERSIZED]


def test_an_empty_request_has_no_spec_task_and_the_plan_shows_the_stage() -> None:
    spec = parse_request(REQUEST).spec
    assert spec_stage.tasks(JobContext(None, "j1", spec, "  ")) == []  # type: ignore[arg-type]
    assert plan(spec, llm_spec=True).tasks(TaskKind.SPEC) == 1
    assert plan(spec).tasks(TaskKind.SPEC) == 0
