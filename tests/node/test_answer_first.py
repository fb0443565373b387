"""Answer-first rows on the real bundled model and real documentation paragraphs: curate picks the
answer sentences, synthesize writes one well-formed question per sentence, and the validator's round trip
recovers an honest question's sentence and refuses a question paired with another sentence."""

from __future__ import annotations

import pytest

from coordinator.verify.questions import check_question
from node.executors.curate import answer_sentences, asking_verb, page_sentences, sentence_spans, sentence_subject
from node.executors.synthesize import evidence_candidates, leaked_words, question_frames, write_question
from node.executors.validate import ValidateExecutor, round_trip
from node.llm.engine import Engine
from node.prompts import load_prompts
from protocol.tasks import (
    AnswerTarget,
    DecodingParams,
    SynthesizeOutput,
    SynthesizePayload,
    ValidateOutput,
    ValidatePayload,
)
from tests.node.conftest import PYDOC_PARAGRAPHS, make_chunk

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 500}, "question": {"type": "string", "maxLength": 300}},
    "required": ["answer", "question"],
}
# Three passages of the SQLite documentation (Debian's sqlite3-doc, public domain), copied here so the
# tests do not depend on that package: reference prose full of named things, as answer sentences need.
SQLITE_PASSAGES: tuple[str, ...] = (
    "An instance of this object represents an open BLOB on which incremental BLOB I/O can be performed. "
    "Objects of this type are created by sqlite3_blob_open() and destroyed by sqlite3_blob_close(). The "
    "sqlite3_blob_read() and sqlite3_blob_write() interfaces can be used to read or write small subsections "
    "of the BLOB. The sqlite3_blob_bytes() interface returns the size of the BLOB in bytes.",
    "An sqlite3_file object represents an open file in the OS interface layer. Individual OS interface "
    "implementations will want to subclass this object by appending additional fields for their own use. The "
    "pMethods entry is a pointer to an sqlite3_io_methods object that defines methods for performing I/O "
    "operations on the open file.",
    "The sqlite3_backup object records state information about an ongoing online backup operation. The "
    "sqlite3_backup object is created by a call to sqlite3_backup_init() and is destroyed by a call to "
    "sqlite3_backup_finish().\nSee Also: Using the SQLite Online Backup API",
)
PASSAGES = PYDOC_PARAGRAPHS + SQLITE_PASSAGES
# Hand-written questions, each answered by one sentence of a paragraph (the index).
HONEST = [
    (5, "What is the str() function meant to return?", 0),
    (5, "How many distinct representations do strings have?", 3),
    (3, "What can objects contain?", 3),
    (3, "When are classes created?", 4),
    (7, "What value does the decimal fraction 0.125 have?", 1),
    (9, "How can you check whether command line editing is supported?", 1),
]


def payload(paragraph: int, sentence: str) -> SynthesizePayload:
    target = AnswerTarget(sentence=sentence, question_field="question", answer_field="answer")
    chunk = make_chunk(PASSAGES[paragraph])
    return SynthesizePayload(instruction="Write a question.", chunk=chunk, row_schema=SCHEMA, target=target)


async def test_round_trip_recovers_honest_pairs_and_refuses_shuffled_ones(engine: Engine) -> None:
    sha = engine.model().sha256
    for paragraph, question, index in HONEST:
        sentences = evidence_candidates(make_chunk(PYDOC_PARAGRAPHS[paragraph]))
        honest = await round_trip(engine, sha, payload(paragraph, sentences[index]), question)
        assert honest.answer_rank == 0 and honest.margin > 0 and honest.gain > 0, (question, honest)
        shuffled_to = sentences[(index + 1) % len(sentences)]  # the same question, paired with another sentence
        shuffled = await round_trip(engine, sha, payload(paragraph, shuffled_to), question)
        assert shuffled.answer_rank > 0 and shuffled.margin < 0, (question, shuffled)


def test_answer_sentences_stand_on_their_own() -> None:
    picked = [(p, s) for p, text in enumerate(PASSAGES) for s in answer_sentences(text)]
    assert len(picked) >= 6
    for p, sentence in picked:
        assert sentence in evidence_candidates(make_chunk(PASSAGES[p]))  # always a whole evidence span
        assert sentence.endswith(".") and sentence_subject(sentence)
        assert sentence.split()[0].lower() not in {"it", "this", "these", "they", "if", "however", "for"}
    sentences = [s for _, s in picked]
    assert "It is a mixture of the class mechanisms found in C++ and Modula-3." not in sentences
    # Pointing at the rest of the page, or naming nothing in particular: not answers on their own.
    assert not any(s.startswith(("Objects of this type", "Individual OS interface")) for s in sentences)
    assert "The sqlite3_blob_bytes() interface returns the size of the BLOB in bytes." in sentences


async def test_questions_are_well_formed_about_their_subject_and_leak_nothing(engine: Engine) -> None:
    written = 0
    for p, text in enumerate(PASSAGES):
        for sentence in answer_sentences(text)[:1]:
            out = await write_question(engine, payload(p, sentence), DecodingParams(seed=3, temperature=0.3), None)
            question = out.raw_text.strip()
            assert check_question(question) is None, question  # the grammar admits nothing else
            assert question.endswith("?") and question.count("?") == 1
            assert out.prompt is not None and load_prompts().text("question", "examples") in out.prompt
            assert isinstance(out.output, SynthesizeOutput)
            for row in out.output.rows:
                assert row.data == {"question": question, "answer": sentence} and row.evidence == sentence
                assert leaked_words(question, text) == []
            written += len(out.output.rows)
    assert written >= 3


def test_a_question_repeating_a_prompt_example_is_leakage() -> None:
    source = PYDOC_PARAGRAPHS[0]
    assert leaked_words("What is a glacier?", source) == ["glacier"]
    assert leaked_words("When was the Eiffel Tower completed?", source) == ["eiffel", "tower", "completed"]
    assert leaked_words("What does a match statement take?", source) == []
    glacier_text = "A glacier moves slowly under its own weight."
    assert leaked_words("What is a glacier?", glacier_text) == []  # the source itself says it


@pytest.mark.parametrize(
    ("sentence", "frame"),
    [
        ("The str() function is meant to return representations.", '" is " "the str() function"'),
        ("A busy handler must not close the database connection.", '" must " "a busy handler" (" not") (" close")'),
        ("The xFetch() method locates a page in the cache.", '" does " "the xFetch() method" (" locate") more'),
        ("A glacier is a persistent body of dense ice.", '"What is " "a glacier"'),
        ("Distutils can be extended in various ways.", '" can " "Distutils" (" be") (" extended") more'),
        ("The SQLite core never looks at the mutex.", '" does " "the SQLite core" (" never") (" look") more'),
        ("The xCache() method caches pages.", '" does " "the xCache() method" (" cach" | " cache") more'),
    ],
)
def test_frames_keep_the_sentence_subject_verb_and_negation(sentence: str, frame: str) -> None:
    (got,) = question_frames(sentence)
    assert frame in got


@pytest.mark.parametrize(
    ("sentence", "asking"),
    [
        ("The sqlite3_vfs_find() interface returns a pointer to a VFS.", ("does", (("return",),))),
        ("The sqlite3_blob_open() interface cannot open a view.", ("can", (("not",), ("open",)))),
        ("An SQLite database is normally stored in a single file.", ("is", (("normally",), ("stored",)))),
        ("The sqlite3_free() routine never frees a NULL pointer.", ("does", (("never",), ("free",)))),
        ("The xCopy() method applies the patch.", ("does", (("apply",),))),
        ("A virtual filesystem (VFS) is an object that SQLite uses.", ("is", ())),
        ("The re.LOCALE flag can now only be used with bytes.", ("can", (("now",), ("only",), ("be",), ("used",)))),
    ],
)
def test_a_question_carries_its_sentence_verb(sentence: str, asking: tuple[str, tuple[tuple[str, ...], ...]]) -> None:
    assert asking_verb(sentence) == asking


@pytest.mark.parametrize(
    "sentence",
    [
        "CLOCK_REALTIME is the only accepted value for clk_id.",  # not what it is: "What is X?" would not fit
        "The UINT collating sequences is a loadable extension for SQLite.",  # the source's agreement slip
        "The sqlite3_mutex_enter() and sqlite3_mutex_try() routines attempt to enter a mutex.",  # noun as verb?
        "The __qualname__ attribute is the same value as the name.",  # no verb to ask with
        "The flag can now only still not be used with bytes.",  # its verb is past the words a question carries
    ],
)
def test_no_question_shape_without_a_verb_to_carry(sentence: str) -> None:
    assert asking_verb(sentence) is None and question_frames(sentence) == []


@pytest.mark.parametrize(
    "sentence",
    [
        "Template (1) is used for generic source-code products on all platforms.",  # a numbered item of the page
        "Version 2 uses a binary format for floating point numbers.",
        "The parameter N is the approximate number of instructions between callbacks.",
        "The left-most column is the primary key used for ordering the rows.",
        "Airbus confirms that SQLite is being used in the flight software.",  # a clause, not a subject
        "Returns 1 if o is an index integer, and 0 otherwise.",
        "The sqlite3_mutex_notheld() interface should also return 1 when given a NULL pointer.",  # adds to another
        "Future versions of SQLite might understand additional query parameters.",
        "Just as writing Python extension modules is complicated, describing them is complicated.",
        "Use shutil.move() to support moves to a different filesystem.",  # an instruction: no subject
        "Python 3.3 enhances existing functions and introduces new functions.",  # a release does many things
        "SQLite version 3.7.16.2 fixes a subtle race condition in the locking logic.",
        "Helgrind 3.4.x contains direct support for Qt 4.X threading.",
        "The resulting xsltStylesheetPtr is placed in the stylesheets array.",  # the result of the step before
    ],
)
def test_sentences_that_lean_on_their_page_are_not_answers(sentence: str) -> None:
    assert answer_sentences(f"{sentence} The sqlite3_open() interface opens a database file.") == [
        "The sqlite3_open() interface opens a database file."
    ]


def test_a_subject_the_whole_page_is_about_answers_only_what_it_is() -> None:
    use = "Node.js uses the platform's OpenSSL implementation internally."
    defined = "Node.js is a JavaScript runtime built on the V8 engine."
    page = page_sentences(" ".join(f"Node.js runs task {i} here." for i in range(12)) + f" {use} {defined}")
    assert answer_sentences(f"{use} {defined}", page=page) == [defined]  # "What does Node.js use?" has many answers
    assert answer_sentences(f"{use} {defined}") == [defined, use]  # a page that names it rarely: both


def test_wrapped_prose_does_not_start_an_answer_mid_sentence() -> None:
    wrapped = "Resource objects are most often internal\nNode.js handle objects with undocumented APIs."
    assert answer_sentences(wrapped) == []
    listed = "- the tracker tracks active resources\nThe node:async_hooks module provides an API to track resources."
    assert answer_sentences(listed) == ["The node:async_hooks module provides an API to track resources."]


def test_a_sentence_cut_by_the_splitter_is_not_an_answer() -> None:
    text = "The planner prefers an index that uses a superset of\nWHERE clause terms relative to some other index."
    assert answer_sentences(text + " The sqlite3_open() interface opens a database file.") == [
        "The sqlite3_open() interface opens a database file."
    ]
    cut = "The third form is with DEFAULT VALUES. The INSERT ... DEFAULT VALUES statement inserts a single new row."
    assert answer_sentences(cut) == []


async def test_validate_runs_the_round_trip_in_the_same_signed_task(engine: Engine) -> None:
    sentence = evidence_candidates(make_chunk(PYDOC_PARAGRAPHS[3]))[3]
    task = payload(3, sentence)
    produced = await write_question(engine, task, DecodingParams(seed=1, temperature=0.0), None)
    assert produced.prompt is not None and produced.model_sha256 is not None
    vp = ValidatePayload(
        model_sha256=produced.model_sha256, prompt=produced.prompt, candidate=produced.raw_text, task=task
    )
    out = (await ValidateExecutor(engine).execute(vp, None, produced.model_sha256)).output
    assert isinstance(out, ValidateOutput)
    assert out.prompt_matches is True and out.topk_rate > 0.5
    assert out.roundtrip is not None and out.roundtrip.n_sentences == len(evidence_candidates(task.chunk))  # type: ignore[arg-type]


def test_a_sentence_cut_inside_a_parenthesis_is_not_an_answer() -> None:
    text = (
        "By default the scripts toolX and toolX.Y are installed (where X.Y stands for the version of the"
        " interpreter). The sqlite3_open() interface opens a database file."
    )
    assert "X.Y stands for the version of the interpreter)." not in answer_sentences(text)
    assert answer_sentences("X.Y stands for the version of the interpreter). " + text[-52:]) == [
        "The sqlite3_open() interface opens a database file."
    ]


def test_an_indented_line_that_goes_on_from_the_one_before_is_not_a_sentence() -> None:
    text = (
        "The standard defines one more level, READ\n   UNCOMMITTED.\n   In PostgreSQL READ\n   UNCOMMITTED is "
        "treated as READ COMMITTED.\n   However, CREATE DATABASE does not copy database-level\n   GRANT "
        "permissions attached to the source database.\nDescription\n   The VAR command assigns a new C data "
        "type to a host variable."
    )
    assert answer_sentences(text) == ["The VAR command assigns a new C data type to a host variable."]


def test_a_labelled_part_of_the_document_is_no_subject_and_a_past_tense_verb_is_no_subject() -> None:
    for sentence in (
        "Table B.3 shows the tokens that serve various modifier purposes.",
        "Part II documents the SQL query language environment, including data types.",
        "Section 8.1.4 describes the serial types in more detail.",
    ):
        assert answer_sentences(sentence) == [], sentence
    assert sentence_subject("SQL-92 defined three feature sets for conformance: Entry and Full.") == ""
    assert sentence_subject("The pg_config utility prints configuration parameters.") == "The pg_config utility"


def test_the_jobs_own_topic_answers_only_a_definition() -> None:
    vague = "PostgreSQL implements portions of the SQL/MED specification for foreign data."
    definition = "PostgreSQL is a relational database management system (RDBMS)."
    text = f"{vague} {definition}"
    assert answer_sentences(text, topic="the PostgreSQL database system") == [definition]
    assert vague in answer_sentences(text, topic="rare lung diseases")  # another job's topic: a named subject


def test_a_space_before_punctuation_is_what_extraction_left_of_a_dropped_element() -> None:
    assert answer_sentences("IPC parameters can be set in the System Administration Manager (SAM) under → .") == []
    assert answer_sentences("The IPC parameters can be set in the Manager , then saved.") == []


def test_a_subject_only_its_page_identifies_is_refused() -> None:
    for sentence in (
        "The second setImmediate() creates an uncaughtException event.",  # an occurrence in the page's example
        "The first block_list command shows the loss record of the first block.",
        "The first RewriteCond checks whether the host name starts with a dot.",
        "The SQL script will be written to the standard output.",  # a role noun with no identifier
        "The Perl code is limited to a single string.",
        "The API is based on the Web API AbortController.",
        "The XSLT parameters are put into the params array.",  # a set the page lists
        "An example in the Python library itself is the Py_OptimizeFlag, an integer set at startup.",
    ):
        assert answer_sentences(sentence) == [], sentence
    for sentence in (
        "The first argument to sqlite3_config() is an integer configuration option.",
        "The xDestroy argument to sqlite3_carray_bind() is a destructor for the array.",
        "The COMMIT command commits the current transaction.",
        "The sqlite3_mutex_held() and sqlite3_mutex_notheld() routines are intended for use in assert statements.",
        "The SQL functions are the most convenient kind to write.",  # a plural that the sentence defines
    ):
        assert answer_sentences(sentence) == [sentence], sentence


def test_an_option_description_in_the_imperative_has_no_subject() -> None:
    assert answer_sentences("Do HEAD requests instead of GET requests for every page.") == []
    assert answer_sentences("Display usage information and exit with status zero.") == []


def test_the_equivalent_of_something_on_the_page_points_elsewhere() -> None:
    assert answer_sentences("ROLLBACK is the equivalent standard SQL command for the whole block.") == []
    assert answer_sentences("The remaining arguments are the names of textual columns of the table.") == []
    named = "The ABORT command is equivalent to the standard SQL command ROLLBACK."
    assert answer_sentences(named) == [named]


def test_a_subject_read_past_a_clause_is_no_subject() -> None:
    sentence = "The wal_sync_method parameter determines how PostgreSQL will ask the kernel to flush updates."
    assert "determines" not in sentence_subject(sentence)


def test_an_abbreviation_ends_no_sentence() -> None:
    first = "The OpenSSL toolkit stays under a dual license, i.e. both licenses apply to it."
    assert answer_sentences(first + " It was audited in 2014.")[0] == first
    assert answer_sentences("The Python implementation uses an inline version of hmac to derive keys.") == []


def test_a_fragment_that_opens_with_its_verb_and_a_vague_quantifier_are_no_subject() -> None:
    assert sentence_subject("Raises ValueError on non-Unix-ish systems if pathname starts with a slash.") == ""
    assert sentence_subject("Different OSes will return different values for the same call.") == ""
    assert sentence_subject("Various modules provide their own hooks for the same event.") == ""
    assert sentence_subject("Windows NT is an operating system made by a large company.") == "Windows NT"


def test_a_person_and_an_object_named_only_on_the_page_are_not_answers() -> None:
    assert answer_sentences("Andreas Arnez is the current maintainer and developer of the S390X port.") == []
    assert answer_sentences("The BBV tool is an experimental basic block vector generator for it.") == []
    owner = "The Python Software Foundation is the owner of the trademark."
    assert answer_sentences(owner) == [owner]


def test_a_plural_noun_that_looks_like_a_verb_is_no_verb() -> None:
    hosts = "Public Internet MX hosts without certificates signed by a public CA must still present a certificate."
    assert sentence_subject(hosts) == ""
    assert sentence_subject("Eliminate redundant RBL lookups (people often use several lists that overlap).") == ""
    registers = "The rollback_hook() interface registers a callback function to be invoked whenever it rolls back."
    assert sentence_subject(registers) == "The rollback_hook() interface"
    counted = "The BurstLimit directive specifies the maximum number of times the RatioLimit can be exceeded."
    assert sentence_subject(counted) == "The BurstLimit directive"


def test_examples_contractions_run_together_terms_and_etc_are_handled() -> None:
    assert (
        answer_sentences("Mail for all other addresses in example.com is rejected with the error User unknown.") == []
    )
    assert sentence_subject("There's little the mail server can do about bad hardware.") == ""
    run_together = "mutual_auth Use only mechanisms that authenticate both the client and the server to each other."
    assert sentence_subject(run_together) == ""
    text = 'The DEBUG_README document describes the "warning" etc. labels in the logs. Use lists, sets, etc. Then stop.'
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        'The DEBUG_README document describes the "warning" etc. labels in the logs.',
        "Use lists, sets, etc.",
        "Then stop.",
    ]


def test_what_is_done_to_one_instance_and_a_pages_example_run_are_not_answers() -> None:
    assert answer_sentences("A unique block ID is assigned to the block, and then it goes into a set.") == []
    assert answer_sentences("A wrapper API was added for Unix-style signal handlers.") == []
    assert answer_sentences("The outputs from the SimPoint run are the results.simpts and results.weights files.") == []
    assert answer_sentences("The function func1 only consists of code at line 51 of foo.c, where it is called.") == []
    general = "An SQLite database is normally stored in a single ordinary disk file."
    assert answer_sentences(general) == [general]
    modal = "An SQL statement can be preceded by the keyword EXPLAIN."
    assert answer_sentences(modal) == [modal]


def test_a_list_of_nouns_is_no_verb_and_a_separate_thing_points_elsewhere() -> None:
    nouns = "Information about Python environment variables and -X options is now available with --help-env."
    assert sentence_subject(nouns) == ""
    verbs = "The sqlite3_str_new(D) interface allocates and initializes a new sqlite3_str object."
    assert sentence_subject(verbs) == "The sqlite3_str_new(D) interface"
    assert answer_sentences("A separate csv.writer class will generate comma-separated files from tuples.") == []



def test_a_coined_word_names_something_where_a_common_or_inflected_word_does_not() -> None:
    from node.executors.curate import coined, names_something

    named = "Rsyslogd is configured via the rsyslog.conf file, typically found in /etc."
    assert answer_sentences(f"Configuration\n{named} It reads one file.") == [named]
    assert names_something("The mmanon module") and names_something("Journald")
    assert not coined("Configuration") and not names_something("The configuration")
    for jargon in ("iterables", "enqueued", "docstring", "Backticks"):  # a kind of thing, not the name of one
        assert not coined(jargon), jargon


def test_a_sentence_that_opens_with_a_question_word_is_no_answer() -> None:
    text = "How long Elasticsearch will wait for a primary shard to be available before it sends an error."
    assert answer_sentences(text) == []
