"""Stage 6, deliver: the job's accepted rows, with provenance, compiled into the dataset directory."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from coordinator.compile import AcceptedRow, CompiledDataset, JobStats, ProducerRecord, ValidatorRecord, compile_dataset
from coordinator.pipeline import judge, retrieve, synthesize
from coordinator.pipeline.context import JobContext
from coordinator.scheduler import judge_task_id
from coordinator.store import TaskState
from protocol.identity import Identity
from protocol.messages import Verdict
from protocol.tasks import GENERATIVE_KINDS, SynthesizePayload, TaskKind


def accepted_rows(ctx: JobContext) -> list[AcceptedRow]:
    store = ctx.store
    rows: list[AcceptedRow] = []
    curate_ids = [t.task_id for t in store.tasks(ctx.job_id, stage=TaskKind.CURATE.value)]
    settings = judge.settings(ctx)
    delivered = store.rows(ctx.job_id) if settings is None else judge.tally(store, ctx.job_id, settings).passed
    for row in delivered[: ctx.spec.rows]:
        results = store.results_for(row.task_id)
        by_id = {r.result_id: r for r in results}
        producer = by_id[row.result_id]
        replicas = [
            ProducerRecord(peer_id=r.node, envelope=r.envelope)
            for r in results
            if r.result_id != row.result_id and _accepted(ctx, r.result_id)
        ]
        validators: list[ValidatorRecord] = []
        audits = store.validations(row.task_id)
        for r in results:
            if r.result_id not in audits:
                continue
            vt = store.task(audits[r.result_id])
            if vt.state is TaskState.DONE and vt.canonical_result_id is not None:
                v = store.result(vt.canonical_result_id)
                validators.append(ValidatorRecord(peer_id=v.node, task_id=vt.task_id, envelope=v.envelope))
        if settings is not None:  # the judge's signed score, re-read and checked by the compiler
            jt = store.task(judge_task_id(row.task_id, row.idx))
            assert jt.canonical_result_id is not None
            j = store.result(jt.canonical_result_id)
            validators.append(ValidatorRecord(peer_id=j.node, task_id=jt.task_id, envelope=j.envelope))
        payload = store.task_payload(row.task_id)
        chunk = payload.chunk if isinstance(payload, SynthesizePayload) else None
        rows.append(
            AcceptedRow(
                task_id=row.task_id,
                output_row=row.idx,
                producer=ProducerRecord(peer_id=producer.node, envelope=producer.envelope),
                replicas=replicas[:16],
                validators=validators[:16],
                chunk=chunk,
                upstream_task_ids=curate_ids[:64],
            )
        )
    return rows


def _accepted(ctx: JobContext, result_id: int) -> bool:
    v = ctx.store.verdict(result_id)
    return v is not None and v.verdict is Verdict.ACCEPTED


def job_stats(ctx: JobContext, *, models: dict[str, str], started_ms: int, finished_ms: int) -> JobStats:
    store = ctx.store
    tasks = store.tasks(ctx.job_id)
    nodes: set[str] = set()
    executions = 0
    per_generative: Counter[str] = Counter()
    candidates, synth_s, synth_tokens, validate_s = 0, 0.0, 0, 0.0
    for t in tasks:
        for r in store.results_for(t.task_id):
            nodes.add(r.node)
            executions += 1
            if t.kind in GENERATIVE_KINDS:
                per_generative[t.task_id] += 1
            if t.kind in (TaskKind.SYNTHESIZE, TaskKind.VALIDATE, TaskKind.JUDGE):  # judging counts as validation
                stats = store.result_message(r.result_id).stats
                if t.kind is TaskKind.SYNTHESIZE:
                    candidates += 1
                    synth_s += stats.seconds
                    synth_tokens += stats.prompt_tokens + stats.completion_tokens
                else:
                    validate_s += stats.seconds
    rejections: Counter[str] = Counter()
    for key, n in store.verdict_counts(ctx.job_id).items():
        if key.startswith("rejected:"):
            rejections[key.removeprefix("rejected:")] += n
    drops = store.row_drops(ctx.job_id)
    for reason, n in drops.items():
        rejections[reason] += n
    duplicates = drops.get("duplicate", 0) + drops.get("near_duplicate", 0)
    replication = sum(per_generative.values()) / len(per_generative) if per_generative else None
    judged = judge.settings(ctx)
    return JobStats(
        job_id=ctx.job_id,
        nodes=len(nodes),
        tasks=len(tasks),
        executions=executions,
        replication=replication,
        rejections=dict(rejections),
        duplicates_removed=duplicates,
        models=models,
        candidates=candidates,
        synthesize_seconds=round(synth_s, 3),
        synthesize_tokens=synth_tokens,
        validate_seconds=round(validate_s, 3),
        answer_first=synthesize.qa_fields(ctx.spec) is not None,
        label_first=synthesize.label_fields(ctx.spec) is not None,
        judge_min_score=judged.min_score if judged is not None else None,
        judge_models=list(judged.models) if judged is not None else [],
        partial=str(store.job(ctx.job_id).doc.get("partial", "")),
        started_at_ms=started_ms,
        finished_at_ms=finished_ms,
    )


def run(
    ctx: JobContext,
    out_dir: Path,
    *,
    coordinator: Identity,
    models: dict[str, str],
    started_ms: int,
    now_ms: int,
) -> CompiledDataset:
    documents = [d for _, d in retrieve.documents(ctx)] if ctx.spec.grounded else []
    cited = {r.chunk.content_sha256 for r in accepted_rows(ctx) if r.chunk is not None}
    return compile_dataset(
        out_dir,
        spec=ctx.spec,
        request=ctx.request,
        rows=accepted_rows(ctx),
        stats=job_stats(ctx, models=models, started_ms=started_ms, finished_ms=now_ms),
        coordinator=coordinator,
        created_at_ms=now_ms,
        documents=[d for d in documents if d.content_sha256 in cited],
        spec_notes=[str(n) for n in ctx.store.job(ctx.job_id).doc.get("spec_notes", [])],
    )
