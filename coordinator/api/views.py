"""Snapshots of jobs, nodes and dry-run specs, shaped for the API.

Owns: reading the coordinator's state into `schemas` models. The job and node
functions are synchronous and read the store: callers run them on the
coordinator's worker thread (`coordinator.runtime.call`), never on the event loop.
Must not: change anything.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from coordinator import job_states
from coordinator.api.errors import ApiError, not_found
from coordinator.api.schemas import (
    JobLinks,
    JobView,
    ModelView,
    NodeView,
    PlanView,
    ReputationView,
    SpecPreview,
    SpecQuery,
    StagePlanView,
    StageView,
    WaitingView,
)
from coordinator.pipeline.sizing import over_limit, plan
from coordinator.request import LLM_SPEC_NOTE, parse_request
from coordinator.scheduler import LIVE_NODE_MS
from coordinator.spec import DatasetSpec, SpecError, dump_spec, spec_from_mapping
from coordinator.store import NotFound
from coordinator.verify.reputation import decayed_score

if TYPE_CHECKING:
    from coordinator.service import Coordinator

FINAL_STATES = job_states.FINAL
DELIVERED_STATES = job_states.DELIVERED
"""Final states with a compiled dataset: partial delivered fewer rows than asked (see `partial_reason`)."""
PREFIX = "/v1"


def resolve_spec(query: SpecQuery) -> tuple[DatasetSpec, list[str]]:
    """The spec a job would run with, and the request reader's notes; ApiError 422 when it cannot be built."""
    if query.spec is not None:
        try:
            spec = spec_from_mapping(query.spec, origin="spec")
        except SpecError as exc:
            raise ApiError(422, str(exc), code="invalid_spec") from None
        notes: list[str] = []
        if query.rows is not None:
            spec = spec.model_copy(update={"rows": query.rows})
        return spec, notes
    try:
        parsed = parse_request(query.text, rows=query.rows)
    except ValueError as exc:  # RequestError, or a spec the rules could not complete
        raise ApiError(422, str(exc), code="invalid_request") from None
    return parsed.spec, list(parsed.notes)


def preview_spec(query: SpecQuery, *, llm_spec: bool = False, max_tasks: int | None = None) -> SpecPreview:
    """llm_spec: the coordinator starts jobs from a sentence with the LLM `spec` stage. max_tasks: its
    `max_job_tasks`; a spec over it gets a note, as submitting it would be refused."""
    spec, notes = resolve_spec(query)
    refine = llm_spec and query.spec is None
    if refine:
        notes.append(LLM_SPEC_NOTE)
    p = plan(spec, llm_spec=refine)
    if max_tasks is not None and (refusal := over_limit(spec, max_tasks, llm_spec=refine)) is not None:
        notes.append(f"refused if submitted: {refusal}")
    return SpecPreview(
        spec=spec.model_dump(mode="json"),
        spec_yaml=dump_spec(spec),
        notes=notes,
        plan=PlanView(
            rows=p.rows,
            rows_to_generate=p.rows_to_generate,
            total_tasks=p.total_tasks,
            total_executions=p.total_executions,
            stages=[
                StagePlanView(kind=s.kind.value, tasks=s.tasks, executions=s.executions, why=s.why) for s in p.stages
            ],
        ),
    )


class JobViews:
    """Job snapshots. A finished job's progress no longer changes, so it is cached by (id, updated_ms):
    the dashboard polls every job in the list, and a big job's progress counts all its rows."""

    def __init__(self, coordinator: Coordinator, *, cache_size: int = 256) -> None:
        self.coordinator = coordinator
        self._cache: OrderedDict[str, tuple[int, JobView]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def job(self, job_id: str) -> JobView:
        """Worker thread only. ApiError 404 for an unknown job."""
        try:
            record = self.coordinator.store.job(job_id)
        except (NotFound, KeyError):
            raise not_found(f"job {job_id!r}") from None
        with self._lock:
            hit = self._cache.get(job_id)
            if hit is not None and hit[0] == record.updated_ms:
                self._cache.move_to_end(job_id)
                return hit[1]
        p = self.coordinator.progress(job_id)
        doc = record.doc
        spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        base = f"{PREFIX}/jobs/{job_id}"
        view = JobView(
            job_id=job_id,
            state=p.state,
            topic=str(spec.get("topic", "")),
            request=str(doc.get("request", "")),
            grounded=bool(doc.get("grounded", spec.get("grounded", False))),
            rows=p.rows,
            target=p.target,
            stages=[StageView(**vars(s), open=s.open) for s in p.stages],
            rejections=dict(p.rejections),
            error=p.error,
            partial_reason=str(doc.get("partial", "")) if p.state == job_states.PARTIAL else "",
            waiting=None if p.waiting is None else WaitingView(**p.waiting.as_doc(), message=p.waiting.describe()),
            out_dir=str(doc.get("out_dir", "")),
            created_ms=record.created_ms,
            updated_ms=record.updated_ms,
            links=JobLinks(self=base, events=f"{base}/events", dataset=f"{base}/dataset"),
        )
        if p.state in FINAL_STATES:
            with self._lock:
                self._cache[job_id] = (record.updated_ms, view)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return view

    def jobs(self, *, limit: int, state: str | None = None) -> list[JobView]:
        """Worker thread only. Newest first."""
        records = [j for j in self.coordinator.store.jobs() if state is None or j.state == state][:limit]
        out = []
        for r in records:
            try:
                out.append(self.job(r.job_id))
            except ApiError:  # deleted between the two reads
                continue
        return out


def node_views(coordinator: Coordinator, *, now_ms: int) -> list[NodeView]:
    """Worker thread only: nodes heard from (status gossip) or judged (reputation), live first, best first."""
    statuses = coordinator.runtime.scheduler.node_statuses()
    reputations = {r.peer_id: r for r in coordinator.store.reputations()}
    config = coordinator.runtime.scheduler.config.reputation
    out: list[NodeView] = []
    for peer in sorted(set(statuses) | set(reputations)):
        status = statuses.get(peer)
        rep = reputations.get(peer)
        seen = coordinator.runtime.scheduler.last_seen_ms(peer)
        out.append(
            NodeView(
                peer_id=peer,
                live=seen is not None and now_ms - seen <= LIVE_NODE_MS,
                last_seen_ms=seen,
                version=status.version if status else "",
                models=[ModelView(**m.model_dump()) for m in (status.models if status else [])],
                task_kinds=[k.value for k in status.task_kinds] if status else [],
                free_slots=status.free_slots if status else 0,
                total_slots=status.total_slots if status else 0,
                tasks_done=status.tasks_done if status else 0,
                held_leases=coordinator.store.count_held(peer),
                reputation=None
                if rep is None
                else ReputationView(
                    score=round(decayed_score(rep, now_ms=now_ms, config=config), 4),
                    accepted=rep.accepted,
                    rejected=rep.rejected,
                    expired=rep.expired,
                    blacklisted=rep.blacklisted,
                ),
            )
        )
    out.sort(key=lambda n: (not n.live, -(n.reputation.score if n.reputation else 0.5)))
    return out
