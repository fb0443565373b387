"""synthesize: instruction + source chunk + row schema -> rows valid against the schema, with evidence.

Owns: the synthesize prompt inputs, the output schema (rows of the caller's
row schema plus an evidence field), and the per-row checks. Prompt text lives
in `node/prompts/templates.toml`; JSON generation in `node/llm/structured.py`.

Evidence is grounded by construction. The evidence field's schema is an
`enum` of the chunk's sentences (each at most `EVIDENCE_MAX_CHARS`, split
further at clause or word boundaries), so the grammar only lets the model
copy one of them verbatim. The 135M model, asked to quote freely, paraphrased
or invented quotes (at temperature 0.8 it "quoted" a sentence that is not in
the source); with the enum the quote is in the chunk every time, and the
model picks which sentence, then writes the fields after it (the evidence
comes first so the fields can lean on it). Row i quotes from the i-th part
of the chunk (`evidence_groups`), so rows spread over the chunk instead of
all quoting its first sentence. This replaces snapping a free
quote to the nearest substring: the raw text a validator re-scores is exactly
what the model produced, with no post-processing between them.

Rows are checked one by one against the caller's row schema (jsonschema) and
dropped when they fail (keywords such as `pattern` are not enforced by the
grammar) or repeat an earlier row; an empty `rows` list is a valid result.

Answer first (`SynthesizePayload.target`, question/answer rows): the answer is
the target sentence, verbatim, and the model writes only the question, as a
plain completion under a grammar that admits one question and nothing else
(a wh-word, bounded text without quotes, braces or newlines, one "?" at the
end). The row is {question field: the question, answer field: the sentence},
its evidence the sentence. A question that repeats a content word of the
prompt's examples that its source lacks is leakage, and the row is dropped.

Label first (`SynthesizePayload.label`, text/label rows): the text is the target
sentence, verbatim, and the model writes only the label, under a grammar that
admits one of the choices and nothing else. A validator then reads the label
back from the text alone (`node/executors/validate.py`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from node.executors.base import ExecutionError, ExecutionResult
from node.executors.curate import asking_verb, bounded_pieces, sentence_spans, sentence_subject
from node.executors.generated import generate_output
from node.llm.backend import ContextOverflow
from node.llm.engine import Engine, EngineError
from node.llm.schema import CompiledSchema, OutputInvalid, UnsupportedSchema, compile_schema
from node.llm.structured import generation_stats, loads_strict, sampling_params
from node.prompts import load_prompts
from protocol.tasks import (
    AnswerTarget,
    DecodingParams,
    Frozen,
    GeneratedRow,
    LabelTarget,
    SourceChunk,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
)

EVIDENCE_MAX_CHARS = 300
EVIDENCE_MIN_CHARS = 20
"""Shorter spans (headings, "Note:") ground nothing; they are offered only if nothing longer exists."""
MAX_EVIDENCE_CANDIDATES = 64
FIELD_DESCRIPTION_CHARS = 200


def evidence_candidates(chunk: SourceChunk) -> list[str]:
    """The verbatim spans of `chunk.text` a row may quote, in order of appearance, without repeats."""
    text = chunk.text
    spans = [p for s in sentence_spans(text) for p in bounded_pieces(text, s, EVIDENCE_MAX_CHARS)]
    pieces = [text[s:e] for s, e in spans]
    long_enough = [p for p in pieces if len(p) >= EVIDENCE_MIN_CHARS] or pieces
    return list(dict.fromkeys(long_enough))[:MAX_EVIDENCE_CANDIDATES]


def evidence_key(row_schema: dict[str, Any]) -> str:
    props = row_schema.get("properties", {})
    return "evidence" if "evidence" not in props else "_evidence"


def ordered_properties(row_schema: dict[str, Any]) -> dict[str, Any]:
    """The row's properties in the order of its `required` list, then any others.

    The wire's canonical encoding sorts object keys, so `properties` arrives alphabetical; a
    list keeps its order, so the coordinator says in `required` which field the model writes
    first (the order changes what small models write, see coordinator/pipeline/synthesize.py)."""
    props: dict[str, Any] = row_schema["properties"]
    required = row_schema.get("required")
    first = [k for k in required if isinstance(k, str) and k in props] if isinstance(required, list) else []
    return {k: props[k] for k in dict.fromkeys([*first, *props])}


def output_schema(payload: SynthesizePayload) -> tuple[dict[str, Any], list[str]]:
    """The schema the model writes to, and the evidence candidates it may quote."""
    rs = payload.row_schema
    if rs.get("type") != "object" or not isinstance(rs.get("properties"), dict) or not rs["properties"]:
        raise ExecutionError("row_schema must be an object schema with properties")
    n = payload.n_rows
    props = ordered_properties(rs)
    if payload.chunk is None:
        row = {"type": "object", "properties": props}
        rows: dict[str, Any] = {"type": "array", "minItems": n, "maxItems": n, "items": row}
        return {"type": "object", "properties": {"rows": rows}}, []
    candidates = evidence_candidates(payload.chunk)
    if not candidates:
        raise ExecutionError("the source chunk holds no text to quote as evidence")
    key = evidence_key(rs)
    rows = {
        "type": "array",
        "prefixItems": [
            {"type": "object", "properties": {key: {"enum": group}, **props}}
            for group in evidence_groups(candidates, n)
        ],
        "items": False,
        "minItems": n,
    }
    return {"type": "object", "properties": {"rows": rows}}, candidates


def evidence_groups(candidates: list[str], n_rows: int) -> list[list[str]]:
    """Row i may quote only from the i-th of n_rows contiguous parts of the chunk.

    Greedy decoding otherwise quotes the first sentence in every row (and writes the
    same row again); splitting the candidates spreads the rows over the whole chunk.
    With fewer sentences than rows, every row may quote any of them.
    """
    if len(candidates) < n_rows:
        return [candidates] * n_rows
    size = len(candidates)
    return [candidates[i * size // n_rows : (i + 1) * size // n_rows] for i in range(n_rows)]


def field_lines(row_schema: dict[str, Any]) -> str:
    prompts = load_prompts()
    lines = []
    for name, sub in ordered_properties(row_schema).items():
        if not isinstance(sub, dict):
            sub = {}
        kind = str(sub.get("type", "value"))
        if isinstance(sub.get("enum"), list):
            kind = "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in sub["enum"][:10])
        description = str(sub.get("description") or sub.get("title") or "").strip()
        description = " ".join(description.split())[:FIELD_DESCRIPTION_CHARS]
        lines.append(prompts.render("synthesize", "field_line", name=name, type=kind, description=description))
    return "\n".join(lines)


def messages(payload: SynthesizePayload) -> list[dict[str, str]]:
    values = {
        "instruction": payload.instruction.strip(),
        "n_rows": payload.n_rows,
        "fields": field_lines(payload.row_schema),
        "source": payload.chunk.text if payload.chunk else "",
    }
    user = "user_grounded" if payload.chunk is not None else "user_ungrounded"
    return load_prompts().messages("synthesize", user=user, **values)


def parse_rows(
    text: str, payload: SynthesizePayload, candidates: list[str], row_check: CompiledSchema
) -> list[GeneratedRow]:
    """Turn the raw JSON into rows, dropping each row that fails a check."""
    value = loads_strict(text)
    if not isinstance(value, dict) or not isinstance(value.get("rows"), list):
        raise OutputInvalid("expected an object with a rows array")
    key = evidence_key(payload.row_schema)
    chunk_text = payload.chunk.text if payload.chunk else ""
    rows: list[GeneratedRow] = []
    seen: set[str] = set()
    for item in value["rows"]:
        if not isinstance(item, dict):
            continue
        evidence = ""
        if payload.chunk is not None:
            evidence = item.pop(key, "")
            if not isinstance(evidence, str) or evidence not in candidates or evidence not in chunk_text:
                continue
        if row_check.errors(item):
            continue
        fingerprint = json.dumps(item, sort_keys=True, ensure_ascii=False)
        if fingerprint in seen:
            continue
        seen.add(fingerprint)
        rows.append(GeneratedRow(data=item, evidence=evidence))
    return rows


# --- answer first: the model writes the question its target sentence answers ----------------------

QUESTION_WORDS = ("What", "Which", "How", "Why", "When", "Where", "Who")
QUESTION_MIN_CHARS = 12
_QUESTION_CHARS = "[a-zA-Z0-9 ,'()_./:+*#-]"
"""No quotes, braces, brackets, newlines or question marks inside: the debris the JSON path let
through (`','case':'...`, `}],`) cannot be written."""
_LEAK_WORD = re.compile(r"[a-z0-9']{4,}")
_FRAME_TEXT = "what when where which does sentence subject question answers about into that with from"
_FRAME_WORDS = frozenset(_FRAME_TEXT.split())


def question_prompt(payload: SynthesizePayload) -> str:
    target = _target(payload)
    prompts = load_prompts()
    return prompts.render(
        "question",
        "prompt",
        examples=prompts.text("question", "examples"),
        sentence=" ".join(target.sentence.split()),
        subject=sentence_subject(target.sentence) or target.sentence.split()[0],
    )


MAX_TAIL_WORDS = 4
_DETERMINERS = frozenset(["the", "a", "an"])
_VP_WORD = "[a-z0-9_()'-]"


def question_frames(sentence: str, source: str = "") -> list[str]:
    """GBNF alternatives for the questions `sentence` answers, built on its own subject and verb phrase.

    A question that keeps the sentence's subject verbatim and asks with the sentence's own verb
    (`curate.asking_verb`: "The checksum is added as each page is written" -> "When is the checksum
    added ...?", "X returns ..." -> "What does X return ...?") is about what the sentence says by
    construction; the model picks the wh-word and at most a few words after the verb. A negated verb
    stays negated ("X must not close ..." -> "What must X not close?": asked without it, the sentence
    would answer the opposite). "What is X?" is offered only where the sentence says what X is (a
    definition). The subject's first word is lowercased when it is a determiner or a word that `source`
    also uses in lowercase (a common noun, not a name)."""
    subject = sentence_subject(sentence)
    asking = asking_verb(sentence)
    if not subject or asking is None:
        return []
    aux, forms = asking
    words = subject.split()
    first = words[0]
    common = first.isalpha() and first[1:].islower() and re.search(rf"\b{first.lower()}\b", source) is not None
    if first.lower() in _DETERMINERS or common:
        words[0] = first.lower()
    asked = json.dumps(" ".join(words))
    if not forms:
        return [f'"What {aux} " {asked}']
    carried = " ".join("(" + " | ".join(json.dumps(" " + f) for f in alts) + ")" for alts in forms)
    wh = '("What" | "When" | "How" | "Why" | "Where" | "Which")'
    return [f'{wh} " {aux} " {asked} {carried} more']


def question_grammar(sentence: str, max_chars: int, source: str = "") -> str:
    """GBNF for one question: " " then a frame of `question_frames`, then "?" and the end."""
    frames = question_frames(sentence, source)
    if not frames:
        raise ExecutionError("the target sentence does not open with a subject and a verb to ask with")
    # A wh-word stands for what is asked; a long tail after the verb restates the answer instead.
    more = max(0, min(MAX_TAIL_WORDS - 1, (max_chars - len(sentence_subject(sentence)) - 18) // 6))
    return f'root ::= " " ({" | ".join(frames)}) "?"\nmore ::= (" " {_VP_WORD}{{1,24}}){{0,{more}}}\n'


def leaked_words(question: str, source: str) -> list[str]:
    """Content words of the prompt's examples that `question` repeats and `source` does not contain."""
    examples = set(_LEAK_WORD.findall(load_prompts().text("question", "examples").lower())) - _FRAME_WORDS
    have = set(_LEAK_WORD.findall(source.lower()))
    return [w for w in dict.fromkeys(_LEAK_WORD.findall(question.lower())) if w in examples and w not in have]


def _check_sentence_task(payload: SynthesizePayload, sentence: str | None, fields: set[str], kind: str) -> None:
    """An answer-first or label-first task: its sentence is in its chunk, and its rows have exactly `fields`."""
    if sentence is None or payload.chunk is None:
        raise ExecutionError(f"a {kind} task needs a target sentence and its source chunk")
    if sentence not in payload.chunk.text:
        raise ExecutionError("the target sentence does not occur in the source chunk")
    if set(payload.row_schema.get("properties", {})) != fields:
        raise ExecutionError(f"a {kind} row_schema must have exactly the fields {sorted(fields)}")


def _target(payload: SynthesizePayload) -> AnswerTarget:
    target = payload.target
    fields = {target.question_field, target.answer_field} if target else set()
    _check_sentence_task(payload, target.sentence if target else None, fields, "answer-first")
    assert target is not None
    return target


async def write_question(
    engine: Engine, payload: SynthesizePayload, decoding: DecodingParams | None, model_sha256: str | None
) -> ExecutionResult:
    target = _target(payload)
    assert payload.chunk is not None
    decoding = decoding or DecodingParams(seed=0)
    prompt = question_prompt(payload)
    params = sampling_params(decoding, target.max_question_chars)
    try:
        lm = engine.model(model_sha256)
        grammar = question_grammar(target.sentence, target.max_question_chars, payload.chunk.text)
        result = await engine.generate(lm.sha256, prompt, params, grammar=grammar)
    except (EngineError, ContextOverflow) as exc:
        raise ExecutionError(str(exc)) from None
    if result.finish_reason != "stop":
        raise ExecutionError(
            f"question generation ended by {result.finish_reason} after {result.completion_tokens} tokens"
        )
    question = result.text.strip()
    rows = []
    if not leaked_words(question, payload.chunk.text):
        data = {target.question_field: question, target.answer_field: target.sentence}
        rows.append(GeneratedRow(data=data, evidence=target.sentence))
    return ExecutionResult(
        output=SynthesizeOutput(rows=rows),
        model_sha256=lm.sha256,
        prompt=prompt,
        raw_text=result.text,
        stats=generation_stats(result),
    )


# --- label first: the model writes the label of its target sentence ----------------------------------


def label_prompt(payload: SynthesizePayload, choices: tuple[str, ...] | None = None, text: str | None = None) -> str:
    """The label-first prompt; a validator passes the choices in another order, or the text left out."""
    label = _label(payload)
    return load_prompts().render(
        "label",
        "prompt",
        instruction=" ".join(payload.instruction.split())[:FIELD_DESCRIPTION_CHARS],
        text=" ".join(label.sentence.split()) if text is None else text,
        field=label.label_field,
        description=" ".join(label.description.split()) or "its label",
        choices=", ".join(label.choices if choices is None else choices),
    )


def label_grammar(choices: tuple[str, ...]) -> str:
    """GBNF for one label: a space, then one of `choices` verbatim."""
    return f'root ::= " " ({" | ".join(json.dumps(c) for c in choices)})\n'


def _label(payload: SynthesizePayload) -> LabelTarget:
    label = payload.label
    fields = {label.text_field, label.label_field} if label else set()
    _check_sentence_task(payload, label.sentence if label else None, fields, "label-first")
    assert label is not None
    return label


async def label_scores(
    engine: Engine,
    sha256: str,
    payload: SynthesizePayload,
    choices: tuple[str, ...] | None = None,
    text: str | None = None,
) -> dict[str, float]:
    """log P(choice | prompt) of every choice, the choices listed in `choices` order (default: the spec's), with
    the text or `text` in its place: one prefill of the prompt for all of them."""
    order = _label(payload).choices if choices is None else choices
    scored = await engine.rescore_many(sha256, label_prompt(payload, choices, text), [" " + c for c in order], 1)
    return {c: sum(r.token_logprobs) for c, r in zip(order, scored, strict=True)}


def among_choices(scores: dict[str, float], label: str) -> float:
    """log P(label) normalised over the choices only: the distribution the grammar samples from. This, not
    the free-text likelihood, is what a label-first result claims and a validator re-scores: a choice
    the grammar forces sits far outside the model's top-k, at about -8 nats
    (docs/notes/verification.md#label-re-scoring)."""
    top = max(scores.values())
    return scores[label] - (top + math.log(sum(math.exp(t - top) for t in scores.values())))


async def label_logprob(engine: Engine, sha256: str, payload: SynthesizePayload, label: str) -> float:
    """`among_choices` of the label under the prompt the node wrote it with."""
    return among_choices(await label_scores(engine, sha256, payload), label)


async def write_label(
    engine: Engine, payload: SynthesizePayload, decoding: DecodingParams | None, model_sha256: str | None
) -> ExecutionResult:
    label = _label(payload)
    decoding = decoding or DecodingParams(seed=0)
    prompt = label_prompt(payload)
    params = sampling_params(decoding, max(len(c) for c in label.choices) + 2)
    try:
        lm = engine.model(model_sha256)
        result = await engine.generate(lm.sha256, prompt, params, grammar=label_grammar(label.choices))
    except (EngineError, ContextOverflow) as exc:
        raise ExecutionError(str(exc)) from None
    if result.finish_reason != "stop" or result.text.strip() not in label.choices:
        raise ExecutionError(f"label generation ended by {result.finish_reason} with {result.text[:80]!r}")
    data = {label.text_field: label.sentence, label.label_field: result.text.strip()}
    claim = await label_logprob(engine, lm.sha256, payload, result.text.strip())
    return ExecutionResult(
        output=SynthesizeOutput(rows=[GeneratedRow(data=data, evidence=label.sentence)]),
        model_sha256=lm.sha256,
        prompt=prompt,
        raw_text=result.text,
        stats=generation_stats(result).model_copy(update={"mean_logprob": round(claim, 6)}),
    )


class SynthesizeExecutor:
    kind = TaskKind.SYNTHESIZE

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, SynthesizePayload):
            raise ExecutionError(f"synthesize executor got a {type(payload).__name__}")
        if payload.target is not None:
            return await write_question(self.engine, payload, decoding, model_sha256)
        if payload.label is not None:
            return await write_label(self.engine, payload, decoding, model_sha256)
        schema, candidates = output_schema(payload)
        try:
            compiled = compile_schema(schema)
            row_check = compile_schema(payload.row_schema)
        except UnsupportedSchema as exc:
            raise ExecutionError(f"row_schema cannot be used: {exc}") from None
        return await generate_output(
            self.engine,
            model_sha256,
            messages(payload),
            compiled,
            decoding,
            lambda value: SynthesizeOutput(rows=value),
            parse=lambda text: parse_rows(text, payload, candidates, row_check),
        )
