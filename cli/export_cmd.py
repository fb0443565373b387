"""`dataswarm export DIR --format chat|prompt-completion`: a delivered dataset as a TRL training JSONL.

Writes outside the dataset directory only: its manifest lists every file, and an
unlisted one would make `dataswarm verify` warn.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from cli.errors import fail, friendly

console = Console(soft_wrap=True)


@friendly
def export(
    directory: Path = typer.Argument(..., help="A dataset directory written by dataswarm (data.jsonl, manifest.json)."),
    format_name: str = typer.Option(..., "--format", help="chat (TRL messages) or prompt-completion."),
    out: Path | None = typer.Option(None, help="JSONL file to write (default ./<DIR name>.<format>.jsonl)."),
    prompt_field: str | None = typer.Option(None, help="Column for the prompt (default: by name, e.g. question)."),
    completion_field: str | None = typer.Option(None, help="Column for the completion (default: e.g. answer)."),
) -> None:
    """Write a dataset's rows in TRL's conversational or prompt-completion format."""
    from cli.trl_export import parse_format, read_dataset, trl_rows
    from coordinator.compile.dataset import write_jsonl

    fmt = parse_format(format_name)
    spec, rows = read_dataset(directory)
    records = trl_rows(spec, rows, fmt, prompt_field=prompt_field, completion_field=completion_field)
    target = out or Path.cwd() / f"{directory.resolve().name}.{fmt.value}.jsonl"
    if target.resolve().is_relative_to(directory.resolve()):
        fail(f"--out {target} is inside the dataset directory, which is signed as it is: write it elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(target, records)
    console.print(f"{len(records)} rows as {fmt.value.replace('_', '-')} written to {target}", highlight=False)
