"""Where the repository, the C binaries and the data live.

Every relative path a user gives (a notebook parameter, a profile's fileset_dir) is read from the
repository root, whatever the current directory: JupyterLab starts kernels in notebooks/,
papermill and `make` in the root, and both must find the same run.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
# UKWEB_RAW / UKWEB_PROCESSED move runs and derived outputs elsewhere (a larger disk; the tests'
# temporary directories). Relative values are from the repository root too.
RAW = REPO / os.environ.get("UKWEB_RAW", "data/raw")
PROCESSED = REPO / os.environ.get("UKWEB_PROCESSED", "data/processed")
REFERENCE = DATA / "reference"
REFERENCE_RUN = REFERENCE / "paper"  # the committed run a fresh clone analyses
PAPER = DATA / "paper"
PARAMS = REPO / "params"
NOTEBOOKS = REPO / "notebooks"
# Machine-wide state of running sweeps (shield records, delay-accounting holders, disk-model
# mounts): under /run so a reboot clears it, shared by every checkout on the machine.
RUNTIME = Path("/run/ukweb")


def bin_dir() -> Path:
    """The directory of the built C programs; UKWEB_BIN overrides it (e.g. build/asan)."""
    return Path(os.environ.get("UKWEB_BIN", REPO / "build")).resolve()


def binary(name: str) -> Path:
    """Path of a built program (userver, ktux, loadgen); a clear error if it is not built."""
    path = bin_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not built; run `make build` in {REPO}")
    return path


def resolve(path: str | os.PathLike | None) -> Path | None:
    """A user-given path, absolute, with relative ones read from the repository root; None
    (or "") stays None."""
    if path is None or str(path) == "":
        return None
    return REPO / Path(path).expanduser()  # an absolute right-hand side replaces REPO


def is_run(path: Path) -> bool:
    """A run directory is one with points/ inside (what ukweb.runs writes)."""
    return (path / "points").is_dir()


def newest_run(root: Path | None = None) -> Path | None:
    """The run under root (data/raw) written last (its manifest.json's time), or None."""
    root = root or RAW
    runs = [m.parent for m in root.glob("*/manifest.json") if is_run(m.parent)]
    return max(runs, key=lambda r: (r / "manifest.json").stat().st_mtime, default=None)


def run_dir(given: str | os.PathLike | None = None) -> Path:
    """The run a notebook analyses: `given` (from the repository root), else the newest run
    under data/raw, else the reference run (a fresh clone). FileNotFoundError naming the
    absolute path and what is missing otherwise."""
    run = resolve(given)
    if run is None:
        run = newest_run() or REFERENCE_RUN
        if not is_run(run):
            raise FileNotFoundError(f"no run under {RAW} and no reference run at {run} "
                                    "(no points/ inside); give run_dir")
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist")
    if not is_run(run):
        raise FileNotFoundError(f"{run} is not a run directory (no points/ inside)")
    return run
