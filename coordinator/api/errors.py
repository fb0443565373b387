"""Every error the API answers, as one JSON shape: `{"error": code, "detail": sentence, "problems": [...]}`.

Owns: the mapping of failures to status codes and that body, including
FastAPI's own validation errors and Starlette's 404/405 for unknown routes.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coordinator.api.schemas import JOB_ID_PATTERN, ErrorBody

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
}


class ApiError(Exception):
    def __init__(
        self, status: int, detail: str, *, code: str | None = None, problems: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(detail)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.detail = detail
        self.problems = problems or []
        self.headers = headers


def error_response(
    status: int, detail: str, *, code: str | None = None, problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    body = ErrorBody(error=code or CODES.get(status, "error"), detail=detail, problems=problems or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"no {what} on this coordinator")


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    where = ".".join(parts)
    return f"{loc[0]}.{where}" if loc and loc[0] in ("query", "path", "header") and where else where or "body"


PATTERN_HINTS = {
    r"\S": "must not be blank",
    JOB_ID_PATTERN: "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
}


def _problem(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if err.get("type") == "string_pattern_mismatch":
        msg = PATTERN_HINTS.get(str((err.get("ctx") or {}).get("pattern")), msg)
    return f"{_where(tuple(err.get('loc', ())))}: {msg.removeprefix('Value error, ')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.detail, code=exc.code, problems=exc.problems, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(dict(e)) for e in exc.errors()][:20]
        return error_response(422, problems[0] if problems else "the request is not valid", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}: see /docs for the API"
        elif exc.status_code == 400 and "parsing the body" in detail:
            detail = "the body could not be read as JSON (is it UTF-8 JSON with Content-Type: application/json?)"
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API %s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the coordinator log has the details")
