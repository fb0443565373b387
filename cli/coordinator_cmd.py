"""`dataswarm coordinator start`: what a coordinator operator runs."""

from __future__ import annotations

from pathlib import Path

import trio
import typer
from rich.console import Console

from cli import token_cmd
from cli.errors import fail, friendly, until_signalled
from cli.progress_view import DELIVERED, follow, partial_line
from coordinator.config import CoordinatorConfig, load_coordinator_config

app = typer.Typer(no_args_is_help=True, help="Run a coordinator.")
app.add_typer(token_cmd.app, name="token")
console = Console(soft_wrap=True)


@app.command()
@friendly
def start(
    config: Path | None = typer.Option(
        None, "--config", help="TOML config (default ~/.config/dataswarm/coordinator.toml)."
    ),
    listen: list[str] | None = typer.Option(None, help="libp2p listen multiaddr (repeatable)."),
    data_dir: Path | None = typer.Option(None, help="Store, blobs and datasets."),
    key: Path | None = typer.Option(None, help="Identity key file (created if missing)."),
    mdns: bool | None = typer.Option(None, "--mdns/--no-mdns"),
    request: str | None = typer.Option(None, help="Submit this request at start, wait for it, then exit."),
    spec: Path | None = typer.Option(None, help="With --request: a spec file (YAML/JSON) instead of parsing."),
    rows: int | None = typer.Option(None, help="With --request: rows wanted."),
    out: Path | None = typer.Option(None, help="With --request: dataset directory."),
    job_id: str | None = typer.Option(None, help="With --request: job id (re-running attaches to it)."),
    addr_file: Path | None = typer.Option(None, help="Write the coordinator's dialable address here once up."),
    api: str | None = typer.Option(None, help="host:port of the HTTP API and dashboard (default from config)."),
    no_api: bool = typer.Option(False, "--no-api", help="Do not serve the HTTP API."),
    trust_node: list[str] | None = typer.Option(
        None, help="Peer ID of a node you run yourself (repeatable): r = 1 with spot-checks; alone, it checks itself."
    ),
) -> None:
    """Run the coordinator's P2P side and its jobs until interrupted (or until --request is done)."""
    cfg = load_coordinator_config(
        config,
        listen=listen or None,
        data_dir=data_dir,
        key_path=key,
        mdns=mdns,
        api_listen=api,
        trusted_nodes=trust_node or None,
    )
    if (spec or rows or out or job_id) and not request:
        fail("--spec, --rows, --out and --job-id go with --request")
    trio.run(until_signalled, lambda: _run(cfg, request, spec, rows, out, job_id, addr_file, not no_api))


async def _run(
    cfg: CoordinatorConfig,
    request: str | None,
    spec_file: Path | None,
    rows: int | None,
    out: Path | None,
    job_id: str | None,
    addr_file: Path | None,
    with_api: bool,
) -> None:
    from coordinator.api import serve_api
    from coordinator.service import open_coordinator
    from coordinator.spec import load_spec_file

    spec = load_spec_file(spec_file) if spec_file else None
    async with open_coordinator(cfg) as coord, trio.open_nursery() as api:
        console.print(f"[bold]dataswarm coordinator[/bold] {coord.identity.peer_id}", highlight=False)
        if with_api:
            url = await api.start(serve_api, coord, cfg.api_listen)
            console.print(f"  api       {url}  (dashboard {url}/, OpenAPI {url}/docs)", highlight=False)
        for a in coord.peer_addrs:
            console.print(f"  listening {a}", highlight=False)
        console.print(f"  models    {', '.join(f'{n} ({d[:12]}…)' for d, n in coord.models.items()) or 'any'}")
        if addr_file:
            addr_file.write_text("\n".join(coord.peer_addrs) + "\n")
        console.print("READY", highlight=False)
        if request is None:
            await trio.sleep_forever()
        jid = await coord.submit(request, spec=spec, rows=rows, out_dir=out, job_id=job_id)
        console.print(f"job {jid}", highlight=False)

        async def poll() -> object:
            return coord.progress(jid)

        final = await follow(poll, console, live=console.is_terminal)  # type: ignore[arg-type]
        api.cancel_scope.cancel()
        if final.state not in DELIVERED:  # partial delivered fewer rows: a success, said so below
            fail(f"job {jid} {final.state}: {final.error or 'see the log'}")
        if final.state == "partial":
            # A plain store read (as poll's): the api nursery's scope, which this body runs in, is cancelled.
            reason = str(coord.store.job(jid).doc.get("partial", ""))
            console.print(partial_line(jid, final.rows, final.target, reason), highlight=False, markup=False)
        console.print(f"dataset: {final.out_dir}  ({final.rows} rows accepted)", highlight=False)
