"""`dataswarm corpus index | serve`: the local search backend's corpus."""

from __future__ import annotations

from pathlib import Path

import trio
import typer
from rich.console import Console
from rich.progress import Progress

from cli.errors import friendly
from settings import DATA_DIR

app = typer.Typer(no_args_is_help=True, help="Build and serve the local search corpus.")
console = Console(soft_wrap=True)


@app.command()
@friendly
def index(
    source: str = typer.Argument(..., help="A directory of HTML files, or a site URL to crawl."),
    db: Path = typer.Option(DATA_DIR / "corpus.sqlite", help="Index file to write."),
    base_url: str | None = typer.Option(None, help="For a directory: the URL its files are served under."),
    max_pages: int | None = typer.Option(None, help="Stop after this many pages."),
    allow: list[str] | None = typer.Option(None, help="For a crawl: CIDR or host:port to allow (e.g. 127.0.0.1)."),
) -> None:
    """Index pages into the SQLite FTS5 (BM25) index that the `local` search backend reads."""
    from node.retrieve import RetrieverConfig
    from node.search.corpus import index_corpus

    with Progress(console=console) as bars:
        task = bars.add_task("indexing", total=None)

        def progress(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total or None)

        stats = trio.run(
            lambda: index_corpus(
                source,
                db_path=db,
                base_url=base_url,
                max_pages=max_pages,
                retriever_config=RetrieverConfig.from_allowlist(allow or []),
                on_progress=progress,
            )
        )
    console.print(
        f"{stats.pages} pages indexed into {db} ({stats.skipped} skipped, {stats.failed} failed) "
        f"in {stats.seconds:.1f} s"
    )


@app.command()
@friendly
def serve(
    directory: Path = typer.Argument(..., help="Directory to serve."),
    port: int = typer.Option(8765, help="Port on 127.0.0.1."),
) -> None:
    """Serve a corpus directory over HTTP on 127.0.0.1 until interrupted."""
    from node.search.corpus_server import CorpusServer

    with CorpusServer(directory, port=port) as server:
        console.print(f"serving {directory} at {server.base_url}  (Ctrl-C to stop)")
        trio.run(trio.sleep_forever)
