"""The three dependency lists (pyproject.toml, environment.yml, Dockerfile) must agree."""

from __future__ import annotations

import re
import subprocess

import tomllib
import yaml

from ukweb.paths import REPO


def _pyproject() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        deps += extra
    return set(deps)


def _environment() -> set[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {d for d in pip if not d.startswith("-e")}


def _dockerfile() -> set[str]:
    text = (REPO / "Dockerfile").read_text()
    install = text.split("pip install --no-cache-dir", 1)[1].split("&&", 1)[0]
    return set(re.findall(r'"([^"]+)"', install))


def test_dependency_lists_agree():
    py, env, docker = _pyproject(), _environment(), _dockerfile()
    assert py == env, f"pyproject vs environment.yml: {sorted(py ^ env)}"
    assert py == docker, f"pyproject vs Dockerfile: {sorted(py ^ docker)}"


def test_cli_rejects_unknown_command():
    out = subprocess.run(["ukweb", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown command" in out.stderr and out.stderr.count("\n") == 1
