"""What changed lately: results per second and a feed of recent rejections, for the dashboard and /metrics.

Owns: a sampler that, every few seconds, reads the scheduler's counters and the
rejection counts of active jobs, and turns the differences into a rate and
timestamped events. The store keeps counts, not a timeline, so the timeline is
built here, in memory, from the moment the API starts (a restart begins a new
feed; each job's totals stay in its progress).
Must not: write anything, or read the store from the event loop (every read
goes through `coordinator.runtime.call`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from coordinator.api.schemas import ActivityView, RejectionEvent, RejectionScope
from coordinator.api.views import FINAL_STATES

if TYPE_CHECKING:
    from coordinator.service import Coordinator

RATE_WINDOW_S = 60.0
MAX_EVENTS = 200
RECENT_JOB_MS = 120_000
"""A job that finished this recently is still sampled, so its last rejections make the feed."""


@dataclass(frozen=True)
class Sample:
    at: float
    """time.monotonic() of the sample."""
    at_ms: int
    stats: dict[str, int]
    job_rejections: dict[str, dict[tuple[RejectionScope, str], int]]
    """job id -> (scope, reason) -> count so far."""


def read_sample(coordinator: Coordinator) -> Sample:
    """Worker thread only: the scheduler's counters and each recent job's rejection counts."""
    now_ms = int(time.time() * 1000)
    store = coordinator.store
    jobs: dict[str, dict[tuple[RejectionScope, str], int]] = {}
    for job in store.jobs():
        if job.state in FINAL_STATES and now_ms - job.updated_ms > RECENT_JOB_MS:
            continue
        counts: dict[tuple[RejectionScope, str], int] = {}
        for key, n in store.verdict_counts(job.job_id).items():
            verdict, _, reason = key.partition(":")
            if verdict == "rejected":
                counts[("result", reason or "unspecified")] = n
        for reason, n in store.row_drops(job.job_id).items():
            counts[("row", reason)] = n
        jobs[job.job_id] = counts
    return Sample(time.monotonic(), now_ms, dict(coordinator.runtime.scheduler.stats), jobs)


@dataclass
class Activity:
    interval_s: float = 2.0
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=512))
    """(monotonic time, scheduler results counter): the rate window."""
    events: deque[RejectionEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    last: Sample | None = None

    def add(self, sample: Sample) -> None:
        """Fold one sample in: the first one is the baseline, later ones add the differences as events."""
        self.samples.append((sample.at, int(sample.stats.get("results", 0))))
        while self.samples and sample.at - self.samples[0][0] > RATE_WINDOW_S * 2:
            self.samples.popleft()
        prev = self.last
        self.last = sample
        if prev is None:
            return
        for job_id, counts in sample.job_rejections.items():
            # A job first seen after the baseline is new: all of its rejections are recent.
            before = prev.job_rejections.get(job_id, {})
            for (scope, reason), n in sorted(counts.items()):
                if n > before.get((scope, reason), 0):
                    self._event(sample.at_ms, job_id, scope, reason, n - before.get((scope, reason), 0))
        claims_now = Counter({k: v for k, v in sample.stats.items() if k.startswith("reject:")})
        for key, n in sorted(claims_now.items()):
            gained = n - int(prev.stats.get(key, 0))
            if gained > 0:
                self._event(sample.at_ms, "", "claim", key.removeprefix("reject:"), gained)

    def _event(self, at_ms: int, job_id: str, scope: RejectionScope, reason: str, count: int) -> None:
        self.events.append(RejectionEvent(at_ms=at_ms, job_id=job_id, scope=scope, reason=reason, count=count))

    def results_per_s(self) -> float:
        """Results per second since the last sample a minute or more old (or the oldest one kept)."""
        if len(self.samples) < 2:
            return 0.0
        newest_t, newest_n = self.samples[-1]
        base_t, base_n = self.samples[0]
        for t, n in self.samples:
            if newest_t - t < RATE_WINDOW_S:
                break
            base_t, base_n = t, n
        span = newest_t - base_t
        return round(max(0, newest_n - base_n) / span, 3) if span > 0 else 0.0

    def view(self) -> ActivityView:
        return ActivityView(results_per_s=self.results_per_s(), rejections=list(reversed(self.events)))

    async def run(self, coordinator: Coordinator) -> None:
        """Sample until cancelled (started in the API server's nursery)."""
        while True:
            self.add(await coordinator.runtime.call(read_sample, coordinator))
            await trio.sleep(self.interval_s)
