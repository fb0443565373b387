"""Between curate and synthesize: when the retrieved pages offer too few answer sentences for the rows
asked, retrieve and curate the search's next best pages, for at most MAX_ROUNDS more rounds; when every page
the searches found is fetched, search the job's queries once more, deeper.

Only for specs written answer first or label first, whose rows each need a sentence that stands on its own:
on a manual whose pages hold few such sentences (rsyslog's: 59 of 318 pages hold any), the first round's
pages offered 9 sentences for 20 rows, and the job delivered 2 (docs/notes/quality.md#widening).

Resume: the rounds started are counted in the job document (ROUND_KEY) before their tasks are submitted,
and the tasks' ids and URLs follow from the store, so a restart re-submits nothing and starts no extra round.
"""

from __future__ import annotations

from coordinator.pipeline import retrieve, synthesize
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.stage import TaskPlan
from protocol.tasks import SearchPayload, TaskKind

SENTENCES_PER_ROW = 4
"""Answer sentences wanted per requested row: with two seeds each, a sentence yielded 0.22-0.5 rows in the
demo runs read, and 0.28-0.31 in two 12-row Python jobs whose 36 sentences ran out before 12 rows
(docs/notes/quality.md#widening)."""
MAX_ROUNDS = 2
"""Rounds of retrieve tasks past the first; a deeper search (once, when the first searches' pages are all
fetched) is not counted."""
ROUND_KEY = "widen_rounds"
DEEP_RESULTS = 50
"""Hits per query of the deeper search: `SearchPayload.max_results`'s bound (the first searches ask 10)."""


def next_round(ctx: JobContext, now_ms: int) -> list[TaskPlan]:
    """The tasks of one more round: retrieve tasks (counted in the job document), or the deeper search; empty
    when none is wanted (enough sentences, MAX_ROUNDS done, or no page left that any search found)."""
    stated = synthesize.sentence_field(ctx.spec)
    if stated is None:
        return []
    rounds = ctx.store.job(ctx.job_id).doc.get(ROUND_KEY, 0)
    if not isinstance(rounds, int) or rounds >= MAX_ROUNDS:
        return []
    if len(synthesize.answer_pairs(ctx, stated)) >= ctx.spec.rows * SENTENCES_PER_ROW:
        return []
    plans = retrieve.more_tasks(ctx)
    if plans:
        ctx.store.update_job_doc(ctx.job_id, {ROUND_KEY: rounds + 1}, now_ms=now_ms)
        return plans
    return deeper_search(ctx)


def deeper_search(ctx: JobContext) -> list[TaskPlan]:
    """The job's queries again, each for DEEP_RESULTS hits, once: what to retrieve next when every page the
    first searches found is fetched (7 queries of a 20-row job found 19 distinct rsyslog pages)."""
    existing = ctx.store.tasks(ctx.job_id, stage=TaskKind.SEARCH.value)
    payloads = [p for t in existing if isinstance(p := ctx.store.task_payload(t.task_id), SearchPayload)]
    if not payloads or any(p.max_results >= DEEP_RESULTS for p in payloads):
        return []
    queries = dict.fromkeys(p.query for p in payloads)
    return [
        TaskPlan(ctx.task_id(TaskKind.SEARCH, len(existing) + i), SearchPayload(query=q, max_results=DEEP_RESULTS))
        for i, q in enumerate(queries)
    ]
