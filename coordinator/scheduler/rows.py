"""An accepted synthesize result's rows through the quality gates: what becomes a dataset row, and what is
dropped (and why, recorded per row). Keeps, per job, the near-duplicate index and what the accepted rows
already cover (answer sentences, rows per page); both are rebuilt from the store after a restart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from coordinator.spec import asks
from coordinator.store import NewRow, Store, TaskRecord
from coordinator.verify.gates import Deduplicator, GroundingChecker, LexicalGrounding, gate_row, page_cap
from coordinator.verify.injection import injection_failure
from coordinator.verify.questions import check_answer_first
from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.rescoring import RoundTripThresholds, roundtrip_failure
from coordinator.verify.text import normalize_ws, row_text
from protocol.tasks import SynthesizeOutput, SynthesizePayload, TaskOutput, TaskPayload, ValidateOutput

GROUNDING_MIN_SUPPORT = 0.5


@dataclass
class Coverage:
    """What a job's accepted rows already use: answer sentences (one row each) and rows per source page."""

    answers: set[str] = field(default_factory=set)
    pages: Counter[str] = field(default_factory=Counter)
    cap: int = 0


def coverage_of(store: Store, job_id: str, rows: int | None) -> Coverage:
    """What a job's accepted rows use, read from the store (the scheduler keeps it after that)."""
    coverage = Coverage(cap=page_cap(rows))
    for row in store.rows(job_id):
        coverage.answers.add(normalize_ws(row.evidence))
        payload = store.task_payload(row.task_id)
        if isinstance(payload, SynthesizePayload) and payload.chunk is not None:
            coverage.pages[payload.chunk.url] += 1
    return coverage


def coverage_failure(coverage: Coverage, url: str, evidence: str) -> Failure | None:
    if normalize_ws(evidence) in coverage.answers:
        return Failure(Reason.DUPLICATE, "its answer sentence already has a row")
    if coverage.pages[url] >= coverage.cap:
        return Failure(Reason.PAGE_QUOTA, f"{url} already holds {coverage.pages[url]} rows (cap {coverage.cap})")
    return None


def answer_first_failure(
    payload: SynthesizePayload,
    data: dict[str, object],
    audit: Sequence[ValidateOutput],
    thresholds: RoundTripThresholds,
) -> Failure | None:
    """The answer-first gates, then the round trip (which only a validator can run)."""
    target = payload.target
    assert target is not None
    question, answer = data.get(target.question_field), data.get(target.answer_field)
    if not isinstance(question, str) or not isinstance(answer, str):
        return Failure(Reason.ANSWER_MISMATCH, "the row lacks its question or answer field")
    failure = check_answer_first(question, answer, target.sentence, max_chars=target.max_question_chars)
    return failure or roundtrip_failure(audit, thresholds)


def label_first_failure(
    payload: SynthesizePayload,
    data: dict[str, object],
    audit: Sequence[ValidateOutput],
    thresholds: RoundTripThresholds,
) -> Failure | None:
    """The row must be its target sentence and one of the choices; then the label round trip."""
    label = payload.label
    assert label is not None
    if data.get(label.text_field) != label.sentence or data.get(label.label_field) not in label.choices:
        return Failure(Reason.ANSWER_MISMATCH, "the row's text is not its target sentence, or its label no choice")
    return roundtrip_failure(audit, thresholds)


def grounding_for(data: dict[str, object], label_field: str | None = None) -> GroundingChecker:
    # Fields that ask may use words the source lacks: support is measured on the others
    # (docs/notes/quality.md#grounding-support-threshold). A label names a category, not a fact of the source.
    stating = tuple(k for k in data if not asks(k) and k != label_field)
    asking = tuple(k for k in data if asks(k))
    return LexicalGrounding(min_support=GROUNDING_MIN_SUPPORT, answer_fields=stating or None, question_fields=asking)


class RowGate:
    def __init__(self, store: Store, roundtrip: RoundTripThresholds, stats: Counter[str]) -> None:
        self.store = store
        self.roundtrip = roundtrip
        self.stats = stats
        self._dedup: dict[str, Deduplicator] = {}
        self._coverage: dict[str, Coverage] = {}

    def rows_for(
        self,
        task: TaskRecord,
        payload: TaskPayload | None,
        output: TaskOutput,
        audit: Sequence[ValidateOutput],
        now_ms: int,
    ) -> list[NewRow]:
        """The rows of the canonical output that pass the gates; each dropped one is recorded."""
        if not isinstance(output, SynthesizeOutput):
            return []
        assert isinstance(payload, SynthesizePayload)
        grounded = bool(self.store.job(task.job_id).doc.get("grounded", payload.chunk is not None))
        dedup = self._dedup_for(task.job_id)
        rows = []
        sentence_rows = payload.target is not None or payload.label is not None
        coverage = self._coverage_for(task.job_id) if sentence_rows else None
        for idx, row in enumerate(output.rows):
            failure = injection_failure(row.data, row.evidence)
            if failure is None and payload.target is not None:
                failure = answer_first_failure(payload, row.data, audit, self.roundtrip)
            if failure is None and payload.label is not None:
                failure = label_first_failure(payload, row.data, audit, self.roundtrip)
            if failure is None and coverage is not None and payload.chunk is not None:
                failure = coverage_failure(coverage, payload.chunk.url, row.evidence)
            failure = failure or gate_row(
                f"{task.task_id}/{idx}",
                row,
                chunk=payload.chunk,
                grounded=grounded,
                dedup=dedup,
                grounding=grounding_for(row.data, payload.label.label_field if payload.label else None),
            )
            if failure is not None:
                self.stats[f"row_dropped:{failure.reason.value}"] += 1
                self.store.record_row_drop(task.job_id, task.task_id, idx, failure.reason.value, now_ms=now_ms)
                continue
            rows.append(NewRow(idx, row.data, row.evidence))
            if coverage is not None and payload.chunk is not None:
                coverage.answers.add(normalize_ws(row.evidence))
                coverage.pages[payload.chunk.url] += 1
        return rows

    def _coverage_for(self, job_id: str) -> Coverage:
        if job_id not in self._coverage:
            rows = self.store.job(job_id).doc.get("spec", {}).get("rows")
            self._coverage[job_id] = coverage_of(self.store, job_id, rows if isinstance(rows, int) else None)
        return self._coverage[job_id]

    def _dedup_for(self, job_id: str) -> Deduplicator:
        if job_id not in self._dedup:
            dedup = Deduplicator()
            for row in self.store.rows(job_id):  # rebuilt after a restart
                dedup.add(f"{row.task_id}/{row.idx}", row_text(row.data))
            self._dedup[job_id] = dedup
        return self._dedup[job_id]
