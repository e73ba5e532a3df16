"""What a runner changed on this machine, and undoing it when the runner was killed.

A runner (`ukweb run`, a calibration, a test) changes the machine: the CPU thief at real-time
priority, the disk model's FUSE mount under /run/ukweb/disk-<pid>/, cgroups, network namespaces,
the shield's CPU affinities, kernel.task_delayacct, DAMON's kdamonds. Killed with SIGKILL it cannot undo them, and
the next run would measure a different machine (issue 17, "Bad input": an orphaned thief kept
CPU 0 at its share while a resume ran everything on CPU 1 and exited 0).

Three layers, so nothing outlives a dead runner by more than the start of the next run:

- its helpers die with it: every child the testbed starts gets a parent-death signal
  (`die_with_parent`, prctl(2) PR_SET_PDEATHSIG). [I] The kernel sends it when the *thread*
  that forked exits, so children are forked only from threads that live as long as they do
  (the main thread, or ukweb.netns's per-namespace thread);
- a watcher (`python -m ukweb.leftovers watch`, its own session, waiting on a pidfd of the
  runner) undoes at once what no signal can: mounts, cgroups, namespaces,
  the shield, the sysctl;
- what the runner changed is written down in /run/ukweb/runner-<pid>.json with its pid and start
  time, and every children's environment carries the runner's token (UKWEB_RUNNER), so the next
  run's `reap()` finds and removes the leftovers of every runner that is dead (and only of
  those: other live runs on this machine are never touched) before it measures, and refuses
  (LeftoversError, one line) when something cannot be removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ukweb import cgroups, diskmodel, paths, shield
from ukweb.changes import (
    ENV,
    RUNTIME,
    alive,
    die_with_parent,  # noqa: F401  (re-exported: children started by a runner use it)
    locked,
    pid_dead,
    read_record,
    start_ticks,
    token,
)
from ukweb.knobs import restore_stale_all

log = logging.getLogger(__name__)

# Names of what a runner creates, with its pid: cgroups ukweb-<pid>-<label> (ukweb-test-<pid>-...),
# namespaces ukweb-net-<pid>-srv/cli, the disk model's directory disk-<pid>.
OWNED = re.compile(r"^ukweb(?:-[a-z]+)*-(\d+)-")
NETNS = re.compile(r"^ukweb(?:-[a-z]+)*-(\d+)-(?:srv|cli)$")
DISK_DIR = re.compile(r"^disk-(\d+)$")
KILL_WAIT_S = 5.0



class LeftoversError(RuntimeError):
    """A dead runner left something this run cannot remove: one line, what and how to clean it."""


# -- the watcher


def start_watcher() -> subprocess.Popen | None:
    """The process that reaps this runner's leftovers the moment it dies (see the module doc).
    Call from a thread that lives as long as the runner (the main thread)."""
    cmd = [sys.executable, "-m", "ukweb.leftovers", "watch", token()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(paths.REPO / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        RUNTIME.mkdir(parents=True, exist_ok=True)
        with open(RUNTIME / "watcher.log", "a") as err:  # what it reaped, for the curious
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, start_new_session=True, env=env, text=True)
    except OSError as exc:
        log.warning("no leftovers watcher (%s): a killed runner is cleaned up by the next run", exc)
        return None
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "watching":  # it holds a pidfd of this runner
        proc.kill()
        proc.wait()
        log.warning("the leftovers watcher did not start: a killed runner is cleaned up by the "
                    "next run")
        return None
    return proc


def stop_watcher(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _watch(runner: str) -> int:
    """Wait for the runner's death on a pidfd (readable once it has exited), then reap.

    [I] Not a parent-death signal: the watcher imports numpy (through the disk model), whose
    thread pool would take a process-directed SIGTERM with its default action before the main
    thread's sigwait saw it (the watcher then died without reaping, issue 17's SIGKILL test)."""
    pid = int(runner.partition(":")[0])
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    print("watching", flush=True)
    if fd is not None and alive(runner):  # else it died before we held its pidfd
        select.select([fd], [], [])
    deadline = time.monotonic() + 10
    while alive(runner) and time.monotonic() < deadline:  # a zombie is already not alive
        time.sleep(0.05)
    if alive(runner):
        return 0
    try:
        reap()  # it logs what it removed
    except LeftoversError as exc:
        log.error("%s", exc)
        return 1
    return 0


# -- reaping


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
        out.append(pid)
    return out


def _environ_token(pid: int) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for var in env.split(b"\0"):
        if var.startswith(ENV.encode() + b"="):
            return var[len(ENV) + 1:].decode(errors="replace")
    return None


def _kill(pids: dict[int, str], problems: list[str]) -> list[str]:
    """SIGKILL each pid (pid -> what) and wait until it is gone."""
    done = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    for pid, what in pids.items():
        while start_ticks(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if start_ticks(pid) is None:
            done.append(f"killed {what} (pid {pid})")
        else:
            problems.append(f"{what} pid {pid} does not die (kill -9 {pid})")
    return done


def _orphans(dead: set[str], live_runners: set[int]) -> dict[int, str]:
    """Processes started by a dead runner (its token in their environment), not under a live
    runner (a live run started from a process that a dead runner had started is not ours)."""
    me = {os.getpid(), *_ancestors(os.getpid())}
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        pid = int(entry.name)
        tok = _environ_token(pid)
        if tok is None or not re.fullmatch(r"\d+:\d+", tok) or (tok not in dead and alive(tok)):
            continue
        if pid in live_runners or live_runners & set(_ancestors(pid)):
            continue
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        out[pid] = f"{name} of dead runner {tok.partition(':')[0]}"
    return out


# The removers below return True (removed), None (nothing there) or False (a problem, noted).


def _unmount(path: Path, problems: list[str]) -> bool | None:
    if diskmodel.mount_info(path) is None:
        return None
    try:
        diskmodel.unmount(path)
        return True
    except diskmodel.DiskModelError:
        problems.append(f"mount {path} (umount -l {path})")
        return False


def _remove_cgroup(name: str, problems: list[str]) -> bool | None:
    ver = cgroups.version()
    bases = ({"memory": cgroups.ROOT} if ver == "v2" else
             {r: cgroups.ROOT / c for r, c in cgroups.V1_CONTROLLERS.items()})
    cg = cgroups.Cgroup(name)
    cg.ver = ver
    cg.dirs = {r: b / name for r, b in bases.items() if (b / name).is_dir()}
    if not cg.dirs:
        return None
    try:
        cg.remove()
        return True
    except cgroups.CgroupError as exc:
        problems.append(f"cgroup {name} ({exc})")
        return False


def _del_netns(name: str, problems: list[str]) -> bool | None:
    if not Path(f"/run/netns/{name}").exists():
        return None
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)
    if Path(f"/run/netns/{name}").exists():
        problems.append(f"network namespace {name} (ip netns del {name})")
        return False
    return True


def _orphan_thieves() -> list[str]:
    """CPU thieves holding a CPU's lock that no live process started (ppid 1: their runner
    died before runners were recorded): named, for the refusal; never killed unrecorded."""
    out = []
    for lock in RUNTIME.glob("cpu*.lock"):
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "cputhief" and start_ticks(pid) is not None and _ancestors(pid)[:1] == [1]:
            out.append(f"cputhief pid {pid} orphaned on {lock.stem} (kill {pid})")
    return out


def reap() -> list[str]:
    """Remove what dead runners left (only theirs); what was done, one line each.
    LeftoversError naming what is left and how to clean it when something cannot be removed."""
    done: list[str] = []
    problems: list[str] = []
    with locked():
        records = {p: read_record(p) for p in RUNTIME.glob("runner-*.json")}
        live_runners = {int(s["runner"].split(":")[0]) for s in records.values()
                        if s and alive(s["runner"])}
        dead = {p: s for p, s in records.items() if s is not None and not alive(s["runner"])}
        dead_tokens = {s["runner"] for s in dead.values()}
        # 1. Processes: the recorded ones (thief, disk daemon), then any child of a dead runner.
        victims = {}
        for s in dead.values():
            for e in s["processes"]:
                if e["ticks"] is not None and start_ticks(e["pid"]) == e["ticks"]:
                    victims[e["pid"]] = f"{e['what'] or 'process'} of dead runner {s['runner'].split(':')[0]}"
        victims.update({p: w for p, w in _orphans(dead_tokens, live_runners).items()
                        if p not in victims})
        done += _kill(victims, problems)
        # 2. Mounts, cgroups, namespaces: recorded, then by name (runners before records).
        removers = {"mounts": lambda m: _unmount(Path(m), problems),
                    "cgroups": lambda c: _remove_cgroup(c, problems),
                    "netns": lambda n: _del_netns(n, problems)}
        for path, s in dead.items():
            results = {(k, v): removers[k](v) for k in removers for v in s[k]}
            done += [f"removed {k} {v} of dead runner {s['runner'].split(':')[0]}"
                     for (k, v), r in results.items() if r]
            if False not in results.values():
                path.unlink(missing_ok=True)
        for d in RUNTIME.glob("disk-*"):
            m = DISK_DIR.match(d.name)
            if m and pid_dead(int(m.group(1))):
                daemon = _disk_daemon(d / "mnt")
                if daemon:
                    done += _kill(daemon, problems)
                if _unmount(d / "mnt", problems) is not False:
                    shutil.rmtree(d, ignore_errors=True)
                    done.append(f"removed the disk model's {d}")
        if cgroups.version() is not None:
            for p in cgroups.leftovers("ukweb-"):
                m = OWNED.match(p.name)
                if m and pid_dead(int(m.group(1))) and _remove_cgroup(p.name, problems):
                    done.append(f"removed cgroup {p.name}")
        if Path("/run/netns").is_dir():
            for n in sorted(os.listdir("/run/netns")):
                m = NETNS.match(n)
                if m and pid_dead(int(m.group(1))) and _del_netns(n, problems):
                    done.append(f"removed network namespace {n}")
        # 3. Affinities and the machine settings a run holds (ukweb.knobs).
        done += [f"gave back the CPU affinities a dead runner's shield (pid {p}) took"
                 for p in shield.undo_stale()]
        done += [f"restored {what} (a dead runner's original)" for what in restore_stale_all()]
        problems += _orphan_thieves()
    for line in done:
        log.warning("leftovers: %s", line)
    if problems:
        raise LeftoversError("a killed ukweb run left what cannot be removed: " + "; ".join(problems)
                             + "; remove it as shown, then rerun")
    return done


def _disk_daemon(mnt: Path) -> dict[int, str]:
    """The disk model daemon serving mnt (its mount's source is diskmodel-<pid>), if alive."""
    info = diskmodel.mount_info(mnt)
    if not info or not info[1].startswith("diskmodel-"):
        return {}
    pid = info[1].removeprefix("diskmodel-")
    if not pid.isdigit():
        return {}
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return {}
    return {int(pid): "disk model daemon"} if comm == "diskmodel" else {}


def what_is_left() -> list[str]:
    """Everything a dead runner could have left, as it is now (tests assert it is empty)."""
    out = []
    for p in RUNTIME.glob("runner-*.json"):
        s = read_record(p)
        if s and not alive(s["runner"]):
            out.append(f"record {p}")
    for d in RUNTIME.glob("disk-*"):
        m = DISK_DIR.match(d.name)
        if m and pid_dead(int(m.group(1))):
            out.append(f"disk model directory {d}")
    if cgroups.version() is not None:
        out += [f"cgroup {p.name}" for p in cgroups.leftovers("ukweb-")
                if (m := OWNED.match(p.name)) and pid_dead(int(m.group(1)))]
    if Path("/run/netns").is_dir():
        out += [f"netns {n}" for n in os.listdir("/run/netns")
                if (m := NETNS.match(n)) and pid_dead(int(m.group(1)))]
    for s in RUNTIME.glob("shield-*.json"):
        pid = s.stem.removeprefix("shield-")
        if pid.isdigit() and pid_dead(int(pid)):
            out.append(f"shield record {s}")
    return out


def cli(argv: list[str]) -> int:
    if argv[:1] == ["watch"] and len(argv) == 2:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s watcher of " + argv[1] + ": %(message)s")
        return _watch(argv[1])
    if argv == ["reap"]:
        try:
            for line in reap():
                print(line)
        except LeftoversError as exc:
            print(f"ukweb leftovers: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m ukweb.leftovers reap | watch PID:TICKS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
