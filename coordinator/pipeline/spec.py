"""Stage 0, spec: an LLM on the network reads the request sentence into a draft spec.

The job starts on the rule-based reading (`coordinator.request.parse_request`); this stage
merges the verified draft over it (`coordinator.request.merge_llm_spec`): what the request
says explicitly is kept, the draft fills what the rules had to default. A
draft that never verifies (no capable node, every replica rejected) leaves the
rule-based spec, with a note. Jobs handed in as a spec file skip this stage.
"""

from __future__ import annotations

from coordinator.pipeline.context import JobContext
from coordinator.pipeline.stage import TaskPlan
from coordinator.request import ParsedRequest, merge_llm_spec, parse_request
from protocol.tasks import MAX_REQUEST_CHARS, SpecOutput, SpecPayload, TaskKind

EST_TOKENS = 300
"""A typical draft is ~600 characters of JSON."""


def tasks(ctx: JobContext) -> list[TaskPlan]:
    request = " ".join(ctx.request.split())[:MAX_REQUEST_CHARS]
    if not request:
        return []
    return [TaskPlan(ctx.task_id(TaskKind.SPEC, 0), SpecPayload(request=request), EST_TOKENS)]


def refined(ctx: JobContext, rows: int | None, *, skipped: str = "") -> ParsedRequest:
    """The job's spec after this stage: the verified draft merged over the rules' reading.

    rows: the row count the requester gave apart from the sentence (it beats both readings).
    skipped: why the stage did not run, if it did not.
    """
    rule = parse_request(ctx.request, rows=rows)
    drafts = [] if skipped else ctx.outputs(TaskKind.SPEC, SpecOutput)
    if not drafts:
        why = f"the spec task did not run ({skipped})" if skipped else "the spec task produced no verified draft"
        note = f"llm: {why}; using the rule-based spec"
        return ParsedRequest(spec=rule.spec, notes=(*rule.notes, note), explicit=rule.explicit)
    _, draft = drafts[0]
    said = parse_request(ctx.request) if rows is not None else rule  # the draft read the text, not --rows
    return merge_llm_spec(draft.model_dump(mode="json", exclude={"kind"}), rule, said=said)
