"""The API against its own OpenAPI schema, with schemathesis: generated requests, real coordinator, no 5xx.

The server runs in a thread of its own (`LiveApi`); schemathesis loads the
schema the server serves and calls it over real HTTP with an admin token, with
both schema-valid (positive) and schema-breaking (negative) data, and runs its
checks on every response (status code documented, body matches its schema,
content type, no server error, invalid data refused...). Generated jobs are
real jobs: their row counts are kept small so that planning them does not
dominate the run.

(schemathesis's `from_fixture` pytest integration does not run under pytest 9,
so each operation runs its own hypothesis test from `operation.as_strategy()`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from coordinator.spec import MAX_ROWS
from tests.api.support import LiveApi

OPERATIONS = [
    ("GET", "/v1/info"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/events"),
    ("GET", "/v1/jobs/{job_id}/dataset"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/spec"),
    ("POST", "/v1/spec"),
    ("GET", "/v1/activity"),
]
EXAMPLES = 25
SEMANTIC = {("POST", "/v1/jobs"), ("GET", "/v1/spec"), ("POST", "/v1/spec")}
"""Operations that check more than a JSON schema can say (a sentence the request reader cannot read, a spec whose
fields contradict each other): there a schema-valid request may still be a 422, so schemathesis's
"valid data is accepted" check is left out; every other check still runs."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with LiveApi(tmp_path_factory.mktemp("schemathesis")) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(live: LiveApi) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


def test_schema_lists_every_operation(api_schema: Any) -> None:
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert found == set(OPERATIONS)


NO_INPUT = {("GET", "/v1/info"), ("GET", "/v1/nodes"), ("GET", "/v1/activity")}
"""Nothing to break: these run with positive data only."""
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) not in NO_INPUT
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_operation_matches_the_schema(
    live: LiveApi, api_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {live.token}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        body = case.body
        if isinstance(body, dict) and type(body.get("rows")) is int and 1 <= body["rows"] <= MAX_ROWS:
            body["rows"] = min(body["rows"], 20)  # still valid; a 100 000-row job would plan 30 000 tasks
        excluded = [positive_data_acceptance] if (method, path) in SEMANTIC else []
        case.call_and_validate(base_url=live.url, headers=headers, timeout=10, excluded_checks=excluded)

    check()
