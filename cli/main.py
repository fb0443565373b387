"""`dataswarm` — the command-line entry point.

Sub-commands are thin: they parse flags, call into `node/`, `coordinator/` or
`protocol/`, and turn expected failures into one clear sentence (a traceback
only with --debug).
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
import typer
from rich.console import Console

from protocol.errors import KeyFileError
from protocol.identity import Identity
from protocol.keyfile import load_identity, save_identity

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Turn a sentence into a verified dataset.")
keys_app = typer.Typer(no_args_is_help=True, help="Show or generate Ed25519 identities.")
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)


def default_key_path(role: str) -> Path:
    return Path(platformdirs.user_config_dir("dataswarm")) / f"{role}.key"


class State:
    debug = False


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    State.debug = debug


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@keys_app.command("generate")
def keys_generate(
    role: str = typer.Option("node", help="node or coordinator: picks the default file name."),
    path: Path | None = typer.Option(None, help="Where to write the key (mode 0600)."),
    force: bool = typer.Option(False, help="Overwrite an existing key."),
) -> None:
    """Create a new identity and print its peer ID."""
    target = path or default_key_path(role)
    if target.exists() and not force:
        fail(f"{target} already exists: pass --force to replace it (its peer ID changes)")
    identity = Identity.generate()
    save_identity(identity, target)
    console.print(f"{identity.peer_id}  written to {target}")


@keys_app.command("show")
def keys_show(
    role: str = typer.Option("node", help="node or coordinator: picks the default file name."),
    path: Path | None = typer.Option(None, help="Key file to read."),
) -> None:
    """Print the peer ID and public key of an identity."""
    target = path or default_key_path(role)
    try:
        identity = load_identity(target)
    except KeyFileError as exc:
        fail(str(exc))
        return
    console.print(f"peer id     {identity.peer_id}")
    console.print(f"public key  {identity.public_key.hex()}")
    console.print(f"file        {target}")


@app.command()
def demo() -> None:
    """Run a local network with the bundled model and corpus, and produce a dataset."""
    fail(
        "the demo is not wired up yet: it needs the coordinator pipeline (issues 5-7). "
        "What works today: `dataswarm keys`, and `make test`."
    )


if __name__ == "__main__":
    app()
