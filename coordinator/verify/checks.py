"""Checks every single result must pass before it is compared with anything else.

Owns: the per-result rules of docs/design.md "Verification" step 1: the signer holds
the lease, the lease is live (or late within grace), the output kind matches
the task, the output is valid against the task's schema (for synthesize: each
row's `data` against the task's row JSON schema), sizes are within bounds, the
model is allowed, and the decoding parameters echo the grant.
Must not: compare replicas (quorum.py, rescoring.py), judge quality (gates.py),
touch the store, or read the clock. Pure functions: everything comes in as
arguments, and every refusal comes out as a typed `Failure`.

The envelope signature itself was already verified by
`protocol.envelope.open_envelope`; here `signer_peer_id` is the peer that
signature belongs to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.receipts import token_allowance
from protocol import encoding
from protocol.digests import content_sha256
from protocol.messages import Grant, Result
from protocol.state import LATE_GRACE_MS, past_grace
from protocol.tasks import (
    GENERATIVE_KINDS,
    LLM_KINDS,
    CurateOutput,
    CuratePayload,
    JsonObject,
    QuestionGenOutput,
    QuestionGenPayload,
    RetrieveOutput,
    RetrievePayload,
    SearchOutput,
    SearchPayload,
    SpecOutput,
    SpecPayload,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
    ValidateOutput,
    ValidatePayload,
)


@dataclass(frozen=True)
class CheckLimits:
    """Size bounds beyond what the wire schema already enforces."""

    max_row_bytes: int = 16 * 1024
    """Canonical msgpack size of one row's `data`; task schemas bound strings far below this."""
    logprob_tolerance: float = 1e-3
    """How far a validator's mean_logprob may differ from the mean of its own token_logprobs."""
    late_grace_ms: int = LATE_GRACE_MS


DEFAULT_LIMITS = CheckLimits()


def check_result(
    result: Result,
    *,
    signer_peer_id: str,
    grant: Grant,
    allowed_models: Collection[str],
    now_ms: int,
    limits: CheckLimits = DEFAULT_LIMITS,
) -> list[Failure]:
    """Every failure of `result` against the `grant` it answers; empty when it passes.

    allowed_models: the job's allowed model digests (empty: any model the grant named).
    The first failure is the one to record as the verdict's reason.
    """
    failures = list(_lease_checks(result, signer_peer_id, grant, now_ms, limits))
    kind = TaskKind(grant.payload.kind)
    if result.output.kind != kind:
        failures.append(Failure(Reason.KIND_MISMATCH, f"task is {kind.value}, output is {result.output.kind.value}"))
        return failures  # content checks would compare unrelated shapes
    failures += _content_checks(result, grant, limits)
    if kind in LLM_KINDS:
        failures += _model_checks(result, grant, kind, allowed_models)
    return failures


# --- lease ----------------------------------------------------------------------


def _lease_checks(result: Result, signer: str, grant: Grant, now_ms: int, limits: CheckLimits) -> Iterator[Failure]:
    if signer != grant.node_peer_id:
        yield Failure(Reason.SIGNER_NOT_LEASE_HOLDER, f"signed by {signer}, lease held by {grant.node_peer_id}")
    for name in ("lease_id", "task_id", "job_id", "attempt"):
        got, want = getattr(result, name), getattr(grant, name)
        if got != want:
            yield Failure(Reason.LEASE_MISMATCH, f"{name} is {got!r}, the grant says {want!r}")
    if past_grace(grant.lease_deadline_ms, now_ms, grace_ms=limits.late_grace_ms):
        late_by = now_ms - grant.lease_deadline_ms
        yield Failure(Reason.LEASE_DEAD, f"arrived {late_by} ms after the deadline (grace {limits.late_grace_ms} ms)")


# --- output content, per kind ---------------------------------------------------------


def _content_checks(result: Result, grant: Grant, limits: CheckLimits) -> list[Failure]:
    out, payload = result.output, grant.payload
    if isinstance(out, SynthesizeOutput) and isinstance(payload, SynthesizePayload):
        return _synthesize(out, payload, limits)
    if isinstance(out, SearchOutput) and isinstance(payload, SearchPayload):
        if len(out.hits) > payload.max_results:
            return [Failure(Reason.OVERSIZED, f"{len(out.hits)} hits, at most {payload.max_results} asked")]
        return []
    if isinstance(out, RetrieveOutput) and isinstance(payload, RetrievePayload):
        return _retrieve(out, payload)
    if isinstance(out, CurateOutput) and isinstance(payload, CuratePayload):
        return _curate(out, payload)
    if isinstance(out, QuestionGenOutput) and isinstance(payload, QuestionGenPayload):
        fails = []
        if len(out.queries) > payload.n_queries:
            fails.append(Failure(Reason.OVERSIZED, f"{len(out.queries)} queries, at most {payload.n_queries} asked"))
        if len(out.questions) > payload.n_questions:
            fails.append(
                Failure(Reason.OVERSIZED, f"{len(out.questions)} questions, at most {payload.n_questions} asked")
            )
        return fails
    if isinstance(out, SpecOutput) and isinstance(payload, SpecPayload):
        if len(out.fields) > payload.max_fields:
            return [Failure(Reason.OVERSIZED, f"{len(out.fields)} fields, at most {payload.max_fields} asked")]
        return []
    if isinstance(out, ValidateOutput) and isinstance(payload, ValidatePayload):
        return _validate(out, limits)
    return []


def _synthesize(out: SynthesizeOutput, payload: SynthesizePayload, limits: CheckLimits) -> list[Failure]:
    fails: list[Failure] = []
    if not out.rows:
        fails.append(Failure(Reason.SCHEMA_INVALID, "no rows"))
    if len(out.rows) > payload.n_rows:
        fails.append(Failure(Reason.OVERSIZED, f"{len(out.rows)} rows, at most {payload.n_rows} asked"))
    validator = _validator(_schema_key(payload.row_schema))
    for i, row in enumerate(out.rows):
        size = len(encoding.encode(row.data))
        if size > limits.max_row_bytes:
            fails.append(Failure(Reason.OVERSIZED, f"row {i} is {size} bytes, limit {limits.max_row_bytes}"))
            continue
        error = _first_error(validator, row.data)
        if error is not None:
            fails.append(Failure(Reason.SCHEMA_INVALID, f"row {i}: {error}"))
    return fails


def _retrieve(out: RetrieveOutput, payload: RetrievePayload) -> list[Failure]:
    fails: list[Failure] = []
    if out.url != payload.url:
        fails.append(Failure(Reason.LEASE_MISMATCH, f"fetched {out.url!r}, the task asked for {payload.url!r}"))
    text = out.text.encode("utf-8")
    if len(text) > payload.max_bytes:
        fails.append(Failure(Reason.OVERSIZED, f"text is {len(text)} bytes, max_bytes is {payload.max_bytes}"))
    actual = content_sha256(out.text)
    if actual != out.content_sha256:
        fails.append(Failure(Reason.CONTENT_DIGEST_MISMATCH, f"text hashes to {actual}, claimed {out.content_sha256}"))
    return fails


def _curate(out: CurateOutput, payload: CuratePayload) -> list[Failure]:
    fails: list[Failure] = []
    if len(out.tasks) > payload.max_tasks:
        fails.append(Failure(Reason.OVERSIZED, f"{len(out.tasks)} tasks, at most {payload.max_tasks} asked"))
    docs = {d.content_sha256: d for d in payload.documents}
    for i, spec in enumerate(out.tasks):
        chunk = spec.chunk
        doc = docs.get(chunk.content_sha256)
        if doc is None:
            fails.append(Failure(Reason.CONTENT_DIGEST_MISMATCH, f"task {i} cites a document not in the payload"))
        elif not (chunk.start <= chunk.end <= len(doc.text)) or doc.text[chunk.start : chunk.end] != chunk.text:
            fails.append(Failure(Reason.SCHEMA_INVALID, f"task {i}: chunk text is not doc[{chunk.start}:{chunk.end}]"))
    return fails


def _validate(out: ValidateOutput, limits: CheckLimits) -> list[Failure]:
    fails: list[Failure] = []
    if out.n_tokens != len(out.token_logprobs):
        fails.append(Failure(Reason.SCHEMA_INVALID, f"n_tokens {out.n_tokens} != {len(out.token_logprobs)} logprobs"))
    elif out.token_logprobs:
        try:
            mean = math.fsum(out.token_logprobs) / len(out.token_logprobs)
        except OverflowError:  # finite values whose sum is not (two of -1e308): fsum raises
            fails.append(Failure(Reason.SCHEMA_INVALID, "token_logprobs overflow when summed"))
        else:
            if abs(mean - out.mean_logprob) > limits.logprob_tolerance:
                fails.append(
                    Failure(Reason.SCHEMA_INVALID, f"mean_logprob {out.mean_logprob} but tokens average {mean}")
                )
    if any(lp > 0.0 for lp in out.token_logprobs) or out.mean_logprob > 0.0:
        fails.append(Failure(Reason.SCHEMA_INVALID, "a log-probability above 0"))
    return fails


# --- model and decoding --------------------------------------------------------------


def _model_checks(result: Result, grant: Grant, kind: TaskKind, allowed: Collection[str]) -> list[Failure]:
    fails: list[Failure] = []
    model = result.model_sha256
    required = grant.payload.model_sha256 if isinstance(grant.payload, ValidatePayload) else grant.model_sha256
    if model is None:
        fails.append(Failure(Reason.MODEL_NOT_ALLOWED, "no model digest declared"))
    elif required is not None and model != required:
        fails.append(Failure(Reason.MODEL_NOT_ALLOWED, f"used {model}, the grant named {required}"))
    elif allowed and model not in allowed:
        fails.append(Failure(Reason.MODEL_NOT_ALLOWED, f"model {model} is not allowed for this job"))
    if result.decoding != grant.decoding:
        fails.append(Failure(Reason.DECODING_MISMATCH, _decoding_diff(result, grant)))
    if kind not in GENERATIVE_KINDS:
        return fails
    if not result.prompt or not result.raw_text:
        fails.append(Failure(Reason.MISSING_GENERATION, "prompt and raw_text are required to re-score the output"))
    if result.stats.finish_reason == "length":
        fails.append(Failure(Reason.TRUNCATED, "generation stopped at max_tokens"))
    if grant.decoding is not None:
        allowance = token_allowance(grant.decoding.max_tokens, result.raw_text)
        if result.stats.completion_tokens > allowance:
            fails.append(
                Failure(
                    Reason.OVERSIZED,
                    f"{result.stats.completion_tokens} completion tokens: max_tokens is {grant.decoding.max_tokens}"
                    f" and the text accounts for {allowance}",
                )
            )
        if grant.decoding.json_schema is not None and result.raw_text:
            fails += _raw_text_against(grant.decoding.json_schema, result.raw_text)
    return fails


def _decoding_diff(result: Result, grant: Grant) -> str:
    if result.decoding is None or grant.decoding is None:
        return f"decoding {'missing' if result.decoding is None else 'given'}, grant has {grant.decoding!r}"
    got, want = result.decoding.model_dump(), grant.decoding.model_dump()
    names = sorted(k for k in want if got.get(k) != want[k])
    return "differs in " + ", ".join(names)


def _raw_text_against(schema: JsonObject, raw_text: str) -> list[Failure]:
    """The grammar's schema constrained raw_text, so raw_text must satisfy it."""
    try:
        value = json.loads(raw_text)
    except (ValueError, RecursionError) as exc:  # json recurses per bracket: "[" * 5000 is a RecursionError
        return [Failure(Reason.SCHEMA_INVALID, f"raw_text is not JSON: {exc}")]
    error = _first_error(_validator(_schema_key(schema)), value)
    return [] if error is None else [Failure(Reason.SCHEMA_INVALID, f"raw_text: {error}")]


# --- JSON schema helpers --------------------------------------------------------------


def _schema_key(schema: JsonObject) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    """A compiled validator per distinct schema (a job has few; synthesize tasks share one).

    An invalid schema raises `jsonschema.SchemaError`: the coordinator wrote it, so
    that is our bug and must surface, not count against the node.
    """
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def _first_error(validator: Validator, value: Any) -> str | None:
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"[:500]
