"""provenance.jsonl: one line per delivered row saying where it came from and who vouches for it.

Owns: the line format and its pydantic model (strict, so a hand-edited line
fails with the key that is wrong). Line `i` describes data.jsonl row `i`:
    row              0-based row number
    row_sha256       Merkle leaf hash of the row (hex)
    task_id, job_id  the synthesize task and its job
    upstream_task_ids  question_gen / search / retrieve / curate tasks before it
    producer         the node whose signed output is the row:
                     peer_id, envelope (base64 of the raw signed Result envelope),
                     result_sha256 (what its Receipt names), output_row,
                     model_sha256 and decoding (copied from the signed Result)
    replicas         other producers of the same task whose outputs agreed (same shape)
    validators       nodes that re-scored it, and its judge: peer_id, task_id, envelope (or null)
    checks           what the row passed, in order: "signatures", "replicas_agree" or
                     "rescored" (a validator's prefill under the declared model) or
                     "rescored_by_producer" (the operator's own node alone re-scored
                     what it wrote, in a separate pass: no independent check),
                     "question_gates" and "roundtrip" (answer-first rows), "label_roundtrip"
                     (label-first rows), "gates", "judge" (a judge node scored it at or
                     above the job's pass mark)
    roundtrip        null, or the validators' round trip of an answer-first or label-first
                     row (the weakest of them): answer_rank (0: recovered), margin, gain,
                     n_sentences (sentences or choices ranked), reading ("sentence" or
                     "label"); each validator's signed envelope carries its own
    judge            null, or the judge's score of a row without a round trip: peer_id,
                     task_id, score, min_score, model_sha256, rationale
    source           null, or the chunk the row is grounded in: url, content_sha256
                     (of the whole document text), chunk_start/chunk_end (offsets of
                     the chunk in the document), chunk_text, evidence (the quote),
                     evidence_start/evidence_end (offsets of the quote in the document)
All offsets count Unicode code points, as Python's str does.
Must not: decide validity (verify_dir.py does), or hold anything not derivable
from signed envelopes except the coordinator's own records (which the signed
manifest covers through the file digest).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.tasks import MAX_CHUNK_CHARS, Sha256Hex

PROVENANCE_FILE = "provenance.jsonl"
SOURCES_FILE = "sources.jsonl"


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignedResultRef(_Line):
    peer_id: Annotated[str, Field(min_length=1, max_length=128)]
    envelope: str
    """base64 (standard alphabet, padded) of the raw signed Result envelope."""
    result_sha256: Sha256Hex
    output_row: int = Field(default=0, ge=0, le=9)
    model_sha256: Sha256Hex | None = None
    decoding: dict[str, Any] | None = None


class ValidatorRef(_Line):
    peer_id: Annotated[str, Field(min_length=1, max_length=128)]
    task_id: str | None = None
    envelope: str | None = None


class SourceRef(_Line):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    content_sha256: Sha256Hex
    chunk_start: int = Field(ge=0)
    chunk_end: int = Field(ge=0)
    chunk_text: Annotated[str, Field(max_length=MAX_CHUNK_CHARS)]
    evidence: str = ""
    evidence_start: int | None = Field(default=None, ge=0)
    evidence_end: int | None = Field(default=None, ge=0)


class RoundTripRef(_Line):
    answer_rank: int = Field(ge=0)
    margin: float
    gain: float = 0.0
    n_sentences: int = Field(ge=0)
    reading: Literal["sentence", "label"] = "sentence"


class JudgeRef(_Line):
    """The judge's signed score of a row that no round trip checks (its envelope is among `validators`)."""

    peer_id: Annotated[str, Field(min_length=1, max_length=128)]
    task_id: str
    score: int = Field(ge=1, le=5)
    min_score: int = Field(ge=1, le=5)
    """The job's pass mark: the row was delivered because score >= min_score."""
    model_sha256: Sha256Hex | None = None
    rationale: Annotated[str, Field(max_length=400)] = ""


class ProvenanceLine(_Line):
    row: int = Field(ge=0)
    row_sha256: Sha256Hex
    task_id: str
    job_id: str
    upstream_task_ids: list[str] = []
    producer: SignedResultRef
    replicas: list[SignedResultRef] = []
    validators: list[ValidatorRef] = []
    checks: list[str] = []
    roundtrip: RoundTripRef | None = None
    judge: JudgeRef | None = None
    source: SourceRef | None = None


class SourceDocument(_Line):
    """A line of sources.jsonl: the full text of a cited document, when the job kept it."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    content_sha256: Sha256Hex
    """sha256 of `text` encoded as UTF-8 (as in `protocol.tasks.RetrieveOutput`)."""
    text: str
