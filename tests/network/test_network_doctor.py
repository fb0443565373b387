"""The network doctor: each finding names the problem and the flag that fixes it."""

from __future__ import annotations

import socket
from functools import partial

import trio

from network import Level, SwarmHost, run_doctor
from network.doctor import check_bootstrap, check_listen_port, check_reachability
from tests.network.support import free_port, host_config, identity


async def test_listen_port_free_and_busy() -> None:
    port = free_port()
    assert (await check_listen_port(f"/ip4/127.0.0.1/tcp/{port}")).level == Level.OK
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        finding = await check_listen_port(f"/ip4/127.0.0.1/tcp/{busy}")
    assert finding.level == Level.ERROR
    assert finding.message.startswith(f"port {busy} is in use by another process: pass --listen /ip4/127.0.0.1/tcp/")
    assert (await check_listen_port("/dns/example.org")).level == Level.ERROR


def test_reachability_by_address_class() -> None:
    public = check_reachability(["/ip4/8.8.8.8/tcp/4001"])
    assert [f.level for f in public] == [Level.OK]
    private = check_reachability(["/ip4/10.1.2.3/tcp/4001"])
    assert private[-1].level == Level.WARN and "forward TCP port 4001" in private[-1].message
    loopback = check_reachability(["/ip4/127.0.0.1/tcp/4001"])
    assert loopback[-1].level == Level.ERROR and "--listen /ip4/0.0.0.0/tcp/4001" in loopback[-1].message
    announced = check_reachability(["/ip4/127.0.0.1/tcp/4001"], announce=["/ip4/8.8.8.8/tcp/4001"])
    assert [f.level for f in announced] == [Level.OK]
    everywhere = check_reachability(["/ip4/0.0.0.0/tcp/4001"])
    assert any(f.subject == "/ip4/127.0.0.1/tcp/4001" for f in everywhere)


async def test_bootstrap_reachable_refused_wrong_service_and_malformed() -> None:
    async with SwarmHost(host_config(identity(0))) as coordinator:
        ok = await check_bootstrap(coordinator.listen_addrs[0])
        assert ok.level == Level.OK and "Noise" in ok.message

    closed = await check_bootstrap(f"/ip4/127.0.0.1/tcp/{free_port()}/p2p/{identity(0).peer_id}")
    assert closed.level == Level.ERROR and "refused the connection: is the coordinator running" in closed.message

    async def http_server(stream: trio.SocketStream) -> None:
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, http_server, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        wrong = await check_bootstrap(f"/ip4/127.0.0.1/tcp/{port}/p2p/{identity(0).peer_id}")
        nursery.cancel_scope.cancel()
    assert wrong.level == Level.ERROR and "is that the right port?" in wrong.message

    missing = await check_bootstrap("/ip4/127.0.0.1/tcp/4001")
    assert missing.level == Level.ERROR and "/p2p/<peer id>" in missing.message


async def test_run_doctor_reports_every_check() -> None:
    port = free_port()
    findings = await run_doctor([f"/ip4/127.0.0.1/tcp/{port}"], [])
    assert {f.check for f in findings} == {"listen_port", "reachability", "bootstrap"}
    assert all(f.message for f in findings)
    assert findings[-1].level == Level.WARN and "--bootstrap" in findings[-1].message
