"""`dataswarm demo`: a whole network on this machine, producing a real dataset.

The embedded defaults: the Python documentation (Debian's python3.11-doc, or a
corpus rendered from the standard library's docstrings with pydoc when that
package is missing) served over HTTP on 127.0.0.1 and indexed for the `local`
search backend; a coordinator in this process; K node processes running the
bundled SmolLM2 model. Everything listens on loopback only, and everything
is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import pydoc
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import trio
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.progress_view import follow, partial_line
from coordinator.api import serve_api
from coordinator.compile import verify_directory
from coordinator.config import CoordinatorConfig
from coordinator.pipeline.progress import JobProgress
from coordinator.request import parse_request
from coordinator.service import open_coordinator
from node.search.corpus import SUPPORTED_FORMATS, corpus_files, index_corpus
from node.search.corpus_server import CorpusServer
from protocol.keyfile import load_or_create_identity

log = logging.getLogger(__name__)

DEBIAN_DOCS = Path("/usr/share/doc/python3.11/html")
DEFAULT_REQUEST = (
    "grounded question-answer pairs about Python's standard library, "
    "from the docs, JSON with question, answer, source_url"
)
PYDOC_MODULES = tuple(
    [
        "heapq",
        "bisect",
        "collections",
        "itertools",
        "functools",
        "json",
        "csv",
        "pathlib",
        "os.path",
        "shutil",
        "tempfile",
        "glob",
        "fnmatch",
        "re",
        "string",
        "textwrap",
        "difflib",
        "datetime",
        "calendar",
        "time",
        "random",
        "statistics",
        "math",
        "decimal",
        "fractions",
        "hashlib",
        "hmac",
        "secrets",
        "base64",
        "binascii",
        "struct",
        "zlib",
        "gzip",
        "zipfile",
        "tarfile",
        "sqlite3",
        "logging",
        "argparse",
        "subprocess",
        "threading",
        "queue",
        "sched",
        "contextlib",
        "abc",
        "dataclasses",
        "enum",
        "typing",
        "copy",
        "pprint",
        "weakref",
        "urllib.parse",
        "http.client",
        "email.message",
        "html.parser",
        "xml.etree.ElementTree",
        "unittest",
        "doctest",
        "timeit",
    ]
)
NODE_READY_TIMEOUT_S = 180
NODE_RESTARTS = 3
"""A node process that dies mid-job is started again (same key) this many times in all."""


@dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    progress: JobProgress
    seconds: float
    verified: bool
    partial_reason: str = ""
    """Why a partial job delivered fewer rows than requested (empty unless its state is partial)."""


def pydoc_corpus(target: Path) -> Path:
    """Render standard-library docs to HTML with pydoc: the corpus when python3.11-doc is missing."""
    target.mkdir(parents=True, exist_ok=True)
    for name in PYDOC_MODULES:
        path = target / f"{name}.html"
        if path.exists():
            continue
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        html = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
        path.write_text(html, encoding="utf-8")
    return target


def corpus_problem(corpus: Path) -> str | None:
    """Why `--corpus` cannot be used (None if it can): not a folder, or no document the indexer reads."""
    if not corpus.is_dir():
        return f"--corpus {corpus} is not a folder: point it at a folder of {SUPPORTED_FORMATS} files"
    if not corpus_files(corpus):
        return f"--corpus {corpus} holds no {SUPPORTED_FORMATS} files (.html .htm .md .markdown .txt .pdf)"
    return None


def find_corpus(workdir: Path, console: Console) -> Path:
    if (DEBIAN_DOCS / "library").is_dir():
        return DEBIAN_DOCS
    console.print(
        f"[yellow]{DEBIAN_DOCS} is missing[/yellow] (apt-get install python3.11-doc gives the full docs); "
        "using a corpus rendered from the standard library's docstrings instead"
    )
    return pydoc_corpus(workdir / "pydoc-corpus")


def node_command(
    i: int, workdir: Path, coordinator_addr: str, coordinator_id: str, db: Path, base_url: str, threads: int
) -> list[str]:
    home = workdir / f"node-{i}"
    return [
        sys.executable, "-m", "cli", "node", "start", "--quiet",
        "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns",
        "--bootstrap", coordinator_addr, "--trust", coordinator_id,
        "--key", str(home / "node.key"), "--data-dir", str(home),
        "--search-db", str(db), "--search-base-url", base_url,
        "--retrieve-allow", "127.0.0.1",
        "--n-threads", str(threads), "--status-interval", "2",
    ]  # fmt: skip


async def run_demo(
    *,
    rows: int,
    nodes: int,
    out: Path,
    workdir: Path,
    request: str = DEFAULT_REQUEST,
    corpus: Path | None = None,
    console: Console | None = None,
) -> DemoResult:
    """`corpus`: a folder of HTML, Markdown, plain text and PDF files to index, serve and search
    instead of the Python docs (see `corpus_problem` for what is refused)."""
    console = console or Console()
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    user_corpus = corpus is not None
    corpus = corpus or find_corpus(workdir, console)
    threads = max(1, (os.cpu_count() or 2) // nodes)  # never more threads than cores (notes: 20 tok/s otherwise)
    with CorpusServer(corpus) as server, _log_file(workdir / "coordinator.log"):
        db = workdir / f"corpus-{hashlib.sha256(str(corpus).encode()).hexdigest()[:12]}.sqlite"
        if not db.exists():
            console.print(f"indexing {corpus} for the local search backend …")
            stats = await index_corpus(corpus, db_path=db, base_url=server.base_url)
            console.print(f"  {stats.pages} pages in {stats.seconds:.1f} s")
        cfg = CoordinatorConfig(
            key_path=workdir / "coordinator.key",
            listen=["/ip4/127.0.0.1/tcp/0"],
            mdns=False,
            relay_hop=False,
            data_dir=workdir / "coordinator",
            trusted_nodes=_trusted_nodes(workdir, nodes),
        )
        async with open_coordinator(cfg) as coord, trio.open_nursery() as api:
            addr = coord.peer_addrs[0]
            console.print(f"coordinator {coord.identity.peer_id} on {addr}", highlight=False)
            url = await api.start(serve_api, coord, "127.0.0.1:0")
            console.print(f"dashboard   {url}/", highlight=False)
            logs = [open(workdir / f"node-{i}.log", "ab") for i in range(nodes)]  # noqa: SIM115
            commands = [
                node_command(i, workdir, addr, coord.identity.peer_id, db, server.base_url, threads)
                for i in range(nodes)
            ]
            procs = [_spawn(cmd, log_file) for cmd, log_file in zip(commands, logs, strict=True)]
            try:
                await _wait_for_nodes(coord, procs, nodes, workdir, console)
                api.start_soon(_supervise, procs, commands, logs, workdir, console)
                if user_corpus:
                    request = grounded_request(request)
                jid = await coord.submit(request, rows=rows, out_dir=out)
                console.print(f"job {jid}: {rows} rows → {out}", highlight=False)

                async def poll() -> JobProgress:
                    return coord.progress(jid)

                final = await follow(poll, console, live=console.is_terminal)
                partial = str(coord.store.job(jid).doc.get("partial", "")) if final.state == "partial" else ""
            finally:
                api.cancel_scope.cancel()
                stop_processes(procs)
                for f in logs:
                    f.close()
    report = verify_directory(out) if (out / "manifest.json").exists() else None
    return DemoResult(out, final, time.monotonic() - started, bool(report and report.ok), partial)


def grounded_request(request: str) -> str:
    """The request as the demo runs it on a user's folder: rows come from those documents, so a request
    that does not say "grounded" (read as free generation, which never looks at the folder) says it."""
    if parse_request(request).spec.grounded:
        return request
    return f"{request.rstrip(' .')}, grounded in the documents"


def _trusted_nodes(workdir: Path, nodes: int) -> list[str]:
    """With one node there is nobody to check it: the demo runs it as the operator's own node, which
    re-scores its generations itself (the card says so). With two or more, none is trusted: redundancy."""
    if nodes != 1:
        return []
    return [load_or_create_identity(workdir / "node-0" / "node.key").peer_id]


async def _wait_for_nodes(coord: object, procs: list[subprocess.Popen[bytes]], n: int, workdir: Path,
                          console: Console) -> None:  # fmt: skip
    console.print(f"starting {n} node(s) with the bundled model …")
    with trio.move_on_after(NODE_READY_TIMEOUT_S):
        while len(coord.runtime.scheduler.node_statuses()) < n:  # type: ignore[attr-defined]
            dead = [i for i, p in enumerate(procs) if p.poll() is not None]
            if dead:
                tail = (workdir / f"node-{dead[0]}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node {dead[0]} exited at start-up:\n{tail}")
            await trio.sleep(0.5)
        return
    raise RuntimeError(f"nodes did not report within {NODE_READY_TIMEOUT_S} s; see {workdir}/node-*.log")


def _spawn(command: list[str], log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


async def _supervise(procs: list[subprocess.Popen[bytes]], commands: list[list[str]], logs: list[IO[bytes]],
                     workdir: Path, console: Console) -> None:  # fmt: skip
    """Start a node again when its process dies, as systemd would: a dead node stalls a two-node demo."""
    left = NODE_RESTARTS
    while True:
        await trio.sleep(1.0)
        for i, p in enumerate(procs):
            code = p.poll()
            if code is None:
                continue
            tail = (workdir / f"node-{i}.log").read_text(errors="replace")[-1500:]
            log.warning("node %d exited with code %s; last lines of its log:\n%s", i, code, tail)
            if left == 0:
                raise RuntimeError(f"node {i} keeps exiting (code {code}); see {workdir}/node-{i}.log")
            left -= 1
            console.print(f"[yellow]node {i} exited with code {code}; starting it again[/yellow]")
            procs[i] = _spawn(commands[i], logs[i])


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Everything the coordinator logs at INFO and above also goes to `path` (the terminal keeps its level)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.level == logging.NOTSET:
            handler.setLevel(root.level)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(path)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    root.addHandler(file_handler)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        root.setLevel(level)
        file_handler.close()


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT each process group we started (they shut down cleanly); SIGKILL what is left after 10 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def summary_table(result: DemoResult) -> Table:
    p = result.progress
    table = Table(title="dataswarm demo", show_header=False)
    table.add_row("dataset", str(result.out_dir))
    table.add_row("state", p.state + (f" ({p.error})" if p.error else ""))
    if p.state == "partial":
        table.add_row("partial", escape(partial_line(p.job_id, p.rows, p.target, result.partial_reason)))
    table.add_row("rows", f"{min(p.rows, p.target)} delivered of {p.target} requested ({p.rows} accepted)")
    table.add_row("verified", "yes: signatures, digests and Merkle root check out" if result.verified else "NO")
    table.add_row("time", f"{result.seconds / 60:.1f} min")
    for s in p.stages:
        table.add_row(f"stage {s.stage}", f"{s.done} done, {s.failed} failed of {s.tasks} tasks")
    if p.rejections:
        table.add_row("rejections", ", ".join(f"{k} {v}" for k, v in sorted(p.rejections.items())))
    return table


def clear_workdir(workdir: Path) -> None:
    """Drop the previous demo's coordinator state (keys and the corpus index are kept)."""
    shutil.rmtree(workdir / "coordinator", ignore_errors=True)
