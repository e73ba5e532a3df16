"""What a runner changed on this machine, written down as it changes it, and its helpers tied
to its life (ukweb.leftovers undoes what a dead runner left; see its module doc).

Every helper the testbed starts is forked with die_with_parent; every mount, cgroup, namespace
and helper process is recorded (track) in /run/ukweb/runner-<pid>.json with the runner's token
(pid and start time, so a reused pid is not taken for it), and forgotten (untrack) once undone.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ukweb import paths

RUNTIME = paths.RUNTIME
ENV = "UKWEB_RUNNER"  # "<pid>:<start ticks>" of the runner that started a process
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


# -- who is alive


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22); None when
    there is no such process or it is a zombie (a killed runner its parent has not waited for)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in "ZX" else int(fields[19])


def token(pid: int | None = None) -> str:
    """A name for a live process that a later process with the same pid cannot take."""
    pid = pid or os.getpid()
    return f"{pid}:{start_ticks(pid)}"


def alive(tok: str) -> bool:
    pid, _, ticks = tok.partition(":")
    return pid.isdigit() and str(start_ticks(int(pid))) == ticks


def pid_dead(pid: int) -> bool:
    """For names that carry only a pid: dead when no live process has it (pid reuse keeps a
    leftover until the pid is free again: the safe side)."""
    return start_ticks(pid) is None


# -- dying with the runner


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A Popen preexec_fn: the child gets `sig` when the thread that forks it exits; a child
    whose parent died before the prctl (a race) exits at once."""
    parent = os.getpid()

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)
    return preexec


def chain(*fns: Callable[[], None] | None) -> Callable[[], None]:
    """One preexec_fn running each of fns in turn."""
    def preexec() -> None:
        for fn in fns:
            if fn is not None:
                fn()
    return preexec


# -- the record of what this runner changed


def state_path(pid: int) -> Path:
    return RUNTIME / f"runner-{pid}.json"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One reaper or recorder at a time on this machine."""
    RUNTIME.mkdir(parents=True, exist_ok=True)
    with open(RUNTIME / "runners.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def live_runner_pids() -> set[int]:
    """Pids of the runners whose records say they are alive."""
    out = set()
    for path in RUNTIME.glob("runner-*.json"):
        s = read_record(path)
        if s and alive(s["runner"]):
            out.add(int(s["runner"].split(":")[0]))
    return out


def _update(change: Callable[[dict], None]) -> None:
    """Apply change to this process's record (created on first use), written atomically; the
    file goes when nothing is recorded and no testbed holds it."""
    path = state_path(os.getpid())
    with locked():
        state = read_record(path) or {"runner": token(), "cmdline": " ".join(sys.argv)[:500],
                                "holders": 0, "processes": [], "mounts": [], "cgroups": [],
                                "netns": []}
        change(state)
        if not (state["holders"] or state["processes"] or state["mounts"] or state["cgroups"]
                or state["netns"]):
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)


def hold() -> None:
    """A testbed of this process is entered: its children carry our token from now on."""
    os.environ[ENV] = token()

    def change(s: dict) -> None:
        s["holders"] += 1
    _update(change)


def release() -> None:
    """A testbed of this process is left; with the last one, children stop carrying our token
    (what this process starts afterwards is not the testbed's)."""
    left = []

    def change(s: dict) -> None:
        s["holders"] = max(0, s["holders"] - 1)
        left.append(s["holders"])
    _update(change)
    if left == [0] and os.environ.get(ENV) == token():
        del os.environ[ENV]


def track(kind: str, value: str | int, what: str = "") -> None:
    """Record a process (kind 'processes', value its pid), mount, cgroup or namespace."""
    if kind == "processes":
        entry: object = {"pid": int(value), "ticks": start_ticks(int(value)), "what": what}
    else:
        entry = str(value)

    def change(s: dict) -> None:
        if entry not in s[kind]:
            s[kind].append(entry)
    _update(change)


def untrack(kind: str, value: str | int) -> None:
    def change(s: dict) -> None:
        if kind == "processes":
            s[kind] = [e for e in s[kind] if e["pid"] != int(value)]
        else:
            s[kind] = [e for e in s[kind] if e != str(value)]
    _update(change)
