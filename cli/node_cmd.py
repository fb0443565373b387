"""`dataswarm node start | doctor | receipts`: what a volunteer runs.

Owns the node's screens: the first-run screen of `start` (what the node will
run, whom it trusts, how it is reached, then a live line of tasks, credit and
tok/s) and the tables of `doctor` and `receipts`. The screen is built by pure
functions (`start_view` reads the running node once; `start_screen`,
`reachability` and `status_line` only format) so tests render them without a
node. On a terminal the live line is redrawn in place; when stdout is not a
terminal (a service, a log file) a plain timestamped line is printed every
`PLAIN_STATUS_INTERVAL_S` instead, so logs stay line-oriented.
Must not: decide anything about the node (the runtime and engine do).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import trio
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.errors import friendly, until_signalled
from node.config import NodeConfig, load_node_config
from protocol.identity import public_key_from_peer_id
from protocol.keyfile import load_or_create_identity
from protocol.tasks import TaskKind

if TYPE_CHECKING:
    from node.metrics import RunTotals
    from node.runtime import NodeCounters
    from node.service import Node

app = typer.Typer(no_args_is_help=True, help="Run a volunteer node.")
console = Console(soft_wrap=True)

CONFIG = typer.Option(None, "--config", help="TOML config file (default: ~/.config/dataswarm/node.toml).")


def _config(config: Path | None, **flags: object) -> NodeConfig:
    return load_node_config(config, **flags)


@app.command()
@friendly
def start(
    config: Path | None = CONFIG,
    listen: list[str] | None = typer.Option(None, help="libp2p listen multiaddr (repeatable)."),
    bootstrap: list[str] | None = typer.Option(None, help="Peer to dial at start, …/p2p/<id> (repeatable)."),
    trust: list[str] | None = typer.Option(None, help="Peer ID of a coordinator whose tasks to run (repeatable)."),
    model: list[str] | None = typer.Option(None, help="GGUF path or model name (repeatable)."),
    kinds: list[TaskKind] | None = typer.Option(None, "--kind", help="Task kind to serve (repeatable)."),
    slots: int | None = typer.Option(None, help="Concurrent LLM tasks."),
    n_threads: int | None = typer.Option(None, help="llama.cpp threads (default: physical cores)."),
    search_db: Path | None = typer.Option(None, help="Local search index (SQLite)."),
    search_base_url: str | None = typer.Option(None, help="Where the indexed pages are served now."),
    retrieve_allow: list[str] | None = typer.Option(None, help="CIDR or host:port retrieval may fetch (repeatable)."),
    data_dir: Path | None = typer.Option(None, help="Receipts and caches."),
    key: Path | None = typer.Option(None, help="Identity key file (created if missing)."),
    mdns: bool | None = typer.Option(None, "--mdns/--no-mdns", help="Discover peers on the LAN."),
    status_interval: float | None = typer.Option(None, help="Seconds between status broadcasts."),
    metrics_listen: str | None = typer.Option(None, help="host:port for Prometheus /metrics (off by default)."),
    quiet: bool = typer.Option(False, help="No status line (for services and tests)."),
) -> None:
    """Join the network and run tasks for the trusted coordinators until interrupted."""
    cfg = _config(
        config,
        listen=listen or None,
        bootstrap=bootstrap or None,
        trusted_coordinators=trust or None,
        models=model or None,
        kinds=kinds or None,
        slots=slots,
        n_threads=n_threads,
        search_db=search_db,
        search_base_url=search_base_url,
        retrieve_allow=retrieve_allow or None,
        data_dir=data_dir,
        key_path=key,
        mdns=mdns,
        status_interval_s=status_interval,
        metrics_listen=metrics_listen,
    )
    trio.run(until_signalled, lambda: _run_node(cfg, quiet))


PLAIN_STATUS_INTERVAL_S = 30.0
"""Between status lines when stdout is not a terminal: frequent enough to watch, sparse enough for a log."""
LIVE_REFRESH_S = 1.0
LOG_WIDTH = 250


async def _run_node(cfg: NodeConfig, quiet: bool) -> None:
    from node.ledger import ReceiptLedger
    from node.metrics import RunTotals
    from node.service import open_node

    # Credit from earlier runs, read (and every signature checked) once, before this run adds receipts.
    ledger = ReceiptLedger(cfg.data_dir / "receipts.jsonl")
    credits_before = await trio.to_thread.run_sync(lambda: ledger.read().credits)
    totals = RunTotals()
    async with open_node(cfg, result_hook=totals.result_hook()) as node:
        node.runtime.receipt_hook = totals.observe_receipt
        view = start_view(node)
        # Not on a terminal (a log): no wrapping at 80 columns, so an address stays on one line.
        screen_console = console if console.is_terminal else Console(soft_wrap=True, width=LOG_WIDTH)
        screen_console.print(start_screen(view), highlight=False)
        console.print("READY", highlight=False)  # a line scripts and tests wait for
        if quiet:
            await trio.sleep_forever()

        def line() -> str:
            runtime = node.runtime
            return status_line(
                runtime.counters,
                totals,
                credits_before=credits_before,
                bench_tok_s=max((m.tok_s for m in view.models), default=None),
                free_slots=runtime.slots.free,
                total_slots=runtime.slots.total,
                peers=len(node.host.connected_peers()),
            )

        if not console.is_terminal:
            while True:
                await trio.sleep(PLAIN_STATUS_INTERVAL_S)
                console.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line()}", highlight=False)
        stderr = sys.stderr
        # A console of its own: the module's soft-wrapping one would crop the line at the terminal's width.
        live_view = Live(Text(line()), console=Console(), auto_refresh=False, vertical_overflow="visible")
        with live_view as live, _logs_into(stderr):
            while True:
                live.update(Text(line()), refresh=True)
                await trio.sleep(LIVE_REFRESH_S)


@contextmanager
def _logs_into(original: IO[str]) -> Iterator[None]:
    """Point log handlers that write to the real stderr at Live's proxy, so log lines print above the live line.

    logging.basicConfig kept a reference to the stderr of its time; Live only swaps `sys.stderr`.
    """
    moved = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is original
    ]
    for h in moved:
        h.setStream(sys.stderr)
    try:
        yield
    finally:
        for h in moved:
            h.setStream(original)


# --- the first-run screen (pure formatting) -----------------------------------------


@dataclass(frozen=True)
class ModelLine:
    name: str
    sha256: str
    tok_s: float
    slots: int
    n_ctx: int
    n_gpu_layers: int
    layers: int
    """Offloadable layers: the repeating ones plus the output layer (0 when the header lacks the count)."""


@dataclass(frozen=True)
class StartView:
    """What `dataswarm node start` shows before its live line, read once from the running node."""

    peer_id: str
    models: tuple[ModelLine, ...]
    kinds: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    io_slots: int
    trusted: tuple[str, ...]
    listen: tuple[str, ...]
    bootstrap: tuple[str, ...]
    mdns: bool


def start_view(node: Node) -> StartView:
    models: tuple[ModelLine, ...] = ()
    if node.engine is not None:
        models = tuple(
            ModelLine(
                m.name,
                m.sha256,
                m.tok_s,
                m.slots,
                m.n_ctx,
                m.plan.n_gpu_layers,
                m.model.info.block_count + 1 if m.model.info.block_count else 0,
            )
            for m in node.engine.models
        )
    pid = node.identity.peer_id
    return StartView(
        peer_id=pid,
        models=models,
        kinds=tuple(k.value for k in node.runtime.kinds),
        skipped=tuple((k.value, why) for k, why in node.skipped_kinds.items()),
        io_slots=node.runtime.slots.sizes.get("io", 0),
        trusted=tuple(node.config.trusted_coordinators),
        listen=tuple(a if "/p2p/" in a else f"{a}/p2p/{pid}" for a in node.host.listen_addrs),
        bootstrap=tuple(node.config.bootstrap),
        mdns=node.config.mdns,
    )


def gpu_layers_text(n_gpu_layers: int, layers: int) -> str:
    if n_gpu_layers == 0:
        return "none: runs on the CPU"
    if n_gpu_layers < 0 or (layers and n_gpu_layers >= layers):
        return f"all {layers} on the GPU" if layers else "all on the GPU"
    return f"{n_gpu_layers} of {layers} on the GPU, the rest on the CPU" if layers else f"{n_gpu_layers} on the GPU"


def _address_scope(addr: str) -> str:
    m = re.match(r"/ip[46]/([^/]+)/", addr)
    if not m:
        return "other"
    try:
        ip = ipaddress.ip_address(m.group(1))
    except ValueError:
        return "dns name"
    if ip.is_unspecified:
        return "all interfaces"
    if ip.is_loopback:
        return "this machine only"
    if ip.is_private or ip.is_link_local:
        return "LAN only"
    return "public"


def reachability(listen: Sequence[str], bootstrap: Sequence[str], mdns: bool) -> list[str]:
    """How this node finds coordinators and how others reach it, one line each."""
    out = []
    if bootstrap:
        out.append(f"dials out to {len(bootstrap)} bootstrap peer(s): works behind NAT, no port to open")
    elif mdns:
        out.append("no bootstrap peer: only coordinators on this LAN (mDNS) will be found")
    else:
        out.append("[red]no bootstrap peer and mDNS off: no coordinator will be found[/red]")
    for addr in listen:
        out.append(f"{_address_scope(addr)}: {addr}")
    out.append("relay: not used (the node makes its own connections to coordinators)")
    return out


def start_screen(view: StartView) -> Group:
    """The one screen `dataswarm node start` prints: what runs, whom it trusts, how it is reached."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    if not view.models:
        grid.add_row("model", "none loaded: only search and retrieve tasks")
    for m in view.models:
        grid.add_row("model", f"{m.name}  sha256 {m.sha256[:16]}…  n_ctx {m.n_ctx}")
        grid.add_row("", f"{m.slots} slot(s), {m.tok_s:.1f} tok/s measured at start")
        grid.add_row("GPU layers", gpu_layers_text(m.n_gpu_layers, m.layers))
    grid.add_row("kinds", ", ".join(view.kinds) or "[red]none[/red]")
    for kind, why in view.skipped:
        grid.add_row("[yellow]skipped[/yellow]", f"{kind}: {why}")
    grid.add_row("slots", f"{sum(m.slots for m in view.models)} LLM, {view.io_slots} search/retrieve")
    if view.trusted:
        for i, peer in enumerate(view.trusted):
            grid.add_row("trusts" if i == 0 else "", peer)
    else:
        grid.add_row("trusts", "[red]nobody: no task will run (add --trust COORDINATOR_PEER_ID)[/red]")
    for i, text in enumerate(reachability(view.listen, view.bootstrap, view.mdns)):
        grid.add_row("reachability" if i == 0 else "", text)
    title = Text.assemble(("dataswarm node ", "bold"), view.peer_id)
    return Group(title, grid)


def status_line(
    counters: NodeCounters,
    totals: RunTotals,
    *,
    credits_before: float,
    bench_tok_s: float | None,
    free_slots: int,
    total_slots: int,
    peers: int,
) -> str:
    """The live line: tasks done, credit (receipts), tok/s, free slots, peers."""
    c = counters
    tok_s = totals.tok_s
    speed = (
        f"{tok_s:.1f} tok/s"
        if tok_s is not None
        else f"{bench_tok_s:.1f} tok/s (benchmark)"
        if bench_tok_s
        else "no LLM"
    )
    return (
        f"done {c.done} ({c.accepted} accepted, {c.rejected} rejected, {c.failed} failed) | "
        f"credit {credits_before + totals.credits:.0f} (+{totals.credits:.0f}) | {speed} | "
        f"slots {free_slots}/{total_slots} free | {peers} peers, {c.offers_seen} offers"
    )


@app.command()
@friendly
def doctor(
    config: Path | None = CONFIG,
    listen: list[str] | None = typer.Option(None, help="Listen multiaddr to check."),
    bootstrap: list[str] | None = typer.Option(None, help="Bootstrap peer to check."),
    benchmark: bool = typer.Option(True, help="Measure generation speed (a few seconds per model)."),
) -> None:
    """Check hardware, models, disk, ports and reachability; say how to fix each problem."""
    cfg = _config(config, listen=listen or None, bootstrap=bootstrap or None)
    trio.run(_doctor, cfg, benchmark)


async def _doctor(cfg: NodeConfig, benchmark: bool) -> None:
    from network import run_doctor
    from node.doctor import llm_findings
    from node.llm.engine import EngineSettings

    table = Table("check", "status", "finding", "fix", show_lines=False)
    worst = 0
    rank = {"ok": 0, "info": 0, "warn": 1, "error": 2}
    for f in await llm_findings(EngineSettings.from_node_config(cfg), benchmark=benchmark):
        worst = max(worst, rank[f.severity.value])
        table.add_row(f.check, _badge(f.severity.value), f.summary, f.fix)
    for nf in await run_doctor(cfg.listen, cfg.bootstrap):
        worst = max(worst, rank[nf.level.value])
        table.add_row(f"network.{nf.check}", _badge(nf.level.value), f"{nf.subject}: {nf.message}", "")
    console.print(table)
    if worst == 2:
        raise typer.Exit(1)


def _badge(level: str) -> str:
    return {"ok": "[green]ok[/green]", "info": "info", "warn": "[yellow]warn[/yellow]", "error": "[red]error[/red]"}[
        level
    ]


@app.command()
@friendly
def receipts(
    config: Path | None = CONFIG,
    data_dir: Path | None = typer.Option(None, help="Node data directory."),
    key: Path | None = typer.Option(None, help="Identity key file."),
) -> None:
    """Audit this node's receipts: every signature re-checked, credits summed."""
    from node.ledger import ReceiptLedger
    from protocol.messages import Verdict

    cfg = _config(config, data_dir=data_dir, key_path=key)
    trusted = {public_key_from_peer_id(p) for p in cfg.trusted_coordinators} or None
    me = load_or_create_identity(cfg.key_path).peer_id
    summary = ReceiptLedger(cfg.data_dir / "receipts.jsonl").read(trusted=trusted, node_peer_id=me)
    table = Table("task", "verdict", "work units", "coordinator")
    for e in summary.entries[-50:]:
        table.add_row(
            e.receipt.task_id, e.receipt.verdict.value, f"{e.receipt.work_units:.0f}", e.coordinator[:16] + "…"
        )
    console.print(table)
    console.print(
        f"{len(summary.entries)} receipts: {summary.count(Verdict.ACCEPTED)} accepted, "
        f"{summary.count(Verdict.REJECTED)} rejected, {summary.count(Verdict.PENDING)} pending; "
        f"credits {summary.credits:.0f}; {summary.invalid} invalid line(s) ignored"
    )
