"""The path every LLM-writing executor shares: JSON under a grammar -> a typed output with its evidence.

Owns: turning engine and grammar failures into `ExecutionError`, and carrying
the exact prompt, generated text and stats into the `ExecutionResult` (what
replicas compare and validators re-score). Executors own their prompts,
schemas and the shaping of the parsed value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from node.executors.base import ExecutionError, ExecutionResult
from node.llm.engine import Engine, EngineError
from node.llm.schema import CompiledSchema
from node.llm.structured import StructuredOutputError, generate_json
from protocol.tasks import DecodingParams, Frozen


async def generate_output(
    engine: Engine,
    model_sha256: str | None,
    messages: Sequence[dict[str, str]],
    compiled: CompiledSchema,
    decoding: DecodingParams | None,
    build: Callable[[Any], Frozen],
    *,
    parse: Callable[[str], Any] | None = None,
) -> ExecutionResult:
    """Generate, parse (`parse`, default strict JSON + schema), and `build` the output from the value."""
    try:
        result = await generate_json(engine, model_sha256, messages, compiled, decoding, parse=parse)
    except (StructuredOutputError, EngineError) as exc:
        raise ExecutionError(str(exc)) from None
    return ExecutionResult(
        output=build(result.value),
        model_sha256=result.model_sha256,
        prompt=result.prompt,
        raw_text=result.generation.text,
        stats=result.stats,
    )
