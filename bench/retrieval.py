"""Retrieval, indexing and local search throughput on the Python docs corpus (loopback only).

Run: .venv/bin/python bench/retrieval.py [--pages N] [--corpus DIR]
Prints:
- index build pages/s (cheap structural extraction + FTS5 insert, one worker thread);
- extraction ms/page: trafilatura (what retrieve returns) vs the cheap indexing pass;
- retrieval pages/s against the local corpus server (fetch + trafilatura), sequential and
  with 4 concurrent retrievals, and fetch-only pages/s to show where the time goes;
- local search queries/s and ranking quality (expected page at rank 1 / in the top 3).
Absolute numbers depend on the machine (and on what else it runs): compare figures from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio

from node.retrieve import AddressPolicy, Retriever, RetrieverConfig
from node.retrieve.extract import extract_document, extract_for_index
from node.search.corpus import html_files, index_corpus
from node.search.corpus_server import CorpusServer
from node.search.local import LocalSearchBackend

PYDOC = Path("/usr/share/doc/python3.11/html")
BASE = "http://127.0.0.1:8765/"

QUERIES = [
    ("heap queue priority", "library/heapq.html"),
    ("regular expression match groups", "library/re.html"),
    ("json encode decode serialize", "library/json.html"),
    ("sqlite database", "library/sqlite3.html"),
    ("socket network interface", "library/socket.html"),
    ("decimal fixed point floating point arithmetic", "library/decimal.html"),
    ("heaps queues", "library/heapq.html"),
    ("queue", "library/queue.html"),
    ("random numbers", "library/random.html"),
    ("copy deep shallow", "library/copy.html"),
    ("temporary files", "library/tempfile.html"),
    ("thread lock", "library/threading.html"),
    ("unit testing framework", "library/unittest.html"),
    ("command line arguments", "library/argparse.html"),
    ("date time", "library/datetime.html"),
    ("http server", "library/http.server.html"),
    ("zip archive", "library/zipfile.html"),
    ("logging", "library/logging.html"),
    ("dataclass fields", "library/dataclasses.html"),
    ("async await coroutine", "library/asyncio-task.html"),
]


def sample(files: list[Path], n: int) -> list[Path]:
    """Every k-th file: a deterministic spread over the corpus (small and large pages)."""
    step = max(1, len(files) // n)
    return files[::step][:n]


async def bench_index(corpus: Path, workdir: Path) -> tuple[Path, float, int]:
    db = workdir / "index.sqlite"
    stats = await index_corpus(corpus, db_path=db, base_url=BASE)
    return db, stats.pages_per_s, stats.pages


def bench_extraction(pages: list[Path]) -> tuple[float, float]:
    bodies = [page.read_bytes() for page in pages]
    started = time.perf_counter()
    for body, page in zip(bodies, pages, strict=True):
        extract_document(body, "text/html", None, page.as_uri())
    trafilatura_ms = (time.perf_counter() - started) * 1000 / len(bodies)
    started = time.perf_counter()
    for body in bodies:
        extract_for_index(body)
    cheap_ms = (time.perf_counter() - started) * 1000 / len(bodies)
    return trafilatura_ms, cheap_ms


async def bench_retrieval(server: CorpusServer, urls: list[str], concurrency: int, fetch_only: bool) -> float:
    config = RetrieverConfig(policy=AddressPolicy.loopback())
    async with Retriever(config) as retriever:
        limiter = trio.CapacityLimiter(concurrency)

        async def one(url: str) -> None:
            async with limiter:
                if fetch_only:
                    await retriever.fetcher.fetch(url)
                else:
                    await retriever.retrieve(url)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for url in urls:
                nursery.start_soon(one, url)
        return len(urls) / (time.perf_counter() - started)


async def bench_search(db: Path) -> tuple[float, int, int]:
    backend = LocalSearchBackend(db)
    top1 = top3 = 0
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for query, page in QUERIES:
            urls = [hit.url for hit in await backend.search(query, 10)]
            top1 += urls[:1] == [BASE + page]
            top3 += BASE + page in urls[:3]
    qps = rounds * len(QUERIES) / (time.perf_counter() - started)
    return qps, top1 // rounds, top3 // rounds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=120, help="pages retrieved per retrieval measurement")
    parser.add_argument("--corpus", type=Path, default=PYDOC)
    args = parser.parse_args()
    if not (args.corpus / "library").is_dir():
        sys.exit(f"{args.corpus} is missing: install Debian's python3.11-doc (.ci/run does)")

    files = html_files(args.corpus)
    pages = sample(files, args.pages)
    print(f"corpus: {len(files)} HTML pages in {args.corpus}; retrieval sample: {len(pages)} pages")

    with tempfile.TemporaryDirectory() as tmp:
        db, index_rate, indexed = await bench_index(args.corpus, Path(tmp))
        print(f"index build             : {index_rate:7.1f} pages/s ({indexed} pages)")

        trafilatura_ms, cheap_ms = bench_extraction(pages)
        print(f"extraction, trafilatura : {trafilatura_ms:7.1f} ms/page (retrieve)")
        print(f"extraction, index pass  : {cheap_ms:7.1f} ms/page (ratio {trafilatura_ms / cheap_ms:.1f}x faster)")

        with CorpusServer(args.corpus) as server:
            urls = [server.url(page.relative_to(args.corpus).as_posix()) for page in pages]
            fetch_rate = await bench_retrieval(server, urls, 1, fetch_only=True)
            sequential = await bench_retrieval(server, urls, 1, fetch_only=False)
            concurrent = await bench_retrieval(server, urls, 4, fetch_only=False)
        print(f"fetch only, sequential  : {fetch_rate:7.1f} pages/s")
        print(f"retrieval, sequential   : {sequential:7.1f} pages/s (fetch + trafilatura)")
        print(f"retrieval, 4 concurrent : {concurrent:7.1f} pages/s (ratio {concurrent / sequential:.2f})")

        qps, top1, top3 = await bench_search(db)
        latencies = []
        backend = LocalSearchBackend(db)
        for query, _ in QUERIES:
            started = time.perf_counter()
            await backend.search(query, 10)
            latencies.append((time.perf_counter() - started) * 1000)
        print(f"local search            : {qps:7.1f} queries/s, median {statistics.median(latencies):.1f} ms")
        print(f"search quality          : top-1 {top1}/{len(QUERIES)}, top-3 {top3}/{len(QUERIES)}")


if __name__ == "__main__":
    trio.run(main)
