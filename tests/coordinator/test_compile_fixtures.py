"""Builders for the compile / verify tests: real identities, real signed Results, a compiled dataset.

Holds no tests itself (it is named test_compile_* only to sit within the files this suite owns).
Test modules import the fixtures by their `*_fixture` names; pytest registers them under `name=`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coordinator.compile import AcceptedRow, JobStats, ProducerRecord, ValidatorRecord, compile_dataset
from coordinator.compile.compiler import CompiledDataset
from coordinator.compile.evidence import locate
from coordinator.compile.exports import ExportFormat
from coordinator.spec import DatasetSpec, FieldSource, FieldSpec, FieldType
from protocol.envelope import seal
from protocol.identity import Identity
from protocol.messages import GenerationStats, Result
from protocol.tasks import (
    DecodingParams,
    Document,
    GeneratedRow,
    SourceChunk,
    SynthesizeOutput,
    ValidateOutput,
)

T0 = 1_700_000_000_000
JOB = "job-42"
MODEL = "5a" * 32
OTHER_MODEL = "6b" * 32
COORDINATOR = Identity.from_seed(b"\xc0" * 32)
NODES = [Identity.from_seed(bytes([0x10 + i]) * 32) for i in range(4)]
VALIDATOR = Identity.from_seed(b"\x77" * 32)
STRANGER = Identity.from_seed(b"\x99" * 32)

REQUEST = (
    "8 question-answer pairs about Python's standard library, grounded in the docs, "
    "JSON with question, answer, source_url"
)

DOC_URL = "http://127.0.0.1:8765/library/collections.html"
DOC_TEXT = (
    "collections — Container datatypes\n\n"
    "This module implements specialized container datatypes providing alternatives to Python’s general "
    "purpose built-in containers, dict, list, set, and tuple.\n\n"
    "A deque is a list-like container with fast appends and pops on either end. Deques support thread-safe, "
    "memory efficient appends and pops from either side of the deque with approximately the same O(1) "
    "performance in either direction.\n\n"
    "A Counter is a dict subclass for counting hashable objects. It is a collection where elements are stored "
    "as dictionary keys and their counts are stored as dictionary values.\n\n"
    "An OrderedDict is a dict subclass that has methods specialized for rearranging dictionary order. "
    "The popitem() method of OrderedDict has a different signature.\n\n"
    "A defaultdict is a subclass of the built-in dict class. It overrides one method and adds one writable "
    "instance variable: default_factory, which is called to supply missing values.\n\n"
    "namedtuple() is a factory function for creating tuple subclasses with named fields, which assign meaning "
    "to each position in a tuple and allow for more readable, self-documenting code."
)
DOC2_URL = "http://docs.local/library/json.html"
DOC2_TEXT = (
    "json — JSON encoder and decoder\n\n"
    "json.dumps serializes obj to a JSON formatted str. If ensure_ascii is true, the output is guaranteed to "
    "have all incoming non-ASCII characters escaped. json.loads deserializes a str, bytes or bytearray instance "
    "containing a JSON document to a Python object."
)

# (document, evidence as quoted, question, answer). Evidence 1 re-flows whitespace and straightens a quote,
# as small models do, so the normalized match is exercised.
_ROWS = [
    (0, "A deque is a list-like container with fast appends and pops on either end.",
     "What is a deque in Python's collections module?",
     "A list-like container with fast appends and pops on either end."),
    (0, "alternatives to Python's general   purpose built-in containers",
     "What does the collections module provide?",
     "Specialized container datatypes, alternatives to dict, list, set and tuple."),
    (0, "A Counter is a dict subclass for counting hashable objects.",
     "What is collections.Counter for?", "Counting hashable objects; it is a dict subclass."),
    (0, "The popitem() method of OrderedDict has a different signature.",
     "How does OrderedDict.popitem differ?", "Its popitem() method has a different signature."),
    (0, "default_factory, which is called to supply missing values",
     "What does default_factory do in a defaultdict?", "It is called to supply missing values."),
    (0, "namedtuple() is a factory function for creating tuple subclasses with named fields",
     "What is namedtuple()?", "A factory function for creating tuple subclasses with named fields."),
    (1, "json.dumps serializes obj to a JSON formatted str.",
     "What does json.dumps return?", "A JSON formatted str."),
    (1, "json.loads deserializes a str, bytes or bytearray instance containing a JSON document",
     "What can json.loads deserialize?", "A str, bytes or bytearray instance containing a JSON document."),
]  # fmt: skip


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


DOCS = [
    Document(url=DOC_URL, title="collections", text=DOC_TEXT, content_sha256=sha(DOC_TEXT)),
    Document(url=DOC2_URL, title="json", text=DOC2_TEXT, content_sha256=sha(DOC2_TEXT)),
]


def spec(rows: int = 8, **update: object) -> DatasetSpec:
    base = DatasetSpec(
        topic="Python's standard library",
        description=REQUEST,
        rows=rows,
        grounded=True,
        fields=[
            FieldSpec(name="question", description="A question", min_length=5, max_length=300),
            FieldSpec(name="answer", description="The answer", max_length=1000),
            FieldSpec(name="source_url", type=FieldType.STRING, max_length=2000, source=FieldSource.SOURCE_URL),
        ],
    )
    return base.model_copy(update=update) if update else base


def chunk_of(doc: Document, start: int, end: int) -> SourceChunk:
    return SourceChunk(url=doc.url, content_sha256=doc.content_sha256, start=start, end=end, text=doc.text[start:end])


def chunk_for(doc_index: int, evidence: str) -> SourceChunk:
    """A ~320-char chunk of the document around where the evidence sits."""
    doc = DOCS[doc_index]
    span = locate(evidence, doc.text)
    assert span is not None, evidence
    start = max(0, span[0] - 40)
    return chunk_of(doc, start, min(len(doc.text), start + 320))


def nonce(*parts: object) -> bytes:
    """A deterministic envelope nonce, so rebuilding the fixtures rebuilds the same bytes."""
    return hashlib.sha256(repr(parts).encode()).digest()[:16]


def synth_result(
    task_id: str, question: str, answer: str, evidence: str, *, seed: int, model: str = MODEL, job: str = JOB
) -> Result:
    data = {"question": question, "answer": answer}
    return Result(
        task_id=task_id,
        job_id=job,
        lease_id=f"lease-{task_id}",
        attempt=0,
        output=SynthesizeOutput(rows=[GeneratedRow(data=data, evidence=evidence)]),
        model_sha256=model,
        decoding=DecodingParams(seed=seed, temperature=0.7, top_k=40, top_p=0.95, max_tokens=512),
        prompt=f"Write one question and answer grounded in the source. Task {task_id}.",
        raw_text=json.dumps(data),
        stats=GenerationStats(prompt_tokens=120, completion_tokens=40, mean_logprob=-0.8, seconds=1.2),
    )


def validate_result(task_id: str) -> Result:
    return Result(
        task_id=task_id,
        job_id=JOB,
        lease_id=f"lease-{task_id}",
        attempt=0,
        output=ValidateOutput(n_tokens=40, mean_logprob=-0.82, topk_rate=0.97, token_logprobs=[-0.8] * 4),
        model_sha256=MODEL,
    )


@dataclass
class Built:
    rows: list[AcceptedRow]
    stats: JobStats
    results: list[Result] = field(default_factory=list)


def build_rows(n: int = 8) -> Built:
    """n accepted rows with real signatures: producers rotate over NODES; row 0 has a replica,
    even rows have a validator with its signed validate Result."""
    rows: list[AcceptedRow] = []
    results: list[Result] = []
    for i in range(n):
        doc_i, evidence, question, answer = _ROWS[i % len(_ROWS)]
        if i >= len(_ROWS):
            question = f"{question} (variant {i})"
        task = f"synth-{i}"
        result = synth_result(task, question, answer, evidence, seed=1000 + i)
        results.append(result)
        producer = NODES[i % len(NODES)]
        replicas = []
        if i == 0:
            replica_node = NODES[(i + 1) % len(NODES)]
            replica = result.model_copy(update={"lease_id": f"lease-{task}-r"})
            replica_env = seal(replica_node, replica, now_ms=T0, nonce=nonce(task, "r"))
            replicas.append(ProducerRecord(peer_id=replica_node.peer_id, envelope=replica_env))
        validators = []
        if i % 2 == 0:
            vtask = f"validate-{i}"
            validators.append(
                ValidatorRecord(
                    peer_id=VALIDATOR.peer_id,
                    task_id=vtask,
                    envelope=seal(VALIDATOR, validate_result(vtask), now_ms=T0 + 10 * i + 5, nonce=nonce(vtask)),
                )
            )
        rows.append(
            AcceptedRow(
                task_id=task,
                producer=ProducerRecord(
                    peer_id=producer.peer_id, envelope=seal(producer, result, now_ms=T0 + 10 * i, nonce=nonce(task))
                ),
                replicas=replicas,
                validators=validators,
                chunk=chunk_for(doc_i, evidence),
                upstream_task_ids=["qgen-0", f"search-{doc_i}", f"retrieve-{doc_i}", "curate-0"],
            )
        )
    stats = JobStats(
        job_id=JOB,
        nodes=6,
        tasks=40,
        executions=58,
        replication=1.45,
        rejections={"evidence_not_found": 3, "schema_invalid": 1, "near_duplicate": 2},
        duplicates_removed=2,
        models={MODEL: "SmolLM2-135M-Instruct.Q4_1.gguf"},
        started_at_ms=T0,
        finished_at_ms=T0 + 60_000,
    )
    return Built(rows=rows, stats=stats, results=results)


def compile_into(out: Path, n: int = 8, formats: tuple[ExportFormat, ...] = ()) -> CompiledDataset:
    built = build_rows(n)
    return compile_dataset(
        out,
        spec=spec(rows=n),
        request=REQUEST,
        rows=built.rows,
        stats=built.stats,
        coordinator=COORDINATOR,
        created_at_ms=T0 + 120_000,
        documents=DOCS,
        formats=formats,
    )


@pytest.fixture(scope="session", name="compiled_base")
def compiled_base_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled dataset (with both exports); tests copy it before touching it."""
    out = tmp_path_factory.mktemp("base") / "dataset"
    compile_into(out, formats=(ExportFormat.CHAT, ExportFormat.PROMPT_COMPLETION))
    return out


@pytest.fixture(name="dataset_dir")
def dataset_dir_fixture(compiled_base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "dataset"
    shutil.copytree(compiled_base, out)
    return out


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
