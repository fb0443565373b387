"""verify_directory: an untouched dataset passes; each kind of tampering is named precisely."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from coordinator.compile import Problem, VerifyReport, verify_directory
from coordinator.compile.manifest import build_manifest
from protocol.envelope import seal
from tests.coordinator.test_compile_fixtures import (  # noqa: F401  (fixtures)
    COORDINATOR,
    NODES,
    STRANGER,
    T0,
    build_rows,
    compiled_base_fixture,
    dataset_dir_fixture,
    read_jsonl,
    write_jsonl,
)


def find(report: VerifyReport, file: str, row: int | None = None, field: str | None = None, text: str = "") -> Problem:
    """The problem at exactly (file, row, field) whose message contains `text`; fails listing all problems."""
    for p in report.problems:
        if p.file == file and p.row == row and p.field == field and text in p.message:
            return p
    raise AssertionError(f"no problem at {file} row {row} field {field} with {text!r}:\n{report.summary()}")


def only_files(report: VerifyReport) -> set[str]:
    return {p.file for p in report.problems}


def test_untouched_directory_passes(dataset_dir: Path) -> None:
    report = verify_directory(dataset_dir)
    assert report.ok, report.summary()
    assert report.rows == 8
    # 8 producers + 1 replica + 4 validators + the manifest
    assert report.signatures_checked == 14
    assert report.evidence_checked == 8
    assert report.coordinator == COORDINATOR.peer_id
    assert report.warnings == []
    assert report.summary().splitlines()[0].endswith("OK: 8 rows, 14 signatures, 8 evidence quotes")


def test_trusted_coordinator_is_accepted_and_a_stranger_refused(dataset_dir: Path) -> None:
    assert verify_directory(dataset_dir, trusted_coordinators=[COORDINATOR.peer_id]).ok
    assert verify_directory(dataset_dir, trusted_coordinators=[COORDINATOR.public_key]).ok
    report = verify_directory(dataset_dir, trusted_coordinators=[STRANGER.peer_id])
    find(report, "manifest.json", field="coordinator", text="not a trusted coordinator")


def test_edited_row_names_row_and_field(dataset_dir: Path) -> None:
    rows = read_jsonl(dataset_dir / "data.jsonl")
    rows[2]["answer"] = "Counting unhashable objects."
    write_jsonl(dataset_dir / "data.jsonl", rows)
    report = verify_directory(dataset_dir)
    problem = find(report, "data.jsonl", row=2, field="answer", text="differs from the value signed by")
    assert NODES[2].peer_id in problem.message and "synth-2" in problem.message
    assert '"Counting unhashable objects."' in problem.message
    find(report, "data.jsonl", text="sha256 is")  # the file digest
    find(report, "data.jsonl", text="Merkle root of the rows")
    # Nothing else is blamed: no other row, no other file.
    assert {p.row for p in report.problems if p.row is not None} == {2}
    assert only_files(report) == {"data.jsonl"}


def test_dropped_row_is_named_missing(dataset_dir: Path) -> None:
    rows = read_jsonl(dataset_dir / "data.jsonl")
    del rows[3]
    write_jsonl(dataset_dir / "data.jsonl", rows)
    report = verify_directory(dataset_dir)
    find(report, "data.jsonl", row=3, text="(task synth-3) is missing")
    find(report, "data.jsonl", text="has 7 rows, the manifest says 8")
    find(report, "provenance.jsonl", text="has 8 lines, data.jsonl has 7 rows")
    # The rows after the gap are not reported as changed.
    assert not [p for p in report.problems if p.field is not None]


def test_added_and_reordered_rows(dataset_dir: Path) -> None:
    rows = read_jsonl(dataset_dir / "data.jsonl")
    rows[0], rows[1] = rows[1], rows[0]
    rows.append({"question": "Injected question?", "answer": "Injected.", "source_url": "http://evil.example/"})
    write_jsonl(dataset_dir / "data.jsonl", rows)
    report = verify_directory(dataset_dir)
    find(report, "data.jsonl", row=8, text="matches no signed result")
    moved = [p for p in report.problems if "out of place" in p.message or "missing" in p.message]
    assert moved, report.summary()


def test_flipped_signature_byte_in_provenance(dataset_dir: Path) -> None:
    lines = read_jsonl(dataset_dir / "provenance.jsonl")
    producer = lines[1]["producer"]
    assert isinstance(producer, dict)
    raw = bytearray(base64.b64decode(producer["envelope"]))
    raw[-5] ^= 0x01  # the signature is the last field of the canonical map
    producer["envelope"] = base64.b64encode(bytes(raw)).decode()
    write_jsonl(dataset_dir / "provenance.jsonl", lines)
    report = verify_directory(dataset_dir)
    find(report, "provenance.jsonl", row=1, field="producer.envelope", text="BadSignature")
    find(report, "data.jsonl", row=1, text="cannot be checked")
    find(report, "provenance.jsonl", text="sha256 is")


def test_swapped_envelopes_between_rows(dataset_dir: Path) -> None:
    lines = read_jsonl(dataset_dir / "provenance.jsonl")
    a, b = lines[4]["producer"], lines[5]["producer"]
    assert isinstance(a, dict) and isinstance(b, dict)
    a["envelope"], b["envelope"] = b["envelope"], a["envelope"]
    write_jsonl(dataset_dir / "provenance.jsonl", lines)
    report = verify_directory(dataset_dir)
    find(report, "provenance.jsonl", row=4, field="producer.peer_id", text=f"signed by {NODES[1].peer_id}")
    find(report, "provenance.jsonl", row=4, field="producer.envelope", text="answers task 'synth-5'")
    find(report, "provenance.jsonl", row=5, field="producer.envelope", text="answers task 'synth-4'")


def test_result_resigned_by_another_node(dataset_dir: Path) -> None:
    built = build_rows(8)
    lines = read_jsonl(dataset_dir / "provenance.jsonl")
    producer = lines[6]["producer"]
    assert isinstance(producer, dict)
    producer["envelope"] = base64.b64encode(seal(STRANGER, built.results[6], now_ms=T0)).decode()
    write_jsonl(dataset_dir / "provenance.jsonl", lines)
    report = verify_directory(dataset_dir)
    problem = find(report, "provenance.jsonl", row=6, field="producer.peer_id")
    assert STRANGER.peer_id in problem.message and NODES[2].peer_id in problem.message


def test_tampered_provenance_fields(dataset_dir: Path) -> None:
    lines = read_jsonl(dataset_dir / "provenance.jsonl")
    lines[0]["producer"]["model_sha256"] = "00" * 32  # type: ignore[index]
    lines[2]["source"]["evidence_start"] += 7  # type: ignore[index, operator]
    lines[3]["source"]["url"] = "http://elsewhere.example/page"  # type: ignore[index]
    lines[5]["validators"] = [{"peer_id": NODES[0].peer_id, "task_id": "validate-0",
                               "envelope": lines[0]["validators"][0]["envelope"]}]  # type: ignore[index]
    lines[7]["surprise"] = True
    write_jsonl(dataset_dir / "provenance.jsonl", lines)
    report = verify_directory(dataset_dir)
    find(report, "provenance.jsonl", row=0, field="producer.model_sha256", text="differs from the signed")
    find(report, "provenance.jsonl", row=2, field="source.evidence", text="does not occur at")
    # The URL a row cites is part of the row: the delivered source_url no longer matches.
    find(report, "data.jsonl", row=3, field="source_url", text="differs from the value signed")
    find(report, "provenance.jsonl", row=5, field="validators[0].envelope", text=f"signed by {COORDINATOR.peer_id}"[:9])
    find(report, "provenance.jsonl", row=7, text="surprise: is not a spec key")


def test_tampered_manifest_breaks_its_signature(dataset_dir: Path) -> None:
    path = dataset_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["rows"] = 9
    path.write_text(json.dumps(manifest))
    report = verify_directory(dataset_dir)
    find(report, "manifest.json", field="signature", text="the manifest was changed after signing")
    find(report, "data.jsonl", text="has 8 rows, the manifest says 9")


def test_manifest_resigned_by_a_stranger_over_edited_rows(dataset_dir: Path) -> None:
    """Someone edits a row and re-signs everything with their own key: signatures hold, trust does not,
    and the row still differs from what its producer signed."""
    rows = read_jsonl(dataset_dir / "data.jsonl")
    rows[0]["answer"] = "Something else entirely."
    write_jsonl(dataset_dir / "data.jsonl", rows)
    old = json.loads((dataset_dir / "manifest.json").read_text())
    from coordinator.compile.compiler import _sha256_file
    from coordinator.compile.merkle import merkle_root
    from coordinator.compile.rows import row_leaf

    files = {name: _sha256_file(dataset_dir / name) for name in old["files"]}
    forged = build_manifest(
        identity=STRANGER, job_id=old["job_id"], created_at_ms=old["created_at_ms"], rows=8,
        merkle_root=merkle_root([row_leaf(r) for r in rows]), files=files, spec=old["spec"], request=old["request"],
    )  # fmt: skip
    (dataset_dir / "manifest.json").write_text(json.dumps(forged))
    report = verify_directory(dataset_dir)
    assert not [p for p in report.problems if p.field == "signature"]
    find(report, "data.jsonl", row=0, field="answer", text="differs from the value signed by")
    trusted = verify_directory(dataset_dir, trusted_coordinators=[COORDINATOR.peer_id])
    find(trusted, "manifest.json", field="coordinator", text="not a trusted coordinator")


def test_missing_or_broken_manifest(dataset_dir: Path) -> None:
    (dataset_dir / "manifest.json").unlink()
    report = verify_directory(dataset_dir)
    find(report, "manifest.json", text="missing")
    (dataset_dir / "manifest.json").write_text("{not json")
    find(verify_directory(dataset_dir), "manifest.json", text="not valid JSON")


def test_tampered_parquet_names_row_and_field(dataset_dir: Path) -> None:
    table = pq.read_table(dataset_dir / "data.parquet")
    rows = table.to_pylist()
    rows[4]["question"] = "Changed in parquet only?"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), dataset_dir / "data.parquet")
    report = verify_directory(dataset_dir)
    find(report, "data.parquet", row=4, field="question", text="differs from the row its producer signed")
    find(report, "data.parquet", text="sha256 is")


def test_tampered_source_document(dataset_dir: Path) -> None:
    docs = read_jsonl(dataset_dir / "sources.jsonl")
    docs[0]["text"] = str(docs[0]["text"]).replace("deque", "queue")
    write_jsonl(dataset_dir / "sources.jsonl", docs)
    report = verify_directory(dataset_dir)
    find(report, "sources.jsonl", row=0, field="text", text="text hashes to")


def test_source_document_that_disagrees_with_the_chunk(dataset_dir: Path) -> None:
    """A document with a valid digest but different text at the chunk's offsets (its digest was recomputed)."""
    import hashlib

    docs = read_jsonl(dataset_dir / "sources.jsonl")
    text = "XX" + str(docs[0]["text"])
    docs[0] = {**docs[0], "text": text, "content_sha256": hashlib.sha256(text.encode()).hexdigest()}
    lines = read_jsonl(dataset_dir / "provenance.jsonl")
    for line in lines:
        if line["source"]["url"] == docs[0]["url"]:  # type: ignore[index]
            line["source"]["content_sha256"] = docs[0]["content_sha256"]  # type: ignore[index]
    write_jsonl(dataset_dir / "sources.jsonl", docs)
    write_jsonl(dataset_dir / "provenance.jsonl", lines)
    report = verify_directory(dataset_dir)
    find(report, "provenance.jsonl", row=0, field="source.chunk_text", text="the chunk is not at")


def test_deleted_and_unlisted_files(dataset_dir: Path) -> None:
    (dataset_dir / "exports" / "chat.jsonl").unlink()
    (dataset_dir / "notes.txt").write_text("added later")
    report = verify_directory(dataset_dir)
    find(report, "exports/chat.jsonl", text="listed in the manifest but missing")
    assert [w.file for w in report.warnings] == ["notes.txt"]


def test_garbage_lines_are_reported_by_line(dataset_dir: Path) -> None:
    text = (dataset_dir / "data.jsonl").read_text().splitlines()
    text[5] = "{broken"
    (dataset_dir / "data.jsonl").write_text("\n".join(text) + "\n")
    report = verify_directory(dataset_dir)
    find(report, "data.jsonl", row=5, text="line 6 is not valid JSON")
    find(report, "data.jsonl", text="the Merkle root cannot be recomputed")


def test_row_that_breaks_the_spec(dataset_dir: Path) -> None:
    rows = read_jsonl(dataset_dir / "data.jsonl")
    rows[1]["answer"] = 42
    rows[1]["extra"] = "x"
    write_jsonl(dataset_dir / "data.jsonl", rows)
    report = verify_directory(dataset_dir)
    find(report, "data.jsonl", row=1, field="answer", text="must be a string, got int")
    find(report, "data.jsonl", row=1, field="extra", text="not a field of the spec")


def test_not_a_directory(tmp_path: Path) -> None:
    report = verify_directory(tmp_path / "nope")
    assert not report.ok and "not a directory" in report.problems[0].message
