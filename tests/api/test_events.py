"""GET /v1/jobs/{id}/events: progress events as the job moves, keep-alives while it does not, `end` when it ends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import trio

from coordinator.api.events import format_event
from tests.api.support import Served, api_server, auth, issue, search_job, settle_search


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs, and ("comment", text) for keep-alives, parsed from an event stream."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line == "":
            if data or event:
                yield event or "message", "\n".join(data)
            event, data = "", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())


def test_wire_format_is_one_data_line() -> None:
    assert format_event("progress", '{"a": 1}', 3) == b'id: 3\nevent: progress\ndata: {"a": 1}\n\n'


async def test_events_follow_progress_until_the_job_ends(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        ids = await s.call(search_job, s.coordinator, "press", 2)
        seen: list[tuple[str, dict[str, object]]] = []
        comments = 0
        first = trio.Event()

        async def drive(served: Served) -> None:
            await first.wait()
            await served.call(settle_search, served.coordinator, ids[0])
            await trio.sleep(0.5)  # quiet: the stream sends keep-alives
            await served.call(settle_search, served.coordinator, ids[1])
            await trio.sleep(0.2)
            token = issue(served.coordinator, "w", "admin")
            assert (await client.delete("/v1/jobs/press", headers=auth(token))).status_code == 200

        with trio.fail_after(20):
            async with client.stream("GET", "/v1/jobs/press/events") as response, trio.open_nursery() as nursery:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-cache"
                nursery.start_soon(drive, s)
                async for event, data in sse(response):
                    if event == "comment":
                        comments += 1
                        continue
                    seen.append((event, json.loads(data)))
                    first.set()
        done_counts = [e[1]["stages"][0]["done"] for e in seen if e[0] == "progress"]  # type: ignore[index]
        assert done_counts[0] == 0 and done_counts[-1] == 2 and done_counts == sorted(done_counts)
        assert 1 in done_counts
        assert seen[-1][0] == "end" and seen[-1][1]["state"] == "cancelled"
        assert [e for e, _ in seen].count("end") == 1
        assert comments >= 1


async def test_a_finished_job_streams_one_end_event(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        await s.call(search_job, s.coordinator, "old", 1)
        await s.call(s.coordinator.store.set_job_state, "old", "failed", now_ms=1)
        with trio.fail_after(10):
            async with client.stream("GET", "/v1/jobs/old/events") as response:
                events = [(e, json.loads(d)) for e, d in [x async for x in sse(response)] if e != "comment"]
        assert [e for e, _ in events] == ["end"] and events[0][1]["state"] == "failed"
