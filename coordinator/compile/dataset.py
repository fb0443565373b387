"""data.jsonl and data.parquet: the rows themselves, one per line / record, columns per the spec.

Owns: the Arrow schema of a spec, writing both files, and reading them back
for verification. JSON lines are UTF-8 (`ensure_ascii=False`), keys in spec
order, no NaN or infinities.
Must not: decide which rows go in (compiler.py) or whether they are genuine (verify_dir.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from coordinator.spec import DatasetSpec, FieldType

DATA_JSONL = "data.jsonl"
DATA_PARQUET = "data.parquet"

_ARROW_TYPES = {
    FieldType.STRING: pa.string(),
    FieldType.ENUM: pa.string(),
    FieldType.INTEGER: pa.int64(),
    FieldType.NUMBER: pa.float64(),
    FieldType.BOOLEAN: pa.bool_(),
}
HF_DTYPES = {
    FieldType.STRING: "string",
    FieldType.ENUM: "string",
    FieldType.INTEGER: "int64",
    FieldType.NUMBER: "float64",
    FieldType.BOOLEAN: "bool",
}
"""`datasets` Value dtypes, declared in the card so every loader sees the same types."""


def arrow_schema(spec: DatasetSpec) -> Any:
    return pa.schema([pa.field(f.name, _ARROW_TYPES[f.type], nullable=False) for f in spec.fields])


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n"


def write_jsonl(path: Path, rows: Sequence[Any]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json_line(row))


def write_parquet(path: Path, spec: DatasetSpec, rows: Sequence[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(list(rows), schema=arrow_schema(spec))
    pq.write_table(table, path)


def read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows
