"""Keep every other process off the server's CPUs while a measurement runs (as `cset shield`).

On the paper's server nothing else ran; here anything unpinned would run in the emulated CPU's
share (the CPU thief leaves it only `share` of the CPU) and slow the server. Every other
process's affinity loses those CPUs and gets it back on exit; per-CPU kernel threads and
processes confined to a cpuset cannot move (counted). The moves are written down under
/run/ukweb, so a runner killed with SIGKILL is undone by the next one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from ukweb import paths

log = logging.getLogger(__name__)

RECORDS = paths.RUNTIME


def _undo(record: Path) -> None:
    """Give every process in a record its CPU affinity back; remove the record."""
    try:
        moved = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    for pid, cpus in moved.items():
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            psutil.Process(int(pid)).cpu_affinity(cpus)
    record.unlink(missing_ok=True)


def undo_stale() -> list[int]:
    """Undo the shields of runners that died without undoing them (SIGKILL); their pids."""
    stale = []
    for record in RECORDS.glob("shield-*.json"):
        pid = record.stem.removeprefix("shield-")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            _undo(record)
            stale.append(int(pid))
    return stale


@contextlib.contextmanager
def shielded(server_cpus: list[int], all_cpus: list[int]) -> Iterator[dict | None]:
    """Other processes off server_cpus for the block; yields {moved, not_movable} (None when
    there is no other CPU to move them to)."""
    undo_stale()
    server = set(server_cpus)
    if not set(all_cpus) - server:
        yield None
        return
    moved: dict[int, set[int]] = {}
    refused = 0
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            old = set(proc.cpu_affinity())
            if old & server and old - server:
                proc.cpu_affinity(sorted(old - server))
                moved[proc.pid] = old
        except (psutil.Error, OSError, ValueError):
            refused += 1  # kernel threads, processes confined to a cpuset, races
    log.info("shield: %d processes moved off CPUs %s (%d could not move)", len(moved),
             sorted(server), refused)
    RECORDS.mkdir(parents=True, exist_ok=True)
    record = RECORDS / f"shield-{os.getpid()}.json"
    record.write_text(json.dumps({str(p): sorted(c) for p, c in moved.items()}))
    try:
        yield {"moved": len(moved), "not_movable": refused}
    finally:
        _undo(record)
