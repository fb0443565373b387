"""Gossip benchmark for the network layer: latency and throughput of signed offers.

    python bench/network.py            # full run
    python bench/network.py --quick    # smaller counts, N = 50 only
    python bench/network.py --quick --sizes 50,200,1000 --messages 4 --budget-s 150   # `make bench` (P5)

Part 1, five processes (1 publisher, 4 subscribers, star around the
publisher, as nodes bootstrap off a coordinator): delivery latency p50/p95 at
a paced rate, then offers/s flat out (publish as fast as backpressure allows).
Part 2, N hosts in one process on a random connected topology (each host
dials 3 random earlier ones): p50/p95 from publish to delivery at every host,
and the share delivered. Latency is measured from just before sealing to
delivery by the receiving host; all processes share one clock.

Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from network import DialError, HostConfig, SwarmHost, now_ms, offers_topic
from protocol import Identity, TaskKind, TaskOffer, seal

TOPIC = offers_topic(TaskKind.SYNTHESIZE)
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
DIGEST = "ab" * 32
BASE_RSS_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""This process after imports (py-libp2p alone is ~80 MB), before any host."""


def offer(seq: int) -> TaskOffer:
    # The task id carries the send time, so any receiver can compute latency.
    return TaskOffer(
        task_id=f"b{seq}-{time.time_ns()}",
        job_id="bench",
        task_kind=TaskKind.SYNTHESIZE,
        payload_sha256=DIGEST,
        model_sha256=[DIGEST] * 16,
        est_tokens=256,
        offer_expires_ms=now_ms() + 600_000,
    )


def sent_ns(task_id: str) -> int:
    return int(task_id.split("-")[1])


def seq_of(task_id: str) -> int:
    return int(task_id.split("-")[0][1:])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def config(identity: Identity, **kwargs: Any) -> HostConfig:
    return HostConfig(identity, listen=[LOOPBACK], mdns=False, dht=False, **kwargs)


# --- part 1: processes ----------------------------------------------------------


async def publisher_worker(paced: int, rate: float, flat: int, subscribers: int) -> None:
    ident = Identity.generate()
    async with SwarmHost(config(ident)) as host:
        print(json.dumps({"addr": host.listen_addrs[0]}), flush=True)
        await host.wait_for_subscribers(TOPIC, subscribers, timeout=120)
        await trio.sleep(2)  # let the gossip mesh settle: this is a benchmark, not a test
        for i in range(paced):
            await host.publish(TOPIC, seal(ident, offer(i), now_ms=now_ms()))
            await trio.sleep(1 / rate)
        await trio.sleep(1)
        start = time.perf_counter()
        for i in range(paced, paced + flat):
            await host.publish(TOPIC, seal(ident, offer(i), now_ms=now_ms()))
        elapsed = time.perf_counter() - start
        print(json.dumps({"published": flat, "seconds": elapsed}), flush=True)
        await trio.sleep(15)  # stay up while subscribers drain; killed by the parent when done


async def subscriber_worker(addr: str, expect: int) -> None:
    async with SwarmHost(config(Identity.generate(), bootstrap=[addr])) as host:
        sub = await host.subscribe(TOPIC)
        received: list[tuple[int, int, int]] = []  # (seq, sent ns, received ns)
        with trio.move_on_after(300):
            async for opened in sub:
                task_id = opened.message.task_id
                received.append((seq_of(task_id), sent_ns(task_id), time.time_ns()))
                if len(received) == expect:
                    break
        print(json.dumps({"received": received}), flush=True)


def run_processes(paced: int, rate: float, flat: int) -> None:
    me = [sys.executable, __file__]
    args = ["--worker", "pub", str(paced), str(rate), str(flat)]
    pub = subprocess.Popen([*me, *args], stdout=subprocess.PIPE, text=True)
    subs: list[subprocess.Popen[str]] = []
    try:
        assert pub.stdout is not None
        addr = json.loads(pub.stdout.readline())["addr"]
        subs = [
            subprocess.Popen([*me, "--worker", "sub", addr, str(paced + flat)], stdout=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        published = json.loads(pub.stdout.readline())
        results = [json.loads(s.communicate(timeout=600)[0].strip().splitlines()[-1])["received"] for s in subs]
    finally:
        for proc in [pub, *subs]:
            with contextlib.suppress(Exception):
                proc.kill()
    paced_lat = [(recv - sent) / 1e6 for r in results for seq, sent, recv in r if seq < paced]
    flat_rows = [(sent, recv) for r in results for seq, sent, recv in r if seq >= paced]
    flat_lat = [(recv - sent) / 1e6 for sent, recv in flat_rows]
    delivered = sum(map(len, results))
    # End to end: from the first flat-out send to the last delivery at the slowest subscriber.
    span = float("nan")
    if flat_rows:
        span = (max(recv for _, recv in flat_rows) - min(sent for sent, _ in flat_rows)) / 1e9
    print(f"5 processes (1 publisher -> 4 subscribers), {paced + flat} signed offers of ~1.5 KB")
    print(f"  delivered {delivered}/{4 * (paced + flat)}")
    print(f"  paced at {rate:g}/s: latency p50 {pct(paced_lat, 0.5):.1f} ms, p95 {pct(paced_lat, 0.95):.1f} ms")
    print(
        f"  flat out: {flat} offers published in {published['seconds']:.2f} s "
        f"({flat / published['seconds']:.0f} offers/s); all delivered to all 4 in {span:.2f} s "
        f"({flat / span:.0f} offers/s end to end, {4 * flat / span:.0f} deliveries/s)"
    )
    print(
        f"  flat-out latency (includes queueing): p50 {pct(flat_lat, 0.5):.1f} ms, p95 {pct(flat_lat, 0.95):.1f} ms",
        flush=True,
    )


# --- part 2: many hosts in one process ------------------------------------------------


async def run_in_process(n: int, messages: int, budget_s: float) -> None:
    # One core carries every host: one offer reaching 49 others cost ~0.65 s of CPU at N = 50
    # (~13 ms per host). The rate is scaled with N to keep the core about half busy, so the
    # figures are propagation latency, not a growing CPU backlog.
    rate = min(5.0, 40.0 / n)
    rng = random.Random(n)
    started = time.perf_counter()
    print(f"{n} hosts in one process, random topology (3 dials per host), {messages} offers at {rate:g}/s", flush=True)
    async with contextlib.AsyncExitStack() as stack:
        hosts: list[SwarmHost] = []
        for i in range(n):
            hosts.append(await stack.enter_async_context(SwarmHost(config(Identity.generate()))))
            if time.perf_counter() - started > budget_s:
                print(f"  stopped after starting {i + 1} hosts: the {budget_s:.0f} s budget is spent", flush=True)
                print(f"P5 {n} hosts: not measured (the {budget_s:.0f} s budget to start and connect was spent)")
                os._exit(0)
        up = time.perf_counter() - started
        limiter = trio.CapacityLimiter(64)  # py-libp2p holds every dial 250 ms (its happy-eyeballs delay)

        failed: list[str] = []

        async def dial(i: int, j: int) -> None:
            async with limiter:
                try:
                    await hosts[i].connect(hosts[j].listen_addrs[0], timeout=120)
                except DialError as exc:
                    failed.append(str(exc))

        dialled = 0

        async def dial_counted(i: int, j: int) -> None:
            nonlocal dialled
            await dial(i, j)
            dialled += 1

        with trio.move_on_after(max(0.0, budget_s - (time.perf_counter() - started))) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(1, n):
                    for j in rng.sample(range(i), min(3, i)):
                        nursery.start_soon(dial_counted, i, j)
        if scope.cancelled_caught:
            print(f"  stopped after {dialled} of {3 * n - 6} dials: the {budget_s:.0f} s budget is spent", flush=True)
            print(f"P5 {n} hosts: not measured (the {budget_s:.0f} s budget to start and connect was spent)")
            os._exit(0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  started in {up:.1f} s, connected in {time.perf_counter() - started - up:.1f} s more "
            f"({len(failed)} of {3 * n - 6} dials failed); "
            f"max RSS {rss:.0f} MB, {(rss - BASE_RSS_MB) / n:.2f} MB per host over a bare process",
            flush=True,
        )

        received: list[list[tuple[int, float]]] = []
        async with trio.open_nursery() as nursery:
            for host in hosts[1:]:
                log: list[tuple[int, float]] = []
                received.append(log)
                sub = await host.subscribe(TOPIC)

                async def consume(sub: Any = sub, log: list[tuple[int, float]] = log) -> None:
                    async for opened in sub:
                        task_id = opened.message.task_id
                        log.append((seq_of(task_id), (time.time_ns() - sent_ns(task_id)) / 1e6))

                nursery.start_soon(consume)
            publisher = hosts[0]
            settle = time.perf_counter()
            await publisher.wait_for_subscribers(TOPIC, min(3, n - 1), timeout=120)
            await trio.sleep(5)  # a few heartbeats for meshes to form across the topology
            cpu0 = time.process_time()
            await trio.sleep(5)
            idle_cpu = (time.process_time() - cpu0) / 5
            print(
                f"  subscribed and settled in {time.perf_counter() - settle:.1f} s; "
                f"idle swarm uses {100 * idle_cpu:.0f}% of a core (heartbeats, keep-alives)",
                flush=True,
            )
            for i in range(messages):
                await publisher.publish(TOPIC, seal(publisher.identity, offer(i), now_ms=now_ms()), timeout=120)
                await trio.sleep(1 / rate)
            deadline = trio.current_time() + 60
            while trio.current_time() < deadline and sum(map(len, received)) < messages * (n - 1):
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        latencies = [lat for log in received for _, lat in log]
        total = messages * (n - 1)
        print(
            f"P5 {n} hosts: gossip delivery p50 {pct(latencies, 0.5):.0f} ms, p95 {pct(latencies, 0.95):.0f} ms"
            + (" (goal p95 <= 250 ms at 1000)" if n == 1000 else ""),
            flush=True,
        )
        print(
            f"  delivered {len(latencies)}/{total} ({100 * len(latencies) / total:.1f}%), "
            f"latency p50 {pct(latencies, 0.5):.0f} ms, p95 {pct(latencies, 0.95):.0f} ms, "
            f"max {max(latencies, default=float('nan')):.0f} ms; {time.perf_counter() - started:.0f} s in all",
            flush=True,
        )
        # Closing hundreds of py-libp2p hosts one by one takes minutes: this process is done.
        os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default=None, help="comma-separated in-process host counts (default 50,200,1000)")
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--messages", type=int, default=None, help="offers per in-process size (default by N)")
    parser.add_argument(
        "--budget-s", type=float, default=900.0, help="seconds to start and connect the hosts of one size, at most"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        role, *rest = args.worker
        if role == "pub":
            trio.run(publisher_worker, int(rest[0]), float(rest[1]), int(rest[2]), 4)
        elif role == "sub":
            trio.run(subscriber_worker, rest[0], int(rest[1]))
        else:
            logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # its mesh-churn warnings drown the figures
            trio.run(run_in_process, int(rest[0]), int(rest[1]), float(rest[2]))
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # ~7 fds per in-process host, inherited
    if not args.skip_processes:
        run_processes(paced=100 if args.quick else 300, rate=50, flat=500 if args.quick else 2000)
    sizes = [int(s) for s in (args.sizes or ("50" if args.quick else "50,200,1000")).split(",") if s]
    for n in sizes:
        # One process per size: RSS per host is then per size, and nothing carries over.
        messages = args.messages or (10 if args.quick else max(5, min(20, 2000 // n)))
        worker = [sys.executable, __file__, "--worker", "inproc", str(n), str(messages), str(args.budget_s)]
        subprocess.run(worker, check=False)


if __name__ == "__main__":
    main()
