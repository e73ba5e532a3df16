"""manifest.json, the file: read, written atomically, and the code's identity it records (git
state, package version). What it says of the machine is collected by ukweb.machine; this module
needs neither root nor servers, so the offline layer (compaction, reports) reads and amends
manifests with it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

from ukweb import __version__, paths
from ukweb.paths import REPO


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def first_line(args: list[str]) -> str | None:
    """First line of a command's output (stdout or stderr), None when it cannot run."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text and out.returncode == 0 else None


def git_state(repo: Path = REPO) -> dict:
    commit = first_line(["git", "-C", str(repo), "rev-parse", "HEAD"])
    try:
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        status = ""
    return {"commit": commit, "dirty": bool(status.strip()) if commit else None}


def write(path: Path, manifest: dict) -> None:
    """Atomic write: a crash mid-write leaves the previous manifest, never half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def version() -> str:
    """'ukweb 0.1.0 (git 747a521-dirty)': the package version, and the checkout it runs from.

    [I] The package version alone names no measurement code (it changes by hand, rarely); the
    git description does, -dirty when tracked files differ from the commit. An installed copy
    without its repository says "git unknown"."""
    try:
        package = metadata.version("ukweb")
    except metadata.PackageNotFoundError:
        package = __version__
    try:
        described = subprocess.run(
            ["git", "-C", str(paths.REPO), "describe", "--always", "--dirty", "--tags"],
            capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        described = ""
    return f"ukweb {package} (git {described or 'unknown'})"
