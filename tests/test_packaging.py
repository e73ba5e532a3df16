"""The exact environment: requirements.lock (hashes, from pyproject's ranges) is what make setup,
the Dockerfile and environment.yml install; the image is pinned and built where an engine runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.util import find_spec

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ukweb import machine
from ukweb.paths import REPO

LOCK = REPO / "requirements.lock"


def _pyproject() -> list[Requirement]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        deps += extra
    return [Requirement(d) for d in deps]


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), read from pip-compile's output."""
    pins = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if m:
            pins[canonicalize_name(m[1])] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


def test_the_lock_pins_every_dependency_within_pyprojects_ranges_with_hashes():
    assert "--generate-hashes" in LOCK.read_text().split("\n\n", 1)[0]  # pip-compile's header
    pins = _lock()
    assert len(pins) > 50 and all(hashes for _, hashes in pins.values())
    for req in _pyproject():
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements.lock lacks {req} (run make lock)"
        assert req.specifier.contains(pins[name][0]), f"{name}=={pins[name][0]} outside {req} (run make lock)"


def test_setup_the_image_and_conda_install_from_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements.lock" in makefile
    assert "pip install -q --no-deps -e ." in makefile
    docker = (REPO / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in docker and "--no-deps -e ." in docker
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["--require-hashes", "-r requirements.lock"]


def test_the_image_is_pinned_and_its_context_small():
    base = re.search(r"^ARG BASE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base[1]), "base image not pinned by digest"
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "build", "data/raw", "data/processed", "data/fileset"} <= ignored


def test_the_manifest_records_the_whole_installed_environment():
    from importlib import metadata

    env = machine.tools()["python_environment"]
    every = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]}
    assert set(env) == every and env["pandas"] == metadata.version("pandas") and "ukweb" in env
    assert machine.tools()["requirements_lock_sha256"] and len(env) > 50


def _engine() -> tuple[str | None, str]:
    """podman or docker when it can build here, else None and why not."""
    why = []
    for tool in ("podman", "docker"):
        if not shutil.which(tool):
            why.append(f"no {tool}")
            continue
        info = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode == 0:
            return tool, ""
        why.append(f"{tool} info failed: {(info.stderr.strip().splitlines() or ['?'])[-1]}")
    return None, "; ".join(why)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_image_builds_and_uses_its_own_environment():
    tool, why = _engine()
    if tool is None:
        pytest.skip(f"no container engine can build here ({why})")
    tag = "ukweb-test:latest"
    built = subprocess.run([tool, "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=1700)
    assert built.returncode == 0, built.stderr[-3000:]
    # make inside the image finds its environment installed: nothing to do for `make venv`
    out = subprocess.run([tool, "run", "--rm", tag, "make", "-q", "venv"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    ukweb = subprocess.run([tool, "run", "--rm", tag, "python", "-c", "import ukweb, sys; print(sys.prefix)"],
                           capture_output=True, text=True)
    assert ukweb.stdout.strip() == "/opt/venv", ukweb.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(find_spec("jupyterlab") is None,
                    reason="jupyterlab not installed here (make setup installs it from requirements.lock)")
def test_make_lab_serves_the_repository_root_on_loopback_with_the_package_kernel():
    """`make lab` as the tests' user (root here: --allow-root is added), setup already done."""
    port = _free_port()
    lab = subprocess.Popen(["make", "-s", "-o", "setup", "lab", f"VENV={sys.prefix}", f"LAB_PORT={port}"],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        url, deadline = None, time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = lab.stdout.readline()
            assert line or lab.poll() is None, "make lab exited"
            found = re.search(rf"(http://127\.0\.0\.1:{port}/\S*)\?token=(\w+)", line)
            url, token = (found[1], found[2]) if found else (None, None)
        assert url == f"http://127.0.0.1:{port}/lab/tree/notebooks", url  # notebooks/ in front

        def get(path: str) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?token={token}", timeout=10) as r:
                return json.loads(r.read())
        while True:  # the address is printed as the server starts listening
            try:
                run = get("/api/contents/data/reference/paper")  # the root is the repository
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "make lab printed its address but does not answer"
                time.sleep(0.2)
        assert {"points", "manifest.json"} <= {c["name"] for c in run["content"]}
        assert "ukweb" in get("/api/kernelspecs")["kernelspecs"]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert {line.split()[3] for line in listening.splitlines()} == {f"127.0.0.1:{port}"}
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        lab.wait(timeout=30)


def test_make_help_describes_every_target():
    phony = re.search(r"^\.PHONY: (.+)$", (REPO / "Makefile").read_text(), re.M)[1].split()
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}
    assert set(listed) == set(phony), sorted(set(listed) ^ set(phony))
    assert "127.0.0.1:8888" in listed["lab"]


def test_artifact_metadata_names_the_license_and_the_paper():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["version"] == meta["version"]
    paper = cff["references"][0]
    assert paper["year"] == 2004 and [a["family-names"] for a in paper["authors"]] == [
        "Shukla", "Li", "Subramanian", "Ward", "Brecht"]
    zenodo = json.loads((REPO / ".zenodo.json").read_text())
    assert zenodo["license"] == "MIT" and zenodo["version"] == meta["version"]
    assert any("Shukla" in ref and "2004" in ref for ref in zenodo["references"])


def test_cli_rejects_unknown_command():
    out = subprocess.run(["ukweb", "nosuch"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown command" in out.stderr and out.stderr.count("\n") == 1
