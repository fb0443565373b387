"""Task kinds, their payloads (what a Grant carries) and outputs (what a Result carries).

Every string and list is bounded: the bounds are part of the schema handed to
llama.cpp grammars (unbounded strings ran away to max_tokens in 2/20 tries on
SmolLM2, see docs/notes/llama.md), and they cap what a hostile peer can make
the other side hold in memory.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TaskKind(StrEnum):
    SPEC = "spec"
    QUESTION_GEN = "question_gen"
    SEARCH = "search"
    RETRIEVE = "retrieve"
    CURATE = "curate"
    SYNTHESIZE = "synthesize"
    VALIDATE = "validate"
    JUDGE = "judge"


GENERATIVE_KINDS = frozenset({TaskKind.SPEC, TaskKind.QUESTION_GEN, TaskKind.SYNTHESIZE, TaskKind.JUDGE})
"""Kinds whose output comes from an LLM and is verified by replicas or re-scoring."""

DETERMINISTIC_KINDS = frozenset({TaskKind.SEARCH, TaskKind.RETRIEVE, TaskKind.CURATE})
"""Kinds whose output should match across honest nodes (up to page drift), verified by quorum."""

LLM_KINDS = GENERATIVE_KINDS | {TaskKind.VALIDATE}
"""Kinds that need a loaded model on the node."""

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
ShortText = Annotated[str, Field(max_length=512)]
JsonObject = dict[str, Any]

MAX_DOCUMENT_CHARS = 100_000
MAX_CHUNK_CHARS = 8_000


class Frozen(BaseModel):
    """Base for wire types: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DecodingParams(Frozen):
    """Everything that fixes an LLM's sampling, so replicas are comparable."""

    seed: int = Field(ge=0, le=2**32 - 1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_k: int = Field(default=40, ge=0, le=1000)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=8192)
    json_schema: JsonObject | None = None


# --- spec -------------------------------------------------------------------
# A request sentence read into a draft dataset spec by a schema-constrained LLM.
# The coordinator merges the draft over its rule-based reading (coordinator/request/),
# so these bounds only need to keep the draft small and grammar-compilable.

MAX_REQUEST_CHARS = 4000
"""A request is a sentence or a paragraph; longer ones are handed in as a spec file."""
MAX_ROWS = 100_000
"""Largest row count one job may ask for (coordinator/spec.py explains the figure)."""
MAX_TOPIC_CHARS = 200
MAX_FIELD_CHARS = 2000
"""Upper bound on one string field of a row. The evidence span in `GeneratedRow` is 2000 too."""
SpecFieldType = Literal["string", "integer", "number", "boolean", "enum"]
"""The values of `coordinator.spec.FieldType`: the draft names a field's type with one of them."""
SPEC_FIELD_TYPES: tuple[str, ...] = get_args(SpecFieldType)
SPEC_MAX_FIELDS = 8
"""Fields one draft may propose: the small models list too many otherwise."""
SPEC_MAX_CHOICES = 6
SPEC_FIELD_NAME_CHARS = 40
SPEC_DESCRIPTION_CHARS = 160
SPEC_CHOICE_CHARS = 32


class SpecPayload(Frozen):
    kind: Literal[TaskKind.SPEC] = TaskKind.SPEC
    request: Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_CHARS)]
    max_fields: int = Field(default=SPEC_MAX_FIELDS, ge=1, le=SPEC_MAX_FIELDS)


class SpecFieldDraft(Frozen):
    name: Annotated[str, Field(min_length=1, max_length=SPEC_FIELD_NAME_CHARS)]
    type: SpecFieldType
    description: Annotated[str, Field(max_length=SPEC_DESCRIPTION_CHARS)]
    max_length: int = Field(ge=1, le=MAX_FIELD_CHARS)
    choices: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=SPEC_CHOICE_CHARS)]], Field(max_length=SPEC_MAX_CHOICES)
    ]


class SpecOutput(Frozen):
    kind: Literal[TaskKind.SPEC] = TaskKind.SPEC
    topic: Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS)]
    rows: int = Field(ge=1, le=MAX_ROWS)
    grounded: bool
    language: Annotated[str, Field(min_length=2, max_length=3)]
    fields: Annotated[list[SpecFieldDraft], Field(min_length=1, max_length=SPEC_MAX_FIELDS)]


# --- question_gen -----------------------------------------------------------


class QuestionGenPayload(Frozen):
    kind: Literal[TaskKind.QUESTION_GEN] = TaskKind.QUESTION_GEN
    topic: Annotated[str, Field(min_length=1, max_length=1000)]
    description: Annotated[str, Field(max_length=4000)] = ""
    language: Annotated[str, Field(min_length=2, max_length=16)] = "en"
    n_queries: int = Field(default=5, ge=1, le=20)
    n_questions: int = Field(default=5, ge=0, le=20)


class QuestionGenOutput(Frozen):
    kind: Literal[TaskKind.QUESTION_GEN] = TaskKind.QUESTION_GEN
    queries: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=20)]
    questions: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=20)]


# --- search -----------------------------------------------------------------


class SearchPayload(Frozen):
    kind: Literal[TaskKind.SEARCH] = TaskKind.SEARCH
    query: Annotated[str, Field(min_length=1, max_length=400)]
    max_results: int = Field(default=10, ge=1, le=50)


class SearchHit(Frozen):
    url: Url
    title: ShortText
    snippet: Annotated[str, Field(max_length=2000)]
    score: float = 0.0


class SearchOutput(Frozen):
    kind: Literal[TaskKind.SEARCH] = TaskKind.SEARCH
    backend: Annotated[str, Field(max_length=64)]
    hits: Annotated[list[SearchHit], Field(max_length=50)]


# --- retrieve ---------------------------------------------------------------


class RetrievePayload(Frozen):
    kind: Literal[TaskKind.RETRIEVE] = TaskKind.RETRIEVE
    url: Url
    max_bytes: int = Field(default=5_000_000, ge=1, le=50_000_000)


class RetrieveOutput(Frozen):
    kind: Literal[TaskKind.RETRIEVE] = TaskKind.RETRIEVE
    url: Url
    final_url: Url
    status: int = Field(ge=100, le=599)
    content_type: ShortText
    title: ShortText
    text: Annotated[str, Field(max_length=MAX_DOCUMENT_CHARS)]
    content_sha256: Sha256Hex
    """sha256 of `text` encoded as UTF-8: what evidence offsets refer to."""
    fetched_at_ms: int = Field(ge=0)


# --- curate -----------------------------------------------------------------


class Document(Frozen):
    url: Url
    title: ShortText = ""
    text: Annotated[str, Field(max_length=MAX_DOCUMENT_CHARS)]
    content_sha256: Sha256Hex


class SourceChunk(Frozen):
    """A slice of a retrieved document; `start`/`end` are character offsets into its text."""

    url: Url
    content_sha256: Sha256Hex
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: Annotated[str, Field(max_length=MAX_CHUNK_CHARS)]


class CuratePayload(Frozen):
    kind: Literal[TaskKind.CURATE] = TaskKind.CURATE
    documents: Annotated[list[Document], Field(min_length=1, max_length=8)]
    instruction: Annotated[str, Field(min_length=1, max_length=4000)]
    chunk_chars: int = Field(default=1500, ge=200, le=MAX_CHUNK_CHARS)
    max_tasks: int = Field(default=100, ge=1, le=1000)
    topic: Annotated[str, Field(max_length=500)] = ""
    """The job's topic: a subject it names is what every page is about (curate's answer sentences)."""


MAX_ANSWER_SENTENCES = 8
ANSWER_SENTENCE_CHARS = 300
"""An answer sentence is one evidence candidate, so it is bounded like one (node/executors/synthesize.py)."""


class SynthesisSpec(Frozen):
    instruction: Annotated[str, Field(max_length=4000)]
    chunk: SourceChunk
    answers: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=ANSWER_SENTENCE_CHARS)]],
        Field(max_length=MAX_ANSWER_SENTENCES),
    ] = []
    """The chunk's answer-bearing sentences, verbatim, best first (chosen without an LLM by curate)."""


class CurateOutput(Frozen):
    kind: Literal[TaskKind.CURATE] = TaskKind.CURATE
    tasks: Annotated[list[SynthesisSpec], Field(max_length=1000)]


# --- synthesize -------------------------------------------------------------


class AnswerTarget(Frozen):
    """Answer first (PAQ): the row's answer is this sentence of the chunk, and the model writes only
    the question it answers. A validator must then recover the sentence from the question alone."""

    sentence: Annotated[str, Field(min_length=1, max_length=ANSWER_SENTENCE_CHARS)]
    """Verbatim from the chunk; it is the row's evidence and the value of `answer_field`."""
    question_field: Annotated[str, Field(min_length=1, max_length=64)]
    answer_field: Annotated[str, Field(min_length=1, max_length=64)]
    max_question_chars: int = Field(default=150, ge=16, le=400)


MAX_LABEL_CHOICES = 20
LABEL_CHOICE_CHARS = 64


class LabelTarget(Frozen):
    """Label first: the row's text is this sentence of the chunk, verbatim, and the model writes only its
    label, one of `choices`. A validator must then pick the same label from the text alone, whichever
    order the choices are listed in."""

    sentence: Annotated[str, Field(min_length=1, max_length=ANSWER_SENTENCE_CHARS)]
    """Verbatim from the chunk; it is the row's evidence and the value of `text_field`."""
    text_field: Annotated[str, Field(min_length=1, max_length=64)]
    label_field: Annotated[str, Field(min_length=1, max_length=64)]
    choices: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=LABEL_CHOICE_CHARS)], ...],
        Field(min_length=2, max_length=MAX_LABEL_CHOICES),
    ]
    description: Annotated[str, Field(max_length=200)] = ""
    """What the label says about the text (the spec field's description)."""

    @model_validator(mode="after")
    def _distinct_choices(self) -> LabelTarget:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError("label choices repeat a value")
        return self


class SynthesizePayload(Frozen):
    kind: Literal[TaskKind.SYNTHESIZE] = TaskKind.SYNTHESIZE
    instruction: Annotated[str, Field(min_length=1, max_length=4000)]
    chunk: SourceChunk | None = None
    row_schema: JsonObject
    """JSON schema of one row; the node adds the evidence field and the grammar."""
    n_rows: int = Field(default=1, ge=1, le=10)
    target: AnswerTarget | None = None
    """Set for question/answer rows: see `AnswerTarget` (needs `chunk`, and n_rows 1)."""
    label: LabelTarget | None = None
    """Set for text/label rows: see `LabelTarget` (needs `chunk`, and n_rows 1; never with `target`)."""

    @model_validator(mode="after")
    def _one_target(self) -> SynthesizePayload:
        if self.target is not None and self.label is not None:
            raise ValueError("a synthesize task is answer first or label first, not both")
        return self


class GeneratedRow(Frozen):
    data: JsonObject
    evidence: Annotated[str, Field(max_length=2000)] = ""
    """A span quoted verbatim from the source chunk (empty for ungrounded specs)."""


class SynthesizeOutput(Frozen):
    kind: Literal[TaskKind.SYNTHESIZE] = TaskKind.SYNTHESIZE
    rows: Annotated[list[GeneratedRow], Field(max_length=10)]


# --- validate ---------------------------------------------------------------


class RoundTrip(Frozen):
    """A validator's reading of a row written answer first or label first.

    `reading="sentence"`: which sentence of the chunk is the question about? Each sentence's gain is how
    much it raises the question's likelihood over no sentence (mean log P(question | sentence) - mean
    log P(question), nats per token). `reading="label"`: which choice labels the text? Each choice's gain
    is how much the text raises its likelihood over no text (log P(choice | text) - log P(choice), nats),
    and rank, margin and gain are the worst over the orders the choices were listed in."""

    answer_rank: int = Field(ge=0, le=1000)
    """Rank of the row's answer sentence among the chunk's sentences (0: the validator recovered it)."""
    margin: float
    """Its gain minus the best other sentence's gain (> 0 when it ranks first)."""
    gain: float = 0.0
    """Its own gain (> 0: the question is more likely after the sentence than after nothing)."""
    n_sentences: int = Field(ge=0, le=1000)
    """Sentences of the chunk (answer first) or choices (label first) the validator ranked."""
    reading: Literal["sentence", "label"] = "sentence"


class ValidateOutput(Frozen):
    kind: Literal[TaskKind.VALIDATE] = TaskKind.VALIDATE
    n_tokens: int = Field(ge=0)
    mean_logprob: float
    topk_rate: float = Field(ge=0.0, le=1.0)
    """Share of candidate tokens inside the model's top-k at their position."""
    token_logprobs: Annotated[list[float], Field(max_length=8192)]
    prompt_matches: bool | None = None
    """Whether the producer's claimed prompt equals the one rendered from the task (None: no task given)."""
    roundtrip: RoundTrip | None = None
    """Set when the task is an answer-first or label-first synthesize task (`target`, `label`)."""


# --- judge ------------------------------------------------------------------


class JudgePayload(Frozen):
    kind: Literal[TaskKind.JUDGE] = TaskKind.JUDGE
    row: JsonObject
    criteria: Annotated[str, Field(min_length=1, max_length=2000)]
    chunk: SourceChunk | None = None


class JudgeOutput(Frozen):
    kind: Literal[TaskKind.JUDGE] = TaskKind.JUDGE
    score: int = Field(ge=1, le=5)
    rationale: Annotated[str, Field(max_length=400)]


# --- validate ---------------------------------------------------------------
# (after judge: a validate task may carry any generative task's payload)

RescorablePayload = SpecPayload | QuestionGenPayload | SynthesizePayload | JudgePayload
"""Payloads of the generative kinds: a validator renders their prompt itself to re-score an output."""
RESCORABLE_PAYLOADS = (SpecPayload, QuestionGenPayload, SynthesizePayload, JudgePayload)


class ValidatePayload(Frozen):
    """Re-score a candidate output under the declared model by teacher-forced prefill."""

    kind: Literal[TaskKind.VALIDATE] = TaskKind.VALIDATE
    model_sha256: Sha256Hex
    prompt: Annotated[str, Field(max_length=64_000)]
    """The exact prompt text the producer was given (chat template applied)."""
    candidate: Annotated[str, Field(max_length=32_000)]
    """The exact text the producer claims it generated."""
    claimed_mean_logprob: float | None = None
    top_k: int = Field(default=10, ge=1, le=100)
    task: Annotated[RescorablePayload, Field(discriminator="kind")] | None = None
    """The task the candidate claims to answer. The validator renders its prompt itself and re-scores
    under that, so an output generated for another prompt cannot pass by quoting that other prompt."""


TaskPayload = Annotated[
    SpecPayload
    | QuestionGenPayload
    | SearchPayload
    | RetrievePayload
    | CuratePayload
    | SynthesizePayload
    | ValidatePayload
    | JudgePayload,
    Field(discriminator="kind"),
]

TaskOutput = Annotated[
    SpecOutput
    | QuestionGenOutput
    | SearchOutput
    | RetrieveOutput
    | CurateOutput
    | SynthesizeOutput
    | ValidateOutput
    | JudgeOutput,
    Field(discriminator="kind"),
]

PAYLOAD_TYPES: dict[TaskKind, type[Frozen]] = {
    TaskKind.SPEC: SpecPayload,
    TaskKind.QUESTION_GEN: QuestionGenPayload,
    TaskKind.SEARCH: SearchPayload,
    TaskKind.RETRIEVE: RetrievePayload,
    TaskKind.CURATE: CuratePayload,
    TaskKind.SYNTHESIZE: SynthesizePayload,
    TaskKind.VALIDATE: ValidatePayload,
    TaskKind.JUDGE: JudgePayload,
}

OUTPUT_TYPES: dict[TaskKind, type[Frozen]] = {
    TaskKind.SPEC: SpecOutput,
    TaskKind.QUESTION_GEN: QuestionGenOutput,
    TaskKind.SEARCH: SearchOutput,
    TaskKind.RETRIEVE: RetrieveOutput,
    TaskKind.CURATE: CurateOutput,
    TaskKind.SYNTHESIZE: SynthesizeOutput,
    TaskKind.VALIDATE: ValidateOutput,
    TaskKind.JUDGE: JudgeOutput,
}
