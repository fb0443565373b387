"""A delivered row: derived from the producer's signed output and the spec, and its Merkle leaf.

Owns: turning a signed `GeneratedRow` into the row that goes into data.jsonl
(columns in spec order, derived fields filled from provenance, `number` fields
as floats so JSON, Parquet and `datasets` agree on one type), the row's leaf
hash, and comparing rows field by field. Compile and verify both call
`delivered_row`, so "the row equals what its producer signed" is one rule.
Must not: read or write files.
"""

from __future__ import annotations

from typing import Any

from coordinator.compile.merkle import leaf_hash
from coordinator.spec import DatasetSpec, FieldSource, FieldType
from protocol import encoding
from protocol.errors import UnencodableValue
from protocol.tasks import GeneratedRow

Row = dict[str, Any]


def delivered_row(spec: DatasetSpec, generated: GeneratedRow, source_url: str | None) -> tuple[Row, list[str]]:
    """(row, problems). Problems name the field; a row with problems must not be delivered."""
    problems = [f"{issue}" for issue in spec.validate_row(generated.data, include_derived=False)]
    row: Row = {}
    for f in spec.fields:
        if f.source is FieldSource.SOURCE_URL:
            if source_url is None:
                problems.append(f"{f.name}: the spec fills it from the source URL, but the row has no source")
                continue
            row[f.name] = source_url
        elif f.source is FieldSource.EVIDENCE:
            row[f.name] = generated.evidence
        elif f.name in generated.data:
            value = generated.data[f.name]
            if f.type is FieldType.NUMBER and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            row[f.name] = value
    if not problems:
        problems = [str(issue) for issue in spec.validate_row(row, include_derived=True)]
    return row, problems


def row_leaf(row: Row) -> bytes:
    """The Merkle leaf hash of a row: SHA-256(0x00 || canonical msgpack of the row)."""
    try:
        return leaf_hash(encoding.encode(row))
    except UnencodableValue as exc:
        raise ValueError(f"row has no canonical encoding: {exc}") from None


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def differing_fields(expected: Row, actual: Any) -> list[str]:
    """Field names whose values differ (missing and extra fields included), in a stable order."""
    if not isinstance(actual, dict):
        return ["(row)"]
    names = list(expected) + [k for k in actual if k not in expected]
    return [n for n in names if n not in expected or n not in actual or not same_value(expected[n], actual[n])]
