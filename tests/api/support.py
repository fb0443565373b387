"""Helpers for the API tests: a real coordinator with its API, and real work driven through its scheduler.

No doubles: jobs live in the coordinator's real store, tasks are settled by the
real scheduler from results signed by real node identities (search tasks, whose
quorum needs no model). Store and scheduler calls go through
`coordinator.runtime.call`, as the API's own do.

`LiveApi` runs the coordinator and its API in a thread with its own trio loop,
for the synchronous clients (schemathesis, playwright); async tests use
`api_server` inside their own loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from coordinator.api import ApiSettings, serve_api
from coordinator.api.auth import Scope, TokenStore
from coordinator.config import CoordinatorConfig
from coordinator.job_states import StageState
from coordinator.pipeline import synthesize
from coordinator.pipeline.context import JobContext
from coordinator.scheduler import Scheduler
from coordinator.service import Coordinator, open_coordinator
from coordinator.spec import DatasetSpec
from network import now_ms
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import Claim, Grant, ModelInfo, NodeStatus, Result
from protocol.tasks import SearchHit, SearchOutput, SearchPayload, TaskKind
from tests.coordinator.factories import GOOD_ROW, MODEL, result_for, rows_output, synth_payload
from tests.coordinator.test_compile_fixtures import spec as fixture_spec

T = TypeVar("T")
FAST = ApiSettings(sse_interval_s=0.05, sse_heartbeat_s=0.3, activity_interval_s=0.1)
"""Short polling intervals so the tests do not wait on timers."""


def node(n: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"dataswarm-api-test-node-{n}".encode()).digest())


def config(tmp: Path, **overrides: Any) -> CoordinatorConfig:
    return CoordinatorConfig(
        key_path=tmp / "coordinator.key",
        listen=["/ip4/127.0.0.1/tcp/0"],
        mdns=False,
        relay_hop=False,
        data_dir=tmp / "data",
        **overrides,
    )


def issue(coordinator: Coordinator, name: str, scope: Scope = Scope.WRITE) -> str:
    with TokenStore(coordinator.config.data_dir) as tokens:
        return tokens.create(name, scope).secret


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Served:
    coordinator: Coordinator
    url: str

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.coordinator.runtime.call(fn, *args, **kwargs)


@contextlib.asynccontextmanager
async def api_server(tmp: Path, settings: ApiSettings | None = FAST, **overrides: Any) -> AsyncIterator[Served]:
    """`overrides`: coordinator config settings (quotas, limits) for this server."""
    async with open_coordinator(config(tmp, **overrides)) as coord, trio.open_nursery() as nursery:
        url = await nursery.start(lambda task_status: serve_api(coord, "127.0.0.1:0", settings=settings,
                                                                task_status=task_status))  # fmt: skip
        try:
            yield Served(coord, url)
        finally:
            nursery.cancel_scope.cancel()


# --- work through the real scheduler ---------------------------------------------------------


def search_job(coordinator: Coordinator, job_id: str, n_tasks: int, *, out_dir: Path | None = None) -> list[str]:
    """Worker thread: a running job with a search stage of `n_tasks` open tasks (no runner drives it:
    the test settles its tasks). Returns the task ids."""
    store = coordinator.store
    now = now_ms()
    doc = {
        "request": f"{n_tasks} rows about the printing press",
        "spec": {"topic": "the printing press", "rows": n_tasks},
        "grounded": True,
        "out_dir": str(out_dir or coordinator.config.data_dir / "datasets" / job_id),
    }
    store.create_job(job_id, doc, allowed_models=[], now_ms=now)
    store.set_job_state(job_id, "running", now_ms=now)
    store.add_stage(job_id, TaskKind.SEARCH.value, now_ms=now)
    sched: Scheduler = coordinator.runtime.scheduler
    ids = [f"{job_id}.search.{i}" for i in range(n_tasks)]
    for i, task_id in enumerate(ids):
        sched.submit(task_id, job_id, TaskKind.SEARCH.value, SearchPayload(query=f"printing press {i}"), now_ms=now)
    return ids


def _submit_search(sched: Scheduler, task_id: str, who: Identity, urls: list[str]) -> None:
    now = now_ms()
    grant = sched.on_claim(Claim(task_id=task_id, attempt=0, free_slots=1), who.peer_id, now)
    assert isinstance(grant, Grant), f"{who.peer_id} was refused {task_id}: {grant}"
    hits = [SearchHit(url=u, title="page", snippet="about printing") for u in urls]
    result = Result(
        task_id=task_id,
        job_id=grant.job_id,
        lease_id=grant.lease_id,
        attempt=grant.attempt,
        output=SearchOutput(backend="local", hits=hits),
    )
    opened = open_envelope(seal(who, result, now_ms=now), now_ms=now, replay_cache=None)
    sched.on_result(opened, now)


GOOD_URLS = ["http://127.0.0.1/press", "http://127.0.0.1/gutenberg"]
BAD_URLS = ["http://127.0.0.1/spam-1", "http://127.0.0.1/spam-2"]


def settle_search(coordinator: Coordinator, task_id: str, *, dissent: bool = False) -> None:
    """Worker thread: new nodes run the task at r = 2 and agree, so it is accepted. With `dissent`,
    the second replica disagrees, a third breaks the tie, and the dissenter is rejected (quorum_minority)."""
    sched = coordinator.runtime.scheduler
    _submit_search(sched, task_id, node(1), GOOD_URLS)  # its claim adds the second replica
    _submit_search(sched, task_id, node(2), BAD_URLS if dissent else GOOD_URLS)
    if dissent:
        _submit_search(sched, task_id, node(3), GOOD_URLS)


ROW_TEXT = '{"question": "Who developed the printing press?", "answer": "Johannes Gutenberg developed it."}'
BEFORE_SYNTHESIZE = (TaskKind.QUESTION_GEN, TaskKind.SEARCH, TaskKind.RETRIEVE, TaskKind.CURATE)


def budget_spent_job(
    coordinator: Coordinator, job_id: str, *, rows: int, accepted: int, out_dir: Path, request: str = ""
) -> DatasetSpec:
    """Worker thread: an open job (grounded, `rows` requested) whose synthesize attempt budget is spent:
    every earlier stage is done, all `synthesize.max_tasks` tasks exist, `accepted` of them were settled by
    two agreeing new nodes through the real scheduler (one real row each), the rest were abandoned. No runner
    drives it yet: `Coordinator.resume_jobs` starts the real JobRunner, which finds the budget spent.
    Returns the job's spec (what `dataswarm request --spec` must submit to attach to it)."""
    store = coordinator.store
    sched: Scheduler = coordinator.runtime.scheduler
    now = now_ms()
    spec = fixture_spec(rows=rows)
    spec_doc = spec.model_dump(mode="json")
    doc = {"request": request, "spec": spec_doc, "submitted_spec": spec_doc, "grounded": True,
           "llm_spec": False, "out_dir": str(out_dir)}  # fmt: skip
    store.create_job(job_id, doc, allowed_models=[MODEL], now_ms=now)
    for kind in BEFORE_SYNTHESIZE:
        store.add_stage(job_id, kind.value, now_ms=now)
        store.set_stage_state(job_id, kind.value, StageState.DONE, now_ms=now)
    store.add_stage(job_id, TaskKind.SYNTHESIZE.value, now_ms=now)
    budget = synthesize.max_tasks(JobContext(store, job_id, spec, request))
    ids = [f"{job_id}.synthesize.{i}" for i in range(budget)]
    for task_id in ids:
        sched.submit(task_id, job_id, TaskKind.SYNTHESIZE.value, synth_payload(), est_tokens=100, now_ms=now)
    for i, task_id in enumerate(ids):
        if i < accepted:
            # A distinct question per task: identical rows would be dropped as duplicates.
            row = (f"{GOOD_ROW[0][:-1]} (asked {i + 1} times)?", GOOD_ROW[1], GOOD_ROW[2])
            for who in (node(10), node(11)):  # new nodes: replicated at r = 2, accepted when they agree
                g = sched.on_claim(
                    Claim(task_id=task_id, attempt=0, model_sha256=MODEL, free_slots=1, tok_s=50.0), who.peer_id, now
                )
                assert isinstance(g, Grant), f"{who.peer_id} was refused {task_id}: {g}"
                result = result_for(g, rows_output(row), raw_text=ROW_TEXT)
                sched.on_result(open_envelope(seal(who, result, now_ms=now), now_ms=now, replay_cache=None), now)
        else:
            sched.abandon(task_id, now)
    assert store.row_count(job_id) == accepted, store.row_drops(job_id)
    return spec


def report_status(coordinator: Coordinator, who: Identity, *, free: int = 2, tok_s: float = 42.5) -> None:
    """Worker thread: what a node's status gossip does when it reaches the coordinator."""
    status = NodeStatus(
        version="dataswarm-node/0.1.0",
        models=[ModelInfo(name="SmolLM2-135M-Instruct Q4_1", sha256="ab" * 32, tok_s=tok_s, n_ctx=2048, slots=2)],
        task_kinds=[TaskKind.SEARCH, TaskKind.SYNTHESIZE],
        free_slots=free,
        total_slots=4,
        tasks_done=7,
    )
    coordinator.runtime.scheduler.note_status(who.peer_id, status, now_ms())


# --- the coordinator in a thread of its own -----------------------------------------------------


class LiveApi:
    """A coordinator and its API in a background thread (its own trio loop), for synchronous clients."""

    def __init__(self, tmp: Path, settings: ApiSettings | None = FAST, **overrides: Any) -> None:
        """`overrides`: coordinator config settings, as for `api_server`."""
        self.tmp = tmp
        self.settings = settings
        self.overrides = overrides
        self.url = ""
        self.token = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._coordinator: Coordinator | None = None
        self._thread = threading.Thread(target=self._main, name="live-api", daemon=True)

    def __enter__(self) -> LiveApi:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the coordinator did not start within 60 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)

    @property
    def coordinator(self) -> Coordinator:
        assert self._coordinator is not None
        return self._coordinator

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the coordinator's worker thread, from this (foreign) thread."""
        assert self._token is not None
        return trio.from_thread.run(lambda: self.coordinator.runtime.call(fn, *args, **kwargs), trio_token=self._token)

    def resume_jobs(self) -> list[str]:
        """Start every unfinished job's runner on the coordinator's loop (what a restart does)."""
        assert self._token is not None
        return trio.from_thread.run_sync(self.coordinator.resume_jobs, trio_token=self._token)

    def wait_for_state(self, job_id: str, state: str, timeout_s: float = 30.0) -> None:
        """Poll the store from this (foreign) thread until the job is in `state`."""
        deadline = time.monotonic() + timeout_s
        while (now := self.call(self.coordinator.store.job, job_id).state) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {now}, not {state}, after {timeout_s} s")
            time.sleep(0.05)

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the test thread, which re-raises it
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with api_server(self.tmp, self.settings, **self.overrides) as served:
            self._coordinator = served.coordinator
            self.url = served.url
            self.token = issue(served.coordinator, "live-test", Scope.ADMIN)
            self._ready.set()
            await self._stop.wait()
