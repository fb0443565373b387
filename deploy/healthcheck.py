#!/usr/bin/env python3
"""Cheap liveness check for a dataswarm node or coordinator (Docker HEALTHCHECK, scripts, tests).

Owns: turning the *effective* configuration (defaults < TOML < DATASWARM_* environment,
exactly what the daemon itself loads) into the addresses to probe, and probing them:
- every TCP listen multiaddr of the libp2p host must accept a connection
  (`/ip4/0.0.0.0/...` is probed on 127.0.0.1, `/ip6/::/...` on ::1);
- for the coordinator, `GET http://<api_listen>/v1/info` must get an answer from the API:
  2xx, or 401/403, which is what a live API bound beyond loopback (a container's 0.0.0.0)
  says to a caller without a token. Connection refused, a timeout or a 5xx is unhealthy.
  `--no-http` (or DATASWARM_HEALTHCHECK_HTTP=0) skips this, for `coordinator start --no-api`.
Must not: load models, open the SQLite store, or dial peers. `dataswarm node doctor`
is the thorough check; this one has to finish in well under a second.

Usage:
    healthcheck.py node [--config FILE]
    healthcheck.py coordinator [--config FILE] [--no-http] [--path /v1/info]
Exit status 0 when healthy, 1 otherwise, with one line saying what failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 2.0
UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}
ALIVE_WITHOUT_TOKEN = {401, 403}
"""An API bound beyond loopback wants a token for reads: refusing us proves it is serving."""


def tcp_targets(listen: list[str]) -> list[tuple[str, int]]:
    """(host, port) for every TCP multiaddr; other transports are skipped."""
    targets = []
    for addr in listen:
        parts = addr.strip("/").split("/")
        if len(parts) < 4 or parts[2] != "tcp" or parts[0] not in {"ip4", "ip6", "dns", "dns4", "dns6"}:
            continue
        host = UNSPECIFIED.get(parts[1], parts[1])
        targets.append((host, int(parts[3])))
    return targets


def probe_tcp(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return f"libp2p port {host}:{port} refuses connections: {exc}"


def probe_http(api_listen: str, path: str) -> str | None:
    host, _, port = api_listen.rpartition(":")
    host = UNSPECIFIED.get(host.strip("[]"), host.strip("[]"))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"HTTP API {url}: {exc}"
    if 200 <= status < 300 or status in ALIVE_WITHOUT_TOKEN:
        return None
    return f"HTTP API {url} answered {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["node", "coordinator"])
    parser.add_argument("--config", type=Path, default=None, help="the TOML file the daemon was started with")
    parser.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("DATASWARM_HEALTHCHECK_HTTP", "1") != "0",
        help="coordinator: also check the HTTP API (default on)",
    )
    parser.add_argument("--path", default="/v1/info", help="HTTP path to GET")
    args = parser.parse_args(argv)

    if args.role == "node":
        from node.config import load_node_config

        listen = load_node_config(args.config).listen
        api = None
    else:
        from coordinator.config import load_coordinator_config

        cfg = load_coordinator_config(args.config)
        listen, api = cfg.listen, cfg.api_listen

    targets = tcp_targets(listen)
    if not targets:
        print(f"unhealthy: no TCP listen address in {listen}")
        return 1
    problems = [p for p in (probe_tcp(h, port) for h, port in targets) if p]
    if args.http and api is not None and (p := probe_http(api, args.path)):
        problems.append(p)
    if problems:
        print("unhealthy: " + "; ".join(problems))
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
