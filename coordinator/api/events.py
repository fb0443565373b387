"""Server-sent events for one job: a `progress` event whenever its snapshot changes, `end` when it finishes.

Wire format (text/event-stream):
    retry: 3000
    id: 1
    event: progress
    data: {JobView as JSON}

    : keep-alive            (a comment, when nothing changed for `heartbeat_s`)

    id: 7
    event: end
    data: {the final JobView}

The stream closes after `end`. Every event carries the whole snapshot, so a
client that reconnects needs no Last-Event-ID replay. A job waiting for nodes
is not final: entering and leaving waiting_for_nodes, and a change in its live
node count (the snapshot's `waiting`), are progress events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import trio

from coordinator.api.views import FINAL_STATES

if TYPE_CHECKING:
    from coordinator.api.views import JobViews
    from coordinator.service import Coordinator


def format_event(event: str, data: str, event_id: int) -> bytes:
    # data is compact JSON: it holds no newline, so it is a single data line.
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


async def job_events(
    coordinator: Coordinator, views: JobViews, job_id: str, *, interval_s: float, heartbeat_s: float
) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    last = ""
    seq = 0
    quiet_since = time.monotonic()
    while True:
        view = await coordinator.runtime.call(views.job, job_id)
        data = view.model_dump_json()
        if view.state in FINAL_STATES:
            seq += 1
            yield format_event("end", data, seq)
            return
        if data != last:
            seq += 1
            last = data
            quiet_since = time.monotonic()
            yield format_event("progress", data, seq)
        elif time.monotonic() - quiet_since >= heartbeat_s:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await trio.sleep(interval_s)
