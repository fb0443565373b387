"""Rows that no round trip can check (a spec neither question/answer nor text/label) are judged by a node
with a judge model that wrote none of the row's replicas, and only rows at or above the pass mark are
delivered.

The real JobRunner on a real coordinator (tests/api/support.py): synthesize tasks are settled through the
real scheduler from signed results of two agreeing nodes; the runner then submits a judge task per row,
which the test's judge nodes claim and answer with signed scores; the real compiler writes the dataset
and `verify_directory` checks every judge score against the judge's signed output.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import trio

from coordinator.compile import verify_directory
from coordinator.job_states import StageState
from coordinator.pipeline import judge
from coordinator.pipeline.context import JobContext
from coordinator.scheduler import Scheduler, judge_task_id, judged_row
from coordinator.service import Coordinator
from coordinator.spec import DatasetSpec, FieldSpec
from coordinator.store import TaskState
from coordinator.verify.judge import JUDGE_KEY, JudgeSettings, criteria
from network import now_ms
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import Claim, Grant, ModelInfo, NodeStatus, Reject, RejectReason
from protocol.tasks import GeneratedRow, JudgeOutput, JudgePayload, SynthesizeOutput, TaskKind
from tests.api.support import Served, api_server, node
from tests.coordinator.factories import CHUNK_TEXT, MODEL, grant, result_for, synth_payload

JUDGE_MODEL = "ef" * 32
WRITERS = (node(10), node(11))
JUDGES = (node(12), node(13))
TERMS = (  # (term, definition, evidence)
    ("printing press", "developed by Johannes Gutenberg around 1440 in Mainz", "developed by Johannes Gutenberg"),
    ("movable-type system", "made books cheaper and spread literacy across Europe", "spread literacy across Europe"),
    ("Mainz", "the town where Gutenberg developed the printing press", "around 1440 in Mainz"),
)
SCHEMA = {
    "type": "object",
    "properties": {"term": {"type": "string", "maxLength": 200}, "definition": {"type": "string", "maxLength": 500}},
    "required": ["term", "definition"],
    "additionalProperties": False,
}


def term_spec(rows: int) -> DatasetSpec:
    return DatasetSpec(
        topic="early printing",
        rows=rows,
        grounded=True,
        fields=[
            FieldSpec(name="term", description="A term the source defines"),
            FieldSpec(name="definition", description="What the source says it is"),
        ],
    )


def claim(sched: Scheduler, who: Identity, task_id: str, model: str) -> Grant | Reject:
    c = Claim(task_id=task_id, attempt=0, model_sha256=model, free_slots=1, tok_s=50.0)
    return sched.on_claim(c, who.peer_id, now_ms())


def answer(sched: Scheduler, who: Identity, g: Grant, output: SynthesizeOutput | JudgeOutput, raw: str) -> None:
    now = now_ms()
    sched.on_result(open_envelope(seal(who, result_for(g, output, raw_text=raw), now_ms=now), now_ms=now,
                                  replay_cache=None), now)  # fmt: skip


def judged_job(coordinator: Coordinator, job_id: str, out_dir: Path, *, rows: int) -> list[str]:
    """Worker thread: a judged job whose synthesize budget is spent, with one row per entry of TERMS
    (settled by WRITERS, who agree), the other tasks abandoned. Returns the row tasks' ids."""
    store, sched = coordinator.store, coordinator.runtime.scheduler
    now = now_ms()
    spec = term_spec(rows)
    spec_doc = spec.model_dump(mode="json")
    doc = {"request": "", "spec": spec_doc, "submitted_spec": spec_doc, "grounded": True, "llm_spec": False,
           "out_dir": str(out_dir), JUDGE_KEY: {"models": [JUDGE_MODEL], "min_score": 4}}  # fmt: skip
    store.create_job(job_id, doc, allowed_models=[MODEL], now_ms=now)
    for kind in (TaskKind.QUESTION_GEN, TaskKind.SEARCH, TaskKind.RETRIEVE, TaskKind.CURATE):
        store.add_stage(job_id, kind.value, now_ms=now)
        store.set_stage_state(job_id, kind.value, StageState.DONE, now_ms=now)
    from coordinator.pipeline import synthesize

    budget = synthesize.max_tasks(JobContext(store, job_id, spec, ""))
    ids = [f"{job_id}.synthesize.{i}" for i in range(budget)]
    payload = synth_payload(schema=SCHEMA)
    for task_id in ids:
        sched.submit(task_id, job_id, TaskKind.SYNTHESIZE.value, payload, est_tokens=100, now_ms=now)
    for task_id, (term, definition, evidence) in zip(ids, TERMS, strict=False):
        row = GeneratedRow(data={"term": term, "definition": definition}, evidence=evidence)
        output = SynthesizeOutput(rows=[row])
        raw = json.dumps({"term": term, "definition": definition})
        for who in WRITERS:
            g = claim(sched, who, task_id, MODEL)
            assert isinstance(g, Grant), g
            answer(sched, who, g, output, raw)
    for task_id in ids[len(TERMS) :]:
        sched.abandon(task_id, now)
    assert store.row_count(job_id) == len(TERMS), store.row_drops(job_id)
    return ids[: len(TERMS)]


def arrive(sched: Scheduler, who: Identity, model: str) -> None:
    """Worker thread: a node's status gossip, with one model, serving synthesize, judge and validate."""
    info = ModelInfo(name="m", sha256=model, tok_s=50.0, n_ctx=2048, slots=1)
    kinds = [TaskKind.SYNTHESIZE, TaskKind.JUDGE, TaskKind.VALIDATE]
    sched.note_status(who.peer_id, NodeStatus(version="t", models=[info], task_kinds=kinds, free_slots=1,
                                              total_slots=1), now_ms())  # fmt: skip


async def until_state(s: Served, job_id: str, state: str) -> dict[str, object]:
    with trio.fail_after(20):
        while (job := await s.call(s.coordinator.store.job, job_id)).state != state:
            await trio.sleep(0.05)
    return job.doc


async def judge_tasks(s: Served, job_id: str, n: int) -> list[str]:
    with trio.fail_after(20):
        while len(tasks := await s.call(s.coordinator.store.tasks, job_id, stage=judge.STAGE)) < n:
            await trio.sleep(0.05)
    return [t.task_id for t in tasks]


async def test_rows_without_a_round_trip_are_delivered_only_when_a_judge_that_did_not_write_them_passes_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "dataset"
    async with api_server(tmp_path / "coord") as s:
        sched = s.coordinator.runtime.scheduler
        row_tasks = await s.call(judged_job, s.coordinator, "terms", out, rows=3)
        assert "terms" in s.coordinator.resume_jobs()
        ids = await judge_tasks(s, "terms", len(TERMS))
        assert sorted(ids) == sorted(judge_task_id(t, 0) for t in row_tasks)
        assert [judged_row(i) for i in sorted(ids)] == [(t, 0) for t in sorted(row_tasks)]
        first = judge_task_id(row_tasks[0], 0)
        payload = await s.call(s.coordinator.store.task_payload, first)
        assert isinstance(payload, JudgePayload) and payload.chunk is not None and payload.chunk.text == CHUNK_TEXT
        assert payload.row == {"term": TERMS[0][0], "definition": TERMS[0][1]}
        # The writers are live, but nobody holds a judge model: the job says it waits for judge nodes.
        for who in WRITERS:
            await s.call(arrive, sched, who, MODEL)
        doc = await until_state(s, "terms", "waiting_for_nodes")
        assert doc["waiting_for_nodes"] == {"stage": "judge", "live": 0, "needed": 2}
        for who in JUDGES:
            await s.call(arrive, sched, who, JUDGE_MODEL)
        await until_state(s, "terms", "running")

        # A writer of the row may not judge it, and no node may judge with a model outside the judge list.
        refused = await s.call(claim, sched, WRITERS[0], first, JUDGE_MODEL)
        assert isinstance(refused, Reject) and refused.reason is RejectReason.ALREADY_HELD
        wrong = await s.call(claim, sched, JUDGES[0], first, MODEL)
        assert isinstance(wrong, Reject) and wrong.reason is RejectReason.MODEL_NOT_ALLOWED

        scores = dict(zip(row_tasks, (5, 2, 4), strict=True))  # the second row fails the pass mark of 4
        for task_id, score in scores.items():
            out_ = JudgeOutput(score=score, rationale=f"The source says so; score {score}.")
            raw = json.dumps({"rationale": out_.rationale, "score": score})
            for who in JUDGES:  # new nodes: two replicas, which must agree
                g = await s.call(claim, sched, who, judge_task_id(task_id, 0), JUDGE_MODEL)
                assert isinstance(g, Grant), g
                await s.call(answer, sched, who, g, out_, raw)
        with trio.fail_after(30):
            final = await s.coordinator.wait("terms")
        drops = await s.call(s.coordinator.store.row_drops, "terms")
        peer = s.coordinator.identity.peer_id

    assert (final.state, final.rows, final.target) == ("partial", 2, 3)
    assert drops.get("judge_refused") == 1
    data = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert [r["term"] for r in data] == [TERMS[0][0], TERMS[2][0]]
    lines = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    for line, score in zip(lines, (5, 4), strict=True):
        assert line["judge"]["score"] == score and line["judge"]["min_score"] == 4
        assert line["judge"]["model_sha256"] == JUDGE_MODEL
        assert line["judge"]["peer_id"] in {j.peer_id for j in JUDGES}
        assert "judge" in line["checks"] and "rescored" not in line["checks"]  # a judge re-scores nothing
    card = (out / "README.md").read_text()
    assert "scored it at least 4 of 5" in card and "1 rows scored lower" in card
    report = verify_directory(out, trusted_coordinators=[peer])
    assert report.ok, report.summary()
    assert report.judges_checked == 2 and "2 judge scores" in report.summary()

    # A provenance line that raises its judge's score is caught: the judge signed another number.
    lines[1]["judge"]["score"] = 5
    (out / "provenance.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    tampered = verify_directory(out, trusted_coordinators=[peer])
    assert not tampered.ok and "no signed judge output shows this score" in tampered.summary()
    lines[1]["judge"] = {**lines[1]["judge"], "score": 4, "min_score": 5}  # the signed score, a higher mark
    first_judge, lines[0]["judge"] = lines[0]["judge"], None  # the check named, the score gone
    (out / "provenance.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = verify_directory(out, trusted_coordinators=[peer]).summary()
    assert "the judge scored 4, below 5" in summary and "claims a judge's score but records none" in summary

    # A writer's own signed score, put in as the row's judge, is refused: a judge never wrote the row.
    writer = next(w for w in WRITERS if w.peer_id == lines[0]["producer"]["peer_id"])
    g = grant(JudgePayload(row=data[0], criteria="any"), node=writer, task_id=first_judge["task_id"], job_id="terms",
              model=JUDGE_MODEL)  # fmt: skip
    own = seal(writer, result_for(g, JudgeOutput(score=5, rationale="Mine."), raw_text="{}"), now_ms=now_ms())
    lines[0]["validators"].append({"peer_id": writer.peer_id, "task_id": g.task_id,
                                   "envelope": base64.b64encode(own).decode()})  # fmt: skip
    lines[0]["judge"] = {**first_judge, "peer_id": writer.peer_id, "score": 5}
    (out / "provenance.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert "the judge is a node that wrote the row" in verify_directory(out, trusted_coordinators=[peer]).summary()


async def test_judge_replicas_with_different_scores_do_not_agree(tmp_path: Path) -> None:
    async with api_server(tmp_path / "coord") as s:
        sched = s.coordinator.runtime.scheduler
        row_tasks = await s.call(judged_job, s.coordinator, "split", tmp_path / "out", rows=3)
        s.coordinator.resume_jobs()
        await judge_tasks(s, "split", len(TERMS))
        for who in JUDGES:
            await s.call(arrive, sched, who, JUDGE_MODEL)
        await until_state(s, "split", "running")
        task_id = judge_task_id(row_tasks[0], 0)
        for who, score in zip(JUDGES, (5, 1), strict=True):
            # Rationales alike enough to pass as the same text: the scores still differ.
            out_ = JudgeOutput(score=score, rationale="The row says what the source says.")
            g = await s.call(claim, sched, who, task_id, JUDGE_MODEL)
            assert isinstance(g, Grant), g
            await s.call(answer, sched, who, g, out_, json.dumps({"rationale": out_.rationale, "score": score}))
        task = await s.call(s.coordinator.store.task, task_id)
        # Not accepted on the first replica's word: re-scoring must settle it, and no node here can.
        assert task.state is not TaskState.DONE and task.canonical_result_id is None
        verdicts = [await s.call(s.coordinator.store.verdict, r.result_id)
                    for r in await s.call(s.coordinator.store.results_for, task_id)]  # fmt: skip
        assert [v.reason for v in verdicts if v is not None] == ["unverifiable", "unverifiable"]
        await s.coordinator.cancel("split")


def test_criteria_follow_the_fields_roles_and_name_no_topic_of_their_own() -> None:
    spec = term_spec(4).model_copy(
        update={"fields": [FieldSpec(name="instruction"), FieldSpec(name="response", description="What to do")]}
    )
    text = criteria(spec)
    assert "early printing" in text  # the job's own topic, and nothing else topical
    assert "- instruction: one well-formed request or question" in text
    assert "- response (What to do): correct according to the source" in text
    assert text.endswith("Anything the source does not say counts as wrong.")


def test_a_job_without_judge_settings_or_with_a_round_trip_is_not_judged(tmp_path: Path) -> None:
    from tests.coordinator.factories import new_store

    store = new_store(tmp_path)
    doc = {"spec": term_spec(2).model_dump(mode="json"), JUDGE_KEY: {"models": [JUDGE_MODEL], "min_score": 3}}
    store.create_job("a", doc, allowed_models=[MODEL], now_ms=1)
    store.create_job("b", {"spec": doc["spec"]}, allowed_models=[MODEL], now_ms=1)
    qa = term_spec(2).model_copy(update={"fields": [FieldSpec(name="question"), FieldSpec(name="answer")]})
    store.create_job("c", {**doc, "spec": qa.model_dump(mode="json")}, allowed_models=[MODEL], now_ms=1)
    assert judge.settings(JobContext(store, "a", term_spec(2), "")) == JudgeSettings((JUDGE_MODEL,), 3)
    assert judge.settings(JobContext(store, "b", term_spec(2), "")) is None
    assert judge.settings(JobContext(store, "c", qa, "")) is None  # answer first: the round trip checks it
    assert judged_row("j:synthesize:00003.j0") == ("j:synthesize:00003", 0)
    assert judged_row("j:synthesize:00003.v12") is None and judged_row(".j0") is None
