"""Where the repository, the C binaries and the data live."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
RAW = DATA / "raw"
PROCESSED = DATA / "processed"
REFERENCE = DATA / "reference"
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
