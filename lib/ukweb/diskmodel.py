"""The paper's disk, emulated: the file set served through a FUSE daemon that models latency.

The paper's servers read a file set 3-9 times their memory from one 7200 RPM IDE disk: ~12 ms of
positioning per random read plus transfer at ~40 MB/s, one request at a time. A cgroup I/O
throttle is only a rate limit (a read under the limit completes in ~0.1 ms), so the file set is
mounted through `build/diskmodel` (emul/diskmodel.c) instead: every read that misses the page
cache costs the modelled service time, a read continuing the previous one paying transfer
only, queued reads served in the order of Linux 2.4's elevator (sorted, adjacent reads merged);
cache hits never reach the daemon. The page cache of the mount is charged to the memory cgroup
of the process that reads (the server), as a disk's page cache would be. The daemon keeps its
model at load (SCHED_FIFO timing) and reports per read how late its replies were and how far
its busy time overran the model (`late_s`, `overrun_s`); `fell_behind()` and
`overrun_pct()` judge a point by them.

    with DiskModel(fileset, workdir / "mnt", DiskParams(), cpus=[1], workdir=workdir) as disk:
        disk.model(False)  # pre-warm the cache at full speed
        ...
        disk.model(True)
        before = disk.stats(); ...; after = disk.stats()

`check()` says why no disk model can be mounted here (None when it can).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ukweb import changes, paths, startup
from ukweb.steady import overrun_pct

log = logging.getLogger(__name__)

BINARY = "diskmodel"
READY_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
# Counters that only grow (stats() minus stats() is the activity in between; see delta()).
COUNTERS = ("reads", "bytes", "seeks", "sequential", "merges", "sorted_inserts", "latency_barriers",
            "busy_s", "service_s", "queue_wait_s", "queue_depth_s",
            "overruns", "overrun_s", "late_wakeups", "late_10ms", "late_s", "direct_reads", "read_errors",
            "unmodelled_reads", "unmodelled_bytes", "model_switches", "lookups", "negative_lookups", "forgets",
            "getattrs", "opens", "readdirs")


# Failing a point by the daemon's own report (system.csv's disk_busy_s and disk_overrun_s, per
# second); the share of busy time that marks it unsteady is steady.OVERRUN_PCT.
BEHIND_S_PER_S = 0.1       # a second in which the disk lost more than this is "behind"
BEHIND_RUN_S = 5           # behind this many seconds in a row fails the point (the per-second
#                            throughput is autocorrelated for ~7 s: a run this long is a whole
#                            independent sample measured on a slower disk)
FAIL_OVERRUN_PCT = 10.0    # or this much of the window's busy time lost fails it outright,
FAIL_OVERRUN_MIN_S = 0.1   # when that is at least this much: a smoke point whose disk was busy
                           # 0.1 s lost 0.01 s and failed, though no reply could have noticed


def fell_behind(seconds: list[tuple[float, float, float]]) -> str | None:
    """Why the disk model fell behind its model for longer than a point can tolerate, or None.

    seconds: (t, busy_s, overrun_s) per second of the measured window, in order."""
    run = longest = 0
    at = None
    for t, _, over in seconds:
        run = run + 1 if over > BEHIND_S_PER_S else 0
        if run > longest:
            longest, at = run, t
    busy = sum(b for _, b, _ in seconds)
    over = sum(o for _, _, o in seconds)
    pct = overrun_pct(busy, over)
    if longest >= BEHIND_RUN_S:
        return (f"the disk model lost more than {BEHIND_S_PER_S:g} s of every second for "
                f"{longest} s in a row (ending at t={at:.0f} s; {over:.2f} s of {busy:.1f} s "
                f"busy in the window): its daemon could not keep its timing")
    if pct > FAIL_OVERRUN_PCT and over >= FAIL_OVERRUN_MIN_S:
        return (f"the disk model overran its model by {pct:.1f} % of its busy time "
                f"({over:.2f} s of {busy:.1f} s; > {FAIL_OVERRUN_PCT:g} %)")
    return None


class DiskModelError(RuntimeError):
    """The disk model cannot be mounted, or its daemon failed; one line with cause and fix."""


@dataclass
class DiskParams:
    """The modelled disk (defaults: the paper's 7200 RPM IDE disk).

    seek_ms: positioning per read that does not continue the previous one (seek + half a
    rotation); transfer_mbps: media rate, 1 MB = 10^6 bytes; max_background: outstanding
    readahead requests the kernel lets queue at the daemon (2.4's request list for reads at
    >= 512 MB: 512; past it a reader waits, as for a 2.4 request); congestion_threshold: the
    background requests past which the kernel skips asynchronous readahead (as high as libfuse
    allows, max_background: 2.4 did not drop readahead at depth); readahead_kb: lower the
    kernel's readahead window (0 = its default, 128 KB); cache_timeout_s: how long the kernel
    caches lookups and attributes; rt_priority: SCHED_FIFO priority of the daemon's timing and
    loop threads (0: none), so that a busy client CPU does not delay its replies (late replies
    are counted); nice: the daemon's other threads; elevator: serve the queue in the order of
    Linux 2.4's elevator_linus (sorted by position, adjacent reads merged), else first come,
    first served.
    """

    seek_ms: float = 12.0
    transfer_mbps: float = 40.0
    max_background: int = 512
    congestion_threshold: int = 512
    readahead_kb: int = 0
    cache_timeout_s: float = 86400.0
    rt_priority: int = 60
    nice: int = -10
    elevator: bool = True

    def validate(self) -> None:
        checks = [("seek_ms", 0 <= self.seek_ms <= 1000, "0..1000"),
                  ("transfer_mbps", 0.01 <= self.transfer_mbps <= 100000, "0.01..100000"),
                  ("max_background", 1 <= self.max_background <= 65535, "1..65535"),
                  ("congestion_threshold", 1 <= self.congestion_threshold <= 65535, "1..65535"),
                  ("rt_priority", 0 <= self.rt_priority <= 99, "0..99"),
                  ("readahead_kb", 0 <= self.readahead_kb <= 65536, "0..65536"),
                  ("cache_timeout_s", 0 <= self.cache_timeout_s <= 1e9, "0..1e9"),
                  ("nice", -20 <= self.nice <= 19, "-20..19")]
        for name, ok, rng in checks:
            if not ok:
                raise DiskModelError(f"disk model parameter {name}={getattr(self, name)!r} is "
                                     f"out of range; use {rng}")

    def service_s(self, nbytes: int, sequential: bool = False) -> float:
        """Modelled service time of one read of nbytes (positioning unless sequential)."""
        return (0.0 if sequential else self.seek_ms / 1e3) + nbytes / (self.transfer_mbps * 1e6)

    def args(self) -> list[str]:
        out = ["--seek-ms", f"{self.seek_ms:g}", "--mbps", f"{self.transfer_mbps:g}",
               "--max-background", str(self.max_background),
               "--congestion-threshold", str(self.congestion_threshold),
               "--cache-timeout-s", f"{self.cache_timeout_s:g}",
               "--rt-priority", str(self.rt_priority),
               "--elevator", "linus" if self.elevator else "fifo"]
        if self.readahead_kb:
            out += ["--readahead-kb", str(self.readahead_kb)]
        return out


def binary_path() -> Path:
    """Where build/diskmodel is expected (UKWEB_BIN overrides the directory)."""
    return paths.bin_dir() / BINARY


def check() -> str | None:
    """Why a disk model cannot be mounted on this machine (cause and fix), or None."""
    if not Path("/dev/fuse").exists():
        return ("no /dev/fuse: load the fuse module (modprobe fuse) or give the container the "
                "device (docker run --device /dev/fuse --cap-add SYS_ADMIN)")
    if os.geteuid() != 0:
        return "the disk model must be mounted as root; run as root (sudo)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return (f"cannot open /dev/fuse ({exc.strerror}): give the container the device "
                "(docker run --device /dev/fuse --cap-add SYS_ADMIN)")
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (needed to clean up a dead mount); apt-get install fuse3"
    if not binary_path().is_file():
        return f"{binary_path()} is not built; run `make build` in {paths.REPO}"
    return None


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (\\040 for a space) undone."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_info(path: Path) -> tuple[str, str] | None:
    """(file system type, source) of the mount exactly at path, e.g. ('fuse.diskmodel',
    'diskmodel-1234': the daemon's pid); None when nothing is mounted there."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and _unescape(fields[4]) == target:
                tail = right.split()
                found = (tail[0], _unescape(tail[1]))  # the last one there is the visible one
    return found


def mount_type(path: Path) -> str | None:
    """The file system type mounted exactly at path (e.g. 'fuse.diskmodel'), or None."""
    info = mount_info(path)
    return info[0] if info else None


def _mount_dead(path: Path) -> bool:
    """True when the FUSE mount at path has no daemon (statfs always reaches the daemon)."""
    try:
        os.statvfs(path)
        return False
    except OSError:
        return True


def unmount(path: Path, source: str | None = None) -> None:
    """Detach the mount at path (only while its source is `source`, when given); lazily, so
    files still open keep it until closed (they fail with ENOTCONN once the daemon is gone)."""
    def there() -> bool:
        info = mount_info(path)
        return info is not None and (source is None or info[1] == source)

    for cmd in (["fusermount3", "-u", "-z", str(path)], ["umount", "-l", str(path)]):
        if not there():
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    if there():
        raise DiskModelError(f"cannot unmount {path}; unmount it by hand: umount -l {path}")


def warm_backing(source: Path, chunk: int = 1 << 20) -> int:
    """Read every file of source directly (not through the mount) into the host page cache;
    the bytes read. The daemon's backing reads then cost microseconds, so a miss at the mount
    costs the model, not the host disk (a backing read slower than the model is an overrun).
    Call it after dropping the machine's caches and before the measured points."""
    total = 0
    buf = bytearray(chunk)
    for d, _, names in os.walk(source):
        for name in names:
            with contextlib.suppress(OSError), open(os.path.join(d, name), "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
    return total


def delta(before: dict, after: dict) -> dict:
    """The growing counters of after minus before (activity between two stats() samples)."""
    return {k: after[k] - before[k] for k in COUNTERS if k in after and k in before}


class DiskModel:
    """The file set `source` mounted at `mountpoint` through the disk model; a context manager.

    The daemon runs pinned to `cpus` (keep them off the server's CPU) in a new session; its
    stderr and counters go under `workdir` (diskmodel.stderr, diskmodel.stats.json).
    """

    def __init__(self, source: Path, mountpoint: Path, params: DiskParams | None = None,
                 cpus: list[int] | None = None, workdir: Path | None = None, *,
                 model_on: bool = True, timeout: float = READY_TIMEOUT_S) -> None:
        self.source = Path(source)
        self.mountpoint = Path(mountpoint)
        self.params = params or DiskParams()
        self.cpus = list(cpus) if cpus else sorted(os.sched_getaffinity(0))
        self.workdir = Path(workdir) if workdir else self.mountpoint.parent
        self.start_on = model_on
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.final_stats: dict | None = None

    # -- paths

    @property
    def stats_path(self) -> Path:
        return self.workdir / "diskmodel.stats.json"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "diskmodel.stderr"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [str(binary_path()), "--source", str(self.source), "--mountpoint",
                str(self.mountpoint), "--stats", str(self.stats_path),
                "--model", "on" if self.start_on else "off", *self.params.args(),
                "--parent-pid", str(os.getpid())]  # the daemon dies with this process

    # -- life cycle

    def start(self) -> DiskModel:
        """Mount and wait for the daemon's "ready"; DiskModelError (nothing mounted) if not."""
        why = check()
        if why:
            raise DiskModelError(f"disk model: {why}")
        self.params.validate()
        if not self.source.is_dir():
            raise DiskModelError(f"disk model: source {self.source} is not a directory; generate "
                                 "the file set first (ukweb fileset) or pass the right path")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        kind = mount_type(self.mountpoint)
        if kind == "fuse.diskmodel" and _mount_dead(self.mountpoint):
            log.warning("removing a stale disk-model mount at %s (its daemon died)",
                        self.mountpoint)
            unmount(self.mountpoint)
        elif kind is not None:
            raise DiskModelError(f"disk model: mount point {self.mountpoint} is busy ({kind} is "
                                 "mounted there); unmount it or choose another")
        with contextlib.suppress(FileNotFoundError):
            self.stats_path.unlink()
        cmd = self.command()
        cpus, nice = self.cpus, self.params.nice
        die = changes.die_with_parent(signal.SIGTERM)  # it unmounts on SIGTERM

        def pin() -> None:  # in the child, before exec: every daemon thread inherits both
            die()
            os.sched_setaffinity(0, cpus)
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        log.info("mounting the disk model on CPUs %s: %s", cpus, " ".join(cmd))
        try:
            with open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=err, start_new_session=True,
                                             preexec_fn=pin)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DiskModelError(f"disk model: cannot start {cmd[0]} pinned to CPUs {cpus}: {exc}; "
                                 "check the CPU list against this machine's CPUs") from exc
        changes.track("processes", self.proc.pid, "disk model daemon")
        changes.track("mounts", str(self.mountpoint))  # a killed runner's mount is reaped
        try:
            self._wait_ready(time.monotonic() + self.timeout)
        except DiskModelError:
            self.stop()
            raise
        return self

    def _stderr_line(self) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return lines[-1] if lines else ""

    def _failure(self, what: str) -> DiskModelError:
        code = self.proc.poll() if self.proc else None
        detail = f" (exit {code})" if code is not None else ""
        return DiskModelError(f"disk model {what}{detail}: {self._stderr_line() or 'no message'}")

    def _wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        if not startup.wait_for_line(self.proc, deadline, "ready"):
            if self.proc.poll() is not None:
                self.proc.wait()
                raise self._failure("did not mount")
            raise self._failure(f"did not report ready in {self.timeout:.0f} s")
        while time.monotonic() < deadline:  # the stats file follows "ready" within an interval
            if self._ours() and self.stats_path.exists():
                return
            time.sleep(0.01)
        raise self._failure("reported ready but is not mounted")

    def stop(self, timeout: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (the daemon unmounts), SIGKILL if it hangs, then make sure nothing stays
        mounted; the daemon's exit code (None if it was never started)."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("the disk model did not stop in %.0f s; killing it", timeout)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            with contextlib.suppress(DiskModelError):
                self.final_stats = self.stats()
        if self._ours():
            log.warning("the disk model left %s mounted; detaching it", self.mountpoint)
            unmount(self.mountpoint, self._fsname())
        if self.proc is not None:
            changes.untrack("processes", self.proc.pid)
            changes.untrack("mounts", str(self.mountpoint))
        return code

    def _fsname(self) -> str | None:
        """The source our daemon gives its mount (never another's, even at the same place)."""
        return f"diskmodel-{self.proc.pid}" if self.proc else None

    def _ours(self) -> bool:
        """Our mount is (still) the one at the mount point."""
        info = mount_info(self.mountpoint)
        return info is not None and info == ("fuse.diskmodel", self._fsname())

    def kill(self) -> None:
        """kill -9 the daemon (crash tests); the mount stays until stop() or __exit__."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> DiskModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- while it runs

    def alive(self) -> bool:
        """The daemon runs and its mount is there."""
        return self.proc is not None and self.proc.poll() is None and self._ours()

    def died(self) -> str | None:
        """Why the disk model stopped serving (for a failed point), or None while it serves."""
        if self.proc is None:
            return "the disk model was not started"
        code = self.proc.poll()
        if code is None:
            if not self._ours():
                return f"the disk model's mount {self.mountpoint} vanished (unmounted from outside)"
            return None
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        line = self._stderr_line()
        return f"the disk model daemon {how}" + (f": {line}" if line else "")

    def stats(self, fresh: bool = False, timeout: float = 2.0) -> dict:
        """The daemon's counters (see docs/interfaces.md), rewritten every 100 ms; fresh=True
        waits for a snapshot taken after this call (so it counts every read already answered)."""
        if fresh:  # "mono" is the daemon's CLOCK_MONOTONIC at the snapshot, like ours
            asked = time.monotonic()
            deadline = asked + timeout
            while time.monotonic() < deadline:
                snap = self.stats()
                if snap["mono"] > asked or snap.get("final"):
                    return snap
                time.sleep(0.01)
            raise DiskModelError(f"disk model: no fresh stats in {timeout:.0f} s: "
                                 f"{self.died() or 'the daemon is stuck'}")
        for _ in range(20):
            try:
                return json.loads(self.stats_path.read_text())
            except FileNotFoundError as exc:
                raise DiskModelError(f"disk model: no stats file {self.stats_path}: "
                                     "is the daemon running?") from exc
            except json.JSONDecodeError:  # never with rename(), but a file system may surprise
                time.sleep(0.01)
        raise DiskModelError(f"disk model: unreadable stats file {self.stats_path}")

    def model(self, on: bool, timeout: float = 2.0) -> None:
        """Switch the latency model on or off (off: misses are served at once, for pre-warming
        the cache), and wait until the daemon reports the switch."""
        if not self.alive():
            why = self.died() or "not mounted"
            raise DiskModelError(f"disk model: cannot switch the model: {why}")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2 if on else signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats().get("model_on") is on:
                return
            time.sleep(0.01)
        state = "on" if on else "off"
        raise DiskModelError(f"disk model: the daemon did not switch the model {state} "
                             f"within {timeout:.0f} s")

    def describe(self) -> dict:
        """For the run manifest: what was mounted, how, and what the kernel negotiated."""
        conn = None
        with contextlib.suppress(DiskModelError):
            conn = (self.final_stats or self.stats()).get("conn")
        return {"method": "fuse", "binary": str(binary_path()), "command": self.command(),
                "source": str(self.source), "mountpoint": str(self.mountpoint),
                "params": asdict(self.params), "cpus": self.cpus, "pid": self.pid,
                "stats_path": str(self.stats_path), "conn": conn,
                "model": ("one request at a time, on the model's own clock; service = seek_ms "
                          "unless the read continues the previous one (same file, offset = its "
                          "end) + bytes / transfer_mbps; queue order: "
                          + ("Linux 2.4 elevator_linus (sorted by (inode, offset), adjacent reads "
                             "merged, 2048 passovers)" if self.params.elevator else "FIFO"))}
