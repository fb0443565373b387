"""Schema-constrained JSON generation: messages + schema + decoding -> parsed value.

Owns: the path every structured task takes — render the chat prompt, compile
the schema to a grammar, pick `max_tokens`, generate, check, retry once — and
the `GenerationStats` that go into a Result. Executors own *what* to ask;
this module owns *how* to get well-formed JSON back.

Rules:
- `max_tokens` = max(grant's `max_tokens`, grammar bound + `TOKEN_SLACK`),
  capped by the room left in the context. The grant's value alone could cut
  a grammar-valid output short (the grammar does not force JSON to close).
- Output counts only with `finish_reason == "stop"` and strict `json.loads`
  plus the schema check; anything else is retried once.
- The retry is deterministic too: seed + 1, and temperature at least
  `RETRY_TEMPERATURE` (a greedy retry would reproduce the same failure). A
  replica with the same grant retries identically.
- `DecodingParams.json_schema` is not used: each executor derives its output
  schema from the task kind and payload, so every replica builds the same one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from node.llm.backend import ContextOverflow, GenerationResult, SamplingParams
from node.llm.engine import Engine, EngineError
from node.llm.schema import CompiledSchema, OutputInvalid
from protocol.messages import GenerationStats
from protocol.tasks import DecodingParams

TOKEN_SLACK = 16
RETRY_TEMPERATURE = 0.7


class StructuredOutputError(Exception):
    """No valid output after the retry, or the model cannot do the task; the message says why."""


@dataclass(frozen=True)
class StructuredResult:
    value: Any
    prompt: str
    generation: GenerationResult
    attempts: int
    model_sha256: str

    @property
    def stats(self) -> GenerationStats:
        return generation_stats(self.generation)


def generation_stats(g: GenerationResult) -> GenerationStats:
    """What a Result reports about one generation."""
    mean = g.mean_logprob
    return GenerationStats(
        prompt_tokens=g.prompt_tokens,
        completion_tokens=g.completion_tokens,
        mean_logprob=round(mean, 6) if mean is not None else None,
        seconds=round(g.prefill_seconds + g.decode_seconds, 4),
        finish_reason=g.finish_reason,
    )


REPEAT_PENALTY = 1.15
"""Mild repetition penalty over the last 64 tokens for every structured task (docs/notes/quality.md#repetition)."""


def sampling_params(decoding: DecodingParams, compiled: CompiledSchema | int) -> SamplingParams:
    """The grant's decoding, with room for the longest output the grammar admits (`compiled`, or its
    bound in characters)."""
    max_chars = compiled if isinstance(compiled, int) else compiled.max_chars
    return SamplingParams(
        seed=decoding.seed,
        temperature=decoding.temperature,
        top_k=decoding.top_k,
        top_p=decoding.top_p,
        max_tokens=max(decoding.max_tokens, max_chars + TOKEN_SLACK),
        repeat_penalty=REPEAT_PENALTY,
    )


async def generate_json(
    engine: Engine,
    model_sha256: str | None,
    messages: Sequence[dict[str, str]],
    compiled: CompiledSchema,
    decoding: DecodingParams | None,
    *,
    parse: Callable[[str], Any] | None = None,
) -> StructuredResult:
    """Generate JSON for `messages` under `compiled`.

    `parse` turns the text into the result value (default: strict JSON + schema check) and
    raises OutputInvalid to reject it.
    """
    lm = engine.model(model_sha256)
    try:
        prompt = engine.render_chat(lm.sha256, messages)
    except EngineError as exc:
        raise StructuredOutputError(str(exc)) from None
    decoding = decoding or DecodingParams(seed=0)
    check = parse or compiled.parse
    params = sampling_params(decoding, compiled)
    failure = ""
    for attempt in (1, 2):
        try:
            result = await engine.generate(lm.sha256, prompt, params, grammar=compiled.gbnf)
        except ContextOverflow as exc:
            raise StructuredOutputError(f"task does not fit the model's context: {exc}") from None
        if result.finish_reason == "stop":
            try:
                value = check(result.text)
            except OutputInvalid as exc:
                failure = f"attempt {attempt}: {exc}"
            else:
                return StructuredResult(value, prompt, result, attempt, lm.sha256)
        else:
            failure = (
                f"attempt {attempt}: generation ended by {result.finish_reason} after {result.completion_tokens} tokens"
            )
        params = SamplingParams(
            seed=(params.seed + 1) % 2**32,
            temperature=max(params.temperature, RETRY_TEMPERATURE),
            top_k=params.top_k,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            repeat_penalty=params.repeat_penalty,
        )
    raise StructuredOutputError(f"no valid output from {lm.name}: {failure}")


def loads_strict(text: str) -> Any:
    """Strict JSON (no control characters in strings); raises OutputInvalid."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise OutputInvalid(f"not valid JSON: {exc}") from None
