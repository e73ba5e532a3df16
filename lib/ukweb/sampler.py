"""Once-a-second samples of the system while a data point runs: system.csv.

The paper explains its results by where the server's time goes (§5: CPU idle while blocked on
disk, listen-queue overflows, page-cache misses). These samples record exactly those signals.
Counters are written as the change over the interval ending at `t`, gauges as their value at `t`:

  t                  seconds since the sampler started (end of the interval)
  cpu_user/sys/idle/iowait   percent of the server's CPU set over the interval (/proc/stat; idle
                     and iowait are exact, user and sys sampled on ticks)
  ctx_switches       context switches on the whole machine in the interval (/proc/stat ctxt)
  listen_overflows, listen_drops   TcpExt ListenOverflows / ListenDrops in the interval
  disk_read_bytes    bytes the server's processes caused to be read from disk in the interval
                     (/proc/<pid>/io read_bytes, threads included; exact per server, unlike the
                     v1 blkio counters, which stay 0 without throttling rules, or the
                     machine-wide /proc/diskstats)
  page_cache_bytes   page cache charged to the server's cgroup (else the machine's Cached)
  blocked_s          time the server's tasks spent blocked on block I/O in the interval
                     (delay accounting: /proc/<pid>/task/<tid>/stat field 42, summed)
  server_cpu_s       CPU time the server's threads ran in the interval (schedstat, in ns, so
                     exact: /proc/stat's per-CPU times are sampled on ticks, and under a CFS
                     quota of ~1 ms per period the server's bursts can fall between ticks)
  cpu_softirq        percent of the server's CPU set in softirq (also inside cpu_sys): the
                     network receive work steered to the server's CPU
  memory_bytes       memory charged to the server's cgroup (page cache + its own), a gauge
  procs              server processes at the sample (a gauge)
  blocked_max_s      the most blocked of the server's processes: its blocked seconds in the
                     interval, its io-wq threads excluded (so it never exceeds the interval)
  blocked_iowq_s     blocked seconds of io_uring's io-wq worker threads (ktux's async reads:
                     TUX's I/O threads, which block instead of the worker)
  + extra counters   deltas of the callable `extra`: the disk model's (ukweb.point.DISK_COUNTERS)
                     as disk_<name>: disk_reads, disk_bytes, disk_seeks, disk_sequential (reads
                     continuing the last one: no positioning), disk_busy_s (its real busy time),
                     disk_service_s (the model's for the same reads), disk_overrun_s (busy time
                     beyond the model: the part of the second the emulation lost),
                     disk_late_s (summed lateness of its replies against the model),
                     disk_late_wakeups (replies > 1 ms late), disk_queue_depth_s (mean reads
                     at the disk over the second), disk_queue_wait_s, disk_overruns
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ukweb import logs
from ukweb.cgroups import Cgroup

log = logging.getLogger(__name__)

COLUMNS = list(logs.SYSTEM_COLUMNS)  # the format lives with its reader
IOWQ_PREFIX = "iou-wrk-"  # io_uring's io-wq worker threads (comm)
CLK_TCK = os.sysconf("SC_CLK_TCK")
DELAYACCT_FIELD = 42  # delayacct_blkio_ticks, proc(5)


def cpu_times(cpus: list[int]) -> dict[str, int]:
    """Summed jiffies (user, sys, idle, iowait) of the given CPUs from /proc/stat."""
    want = {f"cpu{c}" for c in cpus}
    total = {"user": 0, "sys": 0, "idle": 0, "iowait": 0, "softirq": 0, "all": 0}
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in want:
            v = [int(x) for x in parts[1:]]
            total["user"] += v[0] + v[1]          # user + nice
            total["sys"] += v[2] + v[5] + v[6]    # system + irq + softirq
            total["softirq"] += v[6]
            total["idle"] += v[3]
            total["iowait"] += v[4]
            total["all"] += sum(v[:8])            # up to steal; guest is already in user
    return total


def context_switches() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("ctxt "):
            return int(line.split()[1])
    return 0


def listen_counters(pid: int | None = None) -> tuple[int, int]:
    """(ListenOverflows, ListenDrops) from the TcpExt lines of netstat.

    Read through the server's pid when given, so the counters are those of the server's network
    namespace (which is not the runner's when the netns testbed is on).
    """
    path = Path(f"/proc/{pid}/net/netstat") if pid else Path("/proc/net/netstat")
    try:
        lines = path.read_text().splitlines()
    except OSError:  # the server just exited
        lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], (int(x) for x in vals.split()[1:]), strict=False))
            return row.get("ListenOverflows", 0), row.get("ListenDrops", 0)
    return 0, 0


def machine_cached_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1]) * 1024
    return 0


def read_bytes(pid: int) -> int:
    """Bytes pid's threads caused to be fetched from storage (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def per_thread(pid: int, name: str, parse: Callable[[str], int]) -> dict[int, int]:
    """parse(/proc/<pid>/task/<tid>/<name>) for every thread of pid ({} when it is gone).

    Per thread because the process files report only the thread-group leader, and ktux's
    blocking reads run in io_uring's io-wq worker threads.
    """
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            out[int(tid)] = parse(Path(f"/proc/{pid}/task/{tid}/{name}").read_text())
        except (OSError, IndexError, ValueError):  # the thread exited, or a short line
            continue
    return out


def _blkio_field(stat: str) -> int:
    # Fields after the command name, which may hold spaces and parentheses.
    return int(stat[stat.rfind(")") + 2:].split()[DELAYACCT_FIELD - 3])


def _is_iowq(stat: str) -> bool:
    return stat[stat.find("(") + 1:stat.rfind(")")].startswith(IOWQ_PREFIX)


def thread_blkio_ticks(pid: int) -> dict[int, int]:
    """delayacct_blkio_ticks of every thread of pid."""
    return per_thread(pid, "stat", _blkio_field)


def thread_blkio(pid: int) -> dict[int, tuple[bool, int]]:
    """(is an io-wq worker, delayacct_blkio_ticks) of every thread of pid."""
    return per_thread(pid, "stat", lambda stat: (_is_iowq(stat), _blkio_field(stat)))


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU of every thread of pid (schedstat's first field)."""
    return per_thread(pid, "schedstat", lambda text: int(text.split()[0]))


def blkio_ticks(pid: int) -> int:
    """delayacct_blkio_ticks summed over every thread of pid (0 when it is gone)."""
    return sum(thread_blkio_ticks(pid).values())


class Sampler:
    """A thread that appends one row per interval to system.csv until stopped.

    pids() names the server's processes at each sample (it forks, and processes can die).
    """

    def __init__(self, out: Path, cpus: list[int], pids: Callable[[], list[int]],
                 cgroup: Cgroup | None = None, interval: float = 1.0,
                 extra: Callable[[], dict[str, float]] | None = None) -> None:
        self.out, self.cpus, self.pids, self.cgroup = out, cpus, pids, cgroup
        self.interval = interval
        self.extra = extra  # cumulative counters of other parts of the testbed (the disk model)
        self._extra_cols = sorted(extra()) if extra else []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ukweb-sampler", daemon=True)
        # Last value seen per pid, so the counters of processes that exit are kept.
        self._read: dict[int, int] = {}
        self._blk_seen: dict[int, int] = {}  # tid -> its last delayacct_blkio_ticks
        self._blk_total = 0.0                # clamped sum of the increments, in ticks
        self._blk_iowq = 0.0                 # the part of it in io-wq worker threads
        self._blk_max = 0.0                  # sum over intervals of the most blocked process
        self._last_t: float | None = None    # when the counters were last read
        self._cpu_seen: dict[int, int] = {}  # tid -> its last schedstat run time (ns)
        self._cpu_total = 0                  # sum of the increments, ns
        self._started = False                # True once the baseline sample is taken
        self.rows = 0
        self.error: BaseException | None = None

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _counters(self) -> dict[str, int]:
        pids = self.pids()
        overflows, drops = listen_counters(pids[0] if pids else None)
        most = 0.0
        for pid in pids:
            self._read[pid] = max(self._read.get(pid, 0), read_bytes(pid))
            most = max(most, self._add_blocked(thread_blkio(pid)))
            self._add_cpu(thread_cpu_ns(pid))
        # One process cannot be blocked longer than the interval (ticks are sampled, so a
        # process's threads together can show a little more).
        now = time.monotonic()
        elapsed = now - self._last_t if self._last_t is not None else self.interval
        self._last_t = now
        self._blk_max += min(most, elapsed * CLK_TCK)
        out = {"ctx_switches": context_switches(), "listen_overflows": overflows,
               "listen_drops": drops, "disk_read_bytes": sum(self._read.values()),
               "blocked": self._blk_total, "cpu_ns": self._cpu_total,
               "blocked_max": self._blk_max, "blocked_iowq": self._blk_iowq}
        if self.extra:
            out.update({f"x:{k}": v for k, v in self.extra().items()})
        out["procs"] = len(pids)
        return out

    def _add_cpu(self, ns: dict[int, int]) -> None:
        """Add each thread's new run time; threads that appear later count from zero."""
        for tid, value in ns.items():
            last = self._cpu_seen.get(tid, 0 if self._started else value)
            self._cpu_total += max(0, value - last)
            self._cpu_seen[tid] = value

    def _add_blocked(self, ticks: dict[int, tuple[bool, int]]) -> float:
        """Add each thread's new block-I/O delay, at most one interval per thread; returns the
        process's own (io-wq threads excluded) new delay, at most one interval.

        The clamp guards against a known kernel artefact: if task_delayacct is switched off and
        on while a thread waits (e.g. by another tool on the machine), that one wait is charged
        as the whole time since boot. Threads present at the first sample count from then on;
        threads that appear later (io-wq workers, new processes) count from zero.
        """
        limit = self.interval * CLK_TCK * 1.5  # sampling jitter
        own = 0.0
        for tid, (iowq, value) in ticks.items():
            last = self._blk_seen.get(tid, 0 if self._started else value)
            step = min(max(0, value - last), limit)
            self._blk_total += step
            if iowq:
                self._blk_iowq += step
            else:
                own += step
            self._blk_seen[tid] = value
        return min(own, limit)

    def _page_cache(self) -> int:
        if self.cgroup is not None and self.cgroup.dirs:
            return self.cgroup.page_cache_bytes()
        return machine_cached_bytes()

    def _loop(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # recorded, so the runner can report a broken sampler
            self.error = exc
            log.error("system sampler stopped: %s", exc)

    def _run(self) -> None:
        start = last = time.monotonic()
        cpu0, cnt0 = cpu_times(self.cpus), self._counters()
        self._started = True
        with open(self.out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS + self._extra_cols)
            while not self._stop.wait(self.interval):
                now = time.monotonic()
                cpu1, cnt1 = cpu_times(self.cpus), self._counters()
                writer.writerow(self._row(now - start, cpu0, cpu1, cnt0, cnt1, now - last))
                last = now
                f.flush()
                self.rows += 1
                cpu0, cnt0 = cpu1, cnt1

    def _row(self, t: float, cpu0: dict, cpu1: dict, cnt0: dict, cnt1: dict,
             wall: float) -> list:
        # Idle and iowait are exact (NO_HZ idle time); user and sys are sampled on ticks,
        # which alias with the CPU thief's 1 ms period. So all are taken over the wall-clock
        # interval, not over their sum (an aliased user share would squeeze idle).
        span = max(1.0, wall * CLK_TCK * len(self.cpus))
        pct = {k: round(min(100.0, 100.0 * (cpu1[k] - cpu0[k]) / span), 2)
               for k in ("user", "sys", "idle", "iowait")}
        d = {k: cnt1[k] - cnt0.get(k, 0) for k in cnt1}
        softirq = round(min(100.0, 100.0 * (cpu1["softirq"] - cpu0["softirq"]) / span), 2)
        memory = self.cgroup.memory_usage_bytes() if self.cgroup is not None and self.cgroup.dirs else 0
        return [round(t, 3), pct["user"], pct["sys"], pct["idle"], pct["iowait"],
                d["ctx_switches"], d["listen_overflows"], d["listen_drops"],
                d["disk_read_bytes"], self._page_cache(), round(d["blocked"] / CLK_TCK, 3),
                round(d["cpu_ns"] / 1e9, 4), softirq, memory, cnt1["procs"],
                round(d["blocked_max"] / CLK_TCK, 3), round(d["blocked_iowq"] / CLK_TCK, 3)] + [
                    round(d.get(f"x:{k}", 0), 6) for k in self._extra_cols]
