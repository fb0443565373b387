"""Settings loading (settings/, used by node and coordinator): precedence, and every error names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config import load_coordinator_config
from node.config import load_node_config
from settings import ConfigError


def test_defaults_then_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "node.toml"
    file.write_text("slots = 2\nstatus_interval_s = 3.0\nn_threads = 1\n")
    monkeypatch.setenv("DATASWARM_NODE_STATUS_INTERVAL_S", "4.0")
    monkeypatch.setenv("DATASWARM_NODE_N_THREADS", "2")
    cfg = load_node_config(file, n_threads=3, slots=None)  # None: the flag was not given
    assert cfg.slots == 2 and cfg.status_interval_s == 4.0 and cfg.n_threads == 3
    assert cfg.mdns is True  # a default nothing overrode


def test_a_coordinator_file_is_read_with_its_own_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "coordinator.toml"
    file.write_text("max_attempts = 7\n")
    monkeypatch.setenv("DATASWARM_COORDINATOR_SPOT_CHECK_P", "0.5")
    monkeypatch.setenv("DATASWARM_NODE_MAX_ATTEMPTS", "9")  # another component's variable changes nothing
    cfg = load_coordinator_config(file)
    assert cfg.max_attempts == 7 and cfg.spot_check_p == 0.5


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("slotz = 2\n", r"'slotz'.*node\.toml"),
        ("slots = 'many'\n", r"setting 'slots'"),
        ("slots = \n", r"not valid TOML"),
    ],
)
def test_bad_files_are_errors_that_name_the_setting(tmp_path: Path, text: str, match: str) -> None:
    file = tmp_path / "node.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_node_config(file)


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_coordinator_config(tmp_path / "missing.toml")
