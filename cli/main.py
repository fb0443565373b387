"""`dataswarm` — the command-line entry point.

Sub-commands are thin: they parse flags, call into `node/`, `coordinator/` or
`protocol/`, and turn expected failures into one clear sentence (a traceback
only with --debug).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
from pathlib import Path

import platformdirs
import trio
import typer
from rich.console import Console

from cli import coordinator_cmd, corpus_cmd, export_cmd, jobs_cmd, node_cmd, request_cmd
from cli.errors import Settings, fail, friendly, setup_logging
from protocol.errors import KeyFileError
from protocol.identity import Identity
from protocol.keyfile import load_identity, save_identity

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Turn a sentence into a verified dataset.")
keys_app = typer.Typer(no_args_is_help=True, help="Show or generate Ed25519 identities.")
app.add_typer(keys_app, name="keys")
app.add_typer(node_cmd.app, name="node")
app.add_typer(coordinator_cmd.app, name="coordinator")
app.add_typer(corpus_cmd.app, name="corpus")
app.add_typer(jobs_cmd.app, name="jobs")
app.command("request")(request_cmd.request)
app.command("nodes")(jobs_cmd.nodes)
app.command("export")(export_cmd.export)

console = Console(soft_wrap=True)


def default_key_path(role: str) -> Path:
    return Path(platformdirs.user_config_dir("dataswarm")) / f"{role}.key"


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
) -> None:
    Settings.debug = debug
    Settings.verbose = verbose
    setup_logging(verbose)
    # A crash in native code (llama.cpp, libxml2) then leaves every thread's Python stack in the log.
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        faulthandler.enable()  # not when stderr is no file (typer's CliRunner)


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
@friendly
def demo(
    rows: int = typer.Option(20, help="Rows to deliver."),
    nodes: int = typer.Option(2, help="Node processes to start (threads are split between them)."),
    out: Path | None = typer.Option(None, help="Dataset directory (default: ./dataswarm-demo-<time>)."),
    request: str | None = typer.Option(None, help="What to ask for (default: grounded QA about Python's stdlib)."),
    workdir: Path | None = typer.Option(None, help="Where keys, the index, logs and the store go."),
    corpus: Path | None = typer.Option(
        None, help="A folder of HTML, Markdown (.md), text (.txt) and PDF files to use instead of the Python docs."
    ),
) -> None:
    """Run a local network with the bundled model and corpus, and produce a verified dataset."""
    import time

    from cli.demo import DEFAULT_REQUEST, clear_workdir, corpus_problem, run_demo, summary_table
    from cli.progress_view import DELIVERED, partial_line

    if nodes < 1:
        fail("--nodes must be at least 1")
    if corpus is not None and request is None:
        fail("--corpus needs --request: say what the rows should be about, e.g. '50 question-answer pairs about X'")
    if corpus is not None and (problem := corpus_problem(corpus)):
        fail(problem)
    work = workdir or Path(platformdirs.user_cache_dir("dataswarm")) / "demo"
    clear_workdir(work)
    target = out or Path.cwd() / f"dataswarm-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    result = trio.run(
        lambda: run_demo(
            rows=rows, nodes=nodes, out=target, workdir=work, request=request or DEFAULT_REQUEST, corpus=corpus
        )
    )
    console.print(summary_table(result))
    p = result.progress
    if p.state not in DELIVERED or not result.verified:
        raise typer.Exit(1)
    if p.state == "partial":  # a verified dataset with fewer rows than asked: still a success
        console.print(partial_line(p.job_id, p.rows, p.target, result.partial_reason), highlight=False, markup=False)


@app.command()
@friendly
def verify(
    directory: Path = typer.Argument(..., help="A dataset directory written by dataswarm."),
    trust: list[str] | None = typer.Option(None, help="Coordinator peer ID that must have signed it (repeatable)."),
) -> None:
    """Re-check every signature, digest and the Merkle root of a dataset, offline."""
    from coordinator.compile import verify_directory

    report = verify_directory(directory, trusted_coordinators=trust or None)
    console.print(report.summary())
    if not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
