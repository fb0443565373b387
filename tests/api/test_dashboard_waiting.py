"""The dashboard shows a job that waits for nodes: its state, and how many live nodes it has and needs.

Headless Chromium as in test_dashboard.py (skipped there, and here, without it). The job is a real one:
submitted to the coordinator with no node live, its runner puts it in waiting_for_nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.support import LiveApi, auth
from tests.api.test_dashboard import ARGS, CHROMIUM, playwright_sync

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

REQUEST = "question-answer pairs about Python lists, JSON with question and answer"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApi]:
    with LiveApi(tmp_path / "coordinator") as server:
        yield server


def test_dashboard_shows_a_job_waiting_for_nodes(live: LiveApi) -> None:
    created = httpx.post(f"{live.url}/v1/jobs", json={"request": REQUEST, "rows": 2}, headers=auth(live.token))
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    live.wait_for_state(job_id, "waiting_for_nodes")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{live.url}/?interval=250")
            expect = playwright_sync.expect
            row = page.locator(f'tr[data-job-id="{job_id}"]')
            expect(row.locator(".state.waiting_for_nodes")).to_have_text("waiting_for_nodes", timeout=10_000)
            expect(row.locator(".waiting")).to_have_text(
                "waiting for nodes: 0 live, needs 2 for verification of question_gen tasks"
            )
            expect(row.locator(".state")).to_have_css("background-color", "rgb(251, 233, 198)")
            assert errors == []
        finally:
            browser.close()
