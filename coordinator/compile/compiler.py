"""compile_dataset: accepted rows in, a verifiable dataset directory out.

Owns: the order of work. For each accepted row: re-open the producer's signed
Result (and the replicas' and validators'), check it is the task it claims,
take the row from the signed output, locate its evidence in the source, then
write data.jsonl, data.parquet, provenance.jsonl, sources.jsonl (when the
documents are given), the exports, README.md, and last manifest.json.
The directory is built under a temporary name beside the target and renamed
into place, so a crash never leaves a half-written dataset that looks whole.
Must not: verify quality (rows arrive accepted and deduplicated), touch the
store or the network, or read the clock (the caller passes created_at_ms).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coordinator.compile.card import README_FILE, CardFacts, render_card
from coordinator.compile.dataset import DATA_JSONL, DATA_PARQUET, json_line, write_jsonl, write_parquet
from coordinator.compile.diversity import DiversityReport, measure
from coordinator.compile.errors import CompileError
from coordinator.compile.evidence import locate, quote_at
from coordinator.compile.exports import EXPORT_DIR, ExportFormat, export_path, export_rows
from coordinator.compile.manifest import MANIFEST_FILE, FileEntry, build_manifest
from coordinator.compile.merkle import merkle_root
from coordinator.compile.provenance import (
    PROVENANCE_FILE,
    SOURCES_FILE,
    JudgeRef,
    ProvenanceLine,
    RoundTripRef,
    SignedResultRef,
    SourceDocument,
    SourceRef,
    ValidatorRef,
)
from coordinator.compile.records import AcceptedRow, JobStats, ProducerRecord
from coordinator.compile.rows import Row, delivered_row, row_leaf
from coordinator.compile.signed import EnvelopeInvalid, open_result_offline
from coordinator.spec import DatasetSpec
from protocol.digests import body_sha256
from protocol.envelope import Opened
from protocol.identity import Identity
from protocol.messages import Result
from protocol.tasks import Document, JudgeOutput, RoundTrip, SourceChunk, SynthesizeOutput, ValidateOutput


@dataclass(frozen=True)
class CompiledDataset:
    path: Path
    rows: int
    merkle_root: str
    files: dict[str, str]
    """File -> sha256 hex (manifest.json excluded)."""
    diversity: DiversityReport
    dropped_duplicates: int


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _signed_ref(where: str, rec: ProducerRecord, task_id: str, job_id: str, output_row: int) -> SignedResultRef:
    try:
        opened, result = open_result_offline(rec.envelope)
    except EnvelopeInvalid as exc:
        raise CompileError(f"{where}: envelope of {rec.peer_id} does not verify: {exc}") from None
    if opened.sender_peer_id != rec.peer_id:
        raise CompileError(f"{where}: envelope is signed by {opened.sender_peer_id}, not by {rec.peer_id}")
    if result.task_id != task_id or result.job_id != job_id:
        raise CompileError(
            f"{where}: envelope answers task {result.task_id!r} of job {result.job_id!r}, not {task_id!r} of {job_id!r}"
        )
    return SignedResultRef(
        peer_id=rec.peer_id,
        envelope=_b64(rec.envelope),
        result_sha256=body_sha256(opened.body),
        output_row=output_row,
        model_sha256=result.model_sha256,
        decoding=result.decoding.model_dump(mode="json") if result.decoding else None,
    )


def _source_ref(where: str, chunk: SourceChunk, evidence: str, documents: dict[str, Document]) -> SourceRef:
    if chunk.end - chunk.start != len(chunk.text):
        raise CompileError(f"{where}: chunk offsets {chunk.start}..{chunk.end} do not span its {len(chunk.text)} chars")
    doc = documents.get(chunk.content_sha256)
    if doc is not None and doc.text[chunk.start : chunk.end] != chunk.text:
        raise CompileError(f"{where}: the chunk is not at {chunk.start}..{chunk.end} of document {doc.url}")
    start = end = None
    if evidence.strip():
        span = locate(evidence, chunk.text)
        if span is None or not quote_at(evidence, chunk.text, *span):
            raise CompileError(f"{where}: evidence {evidence[:60]!r} does not occur in the source chunk")
        start, end = chunk.start + span[0], chunk.start + span[1]
    return SourceRef(
        url=chunk.url,
        content_sha256=chunk.content_sha256,
        chunk_start=chunk.start,
        chunk_end=chunk.end,
        chunk_text=chunk.text,
        evidence=evidence,
        evidence_start=start,
        evidence_end=end,
    )


def _prepare(
    i: int,
    accepted: AcceptedRow,
    spec: DatasetSpec,
    job_id: str,
    documents: dict[str, Document],
    min_score: int | None = None,
) -> tuple[Row, ProvenanceLine, str | None]:
    """(row, provenance line without its row number, model digest)."""
    where = f"accepted row {i} (task {accepted.task_id})"
    producer = _signed_ref(where, accepted.producer, accepted.task_id, job_id, accepted.output_row)
    _, result = open_result_offline(accepted.producer.envelope)
    output = result.output
    if not isinstance(output, SynthesizeOutput):
        raise CompileError(f"{where}: the producer's output is {output.kind}, not synthesize")
    if accepted.output_row >= len(output.rows):
        raise CompileError(f"{where}: output_row {accepted.output_row} but the output has {len(output.rows)} rows")
    generated = output.rows[accepted.output_row]
    if spec.grounded and accepted.chunk is None:
        raise CompileError(f"{where}: the spec is grounded but the row has no source chunk")
    if spec.grounded and not generated.evidence.strip():
        raise CompileError(f"{where}: the spec is grounded but the row quotes no evidence")
    source = _source_ref(where, accepted.chunk, generated.evidence, documents) if accepted.chunk else None
    row, problems = delivered_row(spec, generated, accepted.chunk.url if accepted.chunk else None)
    if problems:
        raise CompileError(f"{where}: the signed row does not fit the spec: {'; '.join(problems[:3])}")
    replicas = [
        _signed_ref(f"{where} replica {k}", rec, accepted.task_id, job_id, accepted.output_row)
        for k, rec in enumerate(accepted.replicas)
    ]
    validators = []
    trips: list[RoundTrip] = []
    judge: JudgeRef | None = None
    for k, v in enumerate(accepted.validators):
        ref = ValidatorRef(peer_id=v.peer_id, task_id=v.task_id, envelope=_b64(v.envelope) if v.envelope else None)
        if v.envelope is not None:
            _, vres = _open_validator(f"{where} validator {k}", v.envelope, v.peer_id)
            if v.task_id is not None and vres.task_id != v.task_id:
                raise CompileError(f"{where} validator {k}: envelope answers task {vres.task_id!r}, not {v.task_id!r}")
            if isinstance(vres.output, ValidateOutput) and vres.output.roundtrip is not None:
                trips.append(vres.output.roundtrip)
            if isinstance(vres.output, JudgeOutput):
                judge = _judge_ref(f"{where} validator {k}", vres, v.peer_id, min_score)
        validators.append(ref)
    rescorers = [v for v in validators if judge is None or v.task_id != judge.task_id]
    line = ProvenanceLine(
        row=0,
        row_sha256=row_leaf(row).hex(),
        task_id=accepted.task_id,
        job_id=job_id,
        upstream_task_ids=list(accepted.upstream_task_ids),
        producer=producer,
        replicas=replicas,
        validators=validators,
        checks=_checks(producer, replicas, rescorers, trips, judged=judge is not None),
        roundtrip=_weakest(trips),
        judge=judge,
        source=source,
    )
    return row, line, result.model_sha256


def _judge_ref(where: str, result: Result, peer_id: str, min_score: int | None) -> JudgeRef:
    """The judge's score of the row, which must reach the job's pass mark."""
    output = result.output
    assert isinstance(output, JudgeOutput)
    if min_score is None:
        raise CompileError(f"{where}: a judge's score, but the job has no judge pass mark")
    if output.score < min_score:
        raise CompileError(f"{where}: the judge scored the row {output.score}, below the pass mark {min_score}")
    return JudgeRef(peer_id=peer_id, task_id=result.task_id, score=output.score, min_score=min_score,
                    model_sha256=result.model_sha256, rationale=output.rationale)  # fmt: skip


def _checks(
    producer: SignedResultRef,
    replicas: list[SignedResultRef],
    validators: list[ValidatorRef],
    trips: list[RoundTrip],
    *,
    judged: bool = False,
) -> list[str]:
    """The checks a row passed. `rescored_by_producer`: only the operator's own node that wrote the row
    re-scored it (one trusted node and no other), which proves less than an independent validator.
    `validators` are the re-scoring ones (a judge checks the row, not the compute)."""
    writers = {producer.peer_id} | {r.peer_id for r in replicas}
    independent = any(v.peer_id not in writers for v in validators)
    checks = ["signatures"]
    checks += ["replicas_agree"] if replicas else []
    checks += ["rescored"] if independent else (["rescored_by_producer"] if validators else [])
    if any(t.reading == "sentence" for t in trips):
        checks += ["question_gates", "roundtrip"]
    if any(t.reading == "label" for t in trips):
        checks += ["label_roundtrip"]
    return [*checks, "gates", *(["judge"] if judged else [])]


def _weakest(trips: list[RoundTrip]) -> RoundTripRef | None:
    if not trips:
        return None
    t = max(trips, key=lambda t: (t.answer_rank, -t.margin))
    return RoundTripRef(
        answer_rank=t.answer_rank, margin=t.margin, gain=t.gain, n_sentences=t.n_sentences, reading=t.reading
    )


def _open_validator(where: str, raw: bytes, peer_id: str) -> tuple[Opened, Result]:
    try:
        opened, result = open_result_offline(raw)
    except EnvelopeInvalid as exc:
        raise CompileError(f"{where}: envelope of {peer_id} does not verify: {exc}") from None
    if opened.sender_peer_id != peer_id:
        raise CompileError(f"{where}: envelope is signed by {opened.sender_peer_id}, not by {peer_id}")
    return opened, result


def _sha256_file(path: Path) -> FileEntry:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return FileEntry(sha256=h.hexdigest(), bytes=path.stat().st_size)


def compile_dataset(
    out_dir: str | Path,
    *,
    spec: DatasetSpec,
    request: str,
    rows: Sequence[AcceptedRow],
    stats: JobStats,
    coordinator: Identity,
    created_at_ms: int,
    documents: Sequence[Document] = (),
    formats: Sequence[ExportFormat] = (),
    spec_notes: Sequence[str] = (),
) -> CompiledDataset:
    """Write the dataset directory `out_dir` (which must not exist, or be empty); CompileError if a row is bad.

    documents: full texts of cited documents; when given they are written to sources.jsonl so that
    `verify_directory` can check content digests and evidence offsets against the whole document.
    spec_notes: how the request was read into the spec (the request reader's notes), for the card.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CompileError(f"{out} exists and is not an empty directory: choose a new output directory")
    docs = {d.content_sha256: d for d in documents}

    delivered: list[Row] = []
    lines: list[ProvenanceLine] = []
    model_rows: Counter[str] = Counter()
    seen: set[bytes] = set()
    dropped = 0
    for i, accepted in enumerate(rows):
        row, line, model = _prepare(i, accepted, spec, stats.job_id, docs, stats.judge_min_score)
        leaf = bytes.fromhex(line.row_sha256)
        if leaf in seen:
            dropped += 1  # deduplication is upstream; an exact repeat here would make two rows one leaf
            continue
        seen.add(leaf)
        lines.append(line.model_copy(update={"row": len(delivered)}))
        delivered.append(row)
        if model:
            model_rows[model] += 1
    if not delivered:
        raise CompileError("no rows to compile: a dataset needs at least one accepted row")

    root = merkle_root([bytes.fromhex(line.row_sha256) for line in lines])
    diversity = measure(spec, delivered)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        write_jsonl(tmp / DATA_JSONL, delivered)
        write_parquet(tmp / DATA_PARQUET, spec, delivered)
        with (tmp / PROVENANCE_FILE).open("w", encoding="utf-8", newline="\n") as fh:
            for line in lines:
                # No "judge" key on a row no judge scored: such lines stay what older verifiers read.
                fh.write(json_line(line.model_dump(mode="json", exclude={"judge"} if line.judge is None else None)))
        files = [DATA_JSONL, DATA_PARQUET, PROVENANCE_FILE]
        cited = {line.source.content_sha256 for line in lines if line.source}
        kept = [docs[h] for h in sorted(cited) if h in docs]
        if kept:
            write_jsonl(
                tmp / SOURCES_FILE,
                [SourceDocument(url=d.url, content_sha256=d.content_sha256, text=d.text).model_dump() for d in kept],
            )
            files.append(SOURCES_FILE)
        if formats:
            (tmp / EXPORT_DIR).mkdir()
        for fmt in dict.fromkeys(formats):
            write_jsonl(tmp / export_path(fmt), export_rows(spec, delivered, fmt))
            files.append(export_path(fmt))

        facts = _card_facts(
            spec,
            request,
            stats,
            delivered,
            lines,
            model_rows,
            diversity,
            root,
            coordinator,
            created_at_ms,
            files,
            list(dict.fromkeys(formats)),
            dropped,
            len(cited),
            tuple(spec_notes),
        )
        (tmp / README_FILE).write_text(render_card(facts), encoding="utf-8", newline="\n")
        files.insert(0, README_FILE)
        entries = {name: _sha256_file(tmp / name) for name in files}
        manifest = build_manifest(
            identity=coordinator,
            job_id=stats.job_id,
            created_at_ms=created_at_ms,
            rows=len(delivered),
            merkle_root=root,
            files=entries,
            spec=spec.model_dump(mode="json"),
            request=request,
        )
        (tmp / MANIFEST_FILE).write_text(json_line(manifest), encoding="utf-8", newline="\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a dataset is for sharing
        os.replace(tmp, out)  # rename(2) replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CompiledDataset(
        path=out,
        rows=len(delivered),
        merkle_root=root.hex(),
        files={name: e.sha256 for name, e in entries.items()},
        diversity=diversity,
        dropped_duplicates=dropped,
    )


def _card_facts(
    spec: DatasetSpec,
    request: str,
    stats: JobStats,
    delivered: list[Row],
    lines: list[ProvenanceLine],
    model_rows: Counter[str],
    diversity: DiversityReport,
    root: bytes,
    coordinator: Identity,
    created_at_ms: int,
    files: list[str],
    formats: list[ExportFormat],
    dropped: int,
    documents: int,
    spec_notes: tuple[str, ...],
) -> CardFacts:
    producers = {line.producer.peer_id for line in lines} | {r.peer_id for line in lines for r in line.replicas}
    validators = {v.peer_id for line in lines for v in line.validators}
    decoding: dict[str, set[Any]] = {}
    for line in lines:
        for ref in (line.producer, *line.replicas):
            for key, value in (ref.decoding or {}).items():
                if key not in ("seed", "json_schema"):
                    decoding.setdefault(key, set()).add(value)
    domains = Counter(urlsplit(line.source.url).hostname or line.source.url for line in lines if line.source)
    pages = Counter(line.source.url for line in lines if line.source)
    checks = Counter("+".join(line.checks) for line in lines if line.checks)
    return CardFacts(
        spec=spec,
        request=request,
        rows=len(delivered),
        job=stats,
        diversity=diversity,
        merkle_root=root.hex(),
        coordinator_peer_id=coordinator.peer_id,
        created_at_ms=created_at_ms,
        models=dict(model_rows),
        decoding={k: sorted(v, key=str) for k, v in decoding.items()},
        producers=len(producers),
        validators=len(validators),
        mean_producers_per_row=sum(1 + len(line.replicas) for line in lines) / len(lines),
        validated_rows=sum(1 for line in lines if "rescored" in line.checks),
        self_checked_rows=sum(1 for line in lines if "rescored_by_producer" in line.checks),
        domains=domains.most_common(),
        documents=documents,
        files=files,
        exports=formats,
        dropped_duplicates=dropped,
        spec_notes=spec_notes,
        checks=dict(checks),
        pages=pages.most_common(),
    )
