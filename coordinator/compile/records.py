"""What the pipeline hands the compiler: accepted rows with their provenance, and job figures.

Owns: the input types of `compile_dataset`. The pipeline builds them from the
store after verification and deduplication; the compiler trusts none of their
claims that it can check (each envelope is re-verified, each row is re-read
from the producer's signed output).
Must not: hold the delivered row itself. A row is always derived from the
producer's signed `Result`, so a row and its proof cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Id, PeerIdStr
from protocol.tasks import Sha256Hex, SourceChunk

MAX_ENVELOPE_BYTES = 2 * 1024 * 1024 + 512
"""`max_envelope_size({RESULT})`: a Result body limit plus envelope overhead."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProducerRecord(_Record):
    """A node that produced the row's task output, with its signed Result envelope."""

    peer_id: PeerIdStr
    envelope: Annotated[bytes, Field(max_length=MAX_ENVELOPE_BYTES)]
    """The raw signed `Result` envelope as the coordinator received it."""


class ValidatorRecord(_Record):
    """A node that re-scored (validate) or judged the row's output."""

    peer_id: PeerIdStr
    task_id: Id | None = None
    """The validate/judge task it ran."""
    envelope: Annotated[bytes, Field(max_length=MAX_ENVELOPE_BYTES)] | None = None
    """Its signed `Result`, when the pipeline kept it (then it is re-verified and recorded)."""


class AcceptedRow(_Record):
    """One verified row: which task and output row it is, who made it, who checked it, what it cites."""

    task_id: Id
    """The synthesize task whose output holds the row."""
    output_row: int = Field(default=0, ge=0, le=9)
    """Index into that output's `rows` (a task may produce up to 10)."""
    producer: ProducerRecord
    """The producer whose signed output is delivered."""
    replicas: Annotated[list[ProducerRecord], Field(max_length=16)] = []
    """Other producers of the same task whose outputs agreed (recorded and re-verified, not delivered)."""
    validators: Annotated[list[ValidatorRecord], Field(max_length=16)] = []
    chunk: SourceChunk | None = None
    """The source chunk the synthesize task was granted (required for grounded specs)."""
    upstream_task_ids: Annotated[list[Id], Field(max_length=64)] = []
    """question_gen / search / retrieve / curate tasks the row descends from."""


class JobStats(_Record):
    """Job-level figures for the dataset card (the compiler counts per-row figures itself)."""

    job_id: Id
    nodes: int = Field(default=0, ge=0)
    """Distinct nodes that ran any task of the job (rejected work included)."""
    tasks: int = Field(default=0, ge=0)
    executions: int = Field(default=0, ge=0)
    """Task runs, replicas included."""
    replication: float | None = Field(default=None, ge=0.0)
    """Mean runs per generative task, as the scheduler used it."""
    rejections: dict[str, int] = {}
    """Refused results by reason (`coordinator.verify.reasons.Reason` values)."""
    duplicates_removed: int = Field(default=0, ge=0)
    models: dict[Sha256Hex, str] = {}
    """Model digest -> human name (GGUF file name), for the card."""
    candidates: int = Field(default=0, ge=0)
    """Synthesize runs: each wrote at most one candidate row (answer first) or a few (the generic path)."""
    synthesize_seconds: float = Field(default=0.0, ge=0.0)
    """Generation time the nodes reported for every synthesize run, rejected ones included."""
    synthesize_tokens: int = Field(default=0, ge=0)
    validate_seconds: float = Field(default=0.0, ge=0.0)
    answer_first: bool = False
    """Rows were written answer first and checked by a round trip (coordinator/pipeline/synthesize.py)."""
    label_first: bool = False
    """Rows were written label first and checked by a label round trip (coordinator/pipeline/synthesize.py)."""
    judge_min_score: int | None = Field(default=None, ge=1, le=5)
    """Set when rows without a round trip were judged: the score each delivered row reached at least."""
    judge_models: list[Sha256Hex] = []
    """The models a judge node could run (the job's judge settings)."""
    partial: str = ""
    """Why fewer rows than requested were delivered ("" when the quota was met)."""
    started_at_ms: int | None = Field(default=None, ge=0)
    finished_at_ms: int | None = Field(default=None, ge=0)
