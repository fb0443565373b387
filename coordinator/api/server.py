"""Serve the API with hypercorn's trio worker, inside the coordinator's own trio loop.

Owns: the listen address, the policy that reads are open only on loopback, the
activity sampler's lifetime, and the token file's. Everything runs in the
nursery of `serve_api`; cancelling it stops the server, the sampler and every
open event stream.

Wiring (the coordinator's nursery owns the API):

    async with open_coordinator(cfg) as coord, trio.open_nursery() as nursery:
        url = await nursery.start(serve_api, coord, cfg.api_listen)
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from coordinator.api.activity import Activity
from coordinator.api.app import LOOPBACK_HOSTS, ApiSettings, build_app
from coordinator.api.auth import TokenStore

if TYPE_CHECKING:
    from trio_typing import TaskStatus  # trio-stubs (installed with libp2p) shadow trio's own types

    from coordinator.service import Coordinator

log = logging.getLogger(__name__)


class ListenError(ValueError):
    """The API listen address cannot be used; the message says what to write."""


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8470' or '[::1]:8470' -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"api_listen {listen!r} must be host:port, e.g. 127.0.0.1:8470 or [::1]:8470")
    return host.strip("[]"), int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bindable(host: str, port: int) -> None:
    """Fail early, in one sentence, when the address is taken or not ours (hypercorn's own error comes
    out of three nested nurseries). The check socket is closed at once; hypercorn binds the real one."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(
                f"the HTTP API cannot listen on {host}:{port}: {exc.strerror} "
                "(another coordinator running? set api_listen to another port)"
            ) from None


def default_settings(listen: str) -> ApiSettings:
    """Open reads and a loopback-only Host header on loopback; tokens for everything elsewhere."""
    if is_loopback(parse_listen(listen)[0]):
        return ApiSettings(open_reads=True, allowed_hosts=list(LOOPBACK_HOSTS))
    return ApiSettings(open_reads=False, allowed_hosts=None)


async def serve_api(
    coordinator: Coordinator,
    listen: str,
    *,
    settings: ApiSettings | None = None,
    task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API, dashboard and /metrics on `listen` until cancelled.

    `task_status.started` gets the base URL actually bound (port 0 picks a free port).
    """
    host, port = parse_listen(listen)
    check_bindable(host, port)
    settings = settings or default_settings(listen)
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = 1.0  # event streams never end on their own: do not wait long for them
    tokens = TokenStore(coordinator.config.data_dir)
    # Archives left by downloads cut short (their cleanup never ran).
    shutil.rmtree(coordinator.config.data_dir / "api-tmp", ignore_errors=True)
    activity = Activity(interval_s=settings.activity_interval_s)
    app = build_app(coordinator, settings, tokens=tokens, activity=activity)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(activity.run, coordinator)
            binds: list[str] = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
            url = binds[0] if binds else f"http://{listen}"
            log.info("HTTP API and dashboard on %s (reads %s)", url, "open" if settings.open_reads else "need a token")
            task_status.started(url)
    finally:
        tokens.close()
