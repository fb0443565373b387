"""Label-first text/label rows: the text is a source sentence, the node writes only the label, and a node
that did not write it must read the same label back (the label round trip) before the row is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.pipeline.synthesize import label_fields, qa_fields
from coordinator.scheduler import Scheduler
from coordinator.spec import DatasetSpec
from coordinator.store import TaskState
from coordinator.verify.reasons import Reason
from coordinator.verify.rescoring import roundtrip_failure
from protocol.messages import Grant
from protocol.tasks import GeneratedRow, LabelTarget, RoundTrip, SynthesizeOutput, SynthesizePayload
from tests.coordinator.factories import NODE_A, chunk, result_for
from tests.coordinator.test_answer_first import audit, run_audit, scheduler
from tests.coordinator.test_scheduler import claim, submit

SENTENCE = "The printing press was developed by Johannes Gutenberg around 1440 in Mainz."
CHOICES = ("history", "science", "sport")
SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "topic": {"type": "string", "enum": list(CHOICES)}},
    "required": ["text", "topic"],
}
KEPT = RoundTrip(answer_rank=0, margin=0.3, gain=0.8, n_sentences=3, reading="label")


def payload() -> SynthesizePayload:
    label = LabelTarget(sentence=SENTENCE, text_field="text", label_field="topic", choices=CHOICES)
    return SynthesizePayload(instruction="Label the topic.", chunk=chunk(), row_schema=SCHEMA, label=label)


def produce(s: Scheduler, data: dict[str, str], task_id: str = "t1") -> None:
    s.submit(task_id, "j1", "synthesize", payload(), now_ms=0)
    g = claim(s, task_id, NODE_A)
    assert isinstance(g, Grant)
    submit(s, result_for(g, SynthesizeOutput(rows=[GeneratedRow(data=data, evidence=SENTENCE)])), NODE_A)


def test_a_label_read_back_is_delivered_only_after_its_audit(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)
    produce(s, {"text": SENTENCE, "topic": "history"})
    assert s.store.task("t1").state is TaskState.OPEN  # one run, never accepted without the audit
    run_audit(s, KEPT)
    assert [r.data for r in s.store.rows("j1")] == [{"text": SENTENCE, "topic": "history"}]


@pytest.mark.parametrize(
    "trip",
    [
        RoundTrip(answer_rank=1, margin=-0.4, gain=0.5, n_sentences=3, reading="label"),  # another label read
        RoundTrip(answer_rank=0, margin=0.3, gain=-0.1, n_sentences=3, reading="label"),  # the text lowers it
        None,  # a validator that ran no label round trip
    ],
)
def test_a_label_the_reader_does_not_give_back_is_dropped(tmp_path: Path, trip: RoundTrip | None) -> None:
    s = scheduler(tmp_path, live=2)
    produce(s, {"text": SENTENCE, "topic": "sport"})
    run_audit(s, trip)
    assert s.store.rows("j1") == [] and s.store.row_drops("j1") == {Reason.ROUNDTRIP_FAILED.value: 1}


def test_a_row_whose_text_is_not_its_sentence_is_dropped_before_the_round_trip(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)
    produce(s, {"text": "Gutenberg invented the telephone.", "topic": "history"})
    run_audit(s, KEPT)
    assert s.store.rows("j1") == [] and s.store.row_drops("j1") == {Reason.ANSWER_MISMATCH.value: 1}


def test_the_failure_says_a_label_was_read_not_a_sentence() -> None:
    failure = roundtrip_failure([audit(RoundTrip(answer_rank=2, margin=-1.0, n_sentences=3, reading="label"))])
    assert failure is not None and "another label" in failure.detail and "3 of 3" in failure.detail


def _spec(fields: list[dict[str, object]], grounded: bool = True) -> DatasetSpec:
    return DatasetSpec.model_validate({"topic": "printing", "rows": 10, "grounded": grounded, "fields": fields})


def test_text_and_label_specs_are_written_label_first_and_others_are_not() -> None:
    text = {"name": "text", "type": "string"}
    label = {"name": "topic", "type": "enum", "choices": list(CHOICES)}
    spec = _spec([text, label])
    assert label_fields(spec) is not None and qa_fields(spec) is None
    assert label_fields(_spec([text, label], grounded=False)) is None  # no source sentence to label
    assert label_fields(_spec([{"name": "question", "type": "string"}, label])) is None  # a field that asks
    many = {"name": "topic", "type": "enum", "choices": [f"c{i}" for i in range(25)]}
    assert label_fields(_spec([text, many])) is None  # more choices than a validator reads back
    assert label_fields(_spec([text, label, {"name": "year", "type": "integer"}])) is None


def test_a_task_is_answer_first_or_label_first_not_both() -> None:
    from protocol.tasks import AnswerTarget

    target = AnswerTarget(sentence=SENTENCE, question_field="q", answer_field="a")
    with pytest.raises(ValueError, match="not both"):
        SynthesizePayload.model_validate({**payload().model_dump(), "target": target.model_dump()})
    with pytest.raises(ValueError, match="repeat"):
        LabelTarget(sentence=SENTENCE, text_field="text", label_field="topic", choices=("a", "a"))


def test_provenance_names_the_label_round_trip_not_the_question_gates() -> None:
    from coordinator.compile.compiler import _checks, _weakest
    from coordinator.compile.provenance import SignedResultRef, ValidatorRef

    producer = SignedResultRef.model_construct(peer_id="producer")
    validator = ValidatorRef(peer_id="validator", task_id="v1", envelope=None)
    checks = _checks(producer, [], [validator], [KEPT])
    assert checks == ["signatures", "rescored", "label_roundtrip", "gates"]
    ref = _weakest([KEPT, RoundTrip(answer_rank=1, margin=-0.2, n_sentences=3, reading="label")])
    assert ref is not None and ref.reading == "label" and ref.answer_rank == 1
