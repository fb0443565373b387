"""Quality gates: grounding, exact and near-duplicate removal, length and language filters."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.verify.gates import (
    Deduplicator,
    DupKind,
    GroundingChecker,
    GroundingResult,
    LexicalGrounding,
    TextFilters,
    check_language,
    check_length,
    gate_row,
)
from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.text import normalize_ws, row_text
from protocol.tasks import GeneratedRow, SourceChunk
from tests.coordinator.factories import GOOD_ROW, chunk


def _row(answer: str = GOOD_ROW[1], evidence: str = GOOD_ROW[2], question: str = GOOD_ROW[0]) -> GeneratedRow:
    return GeneratedRow(data={"question": question, "answer": answer}, evidence=evidence)


# --- grounding -----------------------------------------------------------------------


def test_evidence_found_verbatim_passes() -> None:
    result = LexicalGrounding().check(_row(), chunk())
    assert result.ok and result.support == 1.0


def test_evidence_is_matched_after_whitespace_and_typography_normalization() -> None:
    # The chunk has "books   cheaper" and a line break; the quote uses single spaces and curly quotes.
    text = "It said \u201cmovable type\u201d made books   cheaper\nand spread literacy."
    quote = "\u201cmovable type\u201d made books cheaper and spread literacy"
    c = chunk(text)
    row = _row(
        question="What did movable type do?",
        answer="Movable type made books cheaper and spread literacy.",
        evidence=quote.replace("\u201c", '"'),
    )
    assert LexicalGrounding().check(row, c).ok
    assert normalize_ws(" a\u00a0 b\n\tc ") == "a b c"


def test_evidence_not_in_the_chunk_is_refused() -> None:
    result = LexicalGrounding().check(_row(evidence="invented by Johannes Brahms in 1789"), chunk())
    assert result.failure is not None and result.failure.reason is Reason.EVIDENCE_NOT_FOUND
    tiny = LexicalGrounding().check(_row(evidence="the"), chunk())
    assert tiny.failure is not None and tiny.failure.reason is Reason.EVIDENCE_NOT_FOUND


def test_evidence_is_case_sensitive_verbatim() -> None:
    result = LexicalGrounding().check(_row(evidence="DEVELOPED BY JOHANNES GUTENBERG"), chunk())
    assert result.failure is not None and result.failure.reason is Reason.EVIDENCE_NOT_FOUND


def test_an_answer_the_chunk_does_not_support_is_refused_even_with_real_evidence() -> None:
    result = LexicalGrounding().check(_row(answer="Johannes Brahms invented it in 1789 in Vienna."), chunk())
    assert result.failure is not None and result.failure.reason is Reason.UNSUPPORTED_ANSWER
    assert "brahms" in result.failure.detail and result.support < 0.6


def test_answer_fields_restrict_what_is_checked() -> None:
    row = _row(question="Which German goldsmith is credited, according to this passage?")
    assert not LexicalGrounding().check(row, chunk()).ok
    assert LexicalGrounding(answer_fields=("answer",)).check(row, chunk()).ok


def test_a_question_that_names_nothing_in_its_source_is_refused() -> None:
    checker = LexicalGrounding(answer_fields=("answer",), question_fields=("question",))
    assert checker.check(_row(question="What did Gutenberg develop?"), chunk()).ok
    for generic in ("What does it do?", "What is the answer to this question?", "What does heapq.heappush do?"):
        result = checker.check(_row(question=generic), chunk())
        assert result.failure is not None and result.failure.reason is Reason.QUESTION_OFF_SOURCE, generic
        assert repr(generic[:80]) in result.failure.detail
    assert LexicalGrounding(answer_fields=("answer",)).check(_row(question="What does it do?"), chunk()).ok


def test_the_grounding_checker_is_pluggable() -> None:
    @dataclass
    class AlwaysNo:
        calls: int = 0

        def check(self, row: GeneratedRow, chunk: SourceChunk) -> GroundingResult:
            self.calls += 1
            return GroundingResult(Failure(Reason.UNSUPPORTED_ANSWER, "judge says no"), 0.0)

    judge = AlwaysNo()
    checker: GroundingChecker = judge
    failure = gate_row("r1", _row(), chunk=chunk(), grounded=True, dedup=Deduplicator(), grounding=checker)
    assert failure == Failure(Reason.UNSUPPORTED_ANSWER, "judge says no") and judge.calls == 1


# --- dedup ----------------------------------------------------------------------------

Q1 = (
    "What did Johannes Gutenberg develop around 1440 in Mainz? He developed a printing press with movable type, "
    "which made books far cheaper to produce and helped literacy spread across Europe."
)


def test_exact_duplicates_after_normalization() -> None:
    d = Deduplicator()
    assert d.add("a", Q1).kind is DupKind.UNIQUE
    again = d.add("b", "  " + Q1.upper().replace(" ", "   ") + " ")
    assert again.kind is DupKind.EXACT and again.of == "a"
    assert again.failure is not None and again.failure.reason is Reason.DUPLICATE
    assert len(d) == 1


def test_near_duplicates_are_caught_and_distinct_rows_are_not() -> None:
    d = Deduplicator()
    d.add("a", Q1)
    reworded = Q1.replace("far cheaper", "much cheaper")
    near = d.add("b", reworded)
    assert near.kind is DupKind.NEAR and near.of == "a" and near.jaccard >= 0.7
    assert near.failure is not None and near.failure.reason is Reason.NEAR_DUPLICATE
    other = (
        "Why was the printing press important for the Reformation? Printed pamphlets let reformers spread "
        "their arguments quickly to readers in many German cities."
    )
    assert d.add("c", other).kind is DupKind.UNIQUE
    assert d.check(Q1).kind is DupKind.EXACT  # check does not add
    assert len(d) == 2


def test_dedup_over_many_distinct_rows_has_no_false_positives() -> None:
    d = Deduplicator()
    topics = ["printing", "paper", "ink", "type", "press", "books", "literacy", "Mainz", "Europe", "Reformation"]
    for i, a in enumerate(topics):
        for j, b in enumerate(topics):
            text = f"Question {i}-{j}: how did {a} relate to {b} in the fifteenth century, and who cared about {a}?"
            assert d.add(f"{i}-{j}", text).kind is DupKind.UNIQUE, text


# --- length and language ------------------------------------------------------------------


def test_length_filter() -> None:
    f = TextFilters(min_chars=20, max_chars=100)
    short = check_length("Too short.", f)
    assert short is not None and short.reason is Reason.TOO_SHORT
    long = check_length("word " * 50, f)
    assert long is not None and long.reason is Reason.TOO_LONG
    assert check_length(Q1[:80], f) is None


def test_language_filter() -> None:
    english = TextFilters(language="en")
    assert check_language(Q1, english) is None
    german = (
        "Johannes Gutenberg entwickelte um 1440 in Mainz den Buchdruck mit beweglichen Lettern, "
        "wodurch Bücher viel billiger wurden."
    )
    failure = check_language(german, english)
    assert failure is not None and failure.reason is Reason.WRONG_LANGUAGE and "'de'" in failure.detail
    assert check_language(german, TextFilters(language="de")) is None
    assert check_language("Gutenberg, 1440.", english) is None  # too short to judge: abstain


def test_gate_row_runs_every_gate_and_remembers_only_passing_rows() -> None:
    d = Deduplicator()
    c = chunk()
    assert gate_row("r1", _row(), chunk=c, grounded=True, dedup=d) is None
    dup = gate_row("r2", _row(), chunk=c, grounded=True, dedup=d)
    assert dup is not None and dup.reason is Reason.DUPLICATE
    bad = gate_row("r3", _row(evidence="not in the chunk at all"), chunk=c, grounded=True, dedup=d)
    assert bad is not None and bad.reason is Reason.EVIDENCE_NOT_FOUND
    assert len(d) == 1
    ungrounded = _row(evidence="")
    assert gate_row("r4", ungrounded, chunk=None, grounded=False, dedup=Deduplicator()) is None
    missing = gate_row("r5", ungrounded, chunk=None, grounded=True, dedup=Deduplicator())
    assert missing is not None and missing.reason is Reason.EVIDENCE_NOT_FOUND
    assert row_text({"b": ["x", 2], "a": "y", "c": None, "d": True}) == "y x 2"


def test_repetition_loops_are_dropped_and_fluent_text_is_not() -> None:
    from coordinator.verify.gates import check_repetition

    loop = {"answer": "The answer is that the answer is that the answer is that the answer is that the answer"}
    digits = {"answer": "The 3.9.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1"}
    fluent = {"answer": "heapq.heappush pushes the value item onto the heap, keeping the heap invariant intact."}
    failure = check_repetition(loop)
    assert failure is not None and failure.reason is Reason.REPETITIVE and "'answer'" in failure.detail
    assert check_repetition(digits) is not None
    assert check_repetition(fluent) is None
    assert check_repetition({"n": 3, "short": "a a a a"}) is None  # too short to judge, and non-strings skipped
