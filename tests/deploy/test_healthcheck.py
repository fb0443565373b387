"""deploy/healthcheck.py decides "healthy" the way the docs say, against servers on loopback.

The live test (test_deploy_configs) runs it against a real coordinator and nodes; these
cover the answers a live process rarely gives: an API that wants a token, one that fails,
a port nobody listens on.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.support import HEALTHCHECK, free_port

_spec = importlib.util.spec_from_file_location("deploy_healthcheck", HEALTHCHECK)
assert _spec and _spec.loader
healthcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(healthcheck)


@pytest.fixture
def api_answering() -> Iterator[callable]:
    """A loopback HTTP server whose status code the test sets; yields a setter returning host:port."""
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def answer(code: int) -> str:
        status["code"] = code
        return f"127.0.0.1:{server.server_address[1]}"

    try:
        yield answer
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("code", "healthy"), [(200, True), (401, True), (403, True), (404, False), (503, False)])
def test_http_probe_counts_a_token_refusal_as_alive(api_answering, code: int, healthy: bool) -> None:
    problem = healthcheck.probe_http(api_answering(code), "/v1/info")
    assert (problem is None) == healthy, problem


def test_http_probe_reports_a_closed_port() -> None:
    problem = healthcheck.probe_http(f"0.0.0.0:{free_port()}", "/v1/info")  # 0.0.0.0 is probed on 127.0.0.1
    assert problem and "127.0.0.1" in problem


def test_tcp_targets_follow_the_listen_multiaddrs() -> None:
    assert healthcheck.tcp_targets(
        ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4002", "/ip4/10.0.0.5/tcp/4003", "/ip4/0.0.0.0/udp/4004/quic-v1"]
    ) == [("127.0.0.1", 4001), ("::1", 4002), ("10.0.0.5", 4003)]


def test_node_check_fails_when_nothing_listens(tmp_path, monkeypatch, capsys) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("DATASWARM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DATASWARM_NODE_LISTEN", f'["/ip4/127.0.0.1/tcp/{free_port()}"]')
    assert healthcheck.main(["node"]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: libp2p port 127.0.0.1:")
