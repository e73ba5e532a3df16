"""The emulated 2004 testbed (§4.2): a pinned, slow uniprocessor server with capped memory.

The paper's server machine had one 400 MHz CPU and 512 MB, so its 1.7-4.8 GB file set was
disk-bound; the clients ran on other machines. Here the server is pinned to a CPU that the CPU
thief slows to the calibrated share (ukweb.cpuemul; a CFS quota as the weaker option), placed
in a cgroup whose memory limit includes the page cache, the load generator is pinned to the
other CPUs, and task delay accounting is turned on so the time the server spends blocked on
disk can be measured. The cgroup and the page cache are kept for a whole series (ukweb.point:
drop once, pre-warm, ascending points). Whatever this machine does not allow is recorded as a
deviation (and logged as a warning), never skipped silently. `ukweb check` prints what the
machine can and cannot do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ukweb import cgroups, changes, cpuemul, leftovers, machine, shield
from ukweb.cgroups import Cgroup, CgroupError, DiskLimit
from ukweb.cpuemul import CpuThief
from ukweb.cpulist import format_cpus, parse_cpus
from ukweb.knobs import TASK_DELAYACCT, damon_off, delay_accounting

log = logging.getLogger(__name__)

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# [I] The machine is quiet when its CPUs are at most this busy (% of all CPUs) for a moment
# before the thief starts. Not the load average: after a calibration (16 userver processes, the
# thief) the 1-minute average stays near 10 for a minute on an otherwise idle machine.
QUIET_BUSY_PCT = 5.0
QUIET_SAMPLE_S = 0.5


def pin(cpus: list[int]) -> None:
    """Pin the calling process (and what it will exec) to cpus."""
    os.sched_setaffinity(0, cpus)


def drop_caches() -> None:
    """sync, then drop the page cache, dentries and inodes (dirty pages are not droppable)."""
    os.sync()
    DROP_CACHES.write_text("3\n")


@dataclass
class Capabilities:
    """What this machine allows the testbed to do."""

    root: bool
    cpus: list[int]
    cgroup_version: str | None
    cgroup_controllers: list[str]
    cgroup_writable: bool
    drop_caches: bool
    delay_accounting: bool
    netns: bool
    io_uring_unavailable: str | None

    def problems(self) -> dict[str, str]:
        """step -> why it cannot be done here."""
        out = {}
        if self.cgroup_version is None:
            out["cgroup"] = "no cgroup hierarchy mounted at /sys/fs/cgroup"
        elif not self.cgroup_writable:
            out["cgroup"] = "cgroup tree not writable (need root or a delegated cgroup)"
        elif "memory" not in self.cgroup_controllers:
            out["cgroup"] = "memory controller not available"
        if not self.drop_caches:
            out["drop_caches"] = "cannot write /proc/sys/vm/drop_caches (need root)"
        if not self.delay_accounting:
            out["delay_accounting"] = "cannot write kernel.task_delayacct (need root)"
        if not self.netns:
            out["netns"] = "network namespaces need root and the ip and tc commands"
        if len(self.cpus) < 2:
            out["pinning"] = "fewer than 2 CPUs: server and clients must share"
        if self.io_uring_unavailable:
            out["io_uring"] = self.io_uring_unavailable
        return out


def _writable(path: Path) -> bool:
    return path.exists() and os.access(path, os.W_OK)


def probe() -> Capabilities:
    root = os.geteuid() == 0
    ver = cgroups.version()
    base = cgroups.ROOT if ver == "v2" else cgroups.ROOT / "memory"
    return Capabilities(
        root=root,
        cpus=sorted(os.sched_getaffinity(0)),
        cgroup_version=ver,
        cgroup_controllers=cgroups.available_controllers(),
        cgroup_writable=ver is not None and _writable(base / "cgroup.procs") and os.access(base, os.W_OK),
        drop_caches=_writable(DROP_CACHES),
        delay_accounting=_writable(TASK_DELAYACCT),
        netns=root and bool(shutil.which("ip")) and bool(shutil.which("tc")),
        io_uring_unavailable=machine.io_uring_reason(),
    )


@dataclass
class Testbed:
    """The testbed for one run: pinning, the server's cgroup, cache drops, deviations.

    Use as a context manager around the whole sweep (the CPU thief runs throughout); call
    point_cgroup() around each series of points.
    """

    __test__ = False  # not a pytest test class, despite the name

    server_cpus: str = "0"
    client_cpus: str = "1"
    memory_mb: int | None = 512
    cpu_quota_pct: float | None = None   # cpu_method quota: a CFS quota on the server's cgroup
    thief_share: float | None = None     # cpu_method thief: the share of its CPU the server gets
    drop_caches: bool = True
    disk_read_mbps: float | None = None  # the 2004 disk: read throttle on the file set's disk
    disk_read_iops: int | None = None
    disk_path: Path | None = None        # a path on that disk (the file set)
    prefix: str = "ukweb"
    shield: bool = False                 # move every other process off the server's CPUs
    caps: Capabilities | None = None     # None: probed after a dead runner's leftovers go
    deviations: dict[str, str] = field(default_factory=dict, init=False)
    delayacct: bool = field(default=False, init=False)
    damon_stopped: list[str] | None = field(default=None, init=False)  # kdamonds it turned off
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, init=False)
    _cgroups: list[Cgroup] = field(default_factory=list, init=False)
    client_cg: Cgroup | None = field(default=None, init=False)
    network: dict | None = field(default=None, init=False)  # the netns links, when used
    disk: DiskLimit | None = field(default=None, init=False)  # set on entering
    thief: CpuThief | None = field(default=None, init=False)  # running while entered
    thief_report: dict | None = field(default=None, init=False)  # what it said when stopped
    disk_model: dict | None = field(default=None, init=False)  # the mounted disk model, described
    shielded: dict | None = field(default=None, init=False)  # what the shield moved
    reaped: list[str] = field(default_factory=list, init=False)  # a dead runner's leftovers removed
    _watcher: object | None = field(default=None, init=False)

    def deviate(self, step: str, reason: str) -> None:
        """Record, once per step, that the paper's method could not be followed here."""
        if step not in self.deviations:
            log.warning("deviation (%s): %s", step, reason)
            self.deviations[step] = reason

    def __post_init__(self) -> None:
        # First undo what a killed runner left (its thief, mounts, cgroups, namespaces, the
        # shield's affinities, the sysctl), then look at the machine: [I] a resume started from
        # a shell the dead shield had moved saw only the client CPU (issue 17).
        if os.geteuid() == 0:
            self.reaped = leftovers.reap()  # LeftoversError: refuse to measure this machine
        if self.caps is None:
            self.caps = probe()
        self.server_cpu_list = self._usable_cpus("server_cpus", self.server_cpus)
        self.client_cpu_list = self._usable_cpus("client_cpus", self.client_cpus)
        if set(self.server_cpu_list) & set(self.client_cpu_list):
            self.deviate("pinning", f"server CPUs {self.server_cpu_list} and client CPUs "
                         f"{self.client_cpu_list} overlap")

    def _usable_cpus(self, name: str, spec: str) -> list[int]:
        wanted = parse_cpus(spec)
        usable = [c for c in wanted if c in self.caps.cpus]
        if usable != wanted:
            held = shield.live_shields()
            why = (f" (the shield of a run in progress, pid {', '.join(map(str, held))}, holds "
                   f"the others)" if held else "")
            self.deviate(f"{name}", f"{name}={spec} but this machine allows CPUs "
                         f"{format_cpus(self.caps.cpus)}{why}; using {usable or 'all'}")
        return usable or list(self.caps.cpus)

    def __enter__(self) -> Testbed:
        try:
            return self._enter()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _enter(self) -> Testbed:
        if os.geteuid() == 0:
            self.reaped += leftovers.reap()  # again: another runner may have died since
            self._watcher = leftovers.start_watcher()
            self._stack.callback(leftovers.stop_watcher, self._watcher)  # last, on the way out
            changes.hold()
            self._stack.callback(changes.release)
        if "cgroup" not in self.caps.problems():
            for name in cgroups.remove_stale(self.prefix):
                log.warning("removed cgroup %s left by a runner that was killed", name)
        self.delayacct = self._stack.enter_context(delay_accounting())
        if not self.delayacct:
            self.deviate("delay_accounting", self.caps.problems().get(
                "delay_accounting", "kernel.task_delayacct could not be turned on"))
        self.damon_stopped = self._stack.enter_context(damon_off())
        if self.damon_stopped is None:
            self.deviate("damon", "a DAMON kdamond runs and could not be turned off (needs root): "
                         "it reclaims page cache it sees as cold, the disk model's backing files "
                         "and the server's own cache included (ukweb.knobs)")
        for step in ("cgroup", "drop_caches"):
            problem = self.caps.problems().get(step)
            wanted = step == "cgroup" or self.drop_caches
            if problem and wanted:
                self.deviate(step, problem)
        if not self.drop_caches:
            self.deviate("drop_caches", "drop_caches: false in the parameters")
        self.disk = self._disk_limit()
        busy = psutil.cpu_percent(interval=QUIET_SAMPLE_S)
        if busy > QUIET_BUSY_PCT:
            self.deviate("quiet_machine", f"the CPUs were {busy:.0f} % busy in the {QUIET_SAMPLE_S:g} s "
                         "before the sweep: other processes share the machine (the paper stopped "
                         "all non-essential services)")
        # [I] The thief before the shield: its CPU lock is what keeps a second sweep off this
        # machine, and a second sweep that shielded first moved every process (a resume being
        # started among them) off the CPU for the moment before its thief was refused.
        self._start_thief()
        if self.shield:
            self._shield()
        # The load generator gets a cgroup too (no limits): when the sweep stops, removing it
        # kills whatever loadgen left behind, so no client process survives the runner.
        self.client_cg = self._new_cgroup("clients", None, None, self.client_cpu_list)
        return self

    def __exit__(self, *exc: object) -> None:
        for cg in list(self._cgroups):
            self._remove(cg)
        self._stack.close()  # the watcher goes last: it would finish this if we died in it
        self._watcher = None

    def _shield(self) -> None:
        """Keep the rest of the machine off the server's CPUs while the testbed runs
        (ukweb.shield); undone on exit."""
        self.shielded = self._stack.enter_context(shield.shielded(self.server_cpu_list,
                                                                  self.caps.cpus))

    def _start_thief(self) -> None:
        """The CPU thief on the server's first CPU (one CPU: the paper's uniprocessor)."""
        if self.thief_share is None:
            return
        if len(self.server_cpu_list) != 1:
            self.deviate("cpu_thief", f"the CPU thief emulates a uniprocessor; server CPUs "
                         f"{self.server_cpu_list}: slowing only CPU {self.server_cpu_list[0]}")
        thief = CpuThief(self.server_cpu_list[0], self.thief_share)
        thief.start()
        self.thief = thief
        self._stack.callback(self._stop_thief)

    def _stop_thief(self) -> None:
        if self.thief is not None:
            self.thief_report = self.thief.stop()
            self.thief = None

    def set_share(self, share: float) -> None:
        """Change the emulated CPU's speed (calibration): restart the thief at the new share, or
        rewrite the quota of the live cgroups."""
        if self.thief_share is not None:
            self._stop_thief()
            self.thief_share = share
            thief = CpuThief(self.server_cpu_list[0], share)
            thief.start()
            self.thief = thief
        elif self.cpu_quota_pct is not None:
            self.cpu_quota_pct = share * 100
            for cg in self._cgroups:
                if cg.cpu_quota_pct is not None:
                    cg.set_cpu_quota(self.cpu_quota_pct)

    def thief_alive(self) -> bool:
        return self.thief_share is None or (self.thief is not None and self.thief.alive())
    def _disk_limit(self) -> DiskLimit | None:
        """The read throttle for the server's cgroup, or None (a deviation when one was asked
        for and the machine cannot do it)."""
        if not (self.disk_read_mbps or self.disk_read_iops):
            return None  # the disk model (ukweb.diskmodel) is the disk; a throttle is optional
        if "io" not in cgroups.available_controllers():
            self.deviate("disk", "the cgroup io (blkio) controller is not available: disk unthrottled")
            return None
        bps = int(self.disk_read_mbps * 1e6) if self.disk_read_mbps else None
        return DiskLimit(cgroups.block_device(self.disk_path or Path.cwd()), bps, self.disk_read_iops)

    def describe(self) -> dict:
        return {"server_cpus": self.server_cpu_list, "client_cpus": self.client_cpu_list,
                "memory_mb": self.memory_mb, "cpu_quota_pct": self.cpu_quota_pct,
                "cpu_method": ("thief" if self.thief_share is not None else
                               "quota" if self.cpu_quota_pct is not None else "none"),
                "cpu_share": (self.thief_share if self.thief_share is not None else
                              self.cpu_quota_pct / 100 if self.cpu_quota_pct else None),
                "cpu_thief_period_us": cpuemul.PERIOD_US if self.thief_share is not None else None,
                "disk": asdict(self.disk) if self.disk else None,
                "disk_model": self.disk_model, "shield": self.shielded,
                "drop_caches": self.drop_caches, "delay_accounting": self.delayacct,
                "damon_stopped": self.damon_stopped,
                "network": self.network or "loopback",
                "capabilities": asdict(self.caps)}

    def deviation_list(self) -> list[dict]:
        return [{"step": k, "reason": v} for k, v in self.deviations.items()]

    def drop_page_cache(self) -> bool:
        """sync and drop the page cache (once per series, before it is pre-warmed); False when
        the parameters or the machine do not allow it (a recorded deviation)."""
        if self.drop_caches and "drop_caches" not in self.caps.problems():
            drop_caches()
            return True
        return False

    def new_cgroup(self, label: str) -> Cgroup | None:
        """A fresh cgroup for the server of one point, or None (recorded) when not allowed."""
        memory = self.memory_mb * 1024 * 1024 if self.memory_mb else None
        return self._new_cgroup(label, memory, self.cpu_quota_pct, self.server_cpu_list,
                                self.disk)

    def _new_cgroup(self, label: str, memory: int | None, quota: float | None,
                    cpus: list[int], disk: DiskLimit | None = None) -> Cgroup | None:
        if "cgroup" in self.caps.problems():
            return None
        name = f"{self.prefix}-{os.getpid()}-{label}"
        cg = Cgroup(name, memory_bytes=memory, cpu_quota_pct=quota, cpus=format_cpus(cpus),
                    disk=disk)
        try:
            cg.create()
        except CgroupError as exc:
            self.deviate("cgroup", str(exc))
            with contextlib.suppress(CgroupError):
                cg.remove()
            return None
        self._cgroups.append(cg)
        if os.geteuid() == 0:
            changes.track("cgroups", name)
        return cg

    def _remove(self, cg: Cgroup) -> None:
        try:
            cg.remove()
        except CgroupError as exc:
            log.error("%s", exc)
        else:
            if os.geteuid() == 0:
                changes.untrack("cgroups", cg.name)
        if cg in self._cgroups:
            self._cgroups.remove(cg)

    @contextlib.contextmanager
    def point_cgroup(self, label: str) -> Iterator[Cgroup | None]:
        """The server's cgroup for one series of points, removed (processes killed) at the end."""
        cg = self.new_cgroup(label)
        try:
            yield cg
        finally:
            if cg is not None:
                self._remove(cg)

    def server_preexec(self, cg: Cgroup | None) -> Callable[[], None]:
        """Runs in the server's child before exec: die with the runner (leftovers), join the
        cgroup, pin to the server CPUs."""
        cpus = self.server_cpu_list
        die = changes.die_with_parent()

        def preexec() -> None:
            die()
            if cg is not None:
                cg.join()
            pin(cpus)
        return preexec

    def client_preexec(self) -> Callable[[], None]:
        """Runs in the load generator's child before exec: die with the runner, join the
        clients' cgroup, pin."""
        cpus, cg = self.client_cpu_list, self.client_cg
        die = changes.die_with_parent()

        def preexec() -> None:
            die()
            if cg is not None:
                cg.join()
            pin(cpus)
        return preexec


def report_lines(caps: Capabilities) -> list[str]:
    problems = caps.problems()
    rows = [
        ("root", caps.root, "running as root" if caps.root else "not root"),
        ("pinning", "pinning" not in problems, f"CPUs {format_cpus(caps.cpus)}"),
        ("cgroup", "cgroup" not in problems,
         f"{caps.cgroup_version or 'none'}; controllers: {', '.join(caps.cgroup_controllers) or 'none'}"),
        ("cpu quota", "cpu" in caps.cgroup_controllers, "cgroup cpu controller"),
        ("drop_caches", caps.drop_caches, str(DROP_CACHES)),
        ("delay_accounting", caps.delay_accounting, str(TASK_DELAYACCT)),
        ("netns", caps.netns, "ip netns + veth + tc tbf"),
        ("io_uring", caps.io_uring_unavailable is None, caps.io_uring_unavailable or "available"),
    ]
    left = leftovers.what_is_left()  # a killed runner's, until a run (or reap) removes them
    rows.append(("leftovers", not left, "; ".join(left) + " (python -m ukweb.leftovers reap)"
                 if left else "none from killed runs"))
    lines = [f"{'ok' if ok else 'NO':<3} {name:<17} {detail}" for name, ok, detail in rows]
    for step, why in problems.items():
        lines.append(f"deviation: {step}: {why}")
    return lines


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb check",
                                     description="What this machine can and cannot do for the testbed.")
    parser.add_argument("--json", action="store_true", help="print the capabilities as JSON")
    args = parser.parse_args(argv)
    caps = probe()
    if args.json:
        print(json.dumps({"capabilities": asdict(caps), "problems": caps.problems(),
                          "host": machine.host()}, indent=2))
    else:
        print("\n".join(report_lines(caps)))
    return 0
