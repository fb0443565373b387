"""Requester tokens: stored hashed, checked on every write, scoped; reads open only on loopback."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from coordinator.api import ApiSettings, create_token, list_tokens, revoke_token
from coordinator.api.auth import TOKEN_FILE, Scope, TokenError, TokenStore, token_sha256
from coordinator.api.server import default_settings, is_loopback, parse_listen
from tests.api.support import FAST, api_server, auth, issue

REQUEST = {"request": "20 question-answer pairs about the printing press"}


def test_tokens_are_stored_as_hashes_in_a_private_file(tmp_path: Path) -> None:
    issued = create_token(tmp_path, "alice laptop")
    raw = (tmp_path / TOKEN_FILE).read_bytes()
    assert issued.secret.encode() not in raw
    assert token_sha256(issued.secret).encode() in raw
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert [t.name for t in list_tokens(tmp_path)] == ["alice laptop"]


def test_verify_revoke_and_scopes(tmp_path: Path) -> None:
    with TokenStore(tmp_path) as store:
        reader = store.create("dashboard", Scope.READ)
        writer = store.create("ci", "write")
        info = store.verify(writer.secret)
        assert info is not None and info.scope is Scope.WRITE and info.name == "ci"
        assert store.verify(writer.secret + "x") is None
        assert store.verify("not-a-token") is None
        assert Scope.ADMIN.allows(Scope.WRITE) and Scope.WRITE.allows(Scope.READ)
        assert not Scope.READ.allows(Scope.WRITE)
        assert store.verify(reader.secret) is not None
    assert revoke_token(tmp_path, reader.info.token_id)
    assert not revoke_token(tmp_path, reader.info.token_id)  # already revoked
    with TokenStore(tmp_path) as store:
        assert store.verify(reader.secret) is None
        assert {t.name: t.revoked for t in store.tokens()} == {"dashboard": True, "ci": False}


@pytest.mark.parametrize(("name", "scope"), [("", "write"), ("x" * 101, "write"), ("a/b", "write"), ("ok", "root")])
def test_bad_token_requests_say_what_to_change(tmp_path: Path, name: str, scope: str) -> None:
    with pytest.raises(TokenError):
        create_token(tmp_path, name, scope)


def test_listen_policy() -> None:
    assert parse_listen("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert default_settings("127.0.0.1:8470").open_reads
    closed = default_settings("0.0.0.0:8470")
    assert not closed.open_reads and closed.allowed_hosts is None
    with pytest.raises(ValueError, match="host:port"):
        parse_listen("8470")


async def test_writes_need_a_valid_token_with_write_scope(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        missing = await client.post("/v1/jobs", json=REQUEST)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "unauthorized"

        wrong = await client.post("/v1/jobs", json=REQUEST, headers=auth("dsw_deadbeef_nope"))
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]

        read_only = await client.post("/v1/jobs", json=REQUEST, headers=auth(issue(s.coordinator, "r", Scope.READ)))
        assert read_only.status_code == 403 and "needs 'write'" in read_only.json()["detail"]

        ok = await client.post("/v1/jobs", json=REQUEST, headers=auth(issue(s.coordinator, "w")))
        assert ok.status_code == 201


async def test_a_write_token_cancels_only_its_own_jobs(tmp_path: Path) -> None:
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        alice, bob = issue(s.coordinator, "alice"), issue(s.coordinator, "bob")
        admin = issue(s.coordinator, "ops", Scope.ADMIN)
        a = (await client.post("/v1/jobs", json=REQUEST, headers=auth(alice))).json()["job_id"]
        b = (await client.post("/v1/jobs", json=REQUEST, headers=auth(alice))).json()["job_id"]
        cli_job = await s.coordinator.submit(REQUEST["request"])  # not through the API: no owner

        refused = await client.delete(f"/v1/jobs/{a}", headers=auth(bob))
        assert refused.status_code == 403 and "not submitted with this token" in refused.json()["detail"]
        assert (await client.delete(f"/v1/jobs/{cli_job}", headers=auth(alice))).status_code == 403

        own = await client.delete(f"/v1/jobs/{a}", headers=auth(alice))
        assert own.status_code == 200 and own.json()["state"] == "cancelled"
        assert (await client.delete(f"/v1/jobs/{b}", headers=auth(admin))).json()["state"] == "cancelled"
        assert (await client.delete(f"/v1/jobs/{cli_job}", headers=auth(admin))).json()["state"] == "cancelled"
        assert (await client.delete(f"/v1/jobs/{a}")).status_code == 401


async def test_reads_need_a_token_when_not_open(tmp_path: Path) -> None:
    closed = ApiSettings(open_reads=False, allowed_hosts=None, activity_interval_s=FAST.activity_interval_s)
    async with api_server(tmp_path, closed) as s, httpx.AsyncClient(base_url=s.url) as client:
        for path in ("/v1/jobs", "/v1/nodes", "/v1/info", "/v1/activity", "/metrics"):
            assert (await client.get(path)).status_code == 401, path
        token = issue(s.coordinator, "dashboard", Scope.READ)
        for path in ("/v1/jobs", "/v1/nodes", "/v1/info", "/v1/activity", "/metrics"):
            assert (await client.get(path, headers=auth(token))).status_code == 200, path
        schema = (await client.get("/openapi.json")).json()
        assert schema["paths"]["/v1/jobs"]["get"]["security"] == [{"HTTPBearer": []}]


async def test_open_reads_refuse_foreign_host_headers(tmp_path: Path) -> None:
    """DNS rebinding: a page served from evil.example that resolves to 127.0.0.1 must not read the API."""
    async with api_server(tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        assert (await client.get("/v1/jobs")).status_code == 200
        assert (await client.get("/v1/jobs", headers={"Host": "evil.example:8470"})).status_code == 400
        schema = (await client.get("/openapi.json")).json()
        assert "security" not in schema["paths"]["/v1/jobs"]["get"]
        assert schema["paths"]["/v1/jobs"]["post"]["security"] == [{"HTTPBearer": []}]


def test_token_cli_create_list_revoke(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.token_cmd import app

    runner = CliRunner()
    created = runner.invoke(app, ["create", "alice laptop", "--scope", "write", "--data-dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    secret = created.output.split()[0]
    with TokenStore(tmp_path) as store:
        info = store.verify(secret)
    assert info is not None and info.name == "alice laptop"

    listed = runner.invoke(app, ["list", "--data-dir", str(tmp_path)])
    assert info.token_id in listed.output and "alice laptop" in listed.output and secret not in listed.output
    assert runner.invoke(app, ["revoke", info.token_id, "--data-dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["revoke", info.token_id, "--data-dir", str(tmp_path)])
    assert again.exit_code == 1 and "no live token" in again.output
    bad = runner.invoke(app, ["create", "x", "--scope", "root", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 1 and "scope" in bad.output


async def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    import trio

    from coordinator.api import ListenError, serve_api
    from coordinator.service import open_coordinator
    from tests.api.support import config

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with open_coordinator(config(tmp_path)) as coord, trio.open_nursery() as nursery:
            with pytest.raises(ListenError, match=rf"cannot listen on 127\.0\.0\.1:{port}: .*api_listen"):
                await nursery.start(serve_api, coord, f"127.0.0.1:{port}")
