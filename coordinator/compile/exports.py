"""Optional training-ready exports of the rows (`--format`).

Owns: mapping a row to
- `chat`: TRL's conversational format, {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]};
- `prompt_completion`: TRL's standard prompt-completion format, {"prompt": ..., "completion": ...}.
Which columns become the prompt and the completion is decided by name
(question/instruction/prompt/... -> prompt, answer/response/output/... ->
completion); an `input`/`context` column is appended to the prompt. A spec
with no such names uses its first two generated string columns.
Must not: change data.jsonl; exports are extra files under exports/, listed in
the manifest and the card, but never the dataset's default config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coordinator.compile.errors import CompileError
from coordinator.spec import DatasetSpec, FieldType


class ExportFormat(StrEnum):
    CHAT = "chat"
    PROMPT_COMPLETION = "prompt_completion"


EXPORT_DIR = "exports"
_PROMPT_NAMES = ("instruction", "question", "prompt", "query", "input_text", "text")
_EXTRA_PROMPT_NAMES = ("input", "context")
_COMPLETION_NAMES = ("response", "answer", "output", "completion", "summary", "label", "category")


@dataclass(frozen=True)
class ColumnRoles:
    prompt: str
    extra: str | None
    completion: str


def export_path(fmt: ExportFormat) -> str:
    return f"{EXPORT_DIR}/{fmt.value}.jsonl"


def column_roles(spec: DatasetSpec) -> ColumnRoles:
    """Which columns make the prompt and the completion; CompileError when the spec has no two text columns."""
    texts = [f.name for f in spec.generated_fields if f.type in (FieldType.STRING, FieldType.ENUM)]
    prompt = next((n for n in _PROMPT_NAMES if n in texts), None)
    completion = next((n for n in _COMPLETION_NAMES if n in texts and n != prompt), None)
    extra = next((n for n in _EXTRA_PROMPT_NAMES if n in texts and n not in (prompt, completion)), None)
    rest = [n for n in texts if n not in (prompt, completion, extra)]
    prompt = prompt or (rest.pop(0) if rest else None)
    completion = completion or (rest.pop(0) if rest else None)
    if prompt is None or completion is None:
        raise CompileError(f"exports need two text columns (a prompt and a completion); the spec has {texts}")
    return ColumnRoles(prompt=prompt, extra=extra, completion=completion)


def export_rows(spec: DatasetSpec, rows: Sequence[dict[str, Any]], fmt: ExportFormat) -> list[dict[str, Any]]:
    roles = column_roles(spec)
    out: list[dict[str, Any]] = []
    for row in rows:
        prompt = str(row[roles.prompt])
        if roles.extra and row.get(roles.extra):
            prompt = f"{prompt}\n\n{row[roles.extra]}"
        completion = str(row[roles.completion])
        if fmt is ExportFormat.CHAT:
            out.append(
                {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}
            )
        else:
            out.append({"prompt": prompt, "completion": completion})
    return out
