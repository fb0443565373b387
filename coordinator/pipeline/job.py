"""Drive one job through its stages: submit each stage's tasks, wait, persist, go on.

Owns: the order of stages, waiting for a stage's tasks to settle, synthesize
waves until the requested rows are accepted, and the compile step.
Must not: decide verdicts or talk to nodes (the scheduler and runtime do).

Final states: "done" (every requested row delivered), "partial" (the synthesize
attempt budget ran out with fewer rows: what passed is compiled and delivered,
and the job's spec document says why under "partial"), "failed", "cancelled".

Waiting: the runner waits on its job's events (the runtime's `job_events`: a
task settled, the live nodes changed, the job was cancelled), with WAKE_S as a
safety net, and re-reads the store on each wake-up. It tells the scheduler which
stage it waits on (`Scheduler.watch_stage`), whose tick abandons that stage's
tasks no node takes (the stall clock, scheduler/stalls.py).

Waiting for nodes: while fewer live nodes serve the current stage's kind than
its tasks need (pipeline/waiting.py), the job is "waiting_for_nodes" instead of
"running" (the scheduler offers none of its tasks then) and the stall clock
stands still; it restarts when enough nodes are live and the job is running
again. Abandoning is for tasks that live nodes keep refusing or failing.

Time: every timestamp comes from the runtime's clock (`CoordinatorRuntime.now_ms`).

Resume: stage states and every task live in the store, task ids are
deterministic, and `Scheduler.submit` is idempotent, so running a job again
after a crash re-submits nothing that exists and waits on what is open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from pathlib import Path

import trio

from coordinator import job_states
from coordinator.compile import CompiledDataset
from coordinator.job_states import StageState
from coordinator.pipeline import curate, deliver, judge, question_gen, retrieve, search, synthesize, widen
from coordinator.pipeline import spec as spec_stage
from coordinator.pipeline.context import JobContext
from coordinator.pipeline.stage import TaskPlan
from coordinator.pipeline.waiting import WAIT_KEY, NodeWait, node_wait
from coordinator.runtime import CoordinatorRuntime
from coordinator.scheduler import Scheduler
from coordinator.scheduler.events import Event
from coordinator.spec import DatasetSpec
from coordinator.store import TaskState
from coordinator.verify.reasons import Reason
from coordinator.verify.reputation import is_trusted
from protocol.tasks import LLM_KINDS, TaskKind

log = logging.getLogger(__name__)

WAKE_S = 2.0
"""The longest a runner waits for an event before it looks at the store anyway: a safety net (an event
lost or not sent), not how it learns of progress."""


def trusted_nodes(scheduler: Scheduler, peers: Collection[str], now_ms: int) -> set[str]:
    """Of `peers`, those trusted to run a task alone (r = 1): the one place the wait for nodes learns
    trust, as the scheduler grants it (plan_replication): the operator's own nodes (config
    `trusted_nodes`) and nodes that earned it (verify.reputation.is_trusted)."""
    config = scheduler.config.reputation
    return {
        p
        for p in peers
        if p in scheduler.config.trusted_nodes
        or is_trusted(scheduler.store.reputation(p), now_ms=now_ms, config=config)
    }


class JobFailed(Exception):
    """The job cannot go on; the message says why and what to do."""


class JobCancelled(Exception):
    pass


class JobRunner:
    def __init__(self, runtime: CoordinatorRuntime, job_id: str, *, models: Callable[[], dict[str, str]]) -> None:
        self.rt = runtime
        self.store = runtime.scheduler.store
        self.job_id = job_id
        job = self.store.job(job_id)
        self.spec = DatasetSpec.model_validate(job.doc["spec"])
        self.ctx = JobContext(self.store, job_id, self.spec, str(job.doc.get("request", "")))
        self.out_dir = Path(str(job.doc["out_dir"]))
        self.spec_pending = bool(job.doc.get("llm_spec")) and not job.doc.get("spec_refined")
        rows_given = job.doc.get("rows_given")
        self.rows_given = rows_given if isinstance(rows_given, int) else None
        self.started_ms = job.created_ms
        self.models = models
        self._shown_wait: NodeWait | None = None
        """The wait last written to the store (None: the job was running)."""
        self._events: trio.MemoryReceiveChannel[Event] | None = None

    def now_ms(self) -> int:
        return self.rt.now_ms()

    async def run(self) -> CompiledDataset | None:
        with self.rt.job_events(self.job_id) as events:
            self._events = events
            try:
                return await self._run()
            finally:
                self._events = None
                with trio.CancelScope(shield=True):  # also when the runner is cancelled: no stall clock left
                    await self.rt.call(self.rt.scheduler.unwatch_stage, self.job_id, forget=True)

    async def _run(self) -> CompiledDataset | None:
        try:
            if self.spec_pending:
                skipped = await self._spec_skipped()
                if not skipped:
                    await self._stage(TaskKind.SPEC, lambda: spec_stage.tasks(self.ctx))
                await self._refine_spec(skipped)
            if self.spec.grounded:
                await self._stage(TaskKind.QUESTION_GEN, lambda: question_gen.tasks(self.ctx))
                await self._stage(TaskKind.SEARCH, lambda: search.tasks(self.ctx))
                await self._stage(TaskKind.RETRIEVE, lambda: retrieve.tasks(self.ctx), required="pages to retrieve")
                await self._stage(TaskKind.CURATE, lambda: curate.tasks(self.ctx), required="usable documents")
                await self._widen()
            else:
                await self._stage(TaskKind.QUESTION_GEN, lambda: question_gen.tasks(self.ctx))
            await self._synthesize()
            return await self._compile()
        except JobCancelled:
            log.info("job %s cancelled", self.job_id)
            return None
        except JobFailed as exc:
            log.error("job %s failed: %s", self.job_id, exc)
            await self.rt.call(self._set_state, "failed", str(exc))
            return None

    async def _spec_skipped(self) -> str:
        """Why the spec stage is not run ("" to run it): once started it goes on; before that, it needs the
        live nodes to run and verify spec tasks (the stage is optional: the job would only wait for nodes)."""
        if TaskKind.SPEC.value in await self.rt.call(self.store.stages, self.job_id):
            return ""
        wait = await self.rt.call(self._node_wait, TaskKind.SPEC, self.now_ms())
        if not wait.waiting:
            return ""
        why = "no live node serves spec tasks"
        if wait.live:
            why = f"{wait.live} live node(s) serve spec tasks, verifying one needs {wait.needed}"
        log.info("job %s: %s; keeping the rule-based spec", self.job_id, why)
        return why

    async def _refine_spec(self, skipped: str) -> None:
        """Merge the spec stage's verified draft into the job's spec, once (the merge is pure, so a
        restart between the stage and this write merges the same draft again)."""
        parsed = await self.rt.call(lambda: spec_stage.refined(self.ctx, self.rows_given, skipped=skipped))
        changes = {
            "spec": parsed.spec.model_dump(mode="json"),
            "grounded": parsed.spec.grounded,
            "spec_notes": list(parsed.notes),
            "spec_refined": True,
        }
        await self.rt.call(lambda: self.store.update_job_doc(self.job_id, changes, now_ms=self.now_ms()))
        if parsed.spec != self.spec:
            log.info("job %s: spec refined by the spec task: %s", self.job_id, parsed.spec.model_dump(mode="json"))
        self.spec = parsed.spec
        self.ctx = JobContext(self.store, self.job_id, self.spec, self.ctx.request)

    def _set_state(self, state: str, error: str = "") -> None:
        if error:
            self.store.update_job_doc(self.job_id, {"error": error}, now_ms=self.now_ms())
        self.store.set_job_state(self.job_id, state, now_ms=self.now_ms())

    async def _check_job(self) -> None:
        state = (await self.rt.call(self.store.job, self.job_id)).state
        if state == "cancelled":
            raise JobCancelled()

    async def _submit(self, stage: TaskKind, specs: list[TaskPlan]) -> None:
        sched = self.rt.scheduler
        for s in specs:
            now = self.now_ms()
            await self.rt.call(
                sched.submit, s.task_id, self.job_id, stage.value, s.payload, est_tokens=s.est_tokens, now_ms=now
            )

    async def _stage(self, kind: TaskKind, make: Callable[[], list[TaskPlan]], *, required: str = "") -> None:
        states = await self.rt.call(self.store.stages, self.job_id)
        if states.get(kind.value) is StageState.DONE:
            return
        if kind.value not in states:
            await self.rt.call(self.store.add_stage, self.job_id, kind.value, now_ms=self.now_ms())
        specs = await self.rt.call(make)
        if not specs and required:
            raise JobFailed(
                f"the {kind.value} stage has no {required}: the search found nothing usable for "
                f"{self.spec.topic!r} (index a corpus that covers it with `dataswarm corpus index`)"
            )
        await self._submit(kind, specs)
        await self._wait(kind)
        await self.rt.call(self.store.set_stage_state, self.job_id, kind.value, StageState.DONE, now_ms=self.now_ms())

    async def _wait(self, kind: TaskKind) -> None:
        try:
            while True:
                await self._check_job()
                tasks = await self.rt.call(self.store.tasks, self.job_id, stage=kind.value)
                if all(t.state is not TaskState.OPEN for t in tasks):
                    return
                await self._note_wait(kind)
                await self._next_event()
        finally:
            await self._unwatch()

    async def _next_event(self) -> None:
        """Until something happened to the job (drained: a burst of events is one wake-up), or WAKE_S."""
        assert self._events is not None
        with trio.move_on_after(WAKE_S):
            await self._events.receive()
        while True:
            try:
                self._events.receive_nowait()
            except trio.WouldBlock:
                return

    async def _unwatch(self) -> None:
        await self.rt.call(self.rt.scheduler.unwatch_stage, self.job_id)

    async def _note_wait(self, kind: TaskKind) -> None:
        """Whether enough live nodes serve `kind` for its tasks: if not, the job waits for nodes (its state
        says so, with the numbers) and the stall clock stands still. Tells the scheduler's stall clock
        which stage the job waits on, and whether it waits for nodes."""
        wait = await self.rt.call(self._watch, kind, self.now_ms())
        shown = wait if wait.waiting else None
        if shown != self._shown_wait:
            if await self.rt.call(self._set_wait, shown):
                if shown is not None:
                    log.info("job %s: %s", self.job_id, shown.describe())
                else:
                    log.info("job %s: %d live node(s) serve %s; running again", self.job_id, wait.live, kind.value)
            self._shown_wait = shown

    def _watch(self, kind: TaskKind, now: int) -> NodeWait:
        """Worker thread: the wait for `kind`, and the stage the scheduler's stall clock watches."""
        wait = self._node_wait(kind, now)
        self.rt.scheduler.watch_stage(self.job_id, kind.value, now, waiting=wait.waiting)
        return wait

    def _node_wait(self, kind: TaskKind, now: int) -> NodeWait:
        """Worker thread: the wait for `kind`, from the scheduler's live nodes and what they serve."""
        sched = self.rt.scheduler
        models = sorted(self.store.job(self.job_id).allowed_models)
        if kind is TaskKind.JUDGE and (settings := judge.settings(self.ctx)) is not None:
            models = sorted(settings.models)
        live = sched.live_nodes(now)
        serving = {p: {k for k in TaskKind if sched.serves(p, k, models if k in LLM_KINDS else ())} for p in live}
        replicas = sched.config.reputation.untrusted_replicas
        return node_wait(kind, serving, trusted=trusted_nodes(sched, live, now), replicas=replicas)

    def _set_wait(self, wait: NodeWait | None) -> bool:
        """Worker thread: enter, update or leave waiting_for_nodes. False when the job is neither running
        nor waiting (cancelled meanwhile: that stays)."""
        state = self.store.job(self.job_id).state
        if state not in (job_states.RUNNING, job_states.WAITING_FOR_NODES):
            return False
        now = self.now_ms()
        self.store.update_job_doc(self.job_id, {WAIT_KEY: wait.as_doc() if wait else None}, now_ms=now)
        target = job_states.WAITING_FOR_NODES if wait else job_states.RUNNING
        if state != target:
            self.store.set_job_state(self.job_id, target, now_ms=now)
        return True

    async def _widen(self) -> None:
        """More pages while the sources offer too few answer sentences (pipeline/widen.py); after a restart,
        first the round that was under way."""
        if (await self.rt.call(self.store.stages, self.job_id)).get(TaskKind.SYNTHESIZE.value) is not None:
            return  # synthesize began: the sources are what they are
        while True:
            await self._wait(TaskKind.SEARCH)
            await self._wait(TaskKind.RETRIEVE)
            await self._submit(TaskKind.CURATE, await self.rt.call(curate.uncurated_tasks, self.ctx))
            await self._wait(TaskKind.CURATE)
            more = await self.rt.call(widen.next_round, self.ctx, self.now_ms())
            if not more:
                return
            kind = more[0].payload.kind
            log.info("job %s: the sources offer too few answer sentences; %d more %s tasks",
                     self.job_id, len(more), kind.value)  # fmt: skip
            await self._submit(kind, more)

    async def _synthesize(self) -> None:
        kind = TaskKind.SYNTHESIZE
        states = await self.rt.call(self.store.stages, self.job_id)
        if states.get(kind.value) is StageState.DONE:
            return
        if kind.value not in states:
            await self.rt.call(self.store.add_stage, self.job_id, kind.value, now_ms=self.now_ms())
        judged = await self.rt.call(judge.settings, self.ctx) is not None
        if judged and judge.STAGE not in states:
            await self.rt.call(self.store.add_stage, self.job_id, judge.STAGE, now_ms=self.now_ms())
        try:
            await self._synthesize_waves(kind)
        finally:
            await self._unwatch()
        for stage in (kind.value, judge.STAGE) if judged else (kind.value,):
            await self.rt.call(self.store.set_stage_state, self.job_id, stage, StageState.DONE, now_ms=self.now_ms())

    async def _synthesize_waves(self, kind: TaskKind) -> None:
        """Synthesize waves until the requested rows are accepted or the attempt budget is spent. Rows that
        a judge must score (pipeline/judge.py) count once it passed them, and are awaited while it runs."""
        judged = await self.rt.call(judge.settings, self.ctx) is not None
        while True:
            await self._check_job()
            if judged:
                await self._submit(TaskKind.JUDGE, await self.rt.call(judge.tasks, self.ctx))
            accepted, pending = await self.rt.call(self._counted)
            if accepted >= self.spec.rows:
                return
            tasks = await self.rt.call(self.store.tasks, self.job_id, stage=kind.value)
            in_flight = sum(t.state is TaskState.OPEN for t in tasks)
            # Keep enough tasks in flight for the rows still missing: a task stuck on a busy or
            # ineligible network then stalls only itself, not the whole wave's progress.
            want = synthesize.wave_size(self.ctx, accepted + pending)
            room = synthesize.max_tasks(self.ctx) - len(tasks)
            if in_flight < want and room > 0:
                specs = await self.rt.call(synthesize.tasks, self.ctx, len(tasks), min(room, want - in_flight))
                if not specs and not in_flight and not pending:
                    raise JobFailed(synthesize.no_tasks_reason(self.ctx))
                await self._submit(kind, specs)
            elif room <= 0 and not in_flight and not pending:
                # The attempt budget is spent: compile what passed; _compile marks the job partial.
                log.warning("job %s: %d of %d rows after %d tasks; compiling what passed",
                            self.job_id, accepted, self.spec.rows, len(tasks))  # fmt: skip
                return
            # Only judge tasks left: the job waits on judge nodes (and says so when there are none).
            await self._note_wait(TaskKind.JUDGE if pending and not in_flight else kind)
            await self._next_event()

    def _counted(self) -> tuple[int, int]:
        """Worker thread: (rows that count towards the job, rows still waiting for their judge)."""
        settings = judge.settings(self.ctx)
        if settings is None:
            return self.store.row_count(self.job_id), 0
        counted = judge.tally(self.store, self.job_id, settings)
        judge.record_drops(self.ctx, counted, self.now_ms())
        return len(counted.passed), counted.pending

    async def _compile(self) -> CompiledDataset | None:
        await self.rt.call(self._set_state, job_states.COMPILING)
        accepted, _ = await self.rt.call(self._counted)
        if not accepted:
            raise JobFailed("no row passed verification; nothing to compile")
        # Decided from the store, not from how _synthesize ended: after a restart that stage may
        # already be done (or the dataset compiled), and the row count is the same either way.
        final = await self._final_state(accepted)
        if (self.out_dir / "manifest.json").exists():
            await self.rt.call(self._set_state, final)  # compiled before a restart
            return None
        compiled = await self.rt.call(
            lambda: deliver.run(
                self.ctx,
                self.out_dir,
                coordinator=self.rt.scheduler.identity,
                models=self.models(),
                started_ms=self.started_ms,
                now_ms=self.now_ms(),
            )
        )
        await self.rt.call(self._set_state, final)
        return compiled

    async def _final_state(self, accepted: int) -> str:
        """The final state: "partial" when fewer rows than requested passed (recording why, once), else "done"."""
        doc = (await self.rt.call(self.store.job, self.job_id)).doc
        if doc.get("partial"):
            return "partial"  # recorded before an earlier compile: that dataset has these rows
        if accepted >= self.spec.rows:
            return "done"
        reason = await self.rt.call(self._shortfall_reason, accepted)
        log.warning("job %s: %s", self.job_id, reason)
        await self.rt.call(lambda: self.store.update_job_doc(self.job_id, {"partial": reason}, now_ms=self.now_ms()))
        return "partial"

    def _shortfall_reason(self, accepted: int) -> str:
        """One sentence for the requester and the dataset card (worker thread: reads the store)."""
        n_tasks = len(self.store.tasks(self.job_id, stage=TaskKind.SYNTHESIZE.value))
        budget = synthesize.max_tasks(self.ctx)
        if budget < self.spec.rows * synthesize.MAX_TASKS_FACTOR:
            why = (
                f"the sources offered {budget // synthesize.SEEDS_PER_ANSWER} answer sentences, each tried "
                f"{synthesize.SEEDS_PER_ANSWER} times"
            )
        else:
            why = f"the attempt budget: {budget} tasks, {synthesize.MAX_TASKS_FACTOR} per requested row"
        drops = self.store.row_drops(self.job_id)
        if refused := drops.get(Reason.JUDGE_REFUSED.value, 0) + drops.get(Reason.UNJUDGED.value, 0):
            why += f"; the judge passed no more: {refused} rows were refused or could not be judged"
        return (
            f"{accepted} of {self.spec.rows} rows passed verification after {n_tasks} synthesize tasks "
            f"({why}); fewer rows are delivered rather than rows that failed the checks"
        )
