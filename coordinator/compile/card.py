"""README.md: the Hugging Face dataset card, with how the data was made.

Owns: the card's YAML front matter (license, language, size_categories,
task_categories, pretty_name, tags, a `configs:` entry that points the default
config at data.jsonl alone, so `datasets.load_dataset(DIR)` never reads
provenance.jsonl or the exports as data, and the features with their dtypes)
and its body: the request, the spec, models and digests, nodes, verification
figures, diversity, sources, files and how to verify them.
Everything user-supplied goes through YAML serialization or Markdown
escaping, so a request cannot break the card's structure.
Must not: compute any figure (the compiler hands them in as `CardFacts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from coordinator.compile.dataset import DATA_JSONL, HF_DTYPES
from coordinator.compile.diversity import VENDI_SAMPLE, DiversityReport
from coordinator.compile.exports import ExportFormat, export_path
from coordinator.compile.records import JobStats
from coordinator.spec import DatasetSpec, FieldType
from coordinator.verify.error_rates import card_lines as error_rate_lines

README_FILE = "README.md"
MAX_CARD_NOTES = 40


@dataclass(frozen=True)
class CardFacts:
    spec: DatasetSpec
    request: str
    rows: int
    job: JobStats
    diversity: DiversityReport
    merkle_root: str
    coordinator_peer_id: str
    created_at_ms: int
    models: dict[str, int]
    """Model digest -> delivered rows it produced."""
    decoding: dict[str, list[Any]]
    """Decoding parameter -> distinct values used (seed excluded)."""
    producers: int
    validators: int
    mean_producers_per_row: float
    validated_rows: int
    """Rows re-scored by a validator that wrote none of their replicas."""
    domains: list[tuple[str, int]]
    documents: int
    files: list[str]
    exports: list[ExportFormat] = field(default_factory=list)
    dropped_duplicates: int = 0
    spec_notes: tuple[str, ...] = ()
    """How the request was read into the spec: the rules' guesses and the spec task's merge."""
    checks: dict[str, int] = field(default_factory=dict)
    """"+"-joined checks a row passed (provenance `checks`) -> delivered rows."""
    pages: list[tuple[str, int]] = field(default_factory=list)
    """Source URL -> delivered rows, most first."""
    self_checked_rows: int = 0
    """Rows re-scored only by the operator's own node that wrote them (a trusted node alone)."""


def size_category(n: int) -> str:
    """Hugging Face's size_categories buckets."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for limit, name in bounds:
        if n < limit:
            return name
    return "1M<n<10M"


def task_categories(spec: DatasetSpec) -> list[str]:
    names = {f.name for f in spec.generated_fields}
    if {"question", "answer"} <= names:
        return ["question-answering"]
    if "summary" in names:
        return ["summarization"]
    texts = [f for f in spec.generated_fields if f.type is FieldType.STRING]
    labels = [f for f in spec.generated_fields if f.type is FieldType.ENUM]
    if labels and len(texts) == 1:
        return ["text-classification"]
    return ["text-generation"]


def pretty_name(spec: DatasetSpec) -> str:
    topic = spec.topic[:1].upper() + spec.topic[1:]
    return f"{topic} ({spec.rows} rows, dataswarm)"


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;") or " "


def _fenced(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def front_matter(facts: CardFacts) -> dict[str, Any]:
    spec = facts.spec
    configs: list[dict[str, Any]] = [
        {"config_name": "default", "default": True, "data_files": [{"split": "train", "path": DATA_JSONL}]}
    ]
    configs += [
        {"config_name": fmt.value, "data_files": [{"split": "train", "path": export_path(fmt)}]}
        for fmt in facts.exports
    ]
    return {
        "license": spec.license,
        "language": [spec.language],
        "size_categories": [size_category(facts.rows)],
        "task_categories": task_categories(spec),
        "pretty_name": pretty_name(spec),
        "tags": ["synthetic", "dataswarm", *(["grounded"] if spec.grounded else [])],
        "configs": configs,
        "dataset_info": [
            {
                "config_name": "default",
                "features": [{"name": f.name, "dtype": HF_DTYPES[f.type]} for f in spec.fields],
            }
        ],
    }


def _bounds(spec: DatasetSpec, name: str) -> str:
    f = spec.field(name)
    if f.type is FieldType.STRING:
        return f"{f.min_length}–{f.max_length} chars"
    if f.type is FieldType.ENUM:
        return " / ".join(f.choices)
    if f.minimum is not None or f.maximum is not None:
        lo = "" if f.minimum is None else f.minimum
        hi = "" if f.maximum is None else f.maximum
        return f"{lo}…{hi}"
    return ""


def _grounded_line(facts: CardFacts) -> str:
    if not facts.spec.grounded:
        return "no"
    if facts.job.answer_first:
        return (
            "yes: every answer is a sentence of a retrieved source, verbatim, and a validator that did not "
            "write the row recovered that sentence from the question alone (round trip)"
        )
    if facts.job.label_first:
        return (
            "yes: every text is a sentence of a retrieved source, verbatim, and a validator that did not "
            "write the row read the same label back from the text alone, with the choices in two orders "
            "(label round trip)"
        )
    if facts.job.judge_min_score is not None:
        return (
            "yes: every row quotes evidence from a retrieved source, and a judge node that did not write the row "
            f"scored it at least {facts.job.judge_min_score} of 5 against that source (judge)"
        )
    return (
        "yes: every row quotes evidence from a retrieved source; no third node checked what the row says "
        "(word-overlap gates only)"
    )


def _quality_lines(facts: CardFacts) -> list[str]:
    """Which checks rows passed, what the rows cost, and why fewer rows were delivered."""
    job = facts.job
    lines: list[str] = []
    if facts.checks:
        lines.append("- checks each delivered row passed (provenance.jsonl `checks`):")
        lines += [f"  - {_cell(combo.replace('+', ', '))}: {n} rows" for combo, n in sorted(facts.checks.items())]
    if job.candidates:
        per_row = f"{job.synthesize_seconds / facts.rows:.1f} s" if facts.rows else "n/a"
        tokens = f"{job.synthesize_tokens / facts.rows:.0f}" if facts.rows else "n/a"
        lines += [
            f"- yield: {facts.rows} delivered rows of {job.candidates} synthesize runs "
            f"({facts.rows / job.candidates:.0%}); most candidates are dropped by the checks above on purpose",
            f"- generation cost per delivered row: {per_row} and {tokens} tokens of synthesize work, plus "
            f"{job.validate_seconds / max(1, facts.rows):.1f} s of validation (node-reported)",
        ]
    if job.judge_min_score is not None:
        names = ", ".join(_cell(job.models.get(m, m[:12])) for m in job.judge_models)
        refused, unjudged = job.rejections.get("judge_refused", 0), job.rejections.get("unjudged", 0)
        lines.append(
            f"- judge: every delivered row was scored at least {job.judge_min_score} of 5 by a node running "
            f"{names} that wrote none of its replicas; {refused} rows scored lower and {unjudged} found no judge, "
            "and none of those was delivered (provenance.jsonl `judge` holds each score and rationale)"
        )
    if job.partial:
        lines.append(f"- **partial**: {_cell(job.partial)}")
    return lines


def _self_checked_lines(facts: CardFacts) -> list[str]:
    if not facts.self_checked_rows:
        return []
    return [
        f"- **verified by the operator's own node only**: {facts.self_checked_rows} of {facts.rows} rows were "
        "re-scored (and round-tripped) by the same trusted node that wrote them, in a separate validate task; "
        "no independent node checked them, so they show that the declared model wrote them, not that another "
        "party agrees"
    ]


def _made_by(facts: CardFacts) -> str:
    if facts.self_checked_rows and not facts.validated_rows and facts.mean_producers_per_row <= 1:
        return "written by the operator's own node and checked by that node in a separate re-scoring pass"
    return "written by volunteer nodes of a dataswarm network and verified by redundancy before delivery"


def render_card(facts: CardFacts) -> str:
    spec, job, div = facts.spec, facts.job, facts.diversity
    yaml_text = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True)
    out: list[str] = ["---", yaml_text.rstrip("\n"), "---", ""]
    out += [
        f"# {_cell(pretty_name(spec))}",
        "",
        f"{facts.rows} rows about **{_cell(spec.topic)}**, {_made_by(facts)}. Every row carries the signed "
        "result of the node that "
        "wrote it; `manifest.json` is signed by the coordinator over a Merkle root of the rows.",
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("path/to/this/directory", split="train")',
        "```",
        "",
        "## Request",
        "",
        _fenced(facts.request),
        "",
        "## Spec",
        "",
        f"- topic: {_cell(spec.topic)}",
        f"- rows requested: {spec.rows}; delivered: {facts.rows}",
        f"- grounded: {_grounded_line(facts)}",
        f"- language: {spec.language}",
        f"- license: {spec.license}",
        "",
        "| field | type | bounds | filled by | description |",
        "|---|---|---|---|---|",
    ]
    for f in spec.fields:
        filled = "model" if not f.derived else f"provenance ({f.source.value})"
        out.append(
            f"| {_cell(f.name)} | {f.type.value} | {_cell(_bounds(spec, f.name))} | {filled} | {_cell(f.description)} |"
        )
    if facts.spec_notes:
        out += ["", "How the request was read (rules first, then the `spec` task's draft where it ran):", ""]
        out += [f"- {_cell(note)}" for note in facts.spec_notes[:MAX_CARD_NOTES]]
    out += ["", "## How it was made", "", "### Models", "", "| model | sha256 | rows |", "|---|---|---|"]
    for digest, n in sorted(facts.models.items(), key=lambda kv: -kv[1]):
        out.append(f"| {_cell(job.models.get(digest, 'unnamed'))} | `{digest}` | {n} |")
    if facts.decoding:
        out += [
            "",
            "Decoding (fixed by the coordinator in each grant; seeds vary per task): "
            + ", ".join(f"{k} = {', '.join(map(str, v))}" for k, v in sorted(facts.decoding.items())),
        ]
    out += [
        "",
        "### Nodes",
        "",
        f"- nodes that took part in the job: {job.nodes}",
        f"- nodes whose output was delivered (including agreeing replicas): {facts.producers}",
        f"- nodes that re-scored delivered rows: {facts.validators}",
        "",
        "### Verification",
        "",
        f"- producers per delivered row (replication used): {facts.mean_producers_per_row:.2f}",
    ]
    if job.replication is not None:
        out.append(f"- runs per generative task across the job: {job.replication:.2f}")
    out += [
        f"- delivered rows re-scored by an independent validator: {facts.validated_rows} of {facts.rows}",
        *_self_checked_lines(facts),
        *error_rate_lines(facts.models),
        *_quality_lines(facts),
        f"- tasks: {job.tasks}, runs: {job.executions}",
        f"- duplicates removed: {job.duplicates_removed + facts.dropped_duplicates}",
        "",
    ]
    if job.rejections:
        out += ["| rejected for | results |", "|---|---|"]
        out += [f"| {_cell(reason)} | {n} |" for reason, n in sorted(job.rejections.items(), key=lambda kv: -kv[1])]
    else:
        out.append("No result was rejected.")
    out += [
        "",
        "### Diversity",
        "",
        f"- distinct-1: {div.distinct_1:.3f}, distinct-2: {div.distinct_2:.3f} "
        "(distinct word n-grams / all word n-grams over the generated text)",
        f"- Vendi score: {div.vendi:.1f} on {div.vendi_rows} rows (ratio {div.vendi_ratio:.3f}): the effective "
        "number of distinct rows, from a cosine kernel over word uni- and bigram counts "
        f"(at most {VENDI_SAMPLE} rows, spread evenly)",
        "",
    ]
    if spec.grounded or facts.documents:
        out += ["### Sources", "", f"{facts.documents} documents from {len(facts.domains)} domains.", ""]
        if facts.pages:
            top, n = facts.pages[0]
            out += [
                f"Delivered rows come from {len(facts.pages)} distinct pages; the largest share of one page is "
                f"{n / max(1, facts.rows):.0%} ({n} rows, {_cell(top)}).",
                "",
            ]
        if facts.domains:
            out += ["| domain | rows |", "|---|---|"]
            out += [f"| {_cell(d)} | {n} |" for d, n in facts.domains[:20]]
            if len(facts.domains) > 20:
                out.append(f"| … {len(facts.domains) - 20} more | |")
        out.append("")
    out += ["## Files", ""]
    out += [f"- `{name}`" for name in facts.files]
    out += [
        "- `manifest.json`: sha256 of every file above, the Merkle root of the rows, signed by the coordinator",
        "",
        "## Verify",
        "",
        "```bash",
        "dataswarm verify DIR",
        "```",
        "",
        "checks offline: the coordinator's signature on the manifest, every file digest, the Merkle root "
        "(RFC 6962, SHA-256; leaf = canonical msgpack of the row), each producer's signature on its result, "
        "that each row equals the row its producer signed, and that each evidence quote occurs in its source.",
        "",
        f"- Merkle root: `{facts.merkle_root}`",
        f"- coordinator: `{facts.coordinator_peer_id}`",
        f"- job: `{_cell(job.job_id)}`, compiled at {facts.created_at_ms} (unix ms)",
        "",
        "`provenance.jsonl` has one line per row: task ids, the producing and validating nodes, their signed "
        "result envelopes (base64), model digests, decoding parameters, and the source URL with its content "
        "sha256, the chunk and the evidence offsets.",
        "",
    ]
    return "\n".join(out)
