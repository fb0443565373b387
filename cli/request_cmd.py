"""`dataswarm request`: ask a running coordinator for a dataset, follow it, and download it.

Resumable by construction: without --job-id the job id is derived from what was
asked (sentence or spec, rows, output directory), and the API answers a repeated
submission with the existing job. Interrupting the command leaves the job
running; the same command line re-attaches to it. --dry-run reads the request
locally and contacts no coordinator.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cli.errors import err, fail, friendly
from cli.jobs_cmd import COORDINATOR, TOKEN, connect, job_detail, progress_line
from cli.progress_view import DELIVERED, FINAL, partial_line

if TYPE_CHECKING:
    from cli.api_client import ApiClient
    from coordinator.api.schemas import JobView
    from coordinator.spec import DatasetSpec

console = Console(soft_wrap=True)
PLAIN_EVERY_S = 10.0
"""Without a terminal, a progress line at most this often (and on every stage change): logs stay short."""


def derive_job_id(request: str | None, spec: dict[str, Any] | None, rows: int | None, out: Path) -> str:
    """The same request, rows and output directory give the same id, so re-running attaches."""
    key = json.dumps([request or "", spec, rows, str(out.resolve())], sort_keys=True, ensure_ascii=False)
    return "req-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class Eta:
    """Time left, from the rate of accepted rows since this command attached."""

    clock: Callable[[], float] = time.monotonic
    _start: tuple[float, int] | None = field(default=None, init=False)

    def update(self, rows: int, target: int) -> str:
        now = self.clock()
        if self._start is None:
            self._start = (now, rows)
        t0, rows0 = self._start
        if rows >= target:
            return ""
        if rows <= rows0 or now <= t0:
            return "unknown"
        return _duration((target - rows) * (now - t0) / (rows - rows0))


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@friendly
def request(
    text: str | None = typer.Argument(None, help="The dataset in a sentence (or give --spec)."),
    rows: int | None = typer.Option(None, help="Rows wanted (overrides the sentence or the spec)."),
    out: Path | None = typer.Option(None, help="Directory the finished dataset is unpacked into."),
    spec: Path | None = typer.Option(None, help="A spec file (YAML/JSON) instead of the sentence."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the spec and planned tasks; contact nothing."),
    coordinator: str | None = COORDINATOR,
    token: str | None = TOKEN,
    job_id: str | None = typer.Option(None, help="Job id (default: derived from the request, rows and --out)."),
    detach: bool = typer.Option(False, "--detach", help="Submit, print the job id and return without waiting."),
) -> None:
    """Ask a coordinator for a dataset, show its progress, and download it into --out."""
    if text is None and spec is None:
        fail('say what you want: dataswarm request "200 question-answer pairs about ..." (or pass --spec FILE)')
    loaded = _load_spec(spec)
    if dry_run:
        _dry_run(text, loaded, rows)
        return
    spec_doc = loaded.model_dump(mode="json") if loaded is not None else None
    if out is None:
        fail("pass --out DIR: where the dataset goes once it is done")
        return
    jid = job_id or derive_job_id(text, spec_doc, rows, out)
    if _already_downloaded(out, jid):
        return
    if (out.exists() and not out.is_dir()) or (out.is_dir() and any(out.iterdir())):
        fail(f"{out} exists and is not empty: choose another --out or remove it")
    with connect(coordinator, token) as client:
        view, created = client.submit(text, spec=spec_doc, rows=rows, job_id=jid)
        verb = "submitted" if created else "attached to"
        console.print(f"{verb} job {view.job_id} ({view.state}) at {client.url}", highlight=False)
        if detach:
            console.print(f"follow it with `dataswarm jobs show {view.job_id}`, or run this command again "
                          "without --detach to wait for it and download the dataset", highlight=False)  # fmt: skip
            return
        try:
            final = _follow(client, view)
        except KeyboardInterrupt:
            err.print(f"detached from job {view.job_id}: it keeps running; run the same command again to re-attach")
            raise typer.Exit(130) from None
        if final.state == "cancelled" and not final.error:
            fail(f"job {final.job_id} was cancelled before it was done: pass another --job-id to start it over")
        if final.state not in DELIVERED:  # partial is a success with fewer rows: downloaded like done
            fail(f"job {final.job_id} {final.state}: {final.error or 'the coordinator recorded no reason'}")
        client.download(final.job_id, out)
    _summary(out, final)


def _load_spec(path: Path | None) -> DatasetSpec | None:
    from coordinator.spec import load_spec_file

    return load_spec_file(path) if path is not None else None  # SpecError names the field and the fix


def _dry_run(text: str | None, spec: DatasetSpec | None, rows: int | None) -> None:
    """What the coordinator would plan for this request (the same functions it runs), computed here."""
    from coordinator.pipeline.sizing import plan
    from coordinator.request import LLM_SPEC_NOTE, parse_request
    from coordinator.spec import dump_spec

    notes: tuple[str, ...] = ()
    if spec is not None:
        resolved = spec.model_copy(update={"rows": rows}) if rows is not None else spec
    else:
        parsed = parse_request(text or "", rows=rows)  # RequestError says what to change
        resolved, notes = parsed.spec, (*parsed.notes, LLM_SPEC_NOTE)
    console.print("[bold]spec[/bold] (save it, edit it, pass it back with --spec FILE)")
    console.print(dump_spec(resolved), highlight=False, markup=False)
    if notes:
        console.print("[bold]notes[/bold]")
        for note in notes:
            console.print(f"  - {note}", highlight=False, markup=False)
    console.print("[bold]plan[/bold] (estimated tasks per stage; nothing was submitted)")
    console.print(plan(resolved, llm_spec=spec is None).render(), highlight=False, markup=False)


def _follow(client: ApiClient, first: JobView) -> JobView:
    """Show the job's progress until it ends: live on a terminal, occasional plain lines otherwise."""
    estimate = Eta()
    last = first
    if first.state in FINAL:
        return first

    def eta(view: JobView) -> str:
        return "" if view.state in FINAL else estimate.update(view.rows, view.target)

    if console.is_terminal:
        with Live(job_detail(first), console=console, refresh_per_second=4, transient=False) as live:
            for view in client.events(first.job_id):
                last = view
                live.update(job_detail(view, eta(view)))
        return last
    printed_at, printed_stage = 0.0, ""
    for view in client.events(first.job_id):
        last = view
        remaining = eta(view)
        stage = f"{view.state}/{','.join(s.stage + s.state for s in view.stages)}"
        now = time.monotonic()
        if view.state in FINAL or stage != printed_stage or now - printed_at >= PLAIN_EVERY_S:
            console.print(progress_line(view, remaining), highlight=False, markup=False)
            printed_at, printed_stage = now, stage
    return last


def _already_downloaded(out: Path, job_id: str) -> bool:
    """A re-run after the download: say so instead of submitting again."""
    from coordinator.compile.manifest import MANIFEST_FILE

    manifest = out / MANIFEST_FILE
    if not manifest.is_file():
        return False
    try:
        same = bool(json.loads(manifest.read_text(encoding="utf-8")).get("job_id") == job_id)
    except (OSError, ValueError, AttributeError):
        return False
    if same:
        console.print(f"job {job_id} is already downloaded:", highlight=False)
        _summary(out, None)
    return same


def _summary(out: Path, view: JobView | None) -> None:
    """Where the dataset is, what it holds, and whether it verifies offline."""
    from coordinator.compile import verify_directory
    from coordinator.compile.manifest import MANIFEST_FILE, Manifest

    try:
        manifest = Manifest.model_validate_json((out / MANIFEST_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        fail(f"{out / MANIFEST_FILE} cannot be read ({exc}): remove {out} and run the command again")
        return
    report = verify_directory(out)
    requested = view.target if view is not None else manifest.spec.get("rows")
    short = isinstance(requested, int) and manifest.rows < requested
    # The coordinator's state says partial; offline (a re-run after the download) the manifest's spec does.
    partial = view.state == "partial" if view is not None else short
    table = Table(title=f"dataset of job {manifest.job_id}", show_header=False, title_justify="left")
    table.add_row("directory", str(out.resolve()))
    of = f" of {requested} requested" if short else ""
    fields = ", ".join(f["name"] for f in manifest.spec.get("fields", []))
    table.add_row("rows", f"{manifest.rows}{of} (fields: {fields})")
    table.add_row("files", ", ".join(sorted([*manifest.files, MANIFEST_FILE])))
    table.add_row("signed by", f"coordinator {manifest.coordinator.peer_id}")
    if view is not None and view.rejections:
        top = sorted(view.rejections.items(), key=lambda kv: -kv[1])[:5]
        table.add_row("rejected", f"{sum(view.rejections.values())} ({', '.join(f'{k} {v}' for k, v in top)})")
    table.add_row("verified", "yes: signatures, digests and Merkle root check out" if report.ok else "[red]NO[/red]")
    console.print(table)
    if partial:
        reason = view.partial_reason if view is not None else ""
        line = partial_line(manifest.job_id, manifest.rows, int(requested or 0), reason)
        console.print(line, highlight=False, markup=False)
    if not report.ok:
        fail(f"{out} does not verify: run `dataswarm verify {out}` to see every problem")
