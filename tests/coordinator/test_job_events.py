"""The job runner waits on events, not on a timer, and the stall clock runs in the scheduler's tick.

The real runtime, scheduler, store and JobRunner on trio's MockClock (autojump): the runtime's clock
reads trio's, so the 60 s stall clock passes in milliseconds of real time. Nodes are status gossip
only (`Scheduler.note_status`): live, serving every kind, and never claiming; tasks are settled by
real node identities through the real scheduler (tests/api/support.py). The runtime runs its calls
inline (`InlineRuntime`), so the mock clock moves only when every task sleeps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio

from coordinator import job_states
from coordinator.pipeline import job
from coordinator.pipeline.job import JobRunner
from coordinator.pipeline.stage import TaskPlan
from coordinator.request import parse_request
from coordinator.runtime import CoordinatorRuntime
from coordinator.scheduler import Scheduler
from coordinator.scheduler.config import STALL_MS
from coordinator.scheduler.events import NodesChanged, TaskSettled
from coordinator.store import Store, TaskState
from network import now_ms
from network.memory import MemoryNetwork
from protocol.messages import NodeStatus
from protocol.tasks import SearchPayload, TaskKind
from tests.api.support import GOOD_URLS, _submit_search, node
from tests.coordinator.factories import T0, synth_payload
from tests.coordinator.test_scheduler import new_scheduler
from tests.network.support import identity

COORDINATOR = identity(100)
REQUEST = "question-answer pairs about Python lists, JSON with question and answer"
STATUS_S = 5.0
"""How often the test's nodes gossip their status: well within LIVE_NODE_MS, so they stay live."""
T = TypeVar("T")


def mock_ms(t0: int) -> Callable[[], int]:
    """The runtime's clock: wall time at the start of the test, then trio's (mock) clock (read through the
    clock object, which a worker thread may call too, unlike `trio.current_time`)."""
    clock = trio.lowlevel.current_clock()
    start = clock.current_time()
    return lambda: t0 + int((clock.current_time() - start) * 1000)


class InlineRuntime(CoordinatorRuntime):
    """The real runtime, with its store and scheduler calls run on the event loop's thread: to the
    autojumping clock a task waiting on a worker thread looks asleep, so it would jump (to the next
    deadline, again and again) while each call runs; inline, it moves only when every task sleeps."""

    async def _on_worker(self, fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint()
        return fn()


@contextlib.asynccontextmanager
async def runtime(tmp_path: Path, *, run: bool) -> AsyncIterator[CoordinatorRuntime]:
    """A coordinator runtime on the mock clock; `run`: with its loops (ticks, offers), else calls only."""
    store = Store(tmp_path / "coordinator.db")
    try:
        async with MemoryNetwork().transport(COORDINATOR) as transport, trio.open_nursery() as nursery:
            sched = Scheduler(store, COORDINATOR)
            # Announced once, at the start: the transport seals announces on the wall clock.
            rt = InlineRuntime(transport, sched, announce_interval_s=3600, clock=mock_ms(now_ms()))
            transport.checks.clock = rt.now_ms  # the transport checks what the runtime seals on the same clock
            if run:
                await nursery.start(rt.run)
            yield rt
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def create_job(rt: CoordinatorRuntime, job_id: str, tmp_path: Path, *, grounded: bool) -> None:
    """On the worker: a running job (no LLM spec stage), as `Coordinator.submit` leaves it."""
    store, now = rt.scheduler.store, rt.now_ms()
    spec = parse_request(REQUEST, rows=2).spec.model_copy(update={"grounded": grounded})
    doc = {
        "request": REQUEST,
        "spec": spec.model_dump(mode="json"),
        "grounded": grounded,
        "llm_spec": False,
        "out_dir": str(tmp_path / "out"),
    }
    store.create_job(job_id, doc, allowed_models=[], now_ms=now)
    store.set_job_state(job_id, job_states.RUNNING, now_ms=now)


def gossip(rt: CoordinatorRuntime, *peers: int) -> None:
    """On the worker: the peers' status gossip reaches the coordinator (every kind, any model)."""
    status = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)
    for n in peers:
        rt.scheduler.note_status(node(n).peer_id, status, rt.now_ms())


async def keep_live(rt: CoordinatorRuntime, *peers: int) -> None:
    while True:
        await rt.call(gossip, rt, *peers)
        await trio.sleep(STATUS_S)


async def test_a_task_no_node_takes_is_abandoned_after_the_stall_clock_in_mock_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    started_real = time.monotonic()
    async with runtime(tmp_path, run=True) as rt, trio.open_nursery() as nursery:
        store = rt.scheduler.store
        nursery.start_soon(keep_live, rt, 1, 2)  # two live nodes serve question_gen: the job does not wait
        await rt.call(create_job, rt, "j1", tmp_path, grounded=False)
        nursery.start_soon(JobRunner(rt, "j1", models=dict).run)
        with trio.fail_after(STALL_MS / 1000 * 5):
            while not (tasks := await rt.call(store.tasks, "j1", stage=TaskKind.QUESTION_GEN.value)) or any(
                t.state is TaskState.OPEN for t in tasks
            ):
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert all(t.state is TaskState.FAILED for t in tasks)
    assert rt.scheduler.stats["abandoned"] == len(tasks)
    # Given up once the stall clock ran out, at the next tick (the tasks' times are the runtime's mock clock).
    assert all(STALL_MS <= t.updated_ms - t.created_ms <= STALL_MS + 1000 for t in tasks), tasks
    assert time.monotonic() - started_real < 1.0
    assert rt.scheduler.stalls.jobs() == []  # the cancelled runner left no stall clock behind


async def run_search_stage(runner: JobRunner, done: trio.Event) -> None:
    spec = TaskPlan("j1.search.0", SearchPayload(query="printing press"))
    with runner.rt.job_events("j1") as events:
        runner._events = events  # what `run` does around the stages
        await runner._stage(TaskKind.SEARCH, lambda: [spec])
    done.set()


async def waiting_on_search(rt: CoordinatorRuntime, tmp_path: Path, nursery: trio.Nursery) -> trio.Event:
    """A grounded job whose runner waits on its search stage's one task (blocked on its channel);
    returns the stage's end."""
    await rt.call(create_job, rt, "j1", tmp_path, grounded=True)
    await rt.call(gossip, rt, 1, 2)
    await rt.call(rt.scheduler.store.add_stage, "j1", TaskKind.SEARCH.value, now_ms=rt.now_ms())
    runner, done = JobRunner(rt, "j1", models=dict), trio.Event()
    nursery.start_soon(run_search_stage, runner, done)
    with trio.fail_after(10):
        while runner._events is None or not runner._events.statistics().tasks_waiting_receive:
            await trio.sleep(0.001)
    return done


def settle(rt: CoordinatorRuntime, *, lose_events: bool = False) -> None:
    """On the worker: two nodes run the search task and agree, so it is accepted (their receipts are not
    sent here). lose_events: the scheduler's events are dropped, as if never sent."""
    for n in (1, 2):
        _submit_search(rt.scheduler, "j1.search.0", node(n), GOOD_URLS)
    if lose_events:
        rt.scheduler.take_events()


async def test_a_settled_task_wakes_the_runner_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "WAKE_S", math.inf)  # no safety net: only the event can wake the runner
    started_real = time.monotonic()
    async with runtime(tmp_path, run=False) as rt, trio.open_nursery() as nursery:
        done = await waiting_on_search(rt, tmp_path, nursery)
        before = trio.current_time()
        await rt.call(settle, rt)
        with trio.fail_after(60):  # the only deadline: reached at once (mock time) if the runner stays asleep
            await done.wait()
        # No timer ran (no POLL_S, no WAKE_S): with no deadline pending, the mock clock never moved.
        assert trio.current_time() == before
        assert (await rt.call(rt.scheduler.store.stages, "j1"))[TaskKind.SEARCH.value] == "done"
    assert time.monotonic() - started_real < 1.0


async def test_a_lost_event_costs_the_runner_wake_s_at_most(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with runtime(tmp_path, run=False) as rt, trio.open_nursery() as nursery:
        done = await waiting_on_search(rt, tmp_path, nursery)
        before = trio.current_time()
        await rt.call(settle, rt, lose_events=True)
        with trio.fail_after(60):
            await done.wait()
        # The runner looked at the store again when its safety net ran out, and found the task done.
        assert 0 < trio.current_time() - before <= job.WAKE_S


def test_the_stall_clock_stands_still_while_the_job_waits_and_restarts_after(tmp_path: Path) -> None:
    """The rules in the scheduler alone (synchronous): a watched stage's untaken task is abandoned at the
    tick STALL_MS after its last slot activity; not while the job waits for nodes; counting from the end
    of the wait; and never on a judgement of the nodes made before they changed."""
    s = new_scheduler(tmp_path)
    s.submit("t1", "j1", "synthesize", synth_payload(), now_ms=T0)
    s.tick(T0)  # notes the live nodes
    s.watch_stage("j1", "synthesize", T0, waiting=True)  # the runner: too few nodes
    s.tick(T0 + 2 * STALL_MS)
    assert s.store.task("t1").state is TaskState.OPEN  # held while the job waits
    s.watch_stage("j1", "synthesize", T0 + 2 * STALL_MS, waiting=False)  # the wait is over
    s.tick(T0 + 3 * STALL_MS - 1)
    assert s.store.task("t1").state is TaskState.OPEN  # the clock counts from the end of the wait
    s.note_status(node(9).peer_id, NodeStatus(version="test", models=[], task_kinds=[TaskKind.SEARCH],
                                              free_slots=1, total_slots=1), T0 + 3 * STALL_MS)  # fmt: skip
    s.tick(T0 + 3 * STALL_MS)
    assert s.store.task("t1").state is TaskState.OPEN  # a new node: the runner looks again first
    assert any(isinstance(e, NodesChanged) for e in s.take_events())
    s.watch_stage("j1", "synthesize", T0 + 3 * STALL_MS, waiting=False)
    s.tick(T0 + 3 * STALL_MS)
    assert s.store.task("t1").state is TaskState.FAILED and s.stats["abandoned"] == 1
    assert s.take_events() == [TaskSettled("t1", "j1", "synthesize", TaskState.FAILED.value)]
    s.unwatch_stage("j1", forget=True)
    assert s.stalls.jobs() == []
