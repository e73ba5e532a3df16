"""Machine settings a run holds while it measures, back to the machine's own values when the last
run leaves, and restored by the next run when a killed one left them set (ukweb.leftovers):

- kernel.task_delayacct on: the block-I/O delay it accounts is the paper's "blocked" time
  (ukweb.sampler). Only tasks created while it is on are fully accounted, so it is turned on
  before any server starts.
- every DAMON kdamond off (/sys/kernel/mm/damon/admin/kdamonds/N/state). [I] A kdamond with a
  `pageout` scheme reclaims memory it sees as cold, outside the kernel's reclaim (no pgscan or
  pgsteal counted): on the machine this package was built on, kdamond.0 (physical address
  space, pageout after 12 aggregation intervals, 128 MB per 50 ms quota) dropped ~8 MB/s of
  page cache from an idle 24 GB machine. It took the disk model's backing files out of the
  host's cache (so a modelled read became a real disk read: 7-22 % of the modelled disk's busy
  time overran its model in the first paper run of 2026-12-03) and would take cold pages from
  the server's own cache under its cap, which the paper's server kept.

Several runs (or test sessions) may share a machine: if each restored a setting on its own way
out, one would change it under another (a block-I/O wait that starts while accounting is off and
ends while it is on is charged as the whole time since boot). So the original value is saved by
the first holder and restored by the last, under a lock, in paths.RUNTIME.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from ukweb import paths

log = logging.getLogger(__name__)

TASK_DELAYACCT = Path("/proc/sys/kernel/task_delayacct")
KDAMONDS = Path("/sys/kernel/mm/damon/admin/kdamonds")
HOLDERS_DIR = paths.RUNTIME  # <name>.holders (pids), <name>.original (the machine's value)


@contextlib.contextmanager
def _holders(name: str) -> Iterator[list[int]]:
    """The pids of live ukweb runs holding setting `name`, under an exclusive lock; the caller
    edits the list in place."""
    HOLDERS_DIR.mkdir(parents=True, exist_ok=True)
    with open(HOLDERS_DIR / f"{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = HOLDERS_DIR / f"{name}.holders"
        pids = [int(x) for x in path.read_text().split()] if path.is_file() else []
        pids = [p for p in pids if psutil.pid_exists(p)]
        yield pids
        path.write_text("".join(f"{p}\n" for p in pids))


@contextlib.contextmanager
def held(name: str, path: Path, value: str) -> Iterator[bool]:
    """Write `value` to `path` for the block, the machine's value back when the last holder
    leaves. Yields whether it could be set."""
    original = HOLDERS_DIR / f"{name}.original"
    try:
        with _holders(name) as pids:
            # [I] An original left by a runner killed while holding is the machine's, not the
            # value it left behind (issue 17: the next runner recorded 1 and never undid it).
            if not pids and not original.is_file():
                original.write_text(path.read_text())
            if _read(path) != value:  # a kdamond refuses "off" when it is already off
                path.write_text(value + "\n")
            pids.append(os.getpid())
    except OSError as exc:
        log.warning("cannot set %s to %s: %s", path, value, exc.strerror or exc)
        yield False
        return
    try:
        yield True
    finally:
        with _holders(name) as pids:
            if os.getpid() in pids:
                pids.remove(os.getpid())
            if not pids and original.is_file():
                if _read(path) != original.read_text().strip():
                    path.write_text(original.read_text())
                original.unlink()


def restore_stale(name: str, path: Path) -> str | None:
    """When every holder of `name` is dead (killed) and left its original value, restore it;
    the value restored, or None."""
    original = HOLDERS_DIR / f"{name}.original"
    with _holders(name) as pids:
        if pids or not original.is_file():
            return None
        value = original.read_text()
        with contextlib.suppress(OSError):
            path.write_text(value)
        original.unlink()
        return value.strip()


def delay_accounting() -> contextlib.AbstractContextManager[bool]:
    """kernel.task_delayacct on for the block."""
    return held("delayacct", TASK_DELAYACCT, "1")


def kdamonds(root: Path = KDAMONDS) -> list[str]:
    """The DAMON kdamonds this kernel has (their numbers), running or not."""
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if p.name.isdigit()), key=int)


@contextlib.contextmanager
def damon_off(root: Path = KDAMONDS) -> Iterator[list[str] | None]:
    """Every kdamond off for the block (see the module doc); each one held, so a concurrent run
    keeps it off until the last leaves. Yields the kdamonds the machine had running (their
    numbers; [] when none), or None when one could not be stopped."""
    if os.geteuid() != 0:  # cannot hold them; fine only when none runs
        yield None if any(_read(root / n / "state") == "on" for n in kdamonds(root)) else []
        return
    with contextlib.ExitStack() as stack:
        running: list[str] | None = []
        for n in kdamonds(root):
            state = root / n / "state"
            original = HOLDERS_DIR / f"kdamond{n}.original"
            was_on = _read(original) == "on" if original.is_file() else _read(state) == "on"
            if not stack.enter_context(held(f"kdamond{n}", state, "off")):
                running = None
                break
            if was_on:
                running.append(n)
        yield running


def restore_stale_all() -> list[str]:
    """What a dead runner left held, restored: 'kernel.task_delayacct=0', 'kdamond 0 on'."""
    done = []
    value = restore_stale("delayacct", TASK_DELAYACCT)
    if value is not None:
        done.append(f"kernel.task_delayacct={value}")
    for original in sorted(HOLDERS_DIR.glob("kdamond*.original")):
        n = original.name.removeprefix("kdamond").removesuffix(".original")
        value = restore_stale(f"kdamond{n}", KDAMONDS / n / "state")
        if value is not None:
            done.append(f"kdamond {n} {value}")
    return done


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
