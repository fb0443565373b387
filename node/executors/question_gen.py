"""question_gen: topic + description -> web search queries and seed questions.

Owns: the output schema for this kind (exactly `n_queries` queries and
`n_questions` questions, each bounded) and the clean-up of what the model
wrote (whitespace, repeats). Prompt text lives in `node/prompts/templates.toml`.
"""

from __future__ import annotations

from typing import Any

from node.executors.base import ExecutionError, ExecutionResult
from node.executors.generated import generate_output
from node.llm.engine import Engine
from node.llm.schema import compile_schema
from node.prompts import load_prompts
from protocol.tasks import DecodingParams, Frozen, QuestionGenOutput, QuestionGenPayload, TaskKind

QUERY_MAX_CHARS = 100
"""Search queries are a few words; the protocol allows 200, a shorter bound saves tokens."""
QUESTION_MAX_CHARS = 200


def output_schema(payload: QuestionGenPayload) -> dict[str, Any]:
    def strings(n: int, max_chars: int) -> dict[str, Any]:
        item = {"type": "string", "minLength": 3, "maxLength": max_chars}
        return {"type": "array", "minItems": n, "maxItems": n, "items": item}

    return {
        "type": "object",
        "properties": {
            "queries": strings(payload.n_queries, QUERY_MAX_CHARS),
            "questions": strings(payload.n_questions, QUESTION_MAX_CHARS),
        },
    }


def messages(payload: QuestionGenPayload) -> list[dict[str, str]]:
    description = payload.description.strip()
    return load_prompts().messages(
        "question_gen",
        topic=payload.topic.strip(),
        description=f"Description: {description}\n" if description else "",
        language=payload.language,
        n_queries=payload.n_queries,
        n_questions=payload.n_questions,
    )


def _clean(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        text = " ".join(item.split())
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out


class QuestionGenExecutor:
    kind = TaskKind.QUESTION_GEN

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, QuestionGenPayload):
            raise ExecutionError(f"question_gen executor got a {type(payload).__name__}")
        return await generate_output(
            self.engine,
            model_sha256,
            messages(payload),
            compile_schema(output_schema(payload)),
            decoding,
            lambda value: QuestionGenOutput(queries=_clean(value["queries"]), questions=_clean(value["questions"])),
        )
