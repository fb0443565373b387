"""A running coordinator: store, libp2p host, runtime, and one runner per active job.

Owns: starting and stopping those pieces in one nursery, accepting jobs
(request text or spec, row count, output directory), cancelling them, and
resuming every unfinished job after a restart.
Used by `dataswarm coordinator start`, `dataswarm demo`, the HTTP API and the tests.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from coordinator import job_states
from coordinator.config import CoordinatorConfig
from coordinator.models import default_allowed_models
from coordinator.pipeline.job import JobRunner
from coordinator.pipeline.progress import JobProgress, job_progress
from coordinator.pipeline.sizing import over_limit
from coordinator.request import parse_request
from coordinator.runtime import CoordinatorRuntime
from coordinator.scheduler import Scheduler, SchedulerConfig
from coordinator.spec import DatasetSpec
from coordinator.store import Store
from coordinator.verify.judge import JUDGE_KEY
from coordinator.verify.reputation import ReputationConfig
from network import HostConfig, SwarmHost
from protocol.errors import IllegalTransition
from protocol.identity import Identity
from protocol.keyfile import load_or_create_identity

log = logging.getLogger(__name__)

ACTIVE = job_states.RESUMED
"""States a restart resumes. The final ones (done, partial, failed, cancelled) never run again."""


class JobError(Exception):
    """A job request that cannot be accepted; the message says what to change."""


class PlanTooLarge(JobError):
    """The job would plan more tasks than the coordinator's `max_job_tasks`."""


@dataclass
class Coordinator:
    config: CoordinatorConfig
    identity: Identity
    store: Store
    runtime: CoordinatorRuntime
    models: dict[str, str]
    nursery: trio.Nursery
    _done: dict[str, trio.Event] = field(default_factory=dict)

    @property
    def host(self) -> SwarmHost:
        host = self.runtime.host
        assert isinstance(host, SwarmHost)  # open_coordinator runs the runtime on libp2p
        return host

    @property
    def peer_addrs(self) -> list[str]:
        return [f"{a}/p2p/{self.identity.peer_id}" if "/p2p/" not in a else a for a in self.host.listen_addrs]

    async def submit(
        self,
        request: str = "",
        *,
        spec: DatasetSpec | None = None,
        rows: int | None = None,
        out_dir: Path | None = None,
        job_id: str | None = None,
        from_request: bool | None = None,
    ) -> str:
        """Accept a job and start running it; returns its id (an existing id re-attaches).

        from_request: whether `spec` is the rule-based reading of `request` (the API resolves it
        before submitting); such a job starts with the LLM `spec` stage when the config allows.
        Default: True when no spec is given.
        """
        if job_id is not None:
            try:
                self.store.job(job_id)
                return job_id
            except KeyError:
                pass
        if from_request is None:
            from_request = spec is None
        notes: tuple[str, ...] = ()
        if from_request:
            try:
                parsed = parse_request(request, rows=rows)
            except ValueError as exc:
                raise JobError(str(exc)) from None
            spec, notes = spec or parsed.spec, parsed.notes
        elif spec is None:
            raise JobError("give a request sentence or a spec")
        elif rows is not None:
            spec = spec.model_copy(update={"rows": rows})
        llm_spec = bool(self.config.llm_spec and from_request and request.strip())
        self._check_size(spec, llm_spec=llm_spec)
        jid = job_id or f"job-{secrets.token_hex(4)}"
        out = (out_dir or self.config.data_dir / "datasets" / jid).resolve()
        if out.exists() and any(out.iterdir()):
            raise JobError(f"{out} exists and is not empty: choose another output directory")
        spec_doc = spec.model_dump(mode="json")
        doc = {
            "request": request,
            "spec": spec_doc,
            "submitted_spec": spec_doc,
            "rows_given": rows,
            "spec_notes": list(notes),
            "llm_spec": llm_spec,
            "grounded": spec.grounded,
            "out_dir": str(out),
        }
        if self.config.judge_models:  # fixed at submission: a resumed job is judged as it began
            doc[JUDGE_KEY] = {"models": sorted(self.config.judge_models), "min_score": self.config.judge_min_score}
        now = self.runtime.now_ms()
        await self.runtime.call(self.store.create_job, jid, doc, allowed_models=list(self.models), now_ms=now)
        self._start(jid)
        return jid

    def _check_size(self, spec: DatasetSpec, *, llm_spec: bool) -> None:
        """Refuse, before anything is written, a job that plans more tasks than this coordinator takes."""
        refusal = over_limit(spec, self.config.max_job_tasks, llm_spec=llm_spec)
        if refusal is not None:
            raise PlanTooLarge(refusal)

    def _start(self, job_id: str) -> None:
        done = self._done.setdefault(job_id, trio.Event())

        async def run() -> None:
            try:
                try:
                    now = self.runtime.now_ms()
                    await self.runtime.call(self.store.set_job_state, job_id, job_states.RUNNING, now_ms=now)
                except IllegalTransition as exc:  # cancelled before it started
                    log.info("job %s not started: %s", job_id, exc)
                    return
                await JobRunner(self.runtime, job_id, models=lambda: dict(self.models)).run()
            except Exception:
                log.exception("job %s crashed", job_id)
                try:
                    now = self.runtime.now_ms()
                    await self.runtime.call(self.store.set_job_state, job_id, job_states.FAILED, now_ms=now)
                except IllegalTransition as exc:  # it ended meanwhile (cancelled): that stays
                    log.info("job %s not marked failed: %s", job_id, exc)
            finally:
                done.set()

        self.nursery.start_soon(run)

    async def wait(self, job_id: str) -> JobProgress:
        """Until the job is done, partial, failed or cancelled."""
        await self._done.setdefault(job_id, trio.Event()).wait()
        return self.progress(job_id)

    def progress(self, job_id: str) -> JobProgress:
        return job_progress(self.store, job_id)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job still open, running or waiting for nodes; False if it had already finished (or is
        compiling)."""
        cancelled = await self.runtime.call(self._cancel, job_id, self.runtime.now_ms())
        self.runtime.notify(job_id)  # its runner stops now, not at its next look
        return cancelled

    def _cancel(self, job_id: str, now: int) -> bool:
        return self.store.cancel_job(job_id, now_ms=now)

    def resume_jobs(self) -> list[str]:
        ids = [j.job_id for j in self.store.jobs() if j.state in ACTIVE]
        for jid in ids:
            self._start(jid)
        return ids


@asynccontextmanager
async def open_coordinator(
    config: CoordinatorConfig, *, identity: Identity | None = None
) -> AsyncIterator[Coordinator]:
    """Start a coordinator; leaving the block stops it (and cancels its jobs' runners, which resume later)."""
    ident = identity or load_or_create_identity(config.key_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    models = default_allowed_models(config.data_dir)
    for digest in config.allowed_models:
        models.setdefault(digest, digest[:12])
    if config.allowed_models:
        models = {d: n for d, n in models.items() if d in config.allowed_models}
    store = Store(config.data_dir / "coordinator.db", blob_dir=config.data_dir / "blobs")
    sched_config = SchedulerConfig(
        temperature=config.temperature,
        max_attempts=config.max_attempts,
        reputation=ReputationConfig(spot_check_p=config.spot_check_p),
        trusted_nodes=frozenset(config.trusted_nodes),
        stall_ms=int(config.stall_s * 1000),
    )
    scheduler = Scheduler(store, ident, sched_config)
    host_config = HostConfig(
        identity=ident,
        listen=config.listen,
        bootstrap=config.bootstrap,
        mdns=config.mdns,
        relay_hop=config.relay_hop,
        announce=config.announce,
    )
    try:
        async with SwarmHost(host_config) as host, trio.open_nursery() as nursery:
            runtime = CoordinatorRuntime(host, scheduler)
            await nursery.start(runtime.run)
            coordinator = Coordinator(config, ident, store, runtime, models, nursery)
            coordinator.resume_jobs()
            yield coordinator
            nursery.cancel_scope.cancel()
    finally:
        store.close()
