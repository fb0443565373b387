"""verify_directory: re-check a delivered dataset offline and say precisely what is wrong.

Owns: every check `dataswarm verify DIR` runs. The chain of trust is
    coordinator key -> manifest signature -> file digests + Merkle root of the rows
    producer keys   -> signed Result envelopes -> the rows they wrote
and the checks walk it:
 1. manifest.json parses, its signature verifies under the key it names, the
    peer id is that key's, and (if `trusted_coordinators` is given) the key is trusted;
 2. every listed file exists with the listed sha256 and size; unlisted files are warnings;
 3. each provenance.jsonl line parses; its producer's (and replicas', validators')
    envelopes verify, are signed by the recorded peer, answer the recorded task
    of this job, and match the recorded model digest, decoding and result sha256;
 4. each data.jsonl row equals the row rebuilt from its producer's signed output
    (rows are aligned by leaf hash, so a dropped, added or moved row is named as
    such instead of shifting every later row) and fits the spec;
 5. the Merkle root over data.jsonl equals the manifest's, and so does the row count;
 6. data.parquet holds the signed rows, in provenance order;
 7. each evidence quote occurs at its recorded offsets in the cited chunk, and,
    where sources.jsonl holds the document, the document has the recorded
    sha256 and the chunk sits at its recorded offsets in it.
Every problem names its file and, where it has one, the row (0-based, as in
provenance.jsonl's `row`) and the field.
Must not: modify anything, reach the network, or stop at the first problem.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from coordinator.compile.dataset import DATA_JSONL, DATA_PARQUET, read_parquet_rows
from coordinator.compile.evidence import quote_at
from coordinator.compile.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, signature_problem
from coordinator.compile.merkle import merkle_root
from coordinator.compile.provenance import (
    PROVENANCE_FILE,
    SOURCES_FILE,
    ProvenanceLine,
    SignedResultRef,
    SourceDocument,
)
from coordinator.compile.rows import Row, delivered_row, differing_fields, row_leaf
from coordinator.compile.signed import EnvelopeInvalid, open_result_offline
from coordinator.compile.verify_report import VerifyReport
from coordinator.spec import DatasetSpec, format_validation_error
from protocol.digests import body_sha256, content_sha256
from protocol.identity import public_key_from_peer_id
from protocol.messages import Result
from protocol.tasks import JudgeOutput, RoundTrip, SynthesizeOutput, ValidateOutput


@dataclass
class _Expected:
    """What provenance line j (with its signed envelope) says row j must be."""

    line: ProvenanceLine
    row: Row | None = None
    leaf: bytes | None = None
    signer: str = ""


def _read_jsonl(path: Path, report: VerifyReport, name: str) -> list[Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        report.add(name, "missing")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        report.add(name, f"cannot be read as UTF-8 text ({exc})")
        return None
    values: list[Any] = []
    for i, line in enumerate(text.splitlines()):
        try:
            values.append(json.loads(line))
        except ValueError as exc:
            report.add(name, f"line {i + 1} is not valid JSON ({exc.args[0] if exc.args else exc})", row=i)
            values.append(None)
    return values


def _check_manifest(root: Path, report: VerifyReport, trusted: Collection[str | bytes] | None) -> Manifest | None:
    path = root / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        report.add(MANIFEST_FILE, "missing: nothing vouches for this directory")
        return None
    if len(raw) > MAX_MANIFEST_BYTES:
        report.add(MANIFEST_FILE, f"{len(raw)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        report.add(MANIFEST_FILE, f"not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        report.add(MANIFEST_FILE, "not a JSON object")
        return None
    problem = signature_problem(data)
    if problem:
        report.add(MANIFEST_FILE, problem, field="signature")
    report.signatures_checked += 1
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            report.add(MANIFEST_FILE, format_validation_error(e))
        return None
    report.coordinator = manifest.coordinator.peer_id
    report.merkle_root = manifest.merkle_root
    if trusted is not None:
        keys = set()
        for t in trusted:
            try:
                keys.add(bytes(t) if isinstance(t, bytes) else public_key_from_peer_id(t))
            except ValueError:
                report.warn("(arguments)", f"trusted coordinator {t!r} is not a valid peer id")
        if bytes.fromhex(manifest.coordinator.public_key) not in keys:
            report.add(
                MANIFEST_FILE,
                f"signed by {manifest.coordinator.peer_id}, which is not a trusted coordinator",
                field="coordinator",
            )
    return manifest


def _safe_member(root: Path, name: str) -> Path | None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name:
        return None
    return root.joinpath(*p.parts)


def _check_files(root: Path, manifest: Manifest, report: VerifyReport) -> None:
    for name, entry in manifest.files.items():
        path = _safe_member(root, name)
        if path is None:
            report.add(MANIFEST_FILE, f"lists {name!r}, a path outside the dataset directory", field="files")
            continue
        if not path.is_file():
            report.add(name, "listed in the manifest but missing")
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        size = path.stat().st_size
        if h.hexdigest() != entry.sha256:
            report.add(name, f"sha256 is {h.hexdigest()}, the manifest says {entry.sha256}: the file was changed")
        elif size != entry.bytes:
            report.add(name, f"{size} bytes, the manifest says {entry.bytes}")
    listed = set(manifest.files) | {MANIFEST_FILE}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in listed:
            report.warn(rel, "not listed in the manifest (not covered by any signature)")


def _decode_b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_ref(
    report: VerifyReport, ref: SignedResultRef, j: int, what: str, line: ProvenanceLine, job_id: str | None
) -> Result | None:
    """Verify one producer/replica reference of provenance line j; the signed Result, or None."""
    raw = _decode_b64(ref.envelope)
    if raw is None:
        report.add(PROVENANCE_FILE, "not valid base64", row=j, field=f"{what}.envelope")
        return None
    try:
        opened, result = open_result_offline(raw)
    except EnvelopeInvalid as exc:
        report.add(PROVENANCE_FILE, f"envelope does not verify: {exc}", row=j, field=f"{what}.envelope")
        return None
    report.signatures_checked += 1
    ok = True

    def bad(message: str, name: str) -> None:
        nonlocal ok
        ok = False
        report.add(PROVENANCE_FILE, message, row=j, field=f"{what}.{name}")

    if opened.sender_peer_id != ref.peer_id:
        bad(f"envelope is signed by {opened.sender_peer_id}, but provenance names {ref.peer_id}", "peer_id")
    if result.task_id != line.task_id:
        bad(f"envelope answers task {result.task_id!r}, but provenance says {line.task_id!r}", "envelope")
    if job_id is not None and result.job_id != job_id:
        bad(f"envelope belongs to job {result.job_id!r}, this dataset is job {job_id!r}", "envelope")
    if ref.result_sha256 != body_sha256(opened.body):
        bad("does not match the sha256 of the signed result", "result_sha256")
    if ref.model_sha256 != result.model_sha256:
        bad(f"{ref.model_sha256} differs from the signed {result.model_sha256}", "model_sha256")
    signed_decoding = result.decoding.model_dump(mode="json") if result.decoding else None
    if ref.decoding != signed_decoding:
        bad("differs from the decoding parameters in the signed result", "decoding")
    return result if ok else None


def _check_provenance_line(
    report: VerifyReport, j: int, value: Any, spec: DatasetSpec | None, job_id: str | None
) -> _Expected | None:
    try:
        line = ProvenanceLine.model_validate(value)
    except ValidationError as exc:
        for e in exc.errors()[:5]:
            report.add(PROVENANCE_FILE, format_validation_error(e), row=j)
        return None
    if line.row != j:
        report.add(PROVENANCE_FILE, f"says row {line.row} on line {j + 1}", row=j, field="row")
    if job_id is not None and line.job_id != job_id:
        report.add(PROVENANCE_FILE, f"says job {line.job_id!r}, the manifest says {job_id!r}", row=j, field="job_id")
    expected = _Expected(line=line, signer=line.producer.peer_id)
    result = _check_ref(report, line.producer, j, "producer", line, job_id)
    for k, replica in enumerate(line.replicas):
        _check_ref(report, replica, j, f"replicas[{k}]", line, job_id)
    trips: list[RoundTrip] = []
    judges: list[tuple[str, str, JudgeOutput]] = []
    for k, v in enumerate(line.validators):
        if v.envelope is None:
            continue
        raw = _decode_b64(v.envelope)
        where = f"validators[{k}].envelope"
        if raw is None:
            report.add(PROVENANCE_FILE, "not valid base64", row=j, field=where)
            continue
        try:
            opened, vres = open_result_offline(raw)
        except EnvelopeInvalid as exc:
            report.add(PROVENANCE_FILE, f"envelope does not verify: {exc}", row=j, field=where)
            continue
        report.signatures_checked += 1
        if opened.sender_peer_id != v.peer_id:
            report.add(PROVENANCE_FILE, f"signed by {opened.sender_peer_id}, not {v.peer_id}", row=j, field=where)
        if v.task_id is not None and vres.task_id != v.task_id:
            report.add(PROVENANCE_FILE, f"answers task {vres.task_id!r}, not {v.task_id!r}", row=j, field=where)
        if isinstance(vres.output, ValidateOutput) and vres.output.roundtrip is not None:
            trips.append(vres.output.roundtrip)
        if isinstance(vres.output, JudgeOutput):
            judges.append((opened.sender_peer_id, vres.task_id, vres.output))
    _check_roundtrip(report, j, line, trips)
    _check_judge(report, j, line, judges)
    _check_source(report, j, line)
    if result is None or spec is None:
        return expected
    output = result.output
    if not isinstance(output, SynthesizeOutput) or line.producer.output_row >= len(output.rows):
        report.add(PROVENANCE_FILE, "the signed output has no such synthesized row", row=j, field="producer.output_row")
        return expected
    generated = output.rows[line.producer.output_row]
    if line.source is not None and line.source.evidence != generated.evidence:
        report.add(PROVENANCE_FILE, "differs from the evidence in the signed output", row=j, field="source.evidence")
    row, problems = delivered_row(spec, generated, line.source.url if line.source else None)
    for problem in problems:
        report.add(PROVENANCE_FILE, f"the signed row does not fit the spec: {problem}", row=j)
    expected.row = row
    try:
        expected.leaf = row_leaf(row)
    except ValueError as exc:
        report.add(PROVENANCE_FILE, str(exc), row=j)
        return expected
    if expected.leaf.hex() != line.row_sha256:
        report.add(PROVENANCE_FILE, "is not the leaf hash of the row its producer signed", row=j, field="row_sha256")
    return expected


def _check_roundtrip(report: VerifyReport, j: int, line: ProvenanceLine, trips: list[RoundTrip]) -> None:
    """A round trip the line claims must be what the validators signed, and a recovered answer."""
    if line.roundtrip is None:
        if "roundtrip" in line.checks or "label_roundtrip" in line.checks:
            report.add(PROVENANCE_FILE, "claims a round trip but records none", row=j, field="roundtrip")
        return
    r = line.roundtrip
    claimed = (r.answer_rank, r.margin, r.gain, r.reading)
    if not any((t.answer_rank, t.margin, t.gain, t.reading) == claimed for t in trips):
        report.add(PROVENANCE_FILE, "no signed validator output shows this round trip", row=j, field="roundtrip")
    elif line.roundtrip.answer_rank != 0:
        report.add(PROVENANCE_FILE, "the validator did not recover the answer", row=j, field="roundtrip")
    else:
        report.roundtrips_checked += 1


def _check_judge(
    report: VerifyReport, j: int, line: ProvenanceLine, judges: list[tuple[str, str, JudgeOutput]]
) -> None:
    """A judge score the line claims must be one a judge signed, at or above the line's pass mark."""
    claim = line.judge
    if claim is None:
        if "judge" in line.checks:
            report.add(PROVENANCE_FILE, "claims a judge's score but records none", row=j, field="judge")
        return
    writers = {line.producer.peer_id} | {r.peer_id for r in line.replicas}
    if not any((p, t, o.score) == (claim.peer_id, claim.task_id, claim.score) for p, t, o in judges):
        report.add(PROVENANCE_FILE, "no signed judge output shows this score", row=j, field="judge")
    elif claim.peer_id in writers:
        report.add(PROVENANCE_FILE, "the judge is a node that wrote the row", row=j, field="judge")
    elif claim.score < claim.min_score:
        report.add(PROVENANCE_FILE, f"the judge scored {claim.score}, below {claim.min_score}", row=j, field="judge")
    else:
        report.judges_checked += 1


def _check_source(report: VerifyReport, j: int, line: ProvenanceLine) -> None:
    src = line.source
    if src is None:
        return
    if src.chunk_end - src.chunk_start != len(src.chunk_text):
        report.add(PROVENANCE_FILE, "chunk offsets do not span chunk_text", row=j, field="source.chunk_end")
    if not src.evidence.strip():
        return
    if src.evidence_start is None or src.evidence_end is None:
        report.add(PROVENANCE_FILE, "evidence has no offsets", row=j, field="source.evidence_start")
        return
    local = (src.evidence_start - src.chunk_start, src.evidence_end - src.chunk_start)
    if not quote_at(src.evidence, src.chunk_text, *local):
        report.add(
            PROVENANCE_FILE,
            f"evidence {src.evidence[:60]!r} does not occur at {src.evidence_start}..{src.evidence_end} of the source",
            row=j,
            field="source.evidence",
        )
    else:
        report.evidence_checked += 1


def _check_documents(root: Path, report: VerifyReport, expected: list[_Expected | None]) -> None:
    path = root / SOURCES_FILE
    if not path.exists():
        return
    values = _read_jsonl(path, report, SOURCES_FILE) or []
    docs: dict[str, SourceDocument] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            doc = SourceDocument.model_validate(value)
        except ValidationError as exc:
            report.add(SOURCES_FILE, format_validation_error(exc.errors()[0]), row=i)
            continue
        actual = content_sha256(doc.text)
        if actual != doc.content_sha256:
            report.add(SOURCES_FILE, f"text hashes to {actual}, not {doc.content_sha256}", row=i, field="text")
            continue
        docs[doc.content_sha256] = doc
    for j, exp in enumerate(expected):
        src = exp.line.source if exp else None
        if src is None or src.content_sha256 not in docs:
            continue
        text = docs[src.content_sha256].text
        if text[src.chunk_start : src.chunk_end] != src.chunk_text:
            report.add(
                PROVENANCE_FILE,
                f"the chunk is not at {src.chunk_start}..{src.chunk_end} of {src.url}",
                row=j,
                field="source.chunk_text",
            )
        start, end = src.evidence_start, src.evidence_end
        if start is None or end is None or not src.evidence.strip():
            continue
        if not quote_at(src.evidence, text, start, end):
            where = f"evidence is not at {start}..{end} of {src.url}"
            report.add(PROVENANCE_FILE, where, row=j, field="source.evidence")


def _row_leaves(report: VerifyReport, rows: list[Any], spec: DatasetSpec | None) -> list[bytes | None]:
    """Each data row's leaf (None when it has none), checking each row against the spec on the way."""
    leaves: list[bytes | None] = []
    for i, row in enumerate(rows):
        leaf = None
        if isinstance(row, dict):
            try:
                leaf = row_leaf(row)
            except ValueError as exc:
                report.add(DATA_JSONL, str(exc), row=i)
            if spec is not None:
                for issue in spec.validate_row(row, include_derived=True):
                    report.add(DATA_JSONL, f"does not fit the spec: {issue.message}", row=i, field=issue.field)
        elif row is not None:
            report.add(DATA_JSONL, "is not a JSON object", row=i)
        leaves.append(leaf)
    return leaves


def _align(report: VerifyReport, rows: list[Any], leaves: list[bytes | None], expected: list[_Expected | None]) -> None:
    """Compare data rows with the signed rows, aligned by leaf hash."""
    # Unknown leaves get unique placeholders so they never align with anything.
    data_keys = [leaf.hex() if leaf else f"?data{i}" for i, leaf in enumerate(leaves)]
    exp_keys = [e.leaf.hex() if e and e.leaf else f"?prov{j}" for j, e in enumerate(expected)]
    matcher = difflib.SequenceMatcher(a=exp_keys, b=data_keys, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(a1 - a0, b1 - b0) if op == "replace" else 0
        for k in range(paired):
            _compare_pair(report, b0 + k, rows[b0 + k], a0 + k, expected[a0 + k])
        for j in range(a0 + paired, a1):
            exp = expected[j]
            task = exp.line.task_id if exp is not None else "?"
            report.add(DATA_JSONL, f"the row of provenance row {j} (task {task}) is missing", row=j)
        for i in range(b0 + paired, b1):
            report.add(DATA_JSONL, "matches no signed result in provenance.jsonl (an added row)", row=i)


def _compare_pair(report: VerifyReport, i: int, row: Any, j: int, exp: _Expected | None) -> None:
    if exp is None or exp.row is None:
        report.add(DATA_JSONL, f"cannot be checked: provenance row {j} does not yield a signed row", row=i)
        return
    if i != j and isinstance(row, dict) and row_leaf(row) == exp.leaf:
        report.add(DATA_JSONL, f"is provenance row {j}'s row, out of place", row=i)
        return
    if row is None:
        return  # already reported as unreadable
    for name in differing_fields(exp.row, row):
        signed = exp.row.get(name, "(absent)")
        found = row.get(name, "(absent)") if isinstance(row, dict) else row
        report.add(
            DATA_JSONL,
            f"differs from the value signed by {exp.signer} in task {exp.line.task_id} "
            f"(signed {_short(signed)}, found {_short(found)})",
            row=i,
            field=name,
        )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_parquet(root: Path, report: VerifyReport, rows: list[Any], expected: list[_Expected | None]) -> None:
    """data.parquet row i must be provenance row i's signed row (data.jsonl's row where none is known)."""
    path = root / DATA_PARQUET
    if not path.exists():
        report.add(DATA_PARQUET, "missing")
        return
    try:
        table_rows = read_parquet_rows(path)
    except Exception as exc:  # pyarrow raises many types on a corrupt file
        report.add(DATA_PARQUET, f"cannot be read ({type(exc).__name__}: {exc})")
        return
    # The signed rows in provenance order are the reference; data.jsonl stands in where they are unknown.
    reference: list[tuple[Any, str]] = []
    for i in range(len(expected) if expected else len(rows)):
        exp = expected[i] if i < len(expected) else None
        if exp is not None and exp.row is not None:
            reference.append((exp.row, "the row its producer signed"))
        else:
            reference.append((rows[i] if i < len(rows) else None, "data.jsonl"))
    if len(table_rows) != len(reference):
        source = "provenance.jsonl has" if expected else "data.jsonl has"
        report.add(DATA_PARQUET, f"has {len(table_rows)} rows, {source} {len(reference)}")
    for i, (prow, (ref, what)) in enumerate(zip(table_rows, reference, strict=False)):
        if isinstance(ref, dict):
            for name in differing_fields(ref, prow):
                report.add(DATA_PARQUET, f"differs from {what}", row=i, field=name)


def _iter_expected(
    report: VerifyReport, values: list[Any], spec: DatasetSpec | None, job_id: str | None
) -> Iterator[_Expected | None]:
    for j, value in enumerate(values):
        yield None if value is None else _check_provenance_line(report, j, value, spec, job_id)


def verify_directory(path: str | Path, trusted_coordinators: Collection[str | bytes] | None = None) -> VerifyReport:
    """Re-check a dataset directory offline (see module docstring); never raises for bad content.

    trusted_coordinators: peer ids (or raw public keys) one of which must have signed the manifest.
    """
    root = Path(path)
    report = VerifyReport(path=root)
    if not root.is_dir():
        report.add(str(root), "not a directory")
        return report
    manifest = _check_manifest(root, report, trusted_coordinators)
    spec: DatasetSpec | None = None
    if manifest is not None:
        _check_files(root, manifest, report)
        try:
            spec = DatasetSpec.model_validate(manifest.spec)
        except ValidationError as exc:
            report.add(MANIFEST_FILE, f"spec is invalid: {format_validation_error(exc.errors()[0])}", field="spec")
    job_id = manifest.job_id if manifest else None

    rows = _read_jsonl(root / DATA_JSONL, report, DATA_JSONL)
    prov = _read_jsonl(root / PROVENANCE_FILE, report, PROVENANCE_FILE)
    if rows is None:
        return report
    report.rows = len(rows)
    expected = list(_iter_expected(report, prov, spec, job_id)) if prov is not None else []
    if prov is not None and len(prov) != len(rows):
        report.add(PROVENANCE_FILE, f"has {len(prov)} lines, data.jsonl has {len(rows)} rows")
    leaves = _row_leaves(report, rows, spec)
    if prov is not None:
        _align(report, rows, leaves, expected)
    _check_documents(root, report, expected)
    _check_parquet(root, report, rows, expected)
    if manifest is not None:
        if manifest.rows != len(rows):
            report.add(DATA_JSONL, f"has {len(rows)} rows, the manifest says {manifest.rows}")
        known = [leaf for leaf in leaves if leaf is not None]
        if len(known) == len(leaves):
            actual = merkle_root(known).hex()
            if actual != manifest.merkle_root:
                report.add(DATA_JSONL, f"Merkle root of the rows is {actual}, the manifest says {manifest.merkle_root}")
        else:
            report.add(DATA_JSONL, "the Merkle root cannot be recomputed: some rows are unreadable")
    return report
