"""From a sentence to a delivered dataset, for real: `dataswarm demo` on loopback.

A coordinator, two node processes with the bundled SmolLM2 model, the python3.11-doc
corpus served over HTTP on 127.0.0.1 and indexed for the local search backend. The
delivered directory is then checked independently of the code that wrote it: the
offline verifier, `datasets.load_dataset`, the row schema, and every evidence quote
found verbatim in the full text of its cited source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from coordinator.compile import verify_directory
from coordinator.store import Store, TaskState
from coordinator.verify.questions import check_answer_first, check_question
from node.executors.synthesize import leaked_words
from tests.e2e.demo_run import DemoRun, run_demo

ROWS = int(os.environ.get("DATASWARM_E2E_ROWS", "12"))
TIMEOUT_S = 1100
"""About 3 minutes on a 2-core machine (12 rows; `make demo` asks for 20); past 15 the run is stuck."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_demo(tmp_path_factory.mktemp("e2e"), ["--rows", str(ROWS), "--nodes", "2"], timeout_s=TIMEOUT_S)


def test_demo_delivers_a_verified_dataset(demo_run: DemoRun) -> None:
    out = demo_run.out
    assert demo_run.returncode == 0, f"demo failed or timed out after {TIMEOUT_S} s:\n{demo_run.diagnosis()}"
    report = verify_directory(out)
    assert report.ok, report.summary()
    for name in ("data.jsonl", "data.parquet", "README.md", "provenance.jsonl", "manifest.json", "sources.jsonl"):
        assert (out / name).is_file(), name


def test_the_job_started_with_a_verified_spec_task(demo_run: DemoRun) -> None:
    # The real model read the request on the network; replicas agreed (greedy, same seed), and
    # the draft was merged over the rules' reading (the 135M model's draft misreads this request
    # and is dropped with a note). What the request said explicitly stands either way.
    store = Store(demo_run.work / "coordinator" / "coordinator.db")
    (job,) = store.jobs()
    assert store.stages(job.job_id).get("spec") == "done"
    (task,) = store.tasks(job.job_id, stage="spec")
    assert task.state is TaskState.DONE, demo_run.diagnosis()
    assert job.doc["llm_spec"] is True and job.doc["spec_refined"] is True
    notes = job.doc["spec_notes"]
    assert any(n.startswith("llm:") for n in notes) and not any("no verified draft" in n for n in notes)
    spec = job.doc["spec"]
    assert [f["name"] for f in spec["fields"]] == ["question", "answer", "source_url"] and spec["grounded"]
    assert "How the request was read" in (demo_run.out / "README.md").read_text()


def test_rows_are_schema_valid_and_grounded_verbatim(demo_run: DemoRun) -> None:
    out = demo_run.out
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    sources = {
        d["content_sha256"]: d["text"]
        for d in (json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines())
    }
    delivered = len(rows)
    assert 0 < delivered <= ROWS and len(provenance) == delivered
    if delivered < ROWS:  # fewer rows rather than bad ones, and the card says why
        assert "**partial**" in (out / "README.md").read_text()
    for row, prov in zip(rows, provenance, strict=True):
        assert set(row) == {"question", "answer", "source_url"}
        assert all(isinstance(v, str) and v.strip() for v in row.values())
        assert row["source_url"].startswith("http://127.0.0.1:")
        source = prov["source"]
        quote = source["evidence"]
        assert len(quote) >= 8
        full_text = sources[source["content_sha256"]]
        assert quote in full_text, f"evidence not verbatim in {source['url']}: {quote!r}"
        assert full_text[source["chunk_start"] : source["chunk_end"]] == source["chunk_text"]
        assert source["url"] == row["source_url"]


def test_rows_are_answer_first_and_passed_the_round_trip(demo_run: DemoRun) -> None:
    """Each answer is its source sentence, each question one well-formed question that a validator traced
    back to that sentence, and no question repeats what only the prompt's examples say."""
    out = demo_run.out
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    for row, prov in zip(rows, provenance, strict=True):
        assert row["answer"] == prov["source"]["evidence"]
        assert check_question(row["question"]) is None, row["question"]
        assert check_answer_first(row["question"], row["answer"], row["answer"]) is None, row
        assert leaked_words(row["question"], prov["source"]["chunk_text"]) == [], row["question"]
        assert "roundtrip" in prov["checks"] and prov["roundtrip"]["answer_rank"] == 0, prov["checks"]
        assert prov["validators"] and prov["validators"][0]["peer_id"] != prov["producer"]["peer_id"]
    assert len({r["question"] for r in rows}) == len(rows)
    card = (out / "README.md").read_text()
    assert "round trip" in card and "yield:" in card and "distinct pages" in card


def test_datasets_loads_the_directory_as_it_is(demo_run: DemoRun) -> None:
    out = demo_run.out
    code = (
        "import datasets, sys; ds = datasets.load_dataset(sys.argv[1], split='train'); "
        "print(len(ds)); print(sorted(ds.column_names))"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(out.parent / "hf")}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, columns = proc.stdout.strip().splitlines()[-2:]
    assert int(count) == len((out / "data.jsonl").read_text().splitlines())
    assert columns == str(["answer", "question", "source_url"])


def test_tampering_is_detected_by_the_cli(demo_run: DemoRun) -> None:
    out = demo_run.out
    tampered = out.parent / "tampered"
    subprocess.run(["cp", "-r", str(out), str(tampered)], check=True)
    lines = (tampered / "data.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["answer"] = "Something the network never produced."
    lines[0] = json.dumps(row)
    (tampered / "data.jsonl").write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "cli", "verify", str(tampered)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "data.jsonl" in proc.stdout + proc.stderr
