"""What `dataswarm verify DIR` found: each problem with its file, row and field, and the summary it prints.

Owns: the report's shape. The checks that fill it are in `verify_dir.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    row: int | None = None
    """0-based row number (data.jsonl line i+1, provenance.jsonl `row`)."""
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.field is not None:
            where += f" field {self.field!r}"
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    rows: int = 0
    signatures_checked: int = 0
    evidence_checked: int = 0
    roundtrips_checked: int = 0
    """Answer-first rows whose signed validator output shows the answer recovered from the question."""
    judges_checked: int = 0
    """Rows whose judge score is the one a judge node signed, at or above the pass mark."""
    merkle_root: str | None = None
    coordinator: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, message: str, row: int | None = None, field: str | None = None) -> None:
        self.problems.append(Problem(file, message, row, field))

    def warn(self, file: str, message: str, row: int | None = None, field: str | None = None) -> None:
        self.warnings.append(Problem(file, message, row, field))

    def summary(self) -> str:
        head = (
            f"OK: {self.rows} rows, {self.signatures_checked} signatures, {self.evidence_checked} evidence quotes"
            + (f", {self.roundtrips_checked} round trips" if self.roundtrips_checked else "")
            + (f", {self.judges_checked} judge scores" if self.judges_checked else "")
            if self.ok
            else f"FAILED: {len(self.problems)} problem(s)"
        )
        lines = [f"{self.path}: {head}"]
        lines += [f"  error: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
