"""Shared fixtures for the retrieval, search and corpus tests (loaded with `pytest_plugins`).

- `pydoc_dir`: Debian's python3.11-doc HTML (~530 pages), the real corpus. Missing, it is
  a failure that says how to install it, not a skip: `.ci/run` installs it.
- `pydoc_index`: that corpus indexed once per test session (a few seconds), shared.
- `corpus_server`: the corpus served on 127.0.0.1 by `node.search.corpus_server`.
- `scripted_site`: `corpus_support.ScriptedSite`, hostile endpoints on a second loopback server.

Test modules import helpers from `corpus_support`, never from here: a module pytest has
already imported cannot be registered as a plugin with assertion rewriting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.search.corpus import IndexStats, index_corpus
from node.search.corpus_server import CorpusServer
from tests.node.corpus_support import INDEX_BASE_URL, BuiltIndex, ScriptedSite, require_pydoc


@pytest.fixture(scope="session")
def pydoc_dir() -> Path:
    return require_pydoc()


@pytest.fixture(scope="session")
def pydoc_index(pydoc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltIndex:
    """The Python docs indexed once for the whole session (under INDEX_BASE_URL)."""
    path = tmp_path_factory.mktemp("index") / "pydoc.sqlite"
    progress: list[tuple[int, int]] = []

    async def build() -> IndexStats:
        return await index_corpus(
            pydoc_dir,
            db_path=path,
            base_url=INDEX_BASE_URL,
            on_progress=lambda done, total: progress.append((done, total)),
        )

    stats = trio.run(build)
    return BuiltIndex(path=path, stats=stats, progress=progress)


@pytest.fixture(scope="session")
def corpus_server(pydoc_dir: Path) -> Iterator[CorpusServer]:
    with CorpusServer(pydoc_dir) as server:
        yield server


@pytest.fixture(scope="session")
def scripted_site(corpus_server: CorpusServer) -> Iterator[ScriptedSite]:
    with ScriptedSite(corpus_server.base_url) as site:
        yield site
