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
from pathlib import Path

import pytest

from coordinator.compile import verify_directory

ROWS = int(os.environ.get("DATASWARM_E2E_ROWS", "20"))
TIMEOUT_S = 1500

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("e2e")
    out = base / "dataset"
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--rows", str(ROWS), "--nodes", "2", "--out", str(out),
         "--workdir", str(base / "work")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    return out, proc


def test_demo_delivers_a_verified_dataset(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = demo_run
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = verify_directory(out)
    assert report.ok, report.summary()
    for name in ("data.jsonl", "data.parquet", "README.md", "provenance.jsonl", "manifest.json", "sources.jsonl"):
        assert (out / name).is_file(), name


def test_rows_are_schema_valid_and_grounded_verbatim(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo_run
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    sources = {
        d["content_sha256"]: d["text"]
        for d in (json.loads(line) for line in (out / "sources.jsonl").read_text().splitlines())
    }
    assert len(rows) == ROWS and len(provenance) == ROWS
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


def test_datasets_loads_the_directory_as_it_is(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo_run
    code = (
        "import datasets, sys; ds = datasets.load_dataset(sys.argv[1], split='train'); "
        "print(len(ds)); print(sorted(ds.column_names))"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(out.parent / "hf")}
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, columns = proc.stdout.strip().splitlines()[-2:]
    assert int(count) == ROWS
    assert columns == str(["answer", "question", "source_url"])


def test_tampering_is_detected_by_the_cli(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = demo_run
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
