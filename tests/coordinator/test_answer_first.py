"""Answer-first question/answer rows through the real scheduler and store: run once, always audited by a
node that did not write them, and kept only when the audit's round trip recovered the answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coordinator.scheduler import Scheduler
from coordinator.store import Store, TaskState
from coordinator.verify.gates import page_cap
from coordinator.verify.questions import check_answer_first, check_question
from coordinator.verify.reasons import Reason
from coordinator.verify.rescoring import roundtrip_failure
from protocol.identity import Identity
from protocol.messages import Grant, NodeStatus, Verdict
from protocol.tasks import (
    AnswerTarget,
    GeneratedRow,
    RoundTrip,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
    ValidateOutput,
    ValidatePayload,
)
from tests.coordinator.factories import COORDINATOR, MODEL, NODE_A, NODE_B, NODE_C, T0, chunk, result_for
from tests.coordinator.test_scheduler import claim, submit

SENTENCE = "The printing press was developed by Johannes Gutenberg around 1440 in Mainz."
QUESTION = "Who developed the printing press?"
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 500}, "question": {"type": "string", "maxLength": 300}},
    "required": ["answer", "question"],
}


def payload() -> SynthesizePayload:
    target = AnswerTarget(sentence=SENTENCE, question_field="question", answer_field="answer")
    return SynthesizePayload(instruction="Write a question.", chunk=chunk(), row_schema=SCHEMA, target=target)


def scheduler(tmp_path: Path, live: int) -> Scheduler:
    store = Store(tmp_path / "c.db")
    store.create_job("j1", {"topic": "printing", "grounded": True}, allowed_models=[MODEL], now_ms=T0)
    s = Scheduler(store, COORDINATOR, rng=random.Random(1))
    status = NodeStatus(version="test", models=[], task_kinds=list(TaskKind), free_slots=1, total_slots=1)
    for seed in range(live):
        s.note_status(Identity.from_seed(bytes([0x0A + seed]) * 32).peer_id, status, T0)
    return s


def audit(trip: RoundTrip | None) -> ValidateOutput:
    return ValidateOutput(n_tokens=8, mean_logprob=-1.1, topk_rate=0.95, token_logprobs=[-1.1] * 8, roundtrip=trip)


def produce(s: Scheduler, question: str, task_id: str = "t1") -> Grant:
    s.submit(task_id, "j1", "synthesize", payload(), now_ms=T0)
    g = claim(s, task_id, NODE_A)
    assert isinstance(g, Grant)
    assert len(s.store.replicas(task_id)) == 1  # an untrusted node, yet one run: the audit checks it
    row = GeneratedRow(data={"question": question, "answer": SENTENCE}, evidence=SENTENCE)
    submit(s, result_for(g, SynthesizeOutput(rows=[row]), raw_text=" " + question), NODE_A)
    return g


def run_audit(s: Scheduler, trip: RoundTrip | None, validators: tuple[Identity, ...] = (NODE_B,)) -> None:
    (vid,) = [t.task_id for t in s.store.tasks("j1", stage="validate") if t.state is TaskState.OPEN]
    for node in validators:
        g = claim(s, vid, node)
        assert isinstance(g, Grant) and isinstance(g.payload, ValidatePayload)
        assert g.payload.task is not None and g.payload.task.kind is TaskKind.SYNTHESIZE  # the validator sees the task
        submit(s, result_for(g, audit(trip)), node, now=T0 + 2000)


def test_a_recovered_answer_is_delivered_after_one_run_and_one_audit(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)  # a producer and one validator: the smallest network that can audit
    produce(s, QUESTION)
    assert s.store.task("t1").state is TaskState.OPEN  # never accepted without its audit
    run_audit(s, RoundTrip(answer_rank=0, margin=0.4, gain=1.2, n_sentences=2))
    assert s.store.task("t1").state is TaskState.DONE
    assert [r.data for r in s.store.rows("j1")] == [{"question": QUESTION, "answer": SENTENCE}]


def test_a_question_that_leads_elsewhere_is_dropped_and_the_honest_node_is_not_charged(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)
    produce(s, QUESTION)
    run_audit(s, RoundTrip(answer_rank=1, margin=-0.2, n_sentences=2))
    assert s.store.task("t1").state is TaskState.DONE and s.store.rows("j1") == []
    assert s.store.row_drops("j1") == {Reason.ROUNDTRIP_FAILED.value: 1}
    (result,) = s.store.results_for("t1")
    verdict = s.store.verdict(result.result_id)
    assert verdict is not None and verdict.verdict is Verdict.ACCEPTED  # honest compute, a weak question
    rep = s.store.reputation(NODE_A.peer_id)
    assert rep is not None and rep.score >= 0.5


def test_an_answer_sentence_gives_one_row(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)
    trip = RoundTrip(answer_rank=0, margin=0.4, gain=1.2, n_sentences=2)
    produce(s, QUESTION, "t1")
    run_audit(s, trip)
    produce(s, "When was the printing press developed?", "t2")  # another seed, the same sentence
    run_audit(s, trip)
    assert [r.task_id for r in s.store.rows("j1")] == ["t1"]
    assert s.store.row_drops("j1") == {Reason.DUPLICATE.value: 1}


def test_debris_is_dropped_before_the_round_trip_counts(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=2)
    produce(s, "What is it','case':'A clear question?")
    run_audit(s, RoundTrip(answer_rank=0, margin=0.4, gain=1.2, n_sentences=2))
    assert s.store.rows("j1") == [] and s.store.row_drops("j1") == {Reason.QUESTION_MALFORMED.value: 1}


def test_validators_that_disagree_on_the_round_trip_do_not_settle_it(tmp_path: Path) -> None:
    s = scheduler(tmp_path, live=4)
    produce(s, QUESTION)
    (vid,) = [t.task_id for t in s.store.tasks("j1", stage="validate")]
    trips = {NODE_B: RoundTrip(answer_rank=0, margin=0.4, gain=1.2, n_sentences=2), NODE_C: None}
    for node, trip in trips.items():
        g = claim(s, vid, node)
        assert isinstance(g, Grant)
        submit(s, result_for(g, audit(trip)), node, now=T0 + 2000)
    assert s.store.task("t1").state is TaskState.OPEN and s.store.rows("j1") == []
    assert len(s.store.replicas(vid)) == 3  # a tie-breaking validator is asked


@pytest.mark.parametrize(
    "question",
    [
        "}],",
        "^D",
        "What is it','case':'A clear, self-contained question about the topic'",
        "What does it do? It pushes the item.",
        "What does {x} do?",
        "what is the press",
        "The printing press?",
        'What is "the press"?',
    ],
)
def test_debris_and_non_questions_are_refused(question: str) -> None:
    failure = check_question(question)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("What does heapq.heappush do?", Reason.QUESTION_OFF_ANSWER),  # the old prompt's leaked example
        ("Who developed the printing press in Berlin?", Reason.QUESTION_OFF_ANSWER),
        ("Where was the printing press developed by Johannes Gutenberg around 1440?", Reason.QUESTION_GIVES_ANSWER),
    ],
)
def test_a_question_must_ask_about_its_answer_and_leave_it_unsaid(question: str, reason: Reason) -> None:
    failure = check_answer_first(question, SENTENCE, SENTENCE)
    assert failure is not None and failure.reason is reason


def test_the_honest_question_passes_and_a_changed_answer_does_not() -> None:
    assert check_answer_first(QUESTION, SENTENCE, SENTENCE) is None
    assert check_answer_first("When was the printing press developed?", SENTENCE, SENTENCE) is None
    mismatch = check_answer_first(QUESTION, "Gutenberg.", SENTENCE)
    assert mismatch is not None and mismatch.reason is Reason.ANSWER_MISMATCH


def test_every_validator_must_recover_the_answer() -> None:
    good, bad = (
        RoundTrip(answer_rank=0, margin=0.3, gain=1.0, n_sentences=5),
        RoundTrip(answer_rank=2, margin=-0.1, n_sentences=5),
    )
    assert roundtrip_failure([audit(good), audit(good)]) is None
    for outputs in ([audit(good), audit(bad)], [audit(None)], []):
        failure = roundtrip_failure(outputs)
        assert failure is not None and failure.reason is Reason.ROUNDTRIP_FAILED
    assert page_cap(8) == 3 and page_cap(100) == 25  # no page holds more than a quarter of a job
    tie = RoundTrip(answer_rank=0, margin=0.0, gain=1.0, n_sentences=5)  # no better than another sentence
    assert roundtrip_failure([audit(tie)]) is not None
    unlikely = RoundTrip(answer_rank=0, margin=0.2, gain=-0.1, n_sentences=5)  # first, yet no likelier than alone
    assert roundtrip_failure([audit(unlikely)]) is not None


def test_a_question_about_what_its_subject_does_in_general_is_vague() -> None:
    sentence = "The sqlite3_blob_open() interface opens a handle to the BLOB located in row iRow."
    failure = check_answer_first("What does the sqlite3_blob_open() interface do?", sentence, sentence)
    assert failure is not None and failure.reason is Reason.QUESTION_VAGUE
    assert check_answer_first("What does the sqlite3_blob_open() interface open?", sentence, sentence) is None


def test_asking_what_a_broad_subject_is_when_its_answer_says_what_is_done_with_it_is_off_answer() -> None:
    used = "The Tcl script language is used to help translate canonical source code into the amalgamation."
    failure = check_answer_first("What is the Tcl script language?", used, used)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER
    tz = "The TZ environment variable is used to specify the timezone configuration."
    stopped = check_answer_first("What is the TZ environment variable used to?", tz, tz)
    assert stopped is not None and stopped.reason is Reason.QUESTION_MALFORMED
    by = "The Tcl script language is used by the build to translate source code into the amalgamation."
    assert check_answer_first("What is the Tcl script language used by?", by, by) is None
    written = "Most extension modules are written in C for speed."
    assert check_answer_first("What are most extension modules?", written, written) is not None
    code = "The tokenize.open() function is used to open files."  # an identifier's use is its definition
    assert check_answer_first("What is the tokenize.open() function?", code, code) is None
    open_ = "The Expat parser is open source software written in C."  # "open" is no participle
    assert check_answer_first("What is the Expat parser?", open_, open_) is None


def test_asking_what_a_named_product_holds_is_vague_unless_the_subject_is_an_identifier() -> None:
    sentence = "CPython supports two different calling protocols: tp_call and vectorcall."
    failure = check_answer_first("What does CPython support?", sentence, sentence)
    assert failure is not None and failure.reason is Reason.QUESTION_VAGUE
    narrow = "The _charset parameter accepts either a string or a Charset instance."
    assert check_answer_first("What does the _charset parameter accept?", narrow, narrow) is None
    holds = "The _audiodata attribute contains the bytes for the raw audio data."
    assert check_answer_first("What does the _audiodata attribute contain?", holds, holds) is None


def test_a_negated_answer_needs_a_negated_question() -> None:
    sentence = "A busy handler must not close the database connection that invoked it."
    failure = check_answer_first("What must a busy handler do?", sentence, sentence)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER
    assert check_answer_first("What must a busy handler not close?", sentence, sentence) is None


def test_a_capitalised_product_name_is_no_identifier_but_lower_camel_case_is() -> None:
    sentence = "PostgreSQL supports the MERGE statement since version 15."
    failure = check_answer_first("What does PostgreSQL support?", sentence, sentence)
    assert failure is not None and failure.reason is Reason.QUESTION_VAGUE
    method = "The getAttribute method includes the namespace prefix in the name it looks up."
    assert check_answer_first("What does the getAttribute method include?", method, method) is None


def test_what_a_subject_returns_needs_every_case_its_answer_limits_itself_to() -> None:
    one_case = "The lock_try() function returns zero upon successful entry."
    failure = check_answer_first("What does the lock_try() function return?", one_case, one_case)
    assert failure is not None and failure.reason is Reason.QUESTION_VAGUE
    both = "The lock_try() function returns zero on success and minus one if the lock is held."
    assert check_answer_first("What does the lock_try() function return?", both, both) is None
    plain = "The lock_count() function returns the number of locks held by the thread."
    assert check_answer_first("What does the lock_count() function return?", plain, plain) is None


def test_what_needs_an_object_the_answer_gives_not_a_time_or_place() -> None:
    sentence = "The legacy parser will disappear in version 4."
    failure = check_answer_first("What will the legacy parser disappear?", sentence, sentence)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    assert check_answer_first("When will the legacy parser disappear?", sentence, sentence) is None
    with_object = "The legacy parser will read files in the old format."
    assert check_answer_first("What will the legacy parser read?", with_object, with_object) is None


def test_what_cannot_stand_for_the_object_of_a_verb_that_takes_none() -> None:
    answer = "PGTARGETSESSIONATTRS behaves the same as the target_session_attrs connection parameter."
    failure = check_answer_first("What does PGTARGETSESSIONATTRS behave?", answer, answer)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    assert check_answer_first("How does PGTARGETSESSIONATTRS behave?", answer, answer) is None


def test_what_a_subject_is_is_not_answered_by_whose_extension_it_is() -> None:
    origin = "The VAR command is a PostgreSQL extension."
    failure = check_answer_first("What is the VAR command?", origin, origin)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER
    definition = "The VAR command is a statement that assigns a new C data type to a host variable."
    assert check_answer_first("What is the VAR command?", definition, definition) is None


def test_what_a_subject_is_is_not_answered_by_how_it_ranks() -> None:
    ranked = "The Time Stamp Counter clock source is the most accurate one available on current CPUs."
    failure = check_answer_first("What is the Time Stamp Counter clock source?", ranked, ranked)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER
    definition = "The Time Stamp Counter clock source is a hardware counter that the CPU increments every cycle."
    assert check_answer_first("What is the Time Stamp Counter clock source?", definition, definition) is None
    request = "The request line is the request that the client sent first."  # "request" is no superlative
    assert check_answer_first("What is the request line?", request, request) is None
    kind = "The Bell Rock Lighthouse is the oldest surviving sea-washed lighthouse in the world."  # names its kind
    assert check_answer_first("What is the Bell Rock Lighthouse?", kind, kind) is None


def test_what_cannot_ask_for_an_object_that_is_a_pronoun() -> None:
    answer = "The RewriteBase directive tells it what prefix to prepend."
    failure = check_answer_first("What does the RewriteBase directive tell?", answer, answer)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    named = "The RewriteBase directive tells mod_rewrite what prefix to prepend."
    assert check_answer_first("What does the RewriteBase directive tell?", named, named) is None


def test_what_a_standard_says_is_vague_but_what_it_is_made_of_is_not() -> None:
    for question, answer in (
        ("What does the SQL standard specify?", "The SQL standard specifies an interface for writing wrappers."),
        ("What does the SQL standard not support?", "The SQL standard does not support setting two owners at once."),
    ):
        failure = check_answer_first(question, answer, answer)
        assert failure is not None and failure.reason is Reason.QUESTION_VAGUE, question
    made = "The OpenMP standard consists of a set of compiler directives for C, C++ and Fortran programs."
    assert check_answer_first("What does the OpenMP standard consist of?", made, made) is None
    two_words = "The DEFERRABLE transaction_mode is a PostgreSQL language extension."
    failure = check_answer_first("What is the DEFERRABLE transaction_mode?", two_words, two_words)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER


def test_a_superlative_followed_by_a_reason_names_no_kind() -> None:
    ranked = "The __exit__() method is the most complicated because it is where most of the work is done."
    failure = check_answer_first("What is the __exit__() method?", ranked, ranked)
    assert failure is not None and failure.reason is Reason.QUESTION_OFF_ANSWER


def test_what_needs_a_thing_after_its_preposition_not_another_preposition_or_a_date() -> None:
    phrasal = "The final interface for Unicode support was arrived at through many discussions on the list."
    failure = check_answer_first("What was the final interface for Unicode support arrived at?", phrasal, phrasal)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    dated = "The very first article about Python was written in 1991 and is now quite outdated."
    failure = check_answer_first("What was the very first article about Python written in?", dated, dated)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    language = "The very first article about Python was written in Dutch and is now quite outdated."
    assert check_answer_first("What was the very first article about Python written in?", language, language) is None
    counted = "The quorum_set value is composed of at least two member names."
    assert check_answer_first("What is the quorum_set value composed of?", counted, counted) is None


def test_what_cannot_stand_for_the_verb_of_an_infinitive() -> None:
    answer = "The smtpd(8) server can be configured to block unwanted mail, as the access document describes."
    failure = check_answer_first("What can the smtpd(8) server be configured to?", answer, answer)
    assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED
    converted = "The host name is converted to lowercase before the lookup."
    assert check_answer_first("What is the host name converted to?", converted, converted) is None


def test_a_question_cannot_break_off_after_a_word_that_needs_more() -> None:
    for broken in ("What does the smtp_tls_security_level setting ensure that?",
                   "What can the blob interfaces be used to read or?", "What can DROP TABLESPACE only succeed if?",
                   "What is the START parameter required to be a?"):  # fmt: skip
        failure = check_question(broken)
        assert failure is not None and failure.reason is Reason.QUESTION_MALFORMED, broken
    assert check_question("What are GiST indexes more flexible than?") is None
    assert check_question("What is the host name converted to?") is None

