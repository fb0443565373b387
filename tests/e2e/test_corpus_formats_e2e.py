"""`dataswarm demo --corpus DIR --nodes 1` on a folder of Markdown files, a PDF and hostile pages, for real.

The test writes the corpus (neutral prose on tidal energy, honeybees and lighthouses: four
Markdown files and one PDF written by fpdf2; beside them the hostile HTML pages of
tests/e2e/hostile_corpus.py: prompt injections, one sentence repeated 10,000 times, navigation
only, another language, mostly code), runs the demo with one node (the operator's own, so it
checks itself) and the bundled model, and checks the delivered dataset independently of the code
that wrote it: `dataswarm verify` passes, every row's evidence sits at its recorded offsets in the
text the extractor makes of the source file itself, whose sha256 is the recorded digest, the card
says who checked the rows, and no row carries injected text or quotes boilerplate or repetition.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from coordinator.compile import verify_directory
from coordinator.store import Store, TaskState
from node.retrieve.extract import extract_document
from node.search.corpus_server import CORPUS_CONTENT_TYPES
from protocol.tasks import MAX_DOCUMENT_CHARS
from tests.e2e.demo_run import DemoRun, run_demo
from tests.e2e.hostile_corpus import INJECTED_MARKERS, NEVER_EVIDENCE, write_hostile_corpus
from tests.node.document_support import LIGHTHOUSE_PAGES, make_pdf

ROWS = 4
TIMEOUT_S = 600
"""About 4 minutes on a 2-core machine; past 10 the run is stuck, and the logs say where."""
REQUEST = (
    "question-answer pairs about lighthouses, tidal energy and honeybees, grounded in the documents, "
    "JSON with question, answer, source_url"
)
PDF_EXTRA_PAGE = (
    "The lamps of modern lighthouses draw their energy from solar panels and batteries instead of oil. "
    "The Tidal light at a harbour entrance shows ships when the water over the bar is deep enough to cross.",
    "The Bell Rock Lighthouse is the oldest surviving sea-washed lighthouse in the world. Waves cover its "
    "rock at high tide, and the tower stands in the open sea off the east coast of Scotland.",
)
"""Words the other topics' queries use (energy, tidal), so the PDF is a search hit for them too."""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MARKDOWN_FILES = {
    "energy/tidal-barrages.md": """# Tidal barrages

Tidal energy is a form of hydropower that turns the rise and fall of the sea into electricity.
The Moon raises two bulges of water on opposite sides of the Earth, and the coast sees two high
tides a day as the planet turns beneath them.

A tidal barrage is a low dam built across the mouth of an estuary. The La Rance barrage is a tidal
power station on the estuary of the Rance river in Brittany. The Sihwa Lake station in South Korea
is the largest tidal power station in the world.

## Estuaries

- The Annapolis Royal station in Nova Scotia is a tidal power plant on the Bay of Fundy.
- A barrage changes how sediment settles in an estuary and how far the tide reaches inland.
""",
    "energy/tidal-streams.md": """# Tidal stream turbines

A tidal stream turbine works like an underwater windmill that the current turns. The MeyGen array
uses large turbines on the seabed of the Pentland Firth in Scotland. The Pentland Firth is a strait
between the Orkney Islands and the north coast of Scotland.

Tidal currents are predictable years in advance, unlike the wind. The European Marine Energy Centre
tests new tidal turbines in the waters around the Orkney Islands.
""",
    "bees/colony.md": """# The honeybee colony

A honeybee colony is a family of insects that lives together in a single nest called a hive.
The European honey bee is the most common honey bee species in the world. The Queen bee mates
with several drones during a short flight early in her life.

Worker bees gather nectar and pollen from flowers and turn the nectar into honey. They tell one
another where to find flowers by performing a waggle dance on the comb.
""",
    "bees/beekeeping.md": """# Keeping bees

Beekeepers house their colonies in wooden hives that they can open without harming the bees.
The Langstroth hive is a wooden box with movable frames in which bees build their comb.
The Italian honey bee is a gentle subspecies that beekeepers keep in many countries.

The Varroa mite is a parasite that feeds on honey bees and spreads viruses among them.
The Buckfast bee is a hybrid honey bee that Brother Adam bred at Buckfast Abbey in Devon.
""",
}


@dataclass
class CorpusRun(DemoRun):
    corpus: Path = Path()
    """The folder the demo read."""


def build_corpus(root: Path) -> Path:
    for name, text in MARKDOWN_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "lighthouses").mkdir()
    (root / "lighthouses" / "lighthouses.pdf").write_bytes(
        make_pdf("Lighthouses", [*LIGHTHOUSE_PAGES, PDF_EXTRA_PAGE], heading="Lighthouses and their lights")
    )
    write_hostile_corpus(root / "web")
    return root


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    base = tmp_path_factory.mktemp("formats-e2e")
    corpus = build_corpus(base / "corpus")
    args = ["--rows", str(ROWS), "--nodes", "1", "--corpus", str(corpus), "--request", REQUEST]
    run = run_demo(base, args, timeout_s=TIMEOUT_S)
    print(f"demo --corpus: exit {run.returncode} in {run.seconds:.0f} s")
    return CorpusRun(**vars(run), corpus=corpus)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_demo_delivers_rows_that_verify(demo_run: CorpusRun) -> None:
    assert demo_run.returncode == 0, demo_run.diagnosis()
    rows = _lines(demo_run.out / "data.jsonl")
    assert 0 < len(rows) <= ROWS, demo_run.diagnosis()
    if len(rows) < ROWS:  # a partial job is a delivery too, and the card says so
        assert "**partial**" in (demo_run.out / "README.md").read_text()
    assert verify_directory(demo_run.out).ok
    proc = subprocess.run([sys.executable, "-m", "cli", "verify", str(demo_run.out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_evidence_offsets_point_into_the_extracted_source_file(demo_run: CorpusRun) -> None:
    assert demo_run.returncode == 0, demo_run.diagnosis()
    rows = _lines(demo_run.out / "data.jsonl")
    provenance = _lines(demo_run.out / "provenance.jsonl")
    formats: list[str] = []
    for row, prov in zip(rows, provenance, strict=True):
        source = prov["source"]
        assert isinstance(source, dict) and source["url"] == row["source_url"]
        relative = unquote(urlsplit(str(source["url"])).path).lstrip("/")
        file = demo_run.corpus / relative
        content_type = CORPUS_CONTENT_TYPES[file.suffix.lower()]
        formats.append(content_type)
        # The extractor run here, on the file itself, gives the document the offsets index.
        text = extract_document(file.read_bytes(), content_type, None, str(source["url"])).text[:MAX_DOCUMENT_CHARS]
        assert hashlib.sha256(text.encode()).hexdigest() == source["content_sha256"], relative
        assert text[source["chunk_start"] : source["chunk_end"]] == source["chunk_text"]
        assert text[source["evidence_start"] : source["evidence_end"]] == source["evidence"], relative
        assert row["answer"] == source["evidence"]
    assert set(formats) <= {"text/markdown", "application/pdf", "text/html"}
    print(f"rows from: {sorted(formats)}")


def test_one_trusted_node_checks_its_own_rows_and_the_card_says_so(demo_run: CorpusRun) -> None:
    assert demo_run.returncode == 0, demo_run.diagnosis()
    provenance = _lines(demo_run.out / "provenance.jsonl")
    assert provenance and all("rescored_by_producer" in p["checks"] for p in provenance)  # type: ignore[operator]
    card = (demo_run.out / "README.md").read_text()
    assert "verified by the operator's own node only" in card
    assert "re-scored by an independent validator: 0 of" in card


def test_no_row_carries_injected_text_or_quotes_boilerplate_or_repetition(demo_run: CorpusRun) -> None:
    assert demo_run.returncode == 0, demo_run.diagnosis()
    rows = _lines(demo_run.out / "data.jsonl")
    for row in rows:
        text = json.dumps(row).lower()
        assert not any(marker in text for marker in INJECTED_MARKERS), row
        assert not str(row["source_url"]).endswith(NEVER_EVIDENCE), row
    store = Store(demo_run.work / "coordinator" / "coordinator.db")
    (job,) = store.jobs()
    urls = [str(getattr(store.task_payload(t.task_id), "url", "")) for t in store.tasks(job.job_id, stage="retrieve")]
    print(f"hostile pages retrieved: {sorted(u.rsplit('/', 1)[-1] for u in urls if '/web/' in u)}")


def test_the_network_settles_retrieve_tasks_of_every_format(demo_run: CorpusRun) -> None:
    """Which documents the model's queries reached is its choice; each one retrieved (PDF included,
    where a query found it) was extracted and settled (by the operator's node alone here)."""
    assert demo_run.returncode == 0, demo_run.diagnosis()
    store = Store(demo_run.work / "coordinator" / "coordinator.db")
    (job,) = store.jobs()
    tasks = store.tasks(job.job_id, stage="retrieve")
    retrieved = {str(getattr(store.task_payload(t.task_id), "url", "")): t.state for t in tasks}
    print(f"retrieved: {sorted((urlsplit(u).path, s.value) for u, s in retrieved.items())}")
    assert retrieved and all(state is TaskState.DONE for state in retrieved.values()), retrieved
