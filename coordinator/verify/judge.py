"""The judge check: for rows that no round trip can check, a node running a stronger model scores the row
against its source, and only rows that reach the job's minimum score are delivered.

Owns: the job's judge settings (`JudgeSettings`, kept in the job document under JUDGE_KEY when the
operator configured `judge_models`), the criteria the judge is given (built from the spec's fields and
their roles, never from a topic or an example), and the verdict of one judge output.
Must not: schedule judge tasks (pipeline/judge.py does) or grant them (the scheduler does, to nodes
whose model is one of `models` and that wrote none of the row's replicas).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.spec import DatasetSpec, FieldType, asks
from protocol.tasks import JudgeOutput

JUDGE_KEY = "judge"
"""Key of the judge settings in a job document: {"models": [digest, ...], "min_score": int}."""


@dataclass(frozen=True)
class JudgeSettings:
    models: tuple[str, ...]
    """GGUF sha256 digests a judge node may run."""
    min_score: int

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> JudgeSettings | None:
        """The settings in a job document; None when the job has no judge."""
        raw = doc.get(JUDGE_KEY)
        if not isinstance(raw, Mapping):
            return None
        models, min_score = raw.get("models"), raw.get("min_score")
        if not isinstance(models, list) or not models or not isinstance(min_score, int):
            return None
        return cls(tuple(str(m) for m in models), min_score)

    def passes(self, output: JudgeOutput) -> bool:
        return output.score >= self.min_score


def criteria(spec: DatasetSpec) -> str:
    """What the judge checks, from the fields' roles: the acceptance rubric, in words that fit any topic."""
    lines = [f"The row must be a correct, well-formed example of: {' '.join(spec.topic.split())[:300]}."]
    for f in spec.generated_fields:
        what = " ".join(f.description.split())[:160]
        if f.type is FieldType.ENUM:
            role = f"one of {', '.join(f.choices)}, and the right one for the row"
        elif asks(f.name):
            role = "one well-formed request or question that a reader could make of the source"
        else:
            role = "correct according to the source, and it answers or fulfils the row's other fields"
        lines.append(f"- {f.name}{f' ({what})' if what else ''}: {role}.")
    if spec.grounded:
        lines.append("Anything the source does not say counts as wrong.")
    return "\n".join(lines)[:2000]
