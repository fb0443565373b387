"""`dataswarm jobs [show|cancel]` and `dataswarm nodes`: a coordinator's jobs and nodes, over its HTTP API.

Also owns how one job is drawn (`job_detail`, `progress_line`), which `dataswarm
request` reuses for its live view, and the --coordinator/--token options that
every requester command shares.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table

from cli.errors import friendly
from cli.progress_view import DELIVERED

if TYPE_CHECKING:
    from cli.api_client import ApiClient
    from coordinator.api.schemas import JobView, NodeView

app = typer.Typer(help="List, inspect and cancel a coordinator's jobs (`dataswarm jobs` lists them).")
console = Console(soft_wrap=True)

DEFAULT_URL = "http://127.0.0.1:8470"
"""The coordinator's default `api_listen` (coordinator/config.py)."""
URL_ENV = "DATASWARM_COORDINATOR"
TOKEN_ENV = "DATASWARM_TOKEN"
COORDINATOR = typer.Option(
    None, "--coordinator", envvar=URL_ENV, show_envvar=True, help=f"The coordinator's API URL (default {DEFAULT_URL})."
)
TOKEN = typer.Option(
    None, "--token", envvar=TOKEN_ENV, show_envvar=True,
    help="Bearer token (`dataswarm coordinator token create`); reads on loopback need none.",
)  # fmt: skip
JOB_ID = typer.Argument(..., help="A job id, as `dataswarm jobs` lists it.")
PEER_ID_ENDS = 6
"""A peer id is shown as its first and last 6 characters (every Ed25519 one starts 12D3KooW)."""


def connect(coordinator: str | None, token: str | None) -> ApiClient:
    from cli.api_client import ApiClient

    return ApiClient(coordinator or DEFAULT_URL, token or None)


# --- how a job is drawn -------------------------------------------------------------------------


def age(ms: int, *, now_s: float | None = None) -> str:
    """'42s', '7m', '3h', '2d': how long ago `ms` (epoch milliseconds) was."""
    seconds = max(0, int((now_s if now_s is not None else time.time()) - ms / 1000))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def current_stage(view: JobView) -> str:
    """The first stage still at work, else the last one reached ('' before any)."""
    for s in view.stages:
        if s.state != "done":
            return s.stage
    return view.stages[-1].stage if view.stages else ""


def progress_line(view: JobView, eta: str = "") -> str:
    """One plain line for logs and pipes: what `request` prints when stdout is not a terminal."""
    stage = current_stage(view)
    work = next((f"{s.stage} {s.done}/{s.tasks}" for s in view.stages if s.stage == stage), "")
    parts = [f"rows {view.rows}/{view.target}", f"{sum(view.rejections.values())} rejected", work]
    parts += [f"ETA {eta}"] if eta else []
    parts += [view.waiting.message] if view.waiting is not None else []
    return f"job {view.job_id} {view.state}: " + ", ".join(p for p in parts if p)


def job_detail(view: JobView, eta: str = "") -> RenderableType:
    """A job's rows, stages and rejections (`jobs show`, and `request` while it waits)."""
    head = Table.grid(padding=(0, 2))
    head.add_row("job", f"{view.job_id}  [bold]{view.state}[/bold]")
    head.add_row("topic", f"{view.topic}  ({'grounded' if view.grounded else 'not grounded'})")
    rejected = sum(view.rejections.values())
    eta_text = f", ETA {eta}" if eta else ""
    head.add_row("rows", f"{view.rows} of {view.target} accepted, {rejected} rejected{eta_text}")
    head.add_row("age", f"created {age(view.created_ms)} ago, updated {age(view.updated_ms)} ago")
    if view.out_dir:
        head.add_row("out dir", f"{view.out_dir}  (on the coordinator's machine)")
    if view.error:
        head.add_row("error", f"[red]{view.error}[/red]")
    if view.waiting is not None:
        head.add_row("waiting", f"[yellow]{escape(view.waiting.message)}[/yellow]")
    if view.state == "partial":
        why = view.partial_reason or "fewer rows passed verification than were requested"
        delivered = f"{min(view.rows, view.target)} of {view.target} rows delivered"
        head.add_row("partial", f"[yellow]{delivered}: {escape(why)}[/yellow]")
    stages = Table("stage", "state", "done", "failed", "open", "tasks", title="stages", title_justify="left")
    for s in view.stages:
        stages.add_row(s.stage, s.state, str(s.done), str(s.failed), str(s.open), str(s.tasks))
    parts: list[RenderableType] = [head, stages]
    if view.rejections:
        reasons = Table("reason", "count", title="rejections", title_justify="left")
        for reason, n in sorted(view.rejections.items(), key=lambda kv: -kv[1]):
            reasons.add_row(reason, str(n))
        parts.append(reasons)
    return Group(*parts)


# --- commands -----------------------------------------------------------------------------------


@app.callback(invoke_without_command=True)
@friendly
def jobs(
    ctx: typer.Context,
    state: str | None = typer.Option(
        None, help="Only jobs in this state (running, waiting_for_nodes, done, partial, failed, cancelled...)."
    ),
    limit: int = typer.Option(50, min=1, max=200, help="At most this many, newest first."),
    coordinator: str | None = COORDINATOR,
    token: str | None = TOKEN,
) -> None:
    """List the coordinator's jobs, newest first."""
    ctx.obj = (coordinator, token)
    if ctx.invoked_subcommand is not None:
        return
    with connect(coordinator, token) as client:
        views = client.jobs(state=state, limit=limit)
    if not views:
        console.print(f"no jobs{f' in state {state!r}' if state else ''} at {client.url}", highlight=False)
        return
    table = Table("id", "state", "rows", "stage", "age", "topic")
    for v in views:
        table.add_row(v.job_id, v.state, f"{v.rows}/{v.target}", current_stage(v), age(v.created_ms), v.topic)
    console.print(table)


def _from_parent(ctx: typer.Context, coordinator: str | None, token: str | None) -> ApiClient:
    """`jobs --coordinator X show ID` and `jobs show ID --coordinator X` both work."""
    parent = ctx.parent.obj if ctx.parent is not None and isinstance(ctx.parent.obj, tuple) else (None, None)
    return connect(coordinator or parent[0], token or parent[1])


@app.command("show")
@friendly
def show(
    ctx: typer.Context,
    job_id: str = JOB_ID,
    coordinator: str | None = COORDINATOR,
    token: str | None = TOKEN,
) -> None:
    """One job: its stages, rejections by reason, and where its dataset is."""
    with _from_parent(ctx, coordinator, token) as client:
        view = client.job(job_id)
        console.print(job_detail(view))
        if view.state in DELIVERED:
            console.print(f"dataset   {client.url}{view.links.dataset}  (`dataswarm request` downloads it)")


@app.command("cancel")
@friendly
def cancel(
    ctx: typer.Context,
    job_id: str = JOB_ID,
    coordinator: str | None = COORDINATOR,
    token: str | None = TOKEN,
) -> None:
    """Cancel a running job (a write token cancels its own jobs, an admin token any)."""
    with _from_parent(ctx, coordinator, token) as client:
        view = client.cancel(job_id)
    console.print(f"job {view.job_id} {view.state} ({view.rows} of {view.target} rows were accepted)", highlight=False)


def _node_row(n: NodeView) -> list[str]:
    ends = PEER_ID_ENDS
    peer = n.peer_id if len(n.peer_id) <= 3 * ends else f"{n.peer_id[:ends]}…{n.peer_id[-ends:]}"
    names = ", ".join(m.name for m in n.models) or "-"
    tok_s = ", ".join(f"{m.tok_s:.0f}" for m in n.models) or "-"
    rep = "-" if n.reputation is None else f"{n.reputation.score:.2f}" + (" banned" if n.reputation.blacklisted else "")
    slots = f"{n.free_slots}/{n.total_slots}"
    seen = "never" if n.last_seen_ms is None else f"{age(n.last_seen_ms)} ago"
    return [peer, "yes" if n.live else "no", seen, names, tok_s, slots, str(n.held_leases), str(n.tasks_done), rep]


@friendly
def nodes(coordinator: str | None = COORDINATOR, token: str | None = TOKEN) -> None:
    """List the nodes this coordinator knows: models, tok/s, free slots, reputation."""
    with connect(coordinator, token) as client:
        views = client.nodes()
    live = sum(n.live for n in views)
    if not live:
        console.print(f"no live nodes at {client.url}", highlight=False)
    if not views:
        return
    table = Table("peer", "live", "seen", "models", "tok/s", "slots free/total", "leases", "tasks", "reputation")
    for n in views:
        table.add_row(*_node_row(n))
    console.print(table)
