"""When the retrieved pages offer too few answer sentences, the job retrieves the search's next pages, for a
bounded number of rounds, numbering new tasks after the old ones (pipeline/widen.py).

A real store and scheduler: the search task is settled by two agreeing nodes from signed results; the
retrieve tasks are submitted as the job runner submits them."""

from __future__ import annotations

import random
from pathlib import Path

from coordinator.pipeline import retrieve, widen
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.sizing import plan
from coordinator.scheduler import Scheduler
from protocol.identity import Identity
from protocol.messages import Grant, Result
from protocol.tasks import RetrievePayload, SearchHit, SearchOutput, SearchPayload, TaskKind
from tests.coordinator.factories import COORDINATOR, MODEL, T0, new_store
from tests.coordinator.test_compile_fixtures import spec as qa_spec
from tests.coordinator.test_scheduler import claim, submit

URLS = [f"http://127.0.0.1/page-{i}" for i in range(40)]


def searched_job(tmp_path: Path, rows: int) -> tuple[Scheduler, JobContext]:
    store = new_store(tmp_path)
    spec = qa_spec(rows=rows)
    store.create_job("j", {"spec": spec.model_dump(mode="json"), "grounded": True}, allowed_models=[MODEL], now_ms=T0)
    s = Scheduler(store, COORDINATOR, rng=random.Random(1))
    ctx = JobContext(store, "j", spec, "")
    task_id = ctx.task_id(TaskKind.SEARCH, 0)
    s.submit(task_id, "j", TaskKind.SEARCH.value, SearchPayload(query="q", max_results=len(URLS)), now_ms=T0)
    for seed in (0x21, 0x22):  # two new nodes agree: the search is accepted
        who = Identity.from_seed(bytes([seed]) * 32)
        g = claim(s, task_id, who)
        assert isinstance(g, Grant), g
        hits = [SearchHit(url=u, title="t", snippet="s") for u in URLS]
        submit(s, Result(task_id=task_id, job_id="j", lease_id=g.lease_id, attempt=0,
                         output=SearchOutput(backend="local", hits=hits)), who)  # fmt: skip
    for p in retrieve.tasks(ctx):  # the first round, as the retrieve stage submits it
        s.submit(p.task_id, "j", TaskKind.RETRIEVE.value, p.payload, now_ms=T0)
    return s, ctx


def urls_of(ctx: JobContext) -> list[str]:
    out = []
    for t in ctx.store.tasks("j", stage=TaskKind.RETRIEVE.value):
        payload = ctx.store.task_payload(t.task_id)
        assert isinstance(payload, RetrievePayload)
        out.append(payload.url)
    return out


def test_too_few_answer_sentences_fetch_the_next_pages_for_at_most_two_more_rounds(tmp_path: Path) -> None:
    s, ctx = searched_job(tmp_path, rows=8)
    first = urls_of(ctx)
    per_round = plan(ctx.spec).tasks(TaskKind.RETRIEVE)
    assert first == URLS[:per_round]
    for done in range(1, widen.MAX_ROUNDS + 1):  # no curate output yet: no answer sentence at all
        more = widen.next_round(ctx, T0)
        assert [p.payload.url for p in more] == URLS[done * per_round : (done + 1) * per_round]  # type: ignore[attr-defined]
        assert [p.task_id for p in more] == [ctx.task_id(TaskKind.RETRIEVE, done * per_round + i)
                                             for i in range(len(more))]  # fmt: skip
        assert ctx.store.job("j").doc[widen.ROUND_KEY] == done
        for p in more:
            s.submit(p.task_id, "j", TaskKind.RETRIEVE.value, p.payload, now_ms=T0)
    assert widen.next_round(ctx, T0) == []  # the rounds are spent
    assert len(set(urls_of(ctx))) == len(urls_of(ctx)) == (widen.MAX_ROUNDS + 1) * per_round  # no page twice


def test_every_page_fetched_searches_the_queries_once_more_deeper_or_the_spec_needs_no_sentence(
    tmp_path: Path,
) -> None:
    s, ctx = searched_job(tmp_path, rows=200)  # the first round already takes every URL the search found
    assert len(urls_of(ctx)) == len(URLS)
    deeper = widen.next_round(ctx, T0)
    assert [(p.task_id, p.payload) for p in deeper] == [
        (ctx.task_id(TaskKind.SEARCH, 1), SearchPayload(query="q", max_results=widen.DEEP_RESULTS))
    ]
    assert widen.ROUND_KEY not in ctx.store.job("j").doc  # a deeper search is no retrieve round
    for p in deeper:
        s.submit(p.task_id, "j", TaskKind.SEARCH.value, p.payload, now_ms=T0)
    assert widen.next_round(ctx, T0) == []  # searched deeper once: nothing more to find
    free = JobContext(ctx.store, "j", ctx.spec.model_copy(update={"grounded": False}), "")
    assert widen.next_round(free, T0) == []  # no sentence field: rows do not need sentences that stand alone
