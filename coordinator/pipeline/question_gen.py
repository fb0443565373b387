"""Stage 1, question_gen: from the spec, search queries (grounded) or seed questions (ungrounded)."""

from __future__ import annotations

import math

from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import plan
from coordinator.pipeline.stage import TaskPlan
from protocol.tasks import QuestionGenOutput, QuestionGenPayload, TaskKind

EST_TOKENS = 200


def tasks(ctx: JobContext) -> list[TaskPlan]:
    spec = ctx.spec
    n = max(1, plan(spec).tasks(TaskKind.QUESTION_GEN))
    fields = ", ".join(f.name for f in spec.generated_fields)
    description = spec.description or f"A dataset of {fields} about {spec.topic}."
    return [
        TaskPlan(
            ctx.task_id(TaskKind.QUESTION_GEN, i),
            QuestionGenPayload(
                topic=spec.topic[:1000],
                description=f"{description} (angle {i + 1} of {n}: vary the sub-topics)"[:4000],
                language=spec.language,
                n_queries=5 if spec.grounded else 1,
                n_questions=5,
            ),
            EST_TOKENS,
        )
        for i in range(n)
    ]


def queries(ctx: JobContext, limit: int) -> list[str]:
    """Distinct search queries, the topic itself first (the small models' queries can be poor)."""
    seen: dict[str, None] = {ctx.spec.topic.strip()[:400]: None}
    for _, out in ctx.outputs(TaskKind.QUESTION_GEN, QuestionGenOutput):
        for q in out.queries:
            seen.setdefault(" ".join(q.split())[:400], None)
    return [q for q in seen if q][: max(1, limit)]


def questions(ctx: JobContext) -> list[str]:
    seen: dict[str, None] = {}
    for _, out in ctx.outputs(TaskKind.QUESTION_GEN, QuestionGenOutput):
        for q in out.questions:
            seen.setdefault(" ".join(q.split()), None)
    return list(seen)


def searches_wanted(ctx: JobContext) -> int:
    return max(1, math.ceil(plan(ctx.spec).tasks(TaskKind.SEARCH)))
