"""`dataswarm coordinator token create|list|revoke`: requester tokens for the coordinator's HTTP API.

Wired by `cli/coordinator_cmd.py`: `app.add_typer(token_cmd.app, name="token")`.
Tokens live hashed in the coordinator's data_dir; the plain token is printed once, by `create`.
Safe to run while the coordinator is up (the token file is SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cli.errors import fail, friendly

app = typer.Typer(no_args_is_help=True, help="Manage API tokens (bearer tokens for POST /v1/jobs and friends).")
console = Console()

CONFIG = typer.Option(None, "--config", help="Coordinator TOML config (default ~/.config/dataswarm/coordinator.toml).")
DATA_DIR = typer.Option(None, "--data-dir", help="The coordinator's data directory (overrides the config).")


def _data_dir(config: Path | None, data_dir: Path | None) -> Path:
    from coordinator.config import load_coordinator_config

    return load_coordinator_config(config, data_dir=data_dir).data_dir


@app.command("create")
@friendly
def create(
    name: str = typer.Argument(..., help="Who the token is for, e.g. 'alice laptop'."),
    scope: str = typer.Option("write", help="read (reads only), write (submit and cancel own jobs), or admin."),
    config: Path | None = CONFIG,
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Issue a token and print it once (only its hash is kept)."""
    from coordinator.api.auth import create_token

    issued = create_token(_data_dir(config, data_dir), name, scope)
    console.print(issued.secret, highlight=False, soft_wrap=True)
    console.print(
        f"[dim]token {issued.info.token_id} ({issued.info.scope.value}) for {issued.info.name!r}: "
        "send it as 'Authorization: Bearer <token>'; it is not shown again[/dim]",
        highlight=False,
    )


@app.command("list")
@friendly
def list_(config: Path | None = CONFIG, data_dir: Path | None = DATA_DIR) -> None:
    """Show the tokens (ids, names, scopes; never the tokens themselves)."""
    from coordinator.api.auth import list_tokens

    table = Table("id", "name", "scope", "created", "state")
    for t in list_tokens(_data_dir(config, data_dir)):
        created = datetime.fromtimestamp(t.created_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(t.token_id, t.name, t.scope.value, created, "revoked" if t.revoked else "live")
    console.print(table)


@app.command("revoke")
@friendly
def revoke(
    token_id: str = typer.Argument(..., help="The id `token list` shows."),
    config: Path | None = CONFIG,
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Revoke a token at once (requests with it get 401)."""
    from coordinator.api.auth import revoke_token

    if not revoke_token(_data_dir(config, data_dir), token_id):
        fail(f"no live token with id {token_id!r}: see `dataswarm coordinator token list`")
    console.print(f"revoked {token_id}", highlight=False)
