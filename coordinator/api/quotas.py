"""Per-token quotas on the API: a request rate, and caps on the jobs and rows a token has running.

Owns: counting a token's requests (a moving window, `limits`' in-memory limiter: a
coordinator restart forgets the window, which only errs towards letting a client in) and
deciding whether one more job fits under the token's caps. Both refusals are 429 with a
`Retry-After` header and a sentence that names the limit and the setting that raises it.

Requests without a token (open reads on loopback) are not counted: only this machine
reaches them. Admin tokens are rate-limited like any other but not capped on jobs or rows:
they are the operator's. The limits come from the coordinator's config
(`api_requests_per_minute`, `api_jobs_per_token`, `api_rows_per_token`; 0 turns one off).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from coordinator.api.errors import ApiError

CAP_RETRY_AFTER_S = 60
"""When a cap on running jobs or rows is hit, nothing says when a job will end: ask again in a minute."""


@dataclass(frozen=True)
class QuotaSettings:
    requests_per_minute: int = 600
    jobs_per_token: int = 8
    rows_per_token: int = 50_000


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    rows: int


class Quotas:
    def __init__(self, settings: QuotaSettings) -> None:
        self.settings = settings
        self._window = RateLimitItemPerMinute(settings.requests_per_minute) if settings.requests_per_minute else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def count_request(self, token_id: str) -> None:
        """Count one request of `token_id`; 429 once it is over the per-minute rate."""
        if self._window is None or self._limiter.hit(self._window, token_id):
            return
        stats = self._limiter.get_window_stats(self._window, token_id)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise ApiError(
            429,
            f"token {token_id!r} made more than {self.settings.requests_per_minute} requests in a minute: "
            f"retry in {wait} s (the operator sets api_requests_per_minute)",
            code="rate_limited",
            headers={"Retry-After": str(wait)},
        )

    def check_submit(self, token_id: str, running: Iterable[RunningJob], rows: int) -> None:
        """429 if one more job of `rows` rows would put `token_id` over its caps; `running`: its jobs not yet ended."""
        jobs = list(running)
        cap_jobs, cap_rows = self.settings.jobs_per_token, self.settings.rows_per_token
        if cap_jobs and len(jobs) >= cap_jobs:
            self._refuse(
                f"token {token_id!r} has {len(jobs)} jobs running, the most this coordinator allows per token "
                f"(api_jobs_per_token = {cap_jobs}): wait for one to end, or cancel one"
            )
        held = sum(j.rows for j in jobs)
        if cap_rows and held + rows > cap_rows:
            room = max(0, cap_rows - held)
            self._refuse(
                f"a job of {rows} rows would give token {token_id!r} {held + rows} rows in running jobs, over this "
                f"coordinator's {cap_rows} per token (api_rows_per_token): ask for at most {room} rows now, "
                "or wait for a job to end"
            )

    @staticmethod
    def _refuse(detail: str) -> None:
        raise ApiError(429, detail, code="quota_exceeded", headers={"Retry-After": str(CAP_RETRY_AFTER_S)})
