"""The FastAPI app: jobs, their events and datasets, nodes, spec dry runs, activity, metrics, the dashboard.

Owns: the routes, who may call them, and how coordinator failures become HTTP
statuses. Runs inside the coordinator's trio loop (hypercorn's trio worker):
every store or scheduler read goes through `coordinator.runtime.call`, the
coordinator's single worker thread, never straight from a handler.

Access: write endpoints (POST /v1/jobs, DELETE /v1/jobs/{id}) always need a
bearer token (`dataswarm coordinator token create`). Read endpoints, /metrics
and the dashboard are open when the API listens on loopback only
(`open_reads`): only this machine reaches them, as with the CLI; beyond
loopback they need a token too (any scope). On loopback the Host header must
name loopback, so a web page cannot reach the open endpoints through DNS
rebinding. A shared machine where other local users must not read jobs passes
`ApiSettings(open_reads=False)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import trio
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.background import BackgroundTask
from starlette.middleware.trustedhost import TrustedHostMiddleware

from coordinator.api.activity import Activity
from coordinator.api.archive import ArchiveFormat, write_archive
from coordinator.api.auth import Scope, TokenInfo, TokenStore
from coordinator.api.errors import ApiError, install_error_handlers
from coordinator.api.events import job_events
from coordinator.api.limits import DEFAULT_BODY_LIMIT, BodyLimit
from coordinator.api.metrics import TaskTally, render
from coordinator.api.quotas import Quotas, QuotaSettings, RunningJob
from coordinator.api.schemas import (
    ActivityView,
    ErrorBody,
    InfoView,
    JobCreate,
    JobList,
    JobView,
    NodeList,
    SpecPreview,
    SpecQuery,
)
from coordinator.api.views import DELIVERED_STATES, FINAL_STATES, JobViews, node_views, preview_spec, resolve_spec
from coordinator.request import MAX_REQUEST_CHARS
from coordinator.spec import MAX_ROWS

if TYPE_CHECKING:
    from coordinator.service import Coordinator

API_VERSION = "1"
STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class ApiSettings:
    open_reads: bool = True
    """Read endpoints need no token: only for an API bound to loopback (serve_api decides)."""
    allowed_hosts: list[str] | None = field(default_factory=lambda: list(LOOPBACK_HOSTS))
    """Host header values accepted (None: any); loopback names by default, against DNS rebinding."""
    body_limit: int = DEFAULT_BODY_LIMIT
    sse_interval_s: float = 0.5
    sse_heartbeat_s: float = 15.0
    activity_interval_s: float = 2.0


MAX_JOBS_LISTED = 200
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "description": "One event; `data` is a JobView as JSON.",
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["progress", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


@dataclass
class ApiState:
    coordinator: Coordinator
    settings: ApiSettings
    tokens: TokenStore
    views: JobViews
    activity: Activity
    quotas: Quotas
    tally: TaskTally = field(default_factory=TaskTally)
    submit_lock: trio.Lock = field(default_factory=trio.Lock)
    token_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(1))
    archive_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(2))

    @property
    def tmp_dir(self) -> Path:
        return self.coordinator.config.data_dir / "api-tmp"

    async def call_tokens(self, fn: Any, *args: Any) -> Any:
        """Token-file calls in a thread of their own: never on the loop, never on the coordinator's worker."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.token_limiter)


_bearer = HTTPBearer(auto_error=False, description="A token from `dataswarm coordinator token create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _authenticate(request: Request, creds: HTTPAuthorizationCredentials | None, needed: Scope) -> TokenInfo:
    state: ApiState = request.app.state.api
    challenge = {"WWW-Authenticate": "Bearer"}
    if creds is None:
        raise ApiError(401, "this endpoint needs a bearer token (Authorization: Bearer <token>)", headers=challenge)
    info: TokenInfo | None = await state.call_tokens(state.tokens.verify, creds.credentials)
    if info is None:
        raise ApiError(401, "the bearer token is unknown or revoked", headers=challenge)
    if not info.scope.allows(needed):
        raise ApiError(403, f"token {info.token_id!r} has scope {info.scope.value!r}; this needs {needed.value!r}")
    state.quotas.count_request(info.token_id)
    return info


async def _writer(request: Request, creds: Credentials) -> TokenInfo:
    return await _authenticate(request, creds, Scope.WRITE)


async def _closed_reader(request: Request, creds: Credentials) -> TokenInfo:
    return await _authenticate(request, creds, Scope.READ)


async def _open_reader() -> None:
    return None


WriteToken = Annotated[TokenInfo, Depends(_writer)]
JobIdPath = Annotated[str, PathParam(max_length=128, description="A job id, as POST /v1/jobs returned it.")]


def build_app(
    coordinator: Coordinator,
    settings: ApiSettings | None = None,
    *,
    tokens: TokenStore | None = None,
    activity: Activity | None = None,
) -> FastAPI:
    """The API for `coordinator`. `serve_api` builds it; tests may build it to inspect routes or the schema."""
    from coordinator.service import JobError, PlanTooLarge  # here, not at the top: service.py imports this package

    settings = settings or ApiSettings()
    cfg = coordinator.config
    state = ApiState(
        coordinator=coordinator,
        settings=settings,
        tokens=tokens or TokenStore(cfg.data_dir),
        views=JobViews(coordinator),
        activity=activity or Activity(interval_s=settings.activity_interval_s),
        quotas=Quotas(QuotaSettings(cfg.api_requests_per_minute, cfg.api_jobs_per_token, cfg.api_rows_per_token)),
    )
    app = FastAPI(
        title="dataswarm coordinator",
        version=API_VERSION,
        description=(
            "Submit dataset requests, follow their stages, download verified datasets, and watch the "
            "volunteer nodes. Write endpoints need a bearer token (`dataswarm coordinator token create`); "
            "read endpoints are open when the API listens on loopback."
        ),
    )
    app.state.api = state
    install_error_handlers(app)
    # The schema must say which endpoints need a token, so reads depend on the bearer scheme only when closed.
    read_deps = [Depends(_open_reader if settings.open_reads else _closed_reader)]
    read_errors = _errors(401, 403, 429) if not settings.open_reads else {}

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await coordinator.runtime.call(fn, *args, **kwargs)

    # --- jobs ---------------------------------------------------------------------------------

    @app.get("/v1/info", response_model=InfoView, dependencies=read_deps, responses=read_errors, tags=["coordinator"])
    async def info() -> InfoView:
        """Who this coordinator is and which models it accepts."""
        return InfoView(
            peer_id=coordinator.identity.peer_id,
            addrs=coordinator.peer_addrs,
            models=dict(coordinator.models),
            api_version=API_VERSION,
            open_reads=settings.open_reads,
        )

    @app.get(
        "/v1/jobs", response_model=JobList, dependencies=read_deps, responses=_errors(422) | read_errors, tags=["jobs"]
    )
    async def list_jobs(
        limit: Annotated[int, Query(ge=1, le=MAX_JOBS_LISTED)] = 50,
        state_: Annotated[str | None, Query(alias="state", pattern=r"^[a-z_]{1,24}$")] = None,
    ) -> JobList:
        """Jobs, newest first, each with its stage progress."""
        return JobList(jobs=await call(state.views.jobs, limit=limit, state=state_))

    @app.post(
        "/v1/jobs",
        response_model=JobView,
        status_code=201,
        responses=_errors(400, 401, 403, 409, 413, 422, 429)
        | {200: {"model": JobView, "description": "The job with this job_id and body already exists."}},
        tags=["jobs"],
    )
    async def create_job(body: JobCreate, who: WriteToken, response: Response) -> JobView:
        """Submit a dataset request (a sentence or a spec). Retrying with the same job_id is safe."""
        spec, _ = resolve_spec(body)
        spec_doc = spec.model_dump(mode="json")
        # One submission at a time: two requests naming the same new job_id must not both create it.
        async with state.submit_lock:
            if body.job_id is not None:
                existing = await call(_job_doc, coordinator, body.job_id)
                if existing is not None:
                    submitted = existing.get("submitted_spec", existing.get("spec"))
                    if submitted == spec_doc and existing.get("request", "") == body.text:
                        response.status_code = 200
                        return await call(state.views.job, body.job_id)  # type: ignore[no-any-return]
                    raise ApiError(409, f"job id {body.job_id!r} is taken by a different request: choose another id")
            if not who.scope.allows(Scope.ADMIN):
                mine = await state.call_tokens(state.tokens.jobs_of, who.token_id)
                running = await call(_running_jobs, coordinator, mine)
                state.quotas.check_submit(who.token_id, running, body.rows or spec.rows)
            try:
                job_id = await coordinator.submit(
                    body.text, spec=spec, rows=body.rows, job_id=body.job_id, from_request=body.spec is None
                )
            except PlanTooLarge as exc:
                raise ApiError(422, str(exc), code="plan_too_large") from None
            except JobError as exc:
                raise ApiError(409, str(exc)) from None
            await state.call_tokens(state.tokens.set_owner, job_id, who.token_id)
        view: JobView = await call(state.views.job, job_id)
        response.headers["Location"] = view.links.self
        return view

    @app.get(
        "/v1/jobs/{job_id}", response_model=JobView, dependencies=read_deps,
        responses=_errors(404, 422) | read_errors, tags=["jobs"],
    )  # fmt: skip
    async def get_job(job_id: JobIdPath) -> JobView:
        """One job's state, stage progress and rejections."""
        return await call(state.views.job, job_id)  # type: ignore[no-any-return]

    @app.delete(
        "/v1/jobs/{job_id}", response_model=JobView, responses=_errors(401, 403, 404, 409, 422, 429), tags=["jobs"]
    )
    async def cancel_job(job_id: JobIdPath, who: WriteToken) -> JobView:
        """Cancel a running job: a write token cancels the jobs it submitted; an admin token any job."""
        view: JobView = await call(state.views.job, job_id)
        if not who.scope.allows(Scope.ADMIN):
            owner = await state.call_tokens(state.tokens.owner, job_id)
            if owner != who.token_id:
                raise ApiError(403, f"job {job_id!r} was not submitted with this token (an admin token may cancel it)")
        if view.state in FINAL_STATES:
            raise ApiError(409, f"job {job_id!r} is already {view.state}")
        await coordinator.cancel(job_id)
        return await call(state.views.job, job_id)  # type: ignore[no-any-return]

    @app.get(
        "/v1/jobs/{job_id}/events",
        dependencies=read_deps,
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-sent events: `progress` (a JobView as JSON) on every change, then `end`.",
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
            }
        }
        | _errors(404, 422)
        | read_errors,
        tags=["jobs"],
    )
    async def job_events_stream(job_id: JobIdPath) -> StreamingResponse:
        """Follow a job's progress until it is done, partial, failed or cancelled."""
        await call(state.views.job, job_id)  # 404 now, not inside the stream
        stream = job_events(
            coordinator, state.views, job_id, interval_s=settings.sse_interval_s, heartbeat_s=settings.sse_heartbeat_s
        )
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/v1/jobs/{job_id}/dataset",
        dependencies=read_deps,
        response_class=FileResponse,
        responses={
            200: {
                "description": "The dataset directory, everything under a `<job_id>/` folder.",
                "content": {
                    "application/gzip": {"schema": {"type": "string", "format": "binary"}},
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        }
        | _errors(404, 409, 410, 422)
        | read_errors,
        tags=["jobs"],
    )
    async def job_dataset(
        job_id: JobIdPath, format: Annotated[ArchiveFormat, Query()] = ArchiveFormat.TAR_GZ
    ) -> FileResponse:
        """Download a finished job's verified dataset (409 until it is done, or partial: fewer rows than asked)."""
        view: JobView = await call(state.views.job, job_id)
        if view.state not in DELIVERED_STATES:
            raise ApiError(409, f"job {job_id!r} is {view.state}: its dataset is ready once it is done")
        doc = await call(_job_doc, coordinator, job_id)
        out_dir = Path(str((doc or {}).get("out_dir", "")))
        if not (out_dir / "manifest.json").is_file():
            gone = f"job {job_id!r} is {view.state} but its dataset directory is gone from the coordinator"
            raise ApiError(410, gone)
        state.tmp_dir.mkdir(parents=True, exist_ok=True)
        path: Path = await trio.to_thread.run_sync(
            lambda: write_archive(out_dir, format, root_name=job_id, tmp_dir=state.tmp_dir),
            limiter=state.archive_limiter,
        )
        return FileResponse(
            path,
            media_type=format.media_type,
            filename=f"{job_id}.{format.value}",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    # --- nodes, specs, activity, metrics --------------------------------------------------------

    @app.get("/v1/nodes", response_model=NodeList, dependencies=read_deps, responses=read_errors, tags=["nodes"])
    async def list_nodes() -> NodeList:
        """Nodes with their models, tok/s, free slots, held leases and reputation."""
        now = _now_ms()
        return NodeList(nodes=await call(node_views, coordinator, now_ms=now))

    @app.get(
        "/v1/spec", response_model=SpecPreview, dependencies=read_deps,
        responses=_errors(422) | read_errors, tags=["spec"],
    )  # fmt: skip
    async def spec_dry_run(
        request: Annotated[str, Query(min_length=1, max_length=MAX_REQUEST_CHARS, pattern=r"\S")],
        rows: Annotated[int | None, Query(ge=1, le=MAX_ROWS)] = None,
    ) -> SpecPreview:
        """Dry run: the spec a request would become, and the tasks it would plan. Nothing is submitted."""
        query = SpecQuery(request=request, rows=rows)
        preview = partial(preview_spec, query, llm_spec=cfg.llm_spec, max_tasks=cfg.max_job_tasks)
        return await trio.to_thread.run_sync(preview)

    @app.post(
        "/v1/spec", response_model=SpecPreview, dependencies=read_deps,
        responses=_errors(400, 413, 422) | read_errors, tags=["spec"],
    )  # fmt: skip
    async def spec_dry_run_post(body: SpecQuery) -> SpecPreview:
        """Dry run with a body: a request sentence or a spec (checked as `POST /v1/jobs` would)."""
        preview = partial(preview_spec, body, llm_spec=cfg.llm_spec, max_tasks=cfg.max_job_tasks)
        return await trio.to_thread.run_sync(preview)

    @app.get(
        "/v1/activity", response_model=ActivityView, dependencies=read_deps, responses=read_errors,
        tags=["coordinator"],
    )  # fmt: skip
    async def recent_activity() -> ActivityView:
        """Results per second and the latest rejections (since the API started)."""
        return state.activity.view()

    @app.get("/metrics", dependencies=read_deps, include_in_schema=False)
    async def metrics() -> Response:
        snap = await call(state.tally.collect, coordinator)
        return Response(render(snap, results_per_s=state.activity.results_per_s()), media_type=CONTENT_TYPE_LATEST)

    # --- dashboard ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimit, limit=settings.body_limit)
    if settings.allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    return app


def _job_doc(coordinator: Coordinator, job_id: str) -> dict[str, Any] | None:
    """Worker thread only: a job's stored document (request, spec, out_dir), or None if there is no such job."""
    try:
        return dict(coordinator.store.job(job_id).doc)
    except KeyError:  # the store's NotFound is a KeyError
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _running_jobs(coordinator: Coordinator, job_ids: set[str]) -> list[RunningJob]:
    """Worker thread only: which of `job_ids` have not ended, with the rows each asked for."""
    running = []
    for job in coordinator.store.jobs():
        if job.job_id in job_ids and job.state not in FINAL_STATES:
            rows = job.doc.get("spec", {}).get("rows", 0)
            running.append(RunningJob(job.job_id, rows if isinstance(rows, int) else 0))
    return running
