"""The documented deployment works as documented.

- The example configs document every setting of `NodeConfig` / `CoordinatorConfig` (with
  the model's own description), load as shipped, and still load with every off line on.
- A coordinator and two nodes start as real processes from configs rendered out of those
  examples (only ports and paths rewritten to loopback and tmp), the second node the way
  the compose file provisions it (deploy/docker-entrypoint.sh and a peer-ID file), and the
  coordinator's store records both nodes. The container health check passes against them
  and fails once a node is stopped; an online backup of the store holds the nodes.
- The Dockerfiles build llama-cpp-python exactly as the Makefile does and copy every
  package; the compose file wires keys, trust and volumes consistently.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from coordinator.config import CoordinatorConfig, load_coordinator_config
from node.config import NodeConfig, load_node_config
from protocol.keyfile import load_identity
from tests.deploy.support import (
    BACKUP,
    COORDINATOR_EXAMPLE,
    DEPLOY,
    ENTRYPOINT,
    HEALTHCHECK,
    NODE_EXAMPLE,
    REPO,
    Procs,
    dataswarm_cmd,
    free_port,
    hermetic_env,
    render_config,
    run,
    settings_in,
    uncomment_all,
)

EXAMPLES = [
    pytest.param(NODE_EXAMPLE, NodeConfig, load_node_config, "DATASWARM_NODE_", id="node"),
    pytest.param(
        COORDINATOR_EXAMPLE, CoordinatorConfig, load_coordinator_config, "DATASWARM_COORDINATOR_", id="coordinator"
    ),
]


@pytest.fixture
def no_dataswarm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment beats the file: a developer's DATASWARM_* must not change what is tested."""
    import os

    for key in list(os.environ):
        if key.startswith("DATASWARM_"):
            monkeypatch.delenv(key)


# --- the example configs --------------------------------------------------------------


@pytest.mark.parametrize(("example", "model", "load", "prefix"), EXAMPLES)
def test_example_documents_every_setting_with_its_description(example, model, load, prefix) -> None:
    text = example.read_text()
    documented = settings_in(text)
    missing = [name for name in model.model_fields if name not in documented]
    assert not missing, f"{example.name} does not document {missing}: add a commented `# name = default` line"
    unknown = [name for name in documented if name not in model.model_fields]
    assert not unknown, f"{example.name} documents settings {model.__name__} does not have: {unknown}"
    for name, info in model.model_fields.items():
        if info.description:
            assert info.description in text, f"{example.name}: the description of {name!r} changed; copy it over"


@pytest.mark.parametrize(("example", "model", "load", "prefix"), EXAMPLES)
def test_example_loads_as_shipped_and_with_every_line_on(example, model, load, prefix, tmp_path, no_dataswarm_env):
    shipped = load(example).model_dump(mode="json")
    for name, value in tomllib.loads(example.read_text()).items():
        assert shipped[name] == value, f"{example.name}: {name} as shipped"

    everything = tmp_path / example.name
    everything.write_text(uncomment_all(example.read_text()))
    raw = tomllib.loads(everything.read_text())
    assert set(raw) == set(model.model_fields), "every setting has exactly one `[# ]name = value` line"
    loaded = load(everything).model_dump(mode="json")
    for name, value in raw.items():
        assert loaded[name] == value, f"{example.name}: the documented value of {name} does not load as written"


def test_env_overrides_file_as_the_examples_say(tmp_path, monkeypatch, no_dataswarm_env) -> None:
    # deploy/docker-entrypoint.sh relies on this: its DATASWARM_NODE_* beat the file's placeholders.
    monkeypatch.setenv("DATASWARM_NODE_TRUSTED_COORDINATORS", '["12D3KooWfromEnv"]')
    assert load_node_config(NODE_EXAMPLE).trusted_coordinators == ["12D3KooWfromEnv"]


# --- Dockerfiles and compose -----------------------------------------------------------


def _make_var(name: str) -> str:
    m = re.search(rf"^{name}\s*:?\??=\s*(.+)$", (REPO / "Makefile").read_text(), re.M)
    assert m, f"Makefile has no {name}"
    return m.group(1).strip()


def _make_value(name: str) -> str:
    """A Makefile variable as make expands it for the default (cpu) backend."""
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO), "--eval", f"print-value: ; @echo '$({name})'", "print-value",
         "LLAMA_BACKEND=cpu"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout.strip()


def _build_stage(dockerfile: Path) -> str:
    text = dockerfile.read_text()
    return text[text.index("FROM ${BASE} AS build") : text.index("FROM ${RUNTIME_BASE} AS runtime")]


@pytest.mark.parametrize("name", ["node.Dockerfile", "coordinator.Dockerfile"])
def test_dockerfile_builds_like_the_makefile_and_copies_every_package(name: str) -> None:
    text = (DEPLOY / name).read_text()
    assert f"ARG LLAMA_VERSION={_make_var('LLAMA_VERSION')}\n" in text
    assert f'ARG CMAKE_ARGS="{_make_value("LLAMA_CMAKE_ARGS")}"\n' in text
    assert "ARG BASE=python:3.11-slim-bookworm" in text
    # Every package pyproject installs is copied into the build (a new top-level package needs a COPY).
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} {package}$", text, re.M), f"{name} does not COPY {package}/"
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        words = line.split()
        if any(w.startswith("--from=") for w in words):
            continue
        for src in [w for w in words if not w.startswith("--")][:-1]:
            assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in {"0", "root"}, "the runtime stage must not run as root"
    assert re.search(r"^HEALTHCHECK .*\n.*healthcheck\.py", text, re.M)
    assert re.search(r"^VOLUME \[.*\"/var/lib/dataswarm\"", text, re.M)


def test_both_images_share_one_build_stage() -> None:
    # Identical instructions => one llama.cpp compile for both images (BuildKit layer cache).
    assert _build_stage(DEPLOY / "node.Dockerfile") == _build_stage(DEPLOY / "coordinator.Dockerfile")


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _volumes(service: dict) -> dict[str, tuple[str, str]]:
    out = {}
    for v in service.get("volumes", []):
        source, target, *mode = v.split(":")
        out[source] = (target, mode[0] if mode else "rw")
    return out


def test_compose_provisions_the_coordinator_key_and_peer_id_consistently() -> None:
    services = _compose()["services"]
    keys, coord = services["keys"], services["coordinator"]
    assert keys["command"][0] == "provision-coordinator-key"
    key_file, peer_file = keys["command"][1], keys["command"][2]
    assert coord["environment"]["DATASWARM_COORDINATOR_KEY_PATH"] == key_file

    def volume_holding(service: dict, path: str) -> str:
        hits = [src for src, (target, _) in _volumes(service).items() if path.startswith(target + "/")]
        assert hits, f"{path} is on no volume of {service}"
        return hits[0]

    private = volume_holding(keys, key_file)
    public = volume_holding(keys, peer_file)
    assert private != public
    assert volume_holding(coord, key_file) == private

    nodes = {name: s for name, s in services.items() if name.startswith("node")}
    assert len(nodes) == 2
    for name, node in nodes.items():
        env = node["environment"]
        assert env["DATASWARM_COORDINATOR_PEER_FILE"] == peer_file, name
        assert env["DATASWARM_COORDINATOR_HOST"] == "coordinator", name
        vols = _volumes(node)
        assert private not in vols, f"{name} must not see the coordinator's private key"
        assert vols[public][1] == "ro", f"{name} mounts the peer-ID volume read-only"
        assert "ports" not in node, f"{name} is outbound-only: it publishes no port"
        assert node["depends_on"]["keys"]["condition"] == "service_completed_successfully"
        assert node["depends_on"]["coordinator"]["condition"] == "service_healthy"
    assert services["searxng"]["profiles"] == ["websearch"]
    assert all("profiles" not in s for n, s in services.items() if n != "searxng")


def test_compose_environment_names_real_settings() -> None:
    fields = {"DATASWARM_NODE_": NodeConfig.model_fields, "DATASWARM_COORDINATOR_": CoordinatorConfig.model_fields}
    entrypoint_vars = set(re.findall(r"\$\{?(DATASWARM_[A-Z_]+)", ENTRYPOINT.read_text()))
    for name, service in _compose()["services"].items():
        for var in service.get("environment", {}):
            if var in entrypoint_vars:
                continue  # read by deploy/docker-entrypoint.sh
            for prefix, model_fields in fields.items():
                if var.startswith(prefix):
                    assert var.removeprefix(prefix).lower() in model_fields, f"{name}: {var} is no setting"


# --- a real coordinator and nodes, from the documented files --------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _peer_ids_seen(db: Path) -> set[str]:
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2) as conn:
            return {row[0] for row in conn.execute("SELECT peer_id FROM nodes")}
    except sqlite3.OperationalError:  # the schema is not there yet
        return set()


@pytest.mark.slow
def test_coordinator_and_nodes_start_from_the_documented_configs(tmp_path: Path) -> None:
    env = hermetic_env(tmp_path / "home")
    ds = dataswarm_cmd()
    procs = Procs(tmp_path)

    # Operator: a local corpus index (docs/operator.md, "The local corpus").
    pages = tmp_path / "html"
    pages.mkdir()
    for name, title, body in [
        ("heapq.html", "heapq", "The heapq module implements the heap queue algorithm, a priority queue."),
        ("bisect.html", "bisect", "The bisect module keeps a list in sorted order without sorting it again."),
    ]:
        (pages / name).write_text(f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
                                  f"<p>{body * 5}</p></main></body></html>")  # fmt: skip
    corpus = tmp_path / "corpus.sqlite"
    indexed = run(
        [*ds, "corpus", "index", str(pages), "--db", str(corpus), "--base-url", "http://127.0.0.1:8765/"], env
    )
    assert indexed.returncode == 0 and "2 pages indexed" in indexed.stdout, indexed.stdout + indexed.stderr

    # Operator: the coordinator key, provisioned the way compose's `keys` service does it.
    key = tmp_path / "coordinator" / "coordinator.key"
    peer_file = tmp_path / "shared" / "coordinator.peer"
    provisioned = run(["sh", str(ENTRYPOINT), "provision-coordinator-key", str(key), str(peer_file)], env)
    assert provisioned.returncode == 0, provisioned.stderr
    coordinator_id = peer_file.read_text().strip()
    assert coordinator_id == load_identity(key).peer_id
    again = run(["sh", str(ENTRYPOINT), "provision-coordinator-key", str(key), str(peer_file)], env)
    assert again.returncode == 0 and peer_file.read_text().strip() == coordinator_id, "the key is never replaced"

    coord_port, api_port = free_port(), free_port()
    coord_toml = tmp_path / "coordinator.toml"
    coord_toml.write_text(
        render_config(
            COORDINATOR_EXAMPLE,
            key_path=str(key),
            listen=[f"/ip4/127.0.0.1/tcp/{coord_port}"],
            mdns=False,
            relay_hop=False,
            data_dir=str(tmp_path / "coordinator"),
            api_listen=f"127.0.0.1:{api_port}",
        )
    )
    addr_file = tmp_path / "coordinator.addr"
    coordinator = procs.start(
        "coordinator", [*ds, "coordinator", "start", "--config", str(coord_toml), "--addr-file", str(addr_file)], env
    )

    def node_toml(name: str, **extra: object) -> tuple[Path, Path]:
        home = tmp_path / name
        path = tmp_path / f"{name}.toml"
        path.write_text(
            render_config(
                NODE_EXAMPLE,
                key_path=str(home / "node.key"),
                listen=[f"/ip4/127.0.0.1/tcp/{free_port()}"],
                mdns=False,
                kinds=["search", "retrieve"],  # no model to load: this test is about wiring
                search_db=str(corpus),
                retrieve_allow=["127.0.0.1"],
                data_dir=str(home),
                status_interval_s=1.0,
                **extra,
            )
        )
        return path, home / "node.key"

    try:
        procs.wait_for("the coordinator's address file", lambda: addr_file.exists() and addr_file.read_text(), 60)
        coordinator_addr = addr_file.read_text().split()[0]
        assert coordinator_addr == f"/ip4/127.0.0.1/tcp/{coord_port}/p2p/{coordinator_id}"

        # Volunteer A: everything in the TOML file (docs/volunteer.md).
        a_toml, a_key = node_toml("node-a", bootstrap=[coordinator_addr], trusted_coordinators=[coordinator_id])
        node_a = procs.start("node-a", [*ds, "node", "start", "--config", str(a_toml), "--quiet"], env)
        # Volunteer B: like compose's node services, trust and bootstrap come from the peer-ID file
        # through the entrypoint. Empty in the file, so that a broken entrypoint cannot make this
        # node dial the example's placeholder address (only loopback here).
        b_toml, b_key = node_toml("node-b", bootstrap=[], trusted_coordinators=[])
        b_env = dict(
            env,
            DATASWARM_COORDINATOR_PEER_FILE=str(peer_file),
            DATASWARM_COORDINATOR_HOST="localhost",
            DATASWARM_COORDINATOR_PORT=str(coord_port),
        )
        node_b = procs.start(
            "node-b", ["sh", str(ENTRYPOINT), "node", "start", "--config", str(b_toml), "--quiet"], b_env
        )

        procs.wait_for(
            "both nodes to print READY", lambda: "READY" in node_a.output() and "READY" in node_b.output(), 90
        )
        for node in (node_a, node_b):
            assert re.search(rf"trusts\s+{coordinator_id}", node.output()), node.tail()
            assert re.search(r"kinds\s+search, retrieve *\n", node.output()), node.tail()
        db = tmp_path / "coordinator" / "coordinator.db"
        wanted = {load_identity(a_key).peer_id, load_identity(b_key).peer_id}
        procs.wait_for("the coordinator to record both nodes", lambda: wanted <= _peer_ids_seen(db), 60)

        # Operator: the API lists the nodes and serves Prometheus metrics (docs/operator.md, "Metrics").
        nodes = json.loads(_get(f"http://127.0.0.1:{api_port}/v1/nodes"))["nodes"]
        assert wanted <= {n["peer_id"] for n in nodes if n["live"]}, nodes
        assert re.search(r'^dataswarm_nodes\{status="live"\} 2\.0$', _get(f"http://127.0.0.1:{api_port}/metrics"), re.M)

        # The container health checks, against the live processes.
        for role, toml in (("coordinator", coord_toml), ("node", a_toml), ("node", b_toml)):
            check = run([sys.executable, str(HEALTHCHECK), role, "--config", str(toml)], env, timeout=20)
            assert check.returncode == 0 and check.stdout.strip() == "healthy", (role, check.stdout, check.stderr)

        # Volunteer: read the (empty) receipts ledger.
        receipts = run([*ds, "node", "receipts", "--config", str(a_toml)], env)
        assert receipts.returncode == 0 and "0 receipts" in receipts.stdout, receipts.stdout + receipts.stderr

        # Operator: an online backup of the live coordinator (docs/operator.md, "Backups").
        backup = tmp_path / "backup"
        made = run([sys.executable, str(BACKUP), "--config", str(coord_toml), str(backup)], env)
        assert made.returncode == 0, made.stdout + made.stderr
        assert load_identity(backup / "coordinator.key").peer_id == coordinator_id
        assert (backup / "coordinator.key").stat().st_mode & 0o077 == 0
        assert (backup / "blobs").is_dir() and (backup / "api_tokens.db").exists()
        with sqlite3.connect(backup / "coordinator.db") as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert wanted <= {r[0] for r in copy.execute("SELECT peer_id FROM nodes")}
        again = run([sys.executable, str(BACKUP), "--config", str(coord_toml), str(backup)], env)
        assert again.returncode == 1 and "not empty" in again.stderr, "a backup never overwrites another"

        # `docker stop` sends SIGINT (STOPSIGNAL): a node goes within seconds, and the health check notices.
        assert procs.interrupt(node_a) < 10
        check = run([sys.executable, str(HEALTHCHECK), "node", "--config", str(a_toml)], env, timeout=20)
        assert check.returncode == 1 and check.stdout.startswith("unhealthy: libp2p port"), check.stdout
        assert coordinator.popen.poll() is None and node_b.popen.poll() is None, procs.tails()
        assert procs.interrupt(coordinator) < 10

        # Operator: move to another machine = back up (now offline: no -wal/-shm), restore, start.
        moved = tmp_path / "moved"
        made = run([sys.executable, str(BACKUP), "--config", str(coord_toml), str(tmp_path / "offline-backup")], env)
        assert made.returncode == 0, made.stdout + made.stderr
        shutil.copytree(tmp_path / "offline-backup", moved)
        moved_toml = tmp_path / "moved.toml"
        moved_toml.write_text(
            render_config(
                COORDINATOR_EXAMPLE,
                key_path=str(moved / "coordinator.key"),
                listen=[f"/ip4/127.0.0.1/tcp/{free_port()}"],
                mdns=False,
                relay_hop=False,
                data_dir=str(moved),
                api_listen=f"127.0.0.1:{free_port()}",
            )
        )
        restored = procs.start("restored", [*ds, "coordinator", "start", "--config", str(moved_toml)], env)
        procs.wait_for("the restored coordinator", lambda: "READY" in restored.output(), 60)
        assert f"dataswarm coordinator {coordinator_id}" in restored.output(), "same identity after the move"
        assert wanted <= _peer_ids_seen(moved / "coordinator.db"), "the store came along"
    finally:
        procs.stop_all()


@pytest.mark.slow
def test_node_serves_metrics_from_the_documented_setting(tmp_path: Path) -> None:
    """docs/volunteer.md: `metrics_listen` turns on the node's Prometheus endpoint."""
    env = hermetic_env(tmp_path / "home")
    procs = Procs(tmp_path)
    port = free_port()
    toml = tmp_path / "node.toml"
    toml.write_text(
        render_config(
            NODE_EXAMPLE,
            key_path=str(tmp_path / "node" / "node.key"),
            listen=[f"/ip4/127.0.0.1/tcp/{free_port()}"],
            bootstrap=[],
            trusted_coordinators=[],
            mdns=False,
            kinds=["retrieve"],
            data_dir=str(tmp_path / "node"),
            metrics_listen=f"127.0.0.1:{port}",
        )
    )
    node = procs.start("node", [*dataswarm_cmd(), "node", "start", "--config", str(toml), "--quiet"], env)
    try:
        procs.wait_for("READY", lambda: "READY" in node.output(), 60)
        metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert re.search(r"^dataswarm_node_free_slots \d", metrics, re.M), metrics[:2000]
    finally:
        procs.stop_all()
