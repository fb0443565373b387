"""Compile and deliver: accepted rows in, a signed, offline-verifiable dataset directory out.

One concept per module, in data-flow order:
- `records`     the inputs the pipeline hands over (AcceptedRow, ProducerRecord, ValidatorRecord, JobStats)
- `signed`      re-opening signed Result envelopes offline
- `rows`        a delivered row = the producer's signed row + derived fields; its Merkle leaf
- `evidence`    where an evidence quote sits in its source
- `merkle`      the RFC 6962 tree over the rows
- `provenance`  the provenance.jsonl (and sources.jsonl) line formats
- `dataset`     data.jsonl and data.parquet
- `diversity`   distinct-n and the Vendi score
- `exports`     TRL chat / prompt-completion files
- `card`        README.md, the Hugging Face dataset card
- `manifest`    manifest.json and the coordinator's signature
- `compiler`    compile_dataset, which ties them together
- `verify_dir`  verify_directory, which checks all of it offline
- `verify_report` what it found (Problem, VerifyReport)
"""

from coordinator.compile.compiler import CompiledDataset, compile_dataset
from coordinator.compile.diversity import DiversityReport
from coordinator.compile.errors import CompileError
from coordinator.compile.exports import ExportFormat
from coordinator.compile.records import AcceptedRow, JobStats, ProducerRecord, ValidatorRecord
from coordinator.compile.verify_dir import verify_directory
from coordinator.compile.verify_report import Problem, VerifyReport

__all__ = [
    "AcceptedRow",
    "CompileError",
    "CompiledDataset",
    "DiversityReport",
    "ExportFormat",
    "JobStats",
    "Problem",
    "ProducerRecord",
    "ValidatorRecord",
    "VerifyReport",
    "compile_dataset",
    "verify_directory",
]
