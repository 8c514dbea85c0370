"""The environment the tests run in is the one uv.lock describes: every installed distribution at its locked
version, and everything the runtime set and the dev extra need is there. A hand-installed package, or a lock
that no longer matches what make installed, fails here (CI also runs `uv lock --check` and `uv sync --check`)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"
PROJECT = "pipeline-project"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_packages() -> dict[str, dict]:
    return {normalized(p["name"]): p for p in tomllib.loads(LOCK.read_text())["package"]}


def needed(packages: dict[str, dict], extras: tuple[str, ...]) -> set[str]:
    """The packages the project with `extras` pulls in on this machine (markers evaluated here)."""
    seen: set[str] = set()
    todo = [(PROJECT, set(extras))]
    while todo:
        name, wanted = todo.pop()
        package = packages[name]
        edges = list(package.get("dependencies", []))
        for extra in wanted:
            edges += package.get("optional-dependencies", {}).get(extra, [])
        for edge in edges:
            if "marker" in edge and not Marker(edge["marker"]).evaluate():
                continue
            target, target_extras = normalized(edge["name"]), set(edge.get("extra", []))
            if target == PROJECT:
                todo.append((PROJECT, target_extras))
            elif target not in seen or target_extras:
                seen.add(target)
                todo.append((target, target_extras))
    return seen


def test_every_installed_distribution_is_locked_at_its_version():
    packages = locked_packages()
    installed = {normalized(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    installed.pop(PROJECT, None)
    not_locked = sorted(name for name in installed if name not in packages)
    other_version = sorted(
        f"{name} {installed[name]} (lock: {packages[name]['version']})"
        for name in installed
        if name in packages and installed[name] != packages[name]["version"]
    )
    assert not not_locked, f"installed but not in uv.lock: {not_locked}"
    assert not other_version, f"installed at another version than uv.lock's: {other_version}"


def test_the_runtime_set_and_the_dev_extra_are_installed():
    installed = {normalized(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    missing = sorted(needed(locked_packages(), ("dev",)) - installed)
    assert not missing, f"uv.lock's runtime and dev packages missing from the environment: {missing}"


def test_torch_is_the_cpu_build_pinned_in_pyproject():
    assert importlib.metadata.version("torch") == "2.13.0+cpu"
    assert locked_packages()["torch"]["source"] == {"registry": "/opt/wheels"}
