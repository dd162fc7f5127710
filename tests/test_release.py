"""The release: one version, declared dependencies for every import, the type marker, the CI steps."""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest

import reparam
from tests.conftest import ROOT
from tests.helpers import reparam as run_reparam

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_version_is_written_once():
    sources = "\n".join(p.read_text() for p in (ROOT / "reparam").rglob("*.py"))
    assert PROJECT["version"] not in sources
    assert f"## {PROJECT['version']}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_installed_version_is_pyprojects():
    dist = metadata.distribution("reparam")
    origin = dist.read_text("direct_url.json") or ""  # an (editable) install: where from
    if ROOT.as_uri() not in origin and Path(str(dist.locate_file(""))).resolve() != ROOT:  # or metadata built in this tree
        pytest.skip(f"the installed reparam is another checkout ({origin or dist.locate_file('')})")
    assert reparam.__version__ == PROJECT["version"]
    proc = run_reparam("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"reparam {PROJECT['version']}"


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules outside the standard library that the package imports -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "reparam").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top and top not in sys.stdlib_module_names and top != "reparam":
                    found.setdefault(top, set()).add(path.name)
    return found


def declared() -> set[str]:
    """Distribution names in the dependencies and the optional extras (but test)."""
    specs = list(PROJECT["dependencies"]) + [s for extra, v in PROJECT["optional-dependencies"].items() if extra != "test" for s in v]
    return {s.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for s in specs}


def test_every_imported_package_is_declared():
    providers = metadata.packages_distributions()
    names = declared()
    missing = {m: files for m, files in third_party_imports().items() if not {d.lower() for d in providers.get(m, [m])} & names}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "pillow" in names  # data/folder.py reads image folders with PIL


def test_the_type_marker_ships_and_ci_checks_types_and_artifacts():
    assert (ROOT / "reparam" / "py.typed").is_file()
    assert "py.typed" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["reparam"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(step in ci for step in ("python -m mypy", "python -m build", "twine check"))
