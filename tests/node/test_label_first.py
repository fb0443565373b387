"""Label-first rows on the real bundled model and real documentation paragraphs: synthesize writes one of
the choices for a source sentence, a validator re-scores it among the choices under the prompt it renders
itself, and its label round trip passes at most one label per text, never the one the text does not support."""

from __future__ import annotations

import pytest

from coordinator.verify.rescoring import Candidate, decide, roundtrip_failure
from node.executors.base import ExecutionError
from node.executors.synthesize import write_label
from node.executors.validate import ValidateExecutor, label_trip
from node.llm.engine import Engine
from protocol.tasks import (
    DecodingParams,
    LabelTarget,
    SynthesizeOutput,
    SynthesizePayload,
    ValidateOutput,
    ValidatePayload,
)
from tests.node.conftest import PYDOC_PARAGRAPHS, make_chunk

CHOICES = ("definition", "instruction", "limitation")


def payload(text: str, sentence: str, choices: tuple[str, ...] = CHOICES) -> SynthesizePayload:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "kind": {"type": "string", "enum": list(choices)}},
        "required": ["text", "kind"],
    }
    label = LabelTarget(
        sentence=sentence, text_field="text", label_field="kind", choices=choices, description="what the text is"
    )
    return SynthesizePayload(instruction="Label each text.", chunk=make_chunk(text), row_schema=schema, label=label)


def first_sentences() -> list[tuple[str, str]]:
    return [(p, p.split(". ")[0].rstrip(".") + ".") for p in PYDOC_PARAGRAPHS[:4]]


async def test_the_row_is_the_sentence_and_a_choice_and_a_validator_reads_it_back(engine: Engine) -> None:
    for text, sentence in first_sentences()[:2]:
        task = payload(text, sentence)
        produced = await write_label(engine, task, DecodingParams(seed=1, temperature=0.3), None)
        assert isinstance(produced.output, SynthesizeOutput)
        (row,) = produced.output.rows
        assert row.data["text"] == sentence == row.evidence and row.data["kind"] in CHOICES
        assert produced.raw_text.strip() == row.data["kind"] and produced.model_sha256 is not None
        vp = ValidatePayload(
            model_sha256=produced.model_sha256, prompt=produced.prompt or "", candidate=produced.raw_text, task=task
        )
        out = (await ValidateExecutor(engine).execute(vp, None, produced.model_sha256)).output
        assert isinstance(out, ValidateOutput) and out.prompt_matches is True
        assert out.roundtrip is not None and out.roundtrip.reading == "label"
        assert out.roundtrip.n_sentences == len(CHOICES)
        # Scored among the choices, an honest label passes re-scoring (free-text scoring charged it).
        assert decide(Candidate("honest", [out], produced.stats.mean_logprob)).accept
        assert not decide(Candidate("inflated", [out], out.mean_logprob + 1.0)).accept


async def test_no_two_labels_of_one_text_both_pass(engine: Engine) -> None:
    """The check a cheater who swaps the label meets: whichever label passes, every other one fails."""
    for text, sentence in first_sentences():
        task = payload(text, sentence)
        passing = [
            c
            for c in CHOICES
            if roundtrip_failure([_out(await label_trip(engine, engine.model(None).sha256, task, " " + c))]) is None
        ]
        assert len(passing) <= 1, (sentence, passing)


async def test_a_label_the_text_does_not_support_is_refused_in_every_order(engine: Engine) -> None:
    # Read without the prior, the bundled model labels this English sentence "German" whichever order the
    # choices come in; read with it, "English" only when listed first. Neither label may pass.
    text = "The heapq module provides an implementation of the heap queue algorithm."
    for choices in (("English", "German"), ("German", "English")):
        task = payload(text, text, choices)
        for c in choices:
            assert (
                roundtrip_failure([_out(await label_trip(engine, engine.model(None).sha256, task, " " + c))])
                is not None
            ), (choices, c)


async def test_a_label_outside_the_choices_ranks_last_and_a_wrong_task_is_refused(engine: Engine) -> None:
    text, sentence = first_sentences()[0]
    trip = await label_trip(engine, engine.model(None).sha256, payload(text, sentence), " recipe")
    assert trip.answer_rank == len(CHOICES) and roundtrip_failure([_out(trip)]) is not None
    wrong = payload(text, sentence).model_copy(update={"chunk": make_chunk("Another text entirely.")})
    with pytest.raises(ExecutionError, match="does not occur"):
        await write_label(engine, wrong, None, None)


def _out(trip: object) -> ValidateOutput:
    return ValidateOutput(n_tokens=1, mean_logprob=0.0, topk_rate=1.0, token_logprobs=[], roundtrip=trip)  # type: ignore[arg-type]
