"""A delivered dataset's rows as TRL training records (what `dataswarm export` writes).

The mapping of a row to TRL's conversational or prompt-completion record is
compile's (`coordinator.compile.exports`), so a file written from it equals the
`exports/` file the coordinator writes when a job asks for the format. This
module adds reading a dataset directory and choosing the columns by hand.
Must not: write anything (cli/export_cmd.py does, outside the dataset directory).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinator.compile.dataset import DATA_JSONL
from coordinator.compile.errors import CompileError
from coordinator.compile.exports import ExportFormat, column_roles, export_rows
from coordinator.compile.manifest import MANIFEST_FILE
from coordinator.spec import DatasetSpec, FieldSpec, SpecError, spec_from_mapping

_PAIR_SPEC = DatasetSpec(topic="pair", fields=[FieldSpec(name="prompt"), FieldSpec(name="completion")])
"""Two columns that compile's `column_roles` reads as the prompt and the completion."""


class ExportError(ValueError):
    """The dataset cannot be exported as asked; the message names the field or file and the fix."""


def parse_format(value: str) -> ExportFormat:
    try:
        return ExportFormat(value.strip().lower().replace("-", "_"))
    except ValueError:
        raise ExportError(f"--format {value!r} is not known: use chat or prompt-completion") from None


def trl_rows(
    spec: DatasetSpec,
    rows: Sequence[dict[str, Any]],
    fmt: ExportFormat,
    *,
    prompt_field: str | None = None,
    completion_field: str | None = None,
) -> list[dict[str, Any]]:
    """The rows as TRL records. Columns are chosen as compile's exports choose them (by name, else the
    first two text columns), unless named here; a named column may be any field of the spec."""
    for flag, name in (("--prompt-field", prompt_field), ("--completion-field", completion_field)):
        if name is not None and name not in spec.field_names:
            raise ExportError(f"{flag} {name!r} is not a field of this dataset: use one of {spec.field_names}")
    try:
        if prompt_field is None and completion_field is None:
            return export_rows(spec, rows, fmt)
        defaults = column_roles(spec) if prompt_field is None or completion_field is None else None
    except CompileError as exc:
        raise ExportError(f"{exc}: name them with --prompt-field and --completion-field") from None
    prompt = prompt_field or (defaults.prompt if defaults else "")
    completion = completion_field or (defaults.completion if defaults else "")
    if prompt == completion:
        raise ExportError(f"{prompt!r} would be both the prompt and the completion: name the other one as well")
    # Renamed to _PAIR_SPEC's columns, the chosen ones go through compile's own mapping: the TRL record
    # shapes stay defined in one place.
    renamed = [{"prompt": str(r[prompt]), "completion": str(r[completion])} for r in rows]
    return export_rows(_PAIR_SPEC, renamed, fmt)


def read_dataset(directory: Path) -> tuple[DatasetSpec, list[dict[str, Any]]]:
    """The spec (from manifest.json) and rows (data.jsonl) of a dataset directory written by dataswarm."""
    manifest, data = directory / MANIFEST_FILE, directory / DATA_JSONL
    for needed in (manifest, data):
        if not needed.is_file():
            raise ExportError(f"{directory} has no {needed.name}: pass a dataset directory written by dataswarm")
    try:
        spec = spec_from_mapping(json.loads(manifest.read_text(encoding="utf-8"))["spec"], origin=str(manifest))
        lines = data.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (ValueError, KeyError, TypeError, SpecError) as exc:
        raise ExportError(f"{directory} cannot be read ({exc}): check it with `dataswarm verify {directory}`") from None
    for i, row in enumerate(rows):
        issues = spec.validate_row(row)
        if issues:
            raise ExportError(f"{data} row {i}: {issues[0]}: check it with `dataswarm verify {directory}`")
    return spec, rows
