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
from ukweb.changes import live_runner_pids, start_ticks

log = logging.getLogger(__name__)

RECORDS = paths.RUNTIME


def _now_ticks() -> int:
    """Clock ticks since boot, the unit of a process's start time."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _undo(record: Path, stale: bool = False) -> None:
    """Give every process in a record its CPU affinity back; remove the record.

    Records are {"server": [...], "since": ticks, "moved": {pid: {"cpus": [...], "ticks":
    start}}} (or, from before, {pid: cpus}). A pid that now names another process (other start
    time) is left alone. Also given back: processes started while the shield was in force from
    a moved one (a shell's new commands inherit the reduced affinity), while they still have
    it and are not a live run's. [I] A resume started from such a shell otherwise saw only the
    client CPU and ran the server there (issue 17); a test session started during another's
    sweep kept one CPU for good. Our own children are ours to pin, unless the record is a dead
    runner's (stale)."""
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        record.unlink(missing_ok=True)
        return
    moved = data.get("moved") if "moved" in data else {p: {"cpus": c, "ticks": None}
                                                         for p, c in data.items()}
    server = set(data.get("server", []))
    since = data.get("since")
    back: dict[int, tuple[set[int], set[int]]] = {}  # pid -> (reduced, original)
    for pid, entry in moved.items():
        pid = int(pid)
        if entry.get("ticks") is not None and start_ticks(pid) != entry["ticks"]:
            continue
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            psutil.Process(pid).cpu_affinity(entry["cpus"])
            back[pid] = (set(entry["cpus"]) - server, set(entry["cpus"]))
    if server and since is not None and back:
        spare = live_runner_pids() - {os.getpid()}  # live runs pin their own children
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError, ValueError):
                parents = proc.parents()
                line = {p.pid for p in parents}
                if proc.pid in back or spare & (line | {proc.pid}) or (
                        not stale and os.getpid() in line):
                    continue
                if (start_ticks(proc.pid) or 0) < since:  # older: its affinity is its owner's choice
                    continue
                mine = set(proc.cpu_affinity())
                for parent in parents:
                    if parent.pid in back:
                        reduced, original = back[parent.pid]
                        if mine == reduced:
                            proc.cpu_affinity(sorted(original))
                        break
    record.unlink(missing_ok=True)


def live_shields() -> list[int]:
    """Pids of other runs whose shield is in force now."""
    out = []
    for record in RECORDS.glob("shield-*.json"):
        pid = record.stem.removeprefix("shield-")
        if pid.isdigit() and int(pid) != os.getpid() and start_ticks(int(pid)) is not None:
            out.append(int(pid))
    return sorted(out)


def undo_stale() -> list[int]:
    """Undo the shields of runners that died without undoing them (SIGKILL); their pids."""
    stale = []
    for record in RECORDS.glob("shield-*.json"):
        pid = record.stem.removeprefix("shield-")
        if pid.isdigit() and start_ticks(int(pid)) is None:
            _undo(record, stale=True)
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
    todo: dict[int, set[int]] = {}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            old = set(proc.cpu_affinity())
            if old & server and old - server:
                todo[proc.pid] = old
    # Written before anything moves, so a runner killed halfway is undone in full.
    RECORDS.mkdir(parents=True, exist_ok=True)
    record = RECORDS / f"shield-{os.getpid()}.json"
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps({"server": sorted(server), "since": _now_ticks(), "moved": {
        str(p): {"cpus": sorted(c), "ticks": start_ticks(p)} for p, c in todo.items()}}))
    os.replace(tmp, record)
    moved, refused = 0, 0
    for pid, old in todo.items():
        try:
            psutil.Process(pid).cpu_affinity(sorted(old - server))
            moved += 1
        except (psutil.Error, OSError, ValueError):
            refused += 1  # kernel threads, processes confined to a cpuset, races
    log.info("shield: %d processes moved off CPUs %s (%d could not move)", moved,
             sorted(server), refused)
    try:
        yield {"moved": moved, "not_movable": refused}
    finally:
        _undo(record)
