"""The requester's HTTP client: what `request`, `jobs` and `nodes` use to talk to a coordinator's API.

Owns: the default URL, the bearer token header, turning every transport failure
and every API error body into one sentence (`ApiClientError`), reading a job's
server-sent events, and fetching and unpacking a finished job's dataset.
Responses are parsed into the API's own models (`coordinator.api.schemas`), so
the CLI and the server cannot drift apart silently.
Must not: print or render anything (the commands do), or read the coordinator's
store: everything goes through the HTTP API. Commands import this module inside
their bodies: FastAPI (under coordinator.api) and httpx would otherwise slow
every `dataswarm` command by half a second.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from coordinator.api.schemas import ErrorBody, InfoView, JobList, JobView, NodeList, NodeView
from coordinator.compile.manifest import MANIFEST_FILE

EXAMPLE_URL = "http://HOST:8470"
REQUEST_TIMEOUT_S = 30.0
EVENTS_READ_TIMEOUT_S = 60.0
"""The events stream sends a keep-alive every 15 s (ApiSettings.sse_heartbeat_s): 60 s of silence is a dead link."""
EVENTS_RECONNECTS = 5
RECONNECT_DELAY_S = 3.0
"""The stream's own `retry: 3000`."""

M = TypeVar("M", bound=BaseModel)


class ApiClientError(Exception):
    """A call to the coordinator failed; the message is one sentence that says what to do."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from text/event-stream lines; comments (keep-alives) and `retry:` are skipped."""
    event = ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))
    if data:
        yield event or "message", "\n".join(data)


class ApiClient:
    """A synchronous client for one coordinator. Use as a context manager (it holds a connection pool)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except httpx.InvalidURL:
            raise ApiClientError(f"--coordinator {url!r} is not a URL: give one like {EXAMPLE_URL}") from None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    # --- calls ------------------------------------------------------------------------------

    def info(self) -> InfoView:
        return self._parse(InfoView, self._send("GET", "/v1/info"))

    def submit(
        self, request: str | None, *, spec: dict[str, Any] | None = None, rows: int | None = None,
        job_id: str | None = None,
    ) -> tuple[JobView, bool]:  # fmt: skip
        """Create the job, or find the one with the same job_id and body; True when it was created now.
        The API checks the body (JobCreate) and says in one sentence what is wrong with it."""
        body = {"request": request, "spec": spec, "rows": rows, "job_id": job_id}
        response = self._send("POST", "/v1/jobs", json={k: v for k, v in body.items() if v is not None})
        return self._parse(JobView, response), response.status_code == 201

    def job(self, job_id: str) -> JobView:
        return self._parse(JobView, self._send("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, state: str | None = None, limit: int = 50) -> list[JobView]:
        params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
        return self._parse(JobList, self._send("GET", "/v1/jobs", params=params)).jobs

    def cancel(self, job_id: str) -> JobView:
        return self._parse(JobView, self._send("DELETE", f"/v1/jobs/{job_id}"))

    def nodes(self) -> list[NodeView]:
        return self._parse(NodeList, self._send("GET", "/v1/nodes")).nodes

    def events(self, job_id: str) -> Iterator[JobView]:
        """Every snapshot of the job until it ends; the last one yielded is final. A dropped stream is
        reopened (each event carries the whole snapshot, so nothing is lost in between)."""
        failures = 0
        while True:
            why = "the stream closed"
            try:
                for event, data in self._stream_events(job_id):
                    failures = 0
                    yield self._parse_json(JobView, data)
                    if event == "end":
                        return
            except ApiClientError as exc:
                if exc.status is not None:  # the API said no (404...): retrying will not help
                    raise
                why = str(exc)
            # The stream ended without `end` (a proxy timeout, a coordinator restart): reopen it.
            failures += 1
            if failures > EVENTS_RECONNECTS:
                raise ApiClientError(
                    f"lost job {job_id!r} at {self.url} ({why}); it keeps running there: "
                    "run the same command again to re-attach"
                )
            time.sleep(RECONNECT_DELAY_S)

    def download(self, job_id: str, dest: Path) -> Path:
        """Fetch the finished job's dataset (tar.gz) and unpack it as the directory `dest`, which must be
        missing or empty. Unpacks next to `dest` first, so an interrupted download leaves no half dataset."""
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ApiClientError(f"{dest} exists and is not empty: choose another --out or remove it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
            archive = Path(tmp) / "dataset.tar.gz"
            with self._errors(), self._http.stream("GET", f"/v1/jobs/{job_id}/dataset") as response:
                self._check(response)
                with archive.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(Path(tmp) / "x", filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ApiClientError(f"the dataset archive of job {job_id!r} is damaged ({exc}): run again") from None
            root = Path(tmp) / "x" / job_id
            if not (root / MANIFEST_FILE).is_file():
                raise ApiClientError(f"the dataset archive of job {job_id!r} holds no {job_id}/{MANIFEST_FILE}")
            if dest.exists():
                dest.rmdir()
            shutil.move(root, dest)
        return dest

    # --- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Transport failures as one sentence each."""
        try:
            yield
        except httpx.ConnectError:
            raise ApiClientError(
                f"no coordinator at {self.url}: start one with `dataswarm coordinator start` or pass --coordinator"
            ) from None
        except httpx.TimeoutException:
            raise ApiClientError(f"the coordinator at {self.url} did not answer in time: is it overloaded?") from None
        except httpx.UnsupportedProtocol:
            raise ApiClientError(f"--coordinator {self.url!r} is not http(s): give one like {EXAMPLE_URL}") from None
        except httpx.HTTPError as exc:
            raise ApiClientError(f"talking to the coordinator at {self.url} failed: {exc}") from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._errors():
            response = self._http.request(method, path, **kwargs)
        self._check(response)
        return response

    def _stream_events(self, job_id: str) -> Iterator[tuple[str, str]]:
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=EVENTS_READ_TIMEOUT_S)
        with self._errors(), self._http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
            self._check(response)
            yield from sse_events(response.iter_lines())

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            detail = ErrorBody.model_validate_json(response.content).detail
        except ValidationError:
            detail = f"the coordinator at {self.url} answered HTTP {response.status_code}"
        if response.status_code == 401:
            detail += ": pass --token with a token from `dataswarm coordinator token create`"
        raise ApiClientError(detail, status=response.status_code)

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        return self._parse_json(model, response.content)

    def _parse_json(self, model: type[M], data: str | bytes) -> M:
        try:
            return model.model_validate_json(data)
        except ValidationError:
            raise ApiClientError(
                f"the coordinator at {self.url} answered with a {model.__name__} this CLI does not understand: "
                "are the CLI and the coordinator the same dataswarm version?"
            ) from None
