"""compile_dataset: what lands in the directory, built from real signed Results."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import yaml

from coordinator.compile import AcceptedRow, CompileError, ExportFormat, ProducerRecord, compile_dataset
from coordinator.compile.manifest import signature_problem
from coordinator.compile.merkle import leaf_hash, node_hash
from protocol import encoding
from protocol.envelope import open_envelope, seal
from protocol.identity import verify_signature
from tests.coordinator.test_compile_fixtures import (  # noqa: F401  (fixtures)
    COORDINATOR,
    DOCS,
    JOB,
    MODEL,
    NODES,
    REQUEST,
    STRANGER,
    T0,
    VALIDATOR,
    build_rows,
    chunk_of,
    compile_into,
    compiled_base_fixture,
    read_jsonl,
    spec,
    synth_result,
)


def test_directory_holds_the_promised_files(compiled_base: Path) -> None:
    names = sorted(p.relative_to(compiled_base).as_posix() for p in compiled_base.rglob("*") if p.is_file())
    assert names == [
        "README.md",
        "data.jsonl",
        "data.parquet",
        "exports/chat.jsonl",
        "exports/prompt_completion.jsonl",
        "manifest.json",
        "provenance.jsonl",
        "sources.jsonl",
    ]
    assert not list(compiled_base.parent.glob(".*partial"))  # the temporary build directory is gone


def test_rows_are_the_signed_rows_plus_source_url(compiled_base: Path) -> None:
    built = build_rows(8)
    rows = read_jsonl(compiled_base / "data.jsonl")
    assert len(rows) == 8
    for row, result, accepted in zip(rows, built.results, built.rows, strict=True):
        generated = result.output.rows[0]  # type: ignore[union-attr]
        assert list(row) == ["question", "answer", "source_url"]  # spec order
        assert row["question"] == generated.data["question"]
        assert row["answer"] == generated.data["answer"]
        assert accepted.chunk is not None
        assert row["source_url"] == accepted.chunk.url


def test_parquet_matches_jsonl_with_spec_types(compiled_base: Path) -> None:
    table = pq.read_table(compiled_base / "data.parquet")
    assert table.schema.names == ["question", "answer", "source_url"]
    assert all(str(t) == "string" for t in table.schema.types)
    assert table.to_pylist() == read_jsonl(compiled_base / "data.jsonl")


def test_provenance_records_who_made_and_checked_each_row(compiled_base: Path) -> None:
    built = build_rows(8)
    lines = read_jsonl(compiled_base / "provenance.jsonl")
    assert [line["row"] for line in lines] == list(range(8))
    for line, accepted in zip(lines, built.rows, strict=True):
        assert line["task_id"] == accepted.task_id
        assert line["job_id"] == JOB
        producer = line["producer"]
        assert isinstance(producer, dict)
        assert producer["peer_id"] == accepted.producer.peer_id
        raw = base64.b64decode(producer["envelope"])
        assert raw == accepted.producer.envelope
        opened = open_envelope(raw, now_ms=T0, replay_cache=None)
        assert opened.sender_peer_id == producer["peer_id"]
        assert producer["model_sha256"] == MODEL
        assert producer["decoding"]["temperature"] == 0.7
        assert producer["result_sha256"] == hashlib.sha256(opened.body).hexdigest()
        assert line["upstream_task_ids"] == accepted.upstream_task_ids
    assert len(lines[0]["replicas"]) == 1 and lines[0]["replicas"][0]["peer_id"] == NODES[1].peer_id  # type: ignore[index]
    assert lines[0]["validators"][0]["peer_id"] == VALIDATOR.peer_id  # type: ignore[index]
    assert lines[1]["validators"] == []


def test_provenance_evidence_offsets_point_into_the_document(compiled_base: Path) -> None:
    docs = {d.content_sha256: d.text for d in DOCS}
    for line in read_jsonl(compiled_base / "provenance.jsonl"):
        src = line["source"]
        assert isinstance(src, dict)
        text = docs[src["content_sha256"]]
        assert text[src["chunk_start"] : src["chunk_end"]] == src["chunk_text"]
        quoted = text[src["evidence_start"] : src["evidence_end"]]
        # Row 1 quotes with a straight apostrophe and re-flowed spaces; the offsets still find the raw span.
        assert " ".join(quoted.replace("’", "'").split()) == " ".join(src["evidence"].split())


def test_manifest_is_signed_over_digests_and_merkle_root(compiled_base: Path) -> None:
    manifest = json.loads((compiled_base / "manifest.json").read_text())
    assert manifest["coordinator"]["peer_id"] == COORDINATOR.peer_id
    assert signature_problem(manifest) is None
    body = {k: v for k, v in manifest.items() if k != "signature"}
    signed = b"dataswarm/manifest/v1\x00" + encoding.encode(body)
    assert verify_signature(COORDINATOR.public_key, base64.b64decode(manifest["signature"]), signed)
    for name, entry in manifest["files"].items():
        data = (compiled_base / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert "manifest.json" not in manifest["files"]
    # Merkle root by hand for 8 leaves: a perfect tree.
    leaves = [leaf_hash(encoding.encode(row)) for row in read_jsonl(compiled_base / "data.jsonl")]
    level = leaves
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    assert manifest["merkle_root"] == level[0].hex()
    assert manifest["rows"] == 8
    assert manifest["spec"]["fields"][2]["source"] == "source_url"
    assert manifest["request"] == REQUEST


def test_card_front_matter_and_body(compiled_base: Path) -> None:
    text = (compiled_base / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "cc-by-4.0"
    assert front["language"] == ["en"]
    assert front["size_categories"] == ["n<1K"]
    assert front["task_categories"] == ["question-answering"]
    assert "Python's standard library" in front["pretty_name"]
    default = front["configs"][0]
    assert default["config_name"] == "default" and default["default"] is True
    assert default["data_files"] == [{"split": "train", "path": "data.jsonl"}]
    assert {c["config_name"] for c in front["configs"]} == {"default", "chat", "prompt_completion"}
    body = text.split("---\n", 2)[2]
    assert REQUEST in body
    assert MODEL in body and "SmolLM2-135M-Instruct.Q4_1.gguf" in body
    assert "nodes that took part in the job: 6" in body
    assert "| evidence_not_found | 3 |" in body
    assert "duplicates removed: 2" in body
    assert "distinct-1:" in body and "Vendi score:" in body
    assert "| 127.0.0.1 | 6 |" in body and "| docs.local | 2 |" in body
    assert json.loads((compiled_base / "manifest.json").read_text())["merkle_root"] in body


def test_card_survives_a_hostile_request(tmp_path: Path) -> None:
    built = build_rows(2)
    hostile = "---\nlicense: mit\n---\n```\n| a | b |\n<script>alert(1)</script> ````"
    compile_dataset(
        tmp_path / "d",
        spec=spec(rows=2, topic="pipes | and --- dashes"),
        request=hostile,
        rows=built.rows,
        stats=built.stats,
        coordinator=COORDINATOR,
        created_at_ms=T0,
        spec_notes=["topic guessed as 'pipes'", "llm: `rows` = 9 ignored\n---\nlicense: mit | <b>"],
    )
    text = (tmp_path / "d" / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "cc-by-4.0"  # the request's fake front matter did not leak in
    assert "`````text\n" + hostile + "\n`````" in text  # fenced with a longer fence than any inside
    # The request reader's notes are listed one per line, on one line each, escaped.
    assert "- topic guessed as 'pipes'\n- llm: `rows` = 9 ignored --- license: mit \\| &lt;b>\n" in text


def test_exports_follow_trl_formats(compiled_base: Path) -> None:
    rows = read_jsonl(compiled_base / "data.jsonl")
    chat = read_jsonl(compiled_base / "exports" / "chat.jsonl")
    pc = read_jsonl(compiled_base / "exports" / "prompt_completion.jsonl")
    assert chat[0] == {
        "messages": [
            {"role": "user", "content": rows[0]["question"]},
            {"role": "assistant", "content": rows[0]["answer"]},
        ]
    }
    assert pc[3] == {"prompt": rows[3]["question"], "completion": rows[3]["answer"]}
    assert len(chat) == len(pc) == 8


def test_datasets_load_dataset_reads_the_directory_offline(compiled_base: Path, tmp_path: Path) -> None:
    # A fresh interpreter: HF reads its offline switches and cache location at import time.
    script = (
        "import json, sys, datasets\n"
        "ds = datasets.load_dataset(sys.argv[1], split='train')\n"
        "chat = datasets.load_dataset(sys.argv[1], 'chat', split='train')\n"
        "print(json.dumps({'rows': ds.to_list(), 'columns': ds.column_names, 'chat': chat[0]}))\n"
    )
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(compiled_base)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Ignoring" not in proc.stderr  # the card's dataset_info was accepted as written
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["columns"] == ["question", "answer", "source_url"]
    assert out["rows"] == read_jsonl(compiled_base / "data.jsonl")  # data only: provenance was not picked up
    assert out["chat"]["messages"][0]["role"] == "user"
    assert not (compiled_base / ".cache").exists()


def test_exact_duplicate_rows_are_dropped_once(tmp_path: Path) -> None:
    built = build_rows(3)
    rows = [*built.rows, built.rows[1]]
    result = compile_dataset(
        tmp_path / "d", spec=spec(rows=3), request=REQUEST, rows=rows, stats=built.stats,
        coordinator=COORDINATOR, created_at_ms=T0,
    )  # fmt: skip
    assert result.rows == 3 and result.dropped_duplicates == 1
    assert len(read_jsonl(tmp_path / "d" / "data.jsonl")) == 3


def _compile(tmp_path: Path, rows: list[AcceptedRow], **kw: object) -> None:
    built = build_rows(1)
    compile_dataset(
        tmp_path / "out",
        spec=kw.pop("spec_", spec()),  # type: ignore[arg-type]
        request=REQUEST,
        rows=rows,
        stats=built.stats,
        coordinator=COORDINATOR,
        created_at_ms=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_refuses_an_envelope_signed_by_someone_else(tmp_path: Path) -> None:
    row = build_rows(1).rows[0]
    forged = row.model_copy(update={"producer": ProducerRecord(peer_id=NODES[0].peer_id,
                                                               envelope=seal(STRANGER, build_rows(1).results[0],
                                                                             now_ms=T0))})  # fmt: skip
    with pytest.raises(CompileError, match=r"accepted row 0 \(task synth-0\).*signed by 12D3KooW"):
        _compile(tmp_path, [forged])


def test_refuses_a_corrupt_envelope(tmp_path: Path) -> None:
    row = build_rows(1).rows[0]
    raw = bytearray(row.producer.envelope)
    raw[-5] ^= 0xFF  # inside the signature
    bad = row.model_copy(update={"producer": ProducerRecord(peer_id=row.producer.peer_id, envelope=bytes(raw))})
    with pytest.raises(CompileError, match="does not verify: BadSignature"):
        _compile(tmp_path, [bad])


def test_refuses_an_envelope_for_another_task(tmp_path: Path) -> None:
    row = build_rows(1).rows[0].model_copy(update={"task_id": "synth-99"})
    with pytest.raises(CompileError, match="answers task 'synth-0'"):
        _compile(tmp_path, [row])


def test_refuses_grounded_rows_without_a_chunk_or_with_a_foreign_quote(tmp_path: Path) -> None:
    row = build_rows(1).rows[0]
    with pytest.raises(CompileError, match="no source chunk"):
        _compile(tmp_path, [row.model_copy(update={"chunk": None})])
    elsewhere = chunk_of(DOCS[1], 0, 120)
    with pytest.raises(CompileError, match="does not occur in the source chunk"):
        _compile(tmp_path, [row.model_copy(update={"chunk": elsewhere})])


def test_refuses_a_signed_row_that_misses_the_spec(tmp_path: Path) -> None:
    result = synth_result("synth-0", "Why?", "Because.", "A deque is a list-like container", seed=1)
    row = build_rows(1).rows[0]
    bad = row.model_copy(
        update={"producer": ProducerRecord(peer_id=NODES[0].peer_id, envelope=seal(NODES[0], result, now_ms=T0))}
    )
    with pytest.raises(CompileError, match=r"does not fit the spec: question: length 4 is outside \[5, 300\]"):
        _compile(tmp_path, [bad])


def test_refuses_a_non_empty_output_directory_and_an_empty_job(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CompileError, match="not an empty directory"):
        _compile(tmp_path, build_rows(1).rows)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(CompileError, match="no rows"):
        _compile(tmp_path / "other", [])


def test_compiles_into_an_existing_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    _compile(tmp_path, build_rows(2).rows)
    assert (tmp_path / "out" / "manifest.json").exists()


def test_chunk_that_is_not_in_its_document_is_refused(tmp_path: Path) -> None:
    row = build_rows(1).rows[0]
    assert row.chunk is not None
    moved = row.chunk.model_copy(update={"start": row.chunk.start + 1, "end": row.chunk.end + 1})
    with pytest.raises(CompileError, match="the chunk is not at"):
        _compile(tmp_path, [row.model_copy(update={"chunk": moved})], documents=DOCS)


def test_ungrounded_spec_without_chunks_compiles(tmp_path: Path) -> None:
    built = build_rows(2)
    rows = [r.model_copy(update={"chunk": None}) for r in built.rows]
    ungrounded = spec(rows=2, grounded=False, fields=spec().fields[:2])
    result = compile_dataset(
        tmp_path / "d", spec=ungrounded, request="2 rows", rows=rows, stats=built.stats,
        coordinator=COORDINATOR, created_at_ms=T0,
    )  # fmt: skip
    assert result.rows == 2
    assert list(read_jsonl(tmp_path / "d" / "data.jsonl")[0]) == ["question", "answer"]
    assert read_jsonl(tmp_path / "d" / "provenance.jsonl")[0]["source"] is None
    assert not (tmp_path / "d" / "sources.jsonl").exists()


def test_export_needs_two_text_columns(tmp_path: Path) -> None:
    from coordinator.compile.exports import column_roles
    from coordinator.spec import DatasetSpec, FieldSpec, FieldType

    one = DatasetSpec(topic="t", fields=[FieldSpec(name="text"), FieldSpec(name="n", type=FieldType.INTEGER)])
    with pytest.raises(CompileError, match="two text columns"):
        column_roles(one)
    three = [FieldSpec(name="input"), FieldSpec(name="output"), FieldSpec(name="instruction")]
    roles = column_roles(DatasetSpec(topic="t", fields=three))
    assert (roles.prompt, roles.extra, roles.completion) == ("instruction", "input", "output")


def test_number_fields_are_floats_everywhere(tmp_path: Path) -> None:
    from coordinator.spec import DatasetSpec, FieldSpec, FieldType
    from protocol.messages import Result
    from protocol.tasks import GeneratedRow, SynthesizeOutput

    numeric = DatasetSpec(
        topic="t", fields=[FieldSpec(name="name"), FieldSpec(name="score", type=FieldType.NUMBER, maximum=10)]
    )
    result = Result(
        task_id="synth-0", job_id=JOB, lease_id="l", attempt=0, model_sha256=MODEL,
        output=SynthesizeOutput(rows=[GeneratedRow(data={"name": "x", "score": 3})]),
    )  # fmt: skip
    producer = ProducerRecord(peer_id=NODES[0].peer_id, envelope=seal(NODES[0], result, now_ms=T0))
    row = AcceptedRow(task_id="synth-0", producer=producer)
    compile_dataset(tmp_path / "d", spec=numeric, request="r", rows=[row], stats=build_rows(1).stats,
                    coordinator=COORDINATOR, created_at_ms=T0)  # fmt: skip
    assert read_jsonl(tmp_path / "d" / "data.jsonl") == [{"name": "x", "score": 3.0}]
    assert pq.read_table(tmp_path / "d" / "data.parquet").to_pylist() == [{"name": "x", "score": 3.0}]
    from coordinator.compile import verify_directory

    assert verify_directory(tmp_path / "d").ok


def test_formats_are_written_once_each(tmp_path: Path) -> None:
    compile_into(tmp_path / "d", n=2, formats=(ExportFormat.CHAT, ExportFormat.CHAT))
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert [n for n in manifest["files"] if n.startswith("exports/")] == ["exports/chat.jsonl"]
