"""The coordinator's HTTP API, dashboard and Prometheus metrics (FastAPI on hypercorn's trio worker).

Public API:
- `serve_api(coordinator, listen)`: start it in a nursery (`await nursery.start(serve_api, coord, cfg.api_listen)`);
- `build_app(coordinator, settings)`: the FastAPI app itself;
- `create_token(data_dir, name, scope)`, `list_tokens`, `revoke_token`: requester tokens, for the CLI.

Endpoints (OpenAPI at /openapi.json, browsable at /docs):
    POST   /v1/jobs                  submit a request sentence or a spec (token: write)
    GET    /v1/jobs, /v1/jobs/{id}   state, stage progress, rejections
    GET    /v1/jobs/{id}/events      server-sent events until the job ends
    GET    /v1/jobs/{id}/dataset     tar.gz (or ?format=zip) once done; 409 before
    DELETE /v1/jobs/{id}             cancel (token: write for own jobs, admin for any)
    GET    /v1/nodes                 nodes: models, tok/s, free slots, leases, reputation
    GET    /v1/spec?request=, POST /v1/spec    dry run: spec and planned tasks
    GET    /v1/activity, /v1/info    results/s and recent rejections; who this coordinator is
    GET    /metrics, /               Prometheus metrics; the dashboard
Reads are open on loopback only (see app.py); errors are `{"error", "detail", "problems"}`.

Must not: import `node/`, or touch the store except through `coordinator.runtime.call`.
"""

from coordinator.api.app import ApiSettings, build_app
from coordinator.api.auth import IssuedToken, Scope, TokenError, TokenInfo, create_token, list_tokens, revoke_token
from coordinator.api.server import ListenError, serve_api

__all__ = [
    "ApiSettings",
    "IssuedToken",
    "ListenError",
    "Scope",
    "TokenError",
    "TokenInfo",
    "build_app",
    "create_token",
    "list_tokens",
    "revoke_token",
    "serve_api",
]
