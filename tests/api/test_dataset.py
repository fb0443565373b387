"""GET /v1/jobs/{id}/dataset: 409 until done, then the compiled directory as tar.gz or zip, still verifiable."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import httpx
import trio

from coordinator.compile import verify_directory
from network import now_ms
from tests.api.support import Served, api_server, search_job
from tests.coordinator.test_compile_fixtures import COORDINATOR, compile_into


async def finished_job(s: Served, job_id: str, out: Path) -> None:
    """A job whose dataset was compiled (by the real compiler, from real signed results) and marked done."""
    await s.call(search_job, s.coordinator, job_id, 1, out_dir=out)
    await s.call(compile_into, out, 4)
    await s.call(s.coordinator.store.set_job_state, job_id, "compiling", now_ms=now_ms())
    await s.call(s.coordinator.store.set_job_state, job_id, "done", now_ms=now_ms())


async def test_dataset_is_409_until_done_then_downloads_as_tar_gz_and_zip(tmp_path: Path) -> None:
    out = tmp_path / "datasets" / "press"
    async with api_server(tmp_path / "coord") as s, httpx.AsyncClient(base_url=s.url) as client:
        await s.call(search_job, s.coordinator, "press", 1, out_dir=out)
        early = await client.get("/v1/jobs/press/dataset")
        assert early.status_code == 409 and "is running" in early.json()["detail"]

        await s.call(compile_into, out, 4)
        await s.call(s.coordinator.store.set_job_state, "press", "compiling", now_ms=now_ms())
        await s.call(s.coordinator.store.set_job_state, "press", "done", now_ms=now_ms())
        expected = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())

        tgz = await client.get("/v1/jobs/press/dataset")
        assert tgz.status_code == 200 and tgz.headers["content-type"] == "application/gzip"
        assert 'filename="press.tar.gz"' in tgz.headers["content-disposition"]
        with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tar:
            names = [m.name for m in tar.getmembers()]
            assert names == [f"press/{n}" for n in expected]
            tar.extractall(tmp_path / "from-tar", filter="data")
        report = verify_directory(tmp_path / "from-tar" / "press", trusted_coordinators=[COORDINATOR.peer_id])
        assert report.ok, report.summary()

        zipped = await client.get("/v1/jobs/press/dataset", params={"format": "zip"})
        assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
            assert zf.namelist() == [f"press/{n}" for n in expected]
            assert zf.read("press/data.jsonl") == (out / "data.jsonl").read_bytes()

        assert (await client.get("/v1/jobs/press/dataset", params={"format": "rar"})).status_code == 422
        tmp_archives = s.coordinator.config.data_dir / "api-tmp"
        with trio.fail_after(5):  # each is deleted once its response is sent
            while list(tmp_archives.iterdir()):
                await trio.sleep(0.05)


async def test_a_done_job_whose_directory_vanished_is_410(tmp_path: Path) -> None:
    out = tmp_path / "datasets" / "gone"
    async with api_server(tmp_path / "coord") as s, httpx.AsyncClient(base_url=s.url) as client:
        await finished_job(s, "gone", out)
        shutil.rmtree(out)
        response = await client.get("/v1/jobs/gone/dataset")
        assert response.status_code == 410 and response.json()["error"] == "gone"
