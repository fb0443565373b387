"""judge: row + criteria (+ source chunk) -> score 1-5 and a short rationale.

Owns: the judge output schema (rationale first, so the score follows the
reasoning rather than the other way round) and the rendering of the row and
source into the prompt. Prompt text lives in `node/prompts/templates.toml`.
"""

from __future__ import annotations

import json
from typing import Any

from node.executors.base import ExecutionError, ExecutionResult
from node.executors.generated import generate_output
from node.llm.engine import Engine
from node.llm.schema import compile_schema
from node.prompts import load_prompts
from protocol.tasks import DecodingParams, Frozen, JudgeOutput, JudgePayload, TaskKind

RATIONALE_MAX_CHARS = 300
"""Below JudgeOutput's 400-character limit; one or two sentences."""
ROW_PROMPT_CHARS = 4000
"""A row longer than this is cut in the prompt (the judge sees its start)."""

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rationale": {"type": "string", "minLength": 1, "maxLength": RATIONALE_MAX_CHARS},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}


def messages(payload: JudgePayload) -> list[dict[str, str]]:
    prompts = load_prompts()
    row = json.dumps(payload.row, ensure_ascii=False, sort_keys=True, indent=1)[:ROW_PROMPT_CHARS]
    source = prompts.render("judge", "source_block", source=payload.chunk.text) if payload.chunk else ""
    return prompts.messages("judge", criteria=payload.criteria.strip(), row=row, source=source)


class JudgeExecutor:
    kind = TaskKind.JUDGE

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, JudgePayload):
            raise ExecutionError(f"judge executor got a {type(payload).__name__}")
        return await generate_output(
            self.engine,
            model_sha256,
            messages(payload),
            compile_schema(OUTPUT_SCHEMA),
            decoding,
            lambda value: JudgeOutput(score=value["score"], rationale=" ".join(value["rationale"].split())),
        )
