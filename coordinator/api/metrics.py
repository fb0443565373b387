"""The coordinator's Prometheus metrics, served at /metrics.

Owns: reading a snapshot of the coordinator (store, scheduler counters, node
gossip) and rendering it in the Prometheus text format. Counters come from
`Scheduler.stats`, which counts since the process started: Prometheus treats
the drop at a restart as a counter reset, so `rate()` stays right.
Must not: read the store on the event loop (`collect` runs on the
coordinator's worker thread), or keep per-node series (volunteers come and go;
one series per peer would grow without bound).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coordinator import job_states
from coordinator.api.views import FINAL_STATES
from coordinator.verify.reputation import decayed_score
from protocol.tasks import TaskKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from coordinator.service import Coordinator

FINAL_JOB_STATES = FINAL_STATES  # one list of final states for the API (views.py)
ACTIVE_JOB_STATES = job_states.OFFERED
"""Jobs whose open tasks are offered (the scheduler's own rule)."""
QUEUE_SCAN_LIMIT = 100_000
REPUTATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TASK_STATES = ("open", "done", "failed")

# Scheduler.stats keys that are plain counters: key -> (metric name, help).
PLAIN_COUNTERS = {
    "offers": ("dataswarm_offers", "Task offers gossiped."),
    "grants": ("dataswarm_grants", "Leases granted."),
    "results": ("dataswarm_results", "Results received from nodes."),
    "expired": ("dataswarm_lease_expiries", "Leases that ran out before a result came."),
    "validations": ("dataswarm_validations", "Validation (re-scoring) tasks created."),
    "abandoned": ("dataswarm_tasks_abandoned", "Tasks given up because no node would take them."),
}


@dataclass
class Snapshot:
    jobs: Counter[str] = field(default_factory=Counter)
    tasks: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, state) -> tasks, over every job."""
    queue: Counter[str] = field(default_factory=Counter)
    """kind -> replicas waiting for a claim, of active jobs."""
    leases_held: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    blacklisted: int = 0
    live_nodes: int = 0
    free_slots: int = 0
    total_slots: int = 0
    tok_s: float = 0.0


class TaskTally:
    """Task counts per job; a finished job's are cached by its updated_ms, so a scrape rescans only
    the jobs still running (docs/notes/coordinator.md#metrics-task-counts)."""

    def __init__(self) -> None:
        self._final: dict[str, tuple[int, Counter[tuple[str, str]]]] = {}
        self._lock = threading.Lock()

    def collect(self, coordinator: Coordinator) -> Snapshot:
        """Worker thread only."""
        store = coordinator.store
        scheduler = coordinator.runtime.scheduler
        snap = Snapshot()
        open_active: set[str] = set()
        for job in store.jobs():
            snap.jobs[job.state] += 1
            with self._lock:
                hit = self._final.get(job.job_id)
            if hit is not None and hit[0] == job.updated_ms:
                snap.tasks.update(hit[1])
                continue
            counts: Counter[tuple[str, str]] = Counter()
            for task in store.tasks(job.job_id):
                counts[(task.kind.value, task.state.value)] += 1
                if job.state in ACTIVE_JOB_STATES and task.state.value == "open":
                    open_active.add(task.task_id)
            snap.tasks.update(counts)
            if job.state in FINAL_JOB_STATES:
                with self._lock:
                    self._final[job.job_id] = (job.updated_ms, counts)
        if open_active:
            for kind in TaskKind:
                offered = store.offered_replicas(limit=QUEUE_SCAN_LIMIT, kinds=[kind])
                snap.queue[kind.value] = sum(r.task_id in open_active for r in offered)
        peers = set(store.nodes())
        statuses = scheduler.node_statuses()
        snap.leases_held = sum(store.count_held(p) for p in peers | set(statuses))
        snap.stats = dict(scheduler.stats)
        now_ms = _now_ms()
        for rep in store.reputations():
            snap.scores.append(decayed_score(rep, now_ms=now_ms, config=scheduler.config.reputation))
            snap.blacklisted += rep.blacklisted
        snap.live_nodes = len(statuses)
        for status in statuses.values():
            snap.free_slots += status.free_slots
            snap.total_slots += status.total_slots
            snap.tok_s += max((m.tok_s for m in status.models), default=0.0)
        return snap


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_verdict(key: str) -> tuple[str, str, str] | None:
    """'verdict:<verdict>:<reason>' or 'verdict:<kind>:<verdict>:<reason>' -> (kind, verdict, reason)."""
    parts = key.split(":")
    if parts[0] != "verdict":
        return None
    if len(parts) == 3:
        kind, verdict, reason = "", parts[1], parts[2]
    elif len(parts) == 4:
        kind, verdict, reason = parts[1], parts[2], parts[3]
    else:
        return None
    return kind, verdict, "" if reason == "ok" else reason


class _SnapshotCollector(Collector):
    def __init__(self, snap: Snapshot, results_per_s: float) -> None:
        self.snap = snap
        self.results_per_s = results_per_s

    def collect(self) -> Iterable[Metric]:
        s = self.snap
        jobs = GaugeMetricFamily("dataswarm_jobs", "Jobs by state.", labels=["state"])
        for state in sorted(set(job_states.ALL) | set(s.jobs)):
            jobs.add_metric([state], s.jobs.get(state, 0))
        yield jobs

        tasks = GaugeMetricFamily(
            "dataswarm_tasks", "Tasks by kind and state (done: a result was accepted).", labels=["kind", "state"]
        )
        for kind in TaskKind:
            for state in TASK_STATES:
                tasks.add_metric([kind.value, state], s.tasks.get((kind.value, state), 0))
        yield tasks

        queue = GaugeMetricFamily(
            "dataswarm_queue_depth", "Replicas of active jobs waiting for a node to claim them.", labels=["kind"]
        )
        for kind in TaskKind:
            queue.add_metric([kind.value], s.queue.get(kind.value, 0))
        yield queue
        yield GaugeMetricFamily("dataswarm_leases_held", "Slots claimed or granted right now.", value=s.leases_held)

        for key, (name, help_text) in PLAIN_COUNTERS.items():
            yield CounterMetricFamily(name, help_text, value=s.stats.get(key, 0))
        verdicts = CounterMetricFamily(
            "dataswarm_verdicts", "Verdicts on results, by task kind (when known), verdict and reason.",
            labels=["kind", "verdict", "reason"],
        )  # fmt: skip
        claims = CounterMetricFamily("dataswarm_claims_rejected", "Claims refused, by reason.", labels=["reason"])
        drops = CounterMetricFamily("dataswarm_rows_dropped", "Rows dropped by a quality gate.", labels=["reason"])
        for key, n in sorted(s.stats.items()):
            split = _split_verdict(key)
            if split is not None:
                verdicts.add_metric(list(split), n)
            elif key.startswith("reject:"):
                claims.add_metric([key.removeprefix("reject:")], n)
            elif key.startswith("row_dropped:"):
                drops.add_metric([key.removeprefix("row_dropped:")], n)
        yield verdicts
        yield claims
        yield drops
        yield GaugeMetricFamily(
            "dataswarm_results_per_second", "Results received per second over the last minute.",
            value=self.results_per_s,
        )  # fmt: skip

        buckets = [(str(b), sum(x <= b for x in s.scores)) for b in REPUTATION_BUCKETS]
        buckets.append(("+Inf", len(s.scores)))
        yield GaugeHistogramMetricFamily(
            "dataswarm_node_reputation", "Nodes by reputation score (cumulative buckets).",
            buckets=buckets, gsum_value=sum(s.scores),
        )  # fmt: skip
        nodes = GaugeMetricFamily("dataswarm_nodes", "Nodes by status.", labels=["status"])
        nodes.add_metric(["live"], s.live_nodes)
        nodes.add_metric(["known"], len(s.scores))
        nodes.add_metric(["blacklisted"], s.blacklisted)
        yield nodes
        slots = GaugeMetricFamily("dataswarm_node_slots", "Execution slots of live nodes.", labels=["state"])
        slots.add_metric(["free"], s.free_slots)
        slots.add_metric(["total"], s.total_slots)
        yield slots
        yield GaugeMetricFamily(
            "dataswarm_network_tokens_per_second", "Sum over live nodes of their fastest model's tok/s.",
            value=s.tok_s,
        )  # fmt: skip


def render(snap: Snapshot, *, results_per_s: float) -> bytes:
    """The snapshot in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap, results_per_s))
    return generate_latest(registry)
