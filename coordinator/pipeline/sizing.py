"""Task sizing: how many tasks of each kind a spec plans, from named over-generation constants.

Owns: `plan` (expected tasks and executions per stage, for --dry-run and the
stages that size their batches), `planned_tasks` and `rows_within` (what quotas
compare), and the constants they are computed from.
Must not: build or change a spec (coordinator.request does), schedule tasks, do
I/O, read a clock, or import `node/`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from coordinator.spec import MAX_ROWS, DatasetSpec
from protocol.tasks import TaskKind

# Provisional factors, to be replaced by rates measured in bench/ once the pipeline runs end to end.

OVERGENERATION = 1.5
"""Rows generated per row delivered: covers rows lost to verification, grounding and dedup gates."""
ROWS_PER_SYNTHESIZE_TASK = 1
"""`SynthesizePayload.n_rows`: small models write one good row per call more reliably than several."""
SYNTHESIZE_TASKS_PER_CHUNK = 1
"""Chunks planned per synthesize task: one, so that rows spread over pages (docs/notes/quality.md#rows-per-page)."""
CHUNKS_PER_DOCUMENT = 2
"""Chunks per retrieved page that yield a row: two, since few sentences stand on their own
(docs/notes/quality.md#chunks-per-page)."""
RETRIEVE_OVERFETCH = 1.25
"""Pages fetched per page used: fetch failures, refusals and duplicate content."""
NEW_URLS_PER_SEARCH = 3
"""New URLs one search query adds once the queries overlap."""
QUERIES_PER_QUESTION_GEN = 5
"""`QuestionGenPayload.n_queries` default."""
QUESTIONS_PER_QUESTION_GEN = 5
"""`QuestionGenPayload.n_questions` default: seed questions that spread ungrounded rows."""
DOCUMENTS_PER_CURATE = 8
"""`CuratePayload.documents` maximum."""
GENERATIVE_REPLICATION = 2.0
"""Executions per generative task on a fresh network: every node starts untrusted at r = 2 (DESIGN.md)."""
QUORUM_REPLICATION = 2.0
"""Executions per deterministic task (search, retrieve, curate): a quorum of two."""
VALIDATION_RATE = 0.5
"""Validate (prefill re-scoring) tasks per synthesize task: disagreements plus spot checks."""


@dataclass(frozen=True)
class StagePlan:
    kind: TaskKind
    tasks: int
    executions: int
    """Tasks times the expected replication: what the network actually runs."""
    why: str


@dataclass(frozen=True)
class Plan:
    rows: int
    rows_to_generate: int
    stages: tuple[StagePlan, ...] = field(default_factory=tuple)

    @property
    def total_tasks(self) -> int:
        return sum(s.tasks for s in self.stages)

    @property
    def total_executions(self) -> int:
        return sum(s.executions for s in self.stages)

    def tasks(self, kind: TaskKind) -> int:
        return sum(s.tasks for s in self.stages if s.kind is kind)

    def render(self) -> str:
        """A small table for --dry-run."""
        lines = [f"{self.rows} rows delivered, {self.rows_to_generate} generated (x{OVERGENERATION} over-generation)"]
        lines += [f"  {s.kind.value:<13} {s.tasks:>8} tasks {s.executions:>9} runs  {s.why}" for s in self.stages]
        lines.append(f"  {'total':<13} {self.total_tasks:>8} tasks {self.total_executions:>9} runs")
        return "\n".join(lines)


def plan(spec: DatasetSpec, *, llm_spec: bool = False) -> Plan:
    """Expected tasks per stage for `spec` (estimates from the constants above, for --dry-run).

    llm_spec: the job starts with a `spec` task (the spec came from a request sentence).
    """
    target = math.ceil(spec.rows * OVERGENERATION)
    synth = math.ceil(target / ROWS_PER_SYNTHESIZE_TASK)
    stages: list[StagePlan] = []

    def stage(kind: TaskKind, tasks: int, replication: float, why: str) -> None:
        stages.append(StagePlan(kind, tasks, math.ceil(tasks * replication), why))

    if llm_spec:
        stage(TaskKind.SPEC, 1, GENERATIVE_REPLICATION, "an LLM reads the request; the rules keep what it said")
    if spec.grounded:
        chunks = math.ceil(synth / SYNTHESIZE_TASKS_PER_CHUNK)
        documents = math.ceil(chunks / CHUNKS_PER_DOCUMENT)
        retrieves = math.ceil(documents * RETRIEVE_OVERFETCH)
        searches = math.ceil(retrieves / NEW_URLS_PER_SEARCH)
        question_gens = math.ceil(searches / QUERIES_PER_QUESTION_GEN)
        stage(TaskKind.QUESTION_GEN, question_gens, GENERATIVE_REPLICATION, f"{searches} search queries")
        stage(TaskKind.SEARCH, searches, QUORUM_REPLICATION, f"{NEW_URLS_PER_SEARCH} new URLs per query")
        stage(TaskKind.RETRIEVE, retrieves, QUORUM_REPLICATION, f"{documents} pages used")
        stage(TaskKind.CURATE, math.ceil(documents / DOCUMENTS_PER_CURATE), QUORUM_REPLICATION, f"{chunks} chunks")
    else:
        question_gens = math.ceil(synth / QUESTIONS_PER_QUESTION_GEN)
        stage(TaskKind.QUESTION_GEN, question_gens, GENERATIVE_REPLICATION, "seed questions for variety")
    stage(TaskKind.SYNTHESIZE, synth, GENERATIVE_REPLICATION, f"{ROWS_PER_SYNTHESIZE_TASK} row(s) per task")
    stage(TaskKind.VALIDATE, math.ceil(synth * VALIDATION_RATE), 1.0, "re-scoring of disagreements and spot checks")
    return Plan(rows=spec.rows, rows_to_generate=target, stages=tuple(stages))


def planned_tasks(spec: DatasetSpec, *, llm_spec: bool = False) -> int:
    """The tasks `spec` plans at most. A `spec` task may still change `grounded`, so then both readings count."""
    readings = [spec] if not llm_spec else [spec.model_copy(update={"grounded": g}) for g in (True, False)]
    return max(plan(s, llm_spec=llm_spec).total_tasks for s in readings)


def rows_within(max_tasks: int, spec: DatasetSpec, *, llm_spec: bool = False) -> int:
    """The most rows `spec` may ask for and still plan at most `max_tasks` tasks (0 if even one row plans more)."""
    low, high = 0, MAX_ROWS
    while low < high:  # tasks grow with rows: the largest count that fits
        mid = (low + high + 1) // 2
        if planned_tasks(spec.model_copy(update={"rows": mid}), llm_spec=llm_spec) <= max_tasks:
            low = mid
        else:
            high = mid - 1
    return low


def over_limit(spec: DatasetSpec, max_tasks: int, *, llm_spec: bool = False) -> str | None:
    """Why a coordinator taking at most `max_tasks` tasks per job refuses `spec`, or None when it fits."""
    tasks = planned_tasks(spec, llm_spec=llm_spec)
    if tasks <= max_tasks:
        return None
    return (
        f"{spec.rows} rows plan about {tasks} tasks, over this coordinator's maximum of {max_tasks} "
        f"(max_job_tasks): ask for at most {rows_within(max_tasks, spec, llm_spec=llm_spec)} rows, "
        "or split the dataset into several jobs"
    )
