"""Bench-only double for a wrong system clock: bench/soak.py puts this folder first on one node's PYTHONPATH.

Python imports `sitecustomize` at start-up, before any application module, so when
DATASWARM_SOAK_CLOCK_SKEW_S is set (seconds, may be negative or fractional) this shifts the process's
wall clock, `time.time()` and `time.time_ns()`, by that much, as a machine whose system clock is off
would. Monotonic clocks (trio's, `time.monotonic`, `time.perf_counter`) are left alone, as a wrong
wall clock leaves them. `datetime.now()` reads the C clock and is not shifted; nothing on the node's
path (envelopes, offers, leases, logs) reads it. Without the variable this module does nothing.
It is never installed with the package and no production code knows about it.
"""

from __future__ import annotations

import os
import time

_SKEW = os.environ.get("DATASWARM_SOAK_CLOCK_SKEW_S", "")

if _SKEW:
    _offset_s = float(_SKEW)
    _offset_ns = round(_offset_s * 1e9)
    _real_time = time.time
    _real_time_ns = time.time_ns

    def _skewed_time() -> float:
        return _real_time() + _offset_s

    def _skewed_time_ns() -> int:
        return _real_time_ns() + _offset_ns

    time.time = _skewed_time
    time.time_ns = _skewed_time_ns
