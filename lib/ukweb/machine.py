"""What a run's manifest.json records of the machine and its tools (ukweb.manifest writes it).

A reader of a published run must be able to tell, without asking, which code ran (git commit,
dirty tree), on which machine (kernel, CPU, memory, io_uring, cgroup version, privileges), with
which tools and parameters, and where the emulated testbed differs from the paper's (deviations).
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

import psutil

from ukweb import cgroups, manifest, servers
from ukweb.paths import REPO

PYTHON_PACKAGES = ("ukweb", "numpy", "pandas", "pyarrow", "matplotlib", "scipy", "psutil",
                   "tqdm", "requests", "pyyaml", "papermill")


def cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def io_uring_reason() -> str | None:
    """Why ktux cannot run here (None when it can); taken from ukweb.servers."""
    return servers.io_uring_unavailable()


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
    # nginx -v prints to stderr; first_line takes whichever stream has text.
    return {
        "gcc": manifest.first_line(["gcc", "--version"]),
        "nginx": manifest.first_line(["nginx", "-v"]),
        "liburing": manifest.first_line(["pkg-config", "--modversion", "liburing"]),
        "iproute2": manifest.first_line(["ip", "-V"]),
        "python": platform.python_version(),
        "python_packages": py,
        "python_environment": python_environment(),
        "requirements_lock_sha256": lock_digest(),
    }


def build(params: dict, *, deviations: list[dict], calibration: dict | None,
          testbed: dict) -> dict:
    """The manifest of a run that starts now (end time filled in by finish())."""
    return {"manifest_version": 1, "params": params, "git": manifest.git_state(), "host": host(),
            "tools": tools(), "testbed": testbed, "deviations": deviations,
            "calibration": calibration, "start": manifest.now(), "end": None, "runs": []}
