"""manifest.json: everything needed to know what a run measured and on what.

A reader of a published run must be able to tell, without asking, which code ran (git commit,
dirty tree), on which machine (kernel, CPU, memory, io_uring, cgroup version, privileges), with
which tools and parameters, and where the emulated testbed differs from the paper's (deviations).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from ukweb import cgroups
from ukweb.paths import REPO

log = logging.getLogger(__name__)

PYTHON_PACKAGES = ("ukweb", "numpy", "pandas", "pyarrow", "matplotlib", "scipy", "psutil",
                   "tqdm", "requests", "pyyaml", "papermill")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _cmd(args: list[str]) -> str | None:
    """First line of a command's output (stdout or stderr), None when it cannot run."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text and out.returncode == 0 else None


def git_state(repo: Path = REPO) -> dict:
    commit = _cmd(["git", "-C", str(repo), "rev-parse", "HEAD"])
    try:
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        status = ""
    return {"commit": commit, "dirty": bool(status.strip()) if commit else None}


def cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def io_uring_reason() -> str | None:
    """Why ktux cannot run here (None when it can); taken from ukweb.servers."""
    try:
        from ukweb.servers import io_uring_unavailable
    except ImportError as exc:
        return f"unknown: ukweb.servers not importable ({exc})"
    return io_uring_unavailable()


def host() -> dict:
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "io_uring_unavailable": io_uring_reason(),
        "cgroup_version": cgroups.version(),
        "cgroup_controllers": cgroups.available_controllers(),
        # The paper stopped every non-essential service; here the load at start shows how busy
        # the machine was (other users' processes are not ours to stop).
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "processes": len(psutil.pids()),
        "euid": os.geteuid(),
        "root": os.geteuid() == 0,
    }


def python_environment() -> dict[str, str]:
    """Every installed distribution and its version (what `pip freeze` lists), so the run's
    environment can be compared with requirements.lock or installed again."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower().replace("_", "-"), dist.version)
    return dict(sorted(found.items()))


def lock_digest() -> str | None:
    """sha256 of requirements.lock, the environment make setup and the image install."""
    lock = REPO / "requirements.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None


def tools() -> dict:
    py = {}
    for name in PYTHON_PACKAGES:
        try:
            py[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            py[name] = None
    # nginx -v prints to stderr; _cmd takes whichever stream has text.
    return {
        "gcc": _cmd(["gcc", "--version"]),
        "nginx": _cmd(["nginx", "-v"]),
        "liburing": _cmd(["pkg-config", "--modversion", "liburing"]),
        "iproute2": _cmd(["ip", "-V"]),
        "python": platform.python_version(),
        "python_packages": py,
        "python_environment": python_environment(),
        "requirements_lock_sha256": lock_digest(),
    }


def build(params: dict, *, deviations: list[dict], calibration: dict | None,
          testbed: dict) -> dict:
    """The manifest of a run that starts now (end time filled in by finish())."""
    return {"manifest_version": 1, "params": params, "git": git_state(), "host": host(),
            "tools": tools(), "testbed": testbed, "deviations": deviations,
            "calibration": calibration, "start": now(), "end": None, "runs": []}


def write(path: Path, manifest: dict) -> None:
    """Atomic write: a crash mid-write leaves the previous manifest, never half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> dict:
    return json.loads(path.read_text())
