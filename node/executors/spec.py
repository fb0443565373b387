"""spec: a request sentence -> a draft dataset spec (topic, rows, grounding, language, fields).

Owns: the bounded JSON schema the grammar enforces (from the `SpecOutput`
bounds in the protocol) and the few-shot chat messages. Whether the draft is
any good is the coordinator's call: it merges the draft over its rule-based
reading of the same request and keeps what the request said explicitly.
Prompt text lives in `node/prompts/templates.toml`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from node.executors.base import ExecutionError, ExecutionResult
from node.executors.generated import generate_output
from node.llm.engine import Engine
from node.llm.schema import compile_schema
from node.prompts import load_prompts
from protocol.tasks import (
    MAX_FIELD_CHARS,
    MAX_ROWS,
    MAX_TOPIC_CHARS,
    SPEC_CHOICE_CHARS,
    SPEC_DESCRIPTION_CHARS,
    SPEC_FIELD_NAME_CHARS,
    SPEC_FIELD_TYPES,
    SPEC_MAX_CHOICES,
    DecodingParams,
    Frozen,
    SpecOutput,
    SpecPayload,
    TaskKind,
)


def output_schema(payload: SpecPayload) -> dict[str, Any]:
    """Every string and list bounded, every key required: a grammar the 135M model cannot run away in."""
    field_item = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": SPEC_FIELD_NAME_CHARS},
            "type": {"type": "string", "enum": list(SPEC_FIELD_TYPES)},
            "description": {"type": "string", "maxLength": SPEC_DESCRIPTION_CHARS},
            "max_length": {"type": "integer", "minimum": 1, "maximum": MAX_FIELD_CHARS},
            "choices": {
                "type": "array",
                "maxItems": SPEC_MAX_CHOICES,
                "items": {"type": "string", "minLength": 1, "maxLength": SPEC_CHOICE_CHARS},
            },
        },
        "required": ["name", "type", "description", "max_length", "choices"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "minLength": 1, "maxLength": MAX_TOPIC_CHARS},
            "rows": {"type": "integer", "minimum": 1, "maximum": MAX_ROWS},
            "grounded": {"type": "boolean"},
            "language": {"type": "string", "minLength": 2, "maxLength": 3},
            "fields": {"type": "array", "minItems": 1, "maxItems": payload.max_fields, "items": field_item},
        },
        "required": ["topic", "rows", "grounded", "language", "fields"],
        "additionalProperties": False,
    }


def messages(payload: SpecPayload) -> list[dict[str, str]]:
    prompts = load_prompts()
    return [
        {"role": "system", "content": prompts.text("spec", "system")},
        {"role": "user", "content": prompts.text("spec", "example_request")},
        {"role": "assistant", "content": prompts.text("spec", "example_answer")},
        {"role": "user", "content": prompts.render("spec", "user", request=" ".join(payload.request.split()))},
    ]


class SpecExecutor:
    kind = TaskKind.SPEC

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, SpecPayload):
            raise ExecutionError(f"spec executor got a {type(payload).__name__}")
        return await generate_output(
            self.engine, model_sha256, messages(payload), compile_schema(output_schema(payload)), decoding, _draft
        )


def _draft(value: Any) -> SpecOutput:
    try:
        return SpecOutput.model_validate(value)
    except ValidationError as exc:  # the grammar admits nothing else; a node's own check all the same
        raise ExecutionError(f"the model's spec does not fit the protocol: {exc.errors()[0]['msg']}") from None
