"""`dataswarm node start | doctor | receipts`: what a volunteer runs."""

from __future__ import annotations

from pathlib import Path

import trio
import typer
from rich.console import Console
from rich.table import Table

from cli.errors import friendly, until_signalled
from node.config import NodeConfig, load_node_config
from protocol.identity import public_key_from_peer_id
from protocol.keyfile import load_or_create_identity
from protocol.tasks import TaskKind

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


async def _run_node(cfg: NodeConfig, quiet: bool) -> None:
    from node.service import open_node

    async with open_node(cfg) as node:
        console.print(f"[bold]dataswarm node[/bold] {node.identity.peer_id}", highlight=False)
        for m in node.runtime.models:
            console.print(f"  model     {m.name}  sha256 {m.sha256[:16]}…  {m.tok_s:.1f} tok/s  slots {m.slots}")
        console.print(f"  serves    {', '.join(k.value for k in node.runtime.kinds)}")
        for kind, why in node.skipped_kinds.items():
            console.print(f"  [yellow]skipped[/yellow]   {kind.value}: {why}")
        console.print(f"  trusts    {', '.join(cfg.trusted_coordinators) or '[red]nobody: no task will run[/red]'}")
        for addr in node.host.listen_addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{node.identity.peer_id}"
            console.print(f"  listening {full}", highlight=False)
        console.print("READY", highlight=False)  # a line scripts and tests wait for
        c = node.runtime.counters
        while True:
            await trio.sleep(5)
            if not quiet:
                summary = node.runtime.ledger.read().credits if node.runtime.ledger else 0.0
                console.print(
                    f"offers {c.offers_seen}  claims {c.claims}  granted {c.grants}  done {c.done}  "
                    f"accepted {c.accepted}  rejected {c.rejected}  credits {summary:.0f}",
                    highlight=False,
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
