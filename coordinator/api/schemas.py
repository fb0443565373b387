"""The HTTP API's request and response bodies (what /openapi.json describes).

Owns: the JSON shapes and their limits. Must not: read the store or the
coordinator (`views.py` fills these from them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coordinator.request import MAX_REQUEST_CHARS
from coordinator.spec import MAX_ROWS

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A job id is a directory name under data_dir/datasets: no separators, no leading dot."""

JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, min_length=1, max_length=64, examples=["job-1a2b3c4d"])]
RequestText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_REQUEST_CHARS,
        pattern=r"\S",
        description="The dataset described in a sentence.",
        examples=["200 question-answer pairs about Python's asyncio, grounded in the docs"],
    ),
]
Rows = Annotated[int, Field(ge=1, le=MAX_ROWS, description="Rows wanted (overrides the request text or spec).")]
SpecDoc = Annotated[
    dict[str, Any],
    Field(description="A dataset spec (the shape `--dry-run` prints): topic, fields, rows, grounded, language..."),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error: a machine code, one sentence for people, and the individual problems if several."""

    error: str = Field(examples=["not_found"])
    detail: str = Field(examples=["no job 'job-1234' on this coordinator"])
    problems: list[str] = Field(default_factory=list)


class SpecQuery(_Body):
    """A request sentence or a spec (at least one); with a spec, the sentence is kept as a note."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["request"]}, {"required": ["spec"]}]}
    )

    request: RequestText | None = None
    spec: SpecDoc | None = None
    rows: Rows | None = None

    @model_validator(mode="after")
    def _something(self) -> SpecQuery:
        if self.request is None and self.spec is None:
            raise ValueError("give `request` (a sentence) or `spec` (a dataset spec)")
        return self

    @property
    def text(self) -> str:
        return self.request or ""


class JobCreate(SpecQuery):
    job_id: JobId | None = Field(
        default=None,
        description="Your own id (retrying with the same id and body returns the existing job, not a new one).",
    )


class StageView(BaseModel):
    stage: str
    state: str
    tasks: int
    done: int
    failed: int
    open: int


class WaitingView(BaseModel):
    stage: str = Field(description="The stage whose tasks wait for nodes.")
    live: int = Field(description="Live nodes that serve the stage's task kind with a model the job allows.")
    needed: int = Field(
        description="Distinct live nodes its tasks need: 2 (a second replica or an audit on another node), "
        "1 when a trusted node serves the kind."
    )
    message: str = Field(examples=["waiting for nodes: 0 live, needs 2 for verification of question_gen tasks"])


class JobLinks(BaseModel):
    self: str
    events: str
    dataset: str


class JobView(BaseModel):
    job_id: str
    state: str = Field(
        examples=["running"],
        description="open, running, waiting_for_nodes, compiling, done, partial, failed or cancelled. "
        "waiting_for_nodes: running, but too few live nodes serve the current stage's task kind to run and "
        "verify its tasks (`waiting` says how many); no task is given up meanwhile. partial is final: the "
        "dataset was compiled with fewer rows than asked for (`partial_reason` says why) and can be downloaded.",
    )
    topic: str
    request: str
    grounded: bool
    rows: int = Field(description="Rows accepted so far.")
    target: int = Field(description="Rows asked for.")
    stages: list[StageView]
    rejections: dict[str, int] = Field(description="Rejected results and dropped rows, by reason.")
    error: str
    partial_reason: str = Field(
        "", description="Why a partial job delivered fewer rows than asked for (empty unless state is partial)."
    )
    out_dir: str = Field(description="Where the coordinator writes the dataset directory.")
    waiting: WaitingView | None = Field(None, description="Set while the state is waiting_for_nodes, else null.")
    created_ms: int
    updated_ms: int
    links: JobLinks


class JobList(BaseModel):
    jobs: list[JobView]


class ModelView(BaseModel):
    name: str
    sha256: str
    tok_s: float
    n_ctx: int
    slots: int


class ReputationView(BaseModel):
    score: float = Field(description="Current score in [0, 1] (decayed toward the prior while idle).")
    accepted: int
    rejected: int
    expired: int
    blacklisted: bool


class NodeView(BaseModel):
    peer_id: str
    live: bool = Field(description="The node's status gossip arrived within the last 30 s.")
    last_seen_ms: int | None = Field(description="When its last status arrived (unix ms); null if never since start.")
    version: str
    models: list[ModelView]
    task_kinds: list[str]
    free_slots: int
    total_slots: int
    tasks_done: int
    held_leases: int
    reputation: ReputationView | None


class NodeList(BaseModel):
    nodes: list[NodeView]


class StagePlanView(BaseModel):
    kind: str
    tasks: int
    executions: int
    why: str


class PlanView(BaseModel):
    rows: int
    rows_to_generate: int
    total_tasks: int
    total_executions: int
    stages: list[StagePlanView]


class SpecPreview(BaseModel):
    spec: dict[str, Any]
    spec_yaml: str
    notes: list[str]
    plan: PlanView


RejectionScope = Literal["result", "row", "claim"]
"""result: a verdict refused a node's result; row: a quality gate dropped a row; claim: a claim was refused."""


class RejectionEvent(BaseModel):
    at_ms: int
    job_id: str = Field(description="Empty for refused claims, which belong to no job.")
    scope: RejectionScope
    reason: str
    count: int


class ActivityView(BaseModel):
    results_per_s: float = Field(description="Results received per second over the last minute.")
    rejections: list[RejectionEvent] = Field(description="Most recent first.")


class InfoView(BaseModel):
    peer_id: str
    addrs: list[str]
    models: dict[str, str] = Field(description="Allowed model digests and their names.")
    api_version: str
    open_reads: bool = Field(description="Read endpoints need no token (the API listens on loopback only).")
