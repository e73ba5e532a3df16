"""The server's control group: memory limit (page cache included), CPU quota, CPU set.

The paper ran each server on a uniprocessor with 512 MB of memory, so the 1.7-4.8 GB file set
could not stay in the page cache (§4.2). A cgroup reproduces that on a bigger machine: the memory
controller charges page-cache pages to the cgroup of the process that faulted them in, so capping
the server's cgroup caps the cache that serves it. Both hierarchies are supported: cgroup v2 (one
unified tree) and v1 (one tree per controller, e.g. /sys/fs/cgroup/memory/...).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
# [I] The CFS period for the CPU quota. Short, so that a slow emulated CPU is slow evenly rather
# than running at full speed for a few ms and then stalling for most of 100 ms (the kernel
# default); long enough that the quota itself stays >= 1 ms, the kernel's minimum.
CFS_PERIOD_US = 10_000
MIN_QUOTA_US = 1_000
# v1 controller directory for each role; v2 uses one directory and these controller names.
V1_CONTROLLERS = {"memory": "memory", "cpu": "cpu", "cpuset": "cpuset", "io": "blkio"}
V2_CONTROLLERS = {"memory": "memory", "cpu": "cpu", "cpuset": "cpuset", "io": "io"}


class CgroupError(RuntimeError):
    """A cgroup could not be created, configured or removed."""


def version(root: Path = ROOT) -> str | None:
    """'v2' for a unified hierarchy, 'v1' when per-controller trees are mounted, else None."""
    if (root / "cgroup.controllers").is_file():
        return "v2"
    if (root / "memory" / "memory.limit_in_bytes").is_file():
        return "v1"
    return None


def available_controllers(root: Path = ROOT) -> list[str]:
    """The roles (memory, cpu, cpuset, io) this machine's cgroup tree offers."""
    ver = version(root)
    if ver == "v2":
        names = (root / "cgroup.controllers").read_text().split()
        return [role for role, name in V2_CONTROLLERS.items() if name in names]
    if ver == "v1":
        return [role for role, d in V1_CONTROLLERS.items() if (root / d / "cgroup.procs").is_file()]
    return []


def block_device(path: Path) -> str:
    """'major:minor' of the whole disk holding path (the throttle refuses partitions)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (sysfs / "partition").is_file():  # a partition: its parent directory is the disk
        return (sysfs.resolve().parent / "dev").read_text().strip()
    return f"{os.major(dev)}:{os.minor(dev)}"


@dataclass(frozen=True)
class DiskLimit:
    """Read limits on one block device, emulating the paper's 7200 RPM IDE disk: bytes/s and
    I/O operations per second (None leaves one unlimited)."""

    device: str  # "major:minor", see block_device()
    read_bps: int | None = None
    read_iops: int | None = None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


@dataclass
class Cgroup:
    """One cgroup named `name` holding the server (and only the server).

    memory_bytes caps memory including the page cache; cpu_quota_pct (of one CPU) emulates the
    slower 2004 CPU; cpus pins everything in the group to a CPU set; disk throttles reads from
    the file set's disk (the 2004 IDE disk). None leaves a knob unset.
    """

    name: str
    memory_bytes: int | None = None
    cpu_quota_pct: float | None = None
    cpus: str | None = None
    disk: DiskLimit | None = None
    root: Path = ROOT
    ver: str | None = field(default=None, init=False)
    dirs: dict[str, Path] = field(default_factory=dict, init=False)

    def create(self) -> Cgroup:
        """Make the directories and set the limits; CgroupError when the machine refuses."""
        self.ver = version(self.root)
        if self.ver is None:
            raise CgroupError(f"no cgroup hierarchy under {self.root}")
        roles = self._roles()
        missing = [r for r in roles if r not in available_controllers(self.root)]
        if missing:
            raise CgroupError(f"cgroup controller(s) not available: {', '.join(missing)}")
        if self.ver == "v2":
            self._create_v2(roles)
        else:
            self._create_v1(roles)
        log.debug("cgroup %s (%s) created: %s", self.name, self.ver, self.describe())
        return self

    def _roles(self) -> list[str]:
        roles = ["memory"]  # always: it also reports the page cache the server uses
        if self.cpu_quota_pct is not None:
            roles.append("cpu")
        if self.cpus is not None:
            roles.append("cpuset")
        if self.disk is not None:
            roles.append("io")
        return roles

    def _create_v1(self, roles: list[str]) -> None:
        for role in roles:
            d = self.root / V1_CONTROLLERS[role] / self.name
            d.mkdir(exist_ok=True)
            self.dirs[role] = d
        if self.cpus is not None:
            # cpuset.mems must be set before a task may join (v1 starts it empty).
            parent = self.root / "cpuset"
            _write(self.dirs["cpuset"] / "cpuset.mems", (parent / "cpuset.mems").read_text().strip())
            _write(self.dirs["cpuset"] / "cpuset.cpus", self.cpus)
        if self.memory_bytes is not None:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", str(self.memory_bytes))
        if self.cpu_quota_pct is not None:
            quota, period = self.quota_period_us()
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(period))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        if self.disk is not None:
            for name, value in (("read_bps", self.disk.read_bps), ("read_iops", self.disk.read_iops)):
                if value:
                    _write(self.dirs["io"] / f"blkio.throttle.{name}_device",
                           f"{self.disk.device} {value}")

    def _create_v2(self, roles: list[str]) -> None:
        names = " ".join("+" + V2_CONTROLLERS[r] for r in roles)
        _write(self.root / "cgroup.subtree_control", names)
        d = self.root / self.name
        d.mkdir(exist_ok=True)
        self.dirs = {role: d for role in roles}
        if self.cpus is not None:
            _write(d / "cpuset.cpus", self.cpus)
        if self.memory_bytes is not None:
            _write(d / "memory.max", str(self.memory_bytes))
            if (d / "memory.swap.max").is_file():
                _write(d / "memory.swap.max", "0")
        if self.cpu_quota_pct is not None:
            quota, period = self.quota_period_us()
            _write(d / "cpu.max", f"{quota} {period}")
        if self.disk is not None:
            limits = {"rbps": self.disk.read_bps, "riops": self.disk.read_iops}
            _write(d / "io.max", " ".join([self.disk.device] +
                                          [f"{k}={v}" for k, v in limits.items() if v]))

    def set_cpu_quota(self, pct: float) -> None:
        """Change the CPU quota of a live cgroup (percent of one CPU)."""
        self.cpu_quota_pct = pct
        quota, period = self.quota_period_us()
        d = self.dirs["cpu"]
        if self.ver == "v2":
            _write(d / "cpu.max", f"{quota} {period}")
        else:
            _write(d / "cpu.cfs_period_us", str(period))
            _write(d / "cpu.cfs_quota_us", str(quota))

    def quota_period_us(self) -> tuple[int, int]:
        """(quota, period) in microseconds for cpu_quota_pct of one CPU."""
        frac = self.cpu_quota_pct / 100
        period = max(CFS_PERIOD_US, math.ceil(MIN_QUOTA_US / frac))
        return round(period * frac), period

    def describe(self) -> dict:
        return {"name": self.name, "version": self.ver, "memory_bytes": self.memory_bytes,
                "cpu_quota_pct": self.cpu_quota_pct, "cpus": self.cpus,
                "disk": asdict(self.disk) if self.disk else None,
                "dirs": {r: str(d) for r, d in self.dirs.items()}}

    def join(self, pid: int = 0, roles: tuple[str, ...] | None = None) -> None:
        """Move a process (0 = the caller) into every directory of this cgroup (or only those
        of `roles`, v1: e.g. the pre-warm reader joins the memory cap but not the CPU set).

        Used as a Popen preexec function, so the server and every process it forks start inside.
        """
        pid = pid or os.getpid()
        dirs = [d for r, d in self.dirs.items() if roles is None or r in roles]
        for d in dict.fromkeys(dirs):
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        """Processes now in the cgroup (from the memory directory, which always exists)."""
        d = self.dirs.get("memory")
        if d is None or not d.is_dir():
            return []
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]

    def memory_limit(self) -> int | None:
        """The memory limit read back from the kernel (None when unlimited)."""
        d = self.dirs["memory"]
        raw = (d / ("memory.max" if self.ver == "v2" else "memory.limit_in_bytes")).read_text().strip()
        if raw == "max" or int(raw) >= 1 << 62:
            return None
        return int(raw)

    def cpu_quota(self) -> tuple[int, int] | None:
        """(quota_us, period_us) read back, or None when no quota is set."""
        d = self.dirs.get("cpu")
        if d is None:
            return None
        if self.ver == "v2":
            quota, period = (d / "cpu.max").read_text().split()
            return None if quota == "max" else (int(quota), int(period))
        quota = int((d / "cpu.cfs_quota_us").read_text())
        return None if quota < 0 else (quota, int((d / "cpu.cfs_period_us").read_text()))

    def memory_stat(self) -> dict[str, int]:
        text = (self.dirs["memory"] / "memory.stat").read_text()
        return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line)}

    def page_cache_bytes(self) -> int:
        """Page cache charged to the cgroup: v1 memory.stat 'cache', v2 'file'."""
        stat = self.memory_stat()
        return stat.get("file", stat.get("cache", 0))

    def memory_usage_bytes(self) -> int:
        d = self.dirs["memory"]
        name = "memory.current" if self.ver == "v2" else "memory.usage_in_bytes"
        return int((d / name).read_text())

    def kill(self) -> None:
        """SIGKILL every process left in the cgroup (all of them were started by the runner)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left inside, then remove the directories; CgroupError if one stays."""
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.kill()
            time.sleep(0.05)
        for d in dict.fromkeys(self.dirs.values()):
            while d.is_dir():
                try:
                    d.rmdir()
                except OSError as exc:
                    if time.monotonic() >= deadline:
                        raise CgroupError(f"cannot remove {d}: {exc.strerror}") from exc
                    time.sleep(0.05)
        log.debug("cgroup %s removed", self.name)
        self.dirs = {}

    def __enter__(self) -> Cgroup:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def leftovers(prefix: str, root: Path = ROOT) -> list[Path]:
    """Cgroup directories whose name starts with prefix (tests check none are left behind)."""
    ver = version(root)
    bases = [root] if ver == "v2" else [root / d for d in V1_CONTROLLERS.values()]
    return [p for b in bases if b.is_dir() for p in b.glob(prefix + "*") if p.is_dir()]


def remove_stale(prefix: str, root: Path = ROOT) -> list[str]:
    """Remove cgroups named <prefix>-<pid>-... whose runner <pid> is gone (it was SIGKILLed),
    killing what is still inside; returns their names."""
    ver = version(root)
    bases = {"v2": {"memory": root}, "v1": {r: root / c for r, c in V1_CONTROLLERS.items()}}
    names = dict.fromkeys(d.name for d in leftovers(prefix + "-", root))
    stale = []
    for name in names:
        pid = name[len(prefix) + 1:].split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        cg = Cgroup(name, root=root)
        cg.ver = ver
        cg.dirs = {r: b / name for r, b in bases.get(ver, {}).items() if (b / name).is_dir()}
        try:
            cg.remove()
            stale.append(name)
        except CgroupError as exc:
            log.warning("stale cgroup: %s", exc)
    return stale
