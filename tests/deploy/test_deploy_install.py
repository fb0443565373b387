"""`pip install .` (what the Dockerfiles and docs/volunteer.md do) brings everything the code imports.

A development venv accumulates packages installed by hand or pulled in by the dev extras,
so "the tests pass here" does not prove a clean install works. This imports every module of
the installed packages in a fresh interpreter and checks that each third-party distribution
they load is reachable from `[project.dependencies]` in pyproject.toml, through the installed
packages' own requirements. (A clean install in a new venv, which this stands in for, needs
the network and a minute and a half; deploy/README.md records the one that was run.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.support import REPO

PROBE = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys
baseline = set(sys.modules)
failed = {}
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # `python -m cli` runs the app on import
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = repr(exc)
loaded = {name.split(".")[0] for name in set(sys.modules) - baseline}
owners = md.packages_distributions()
print(json.dumps({"failed": failed, "distributions": sorted({d for m in loaded for d in owners.get(m, [])})}))
"""


def _declared_closure() -> set[str]:
    from importlib import metadata

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and not extras:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(sub)
    return seen


def test_every_imported_distribution_is_a_declared_dependency() -> None:
    packages = [p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]]  # fmt: skip
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *packages], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert not report["failed"], f"modules that do not import here: {report['failed']}"
    own = {"dataswarm"}
    undeclared = sorted(d for d in report["distributions"] if canonicalize_name(d) not in _declared_closure() | own)
    assert not undeclared, (
        f"the code imports {undeclared}, which pyproject.toml's dependencies do not bring: "
        "a clean `pip install .` (and the Docker images) would lack them. Add them to [project.dependencies]."
    )
