"""One data point (§4): one SPECweb99 iteration at a fixed number of connections.

Points run in series (one workload x one server): the series empties the server's cache once
(sync first) and makes the server's memory cgroup; its points then run in ascending connections
in that cgroup, so each starts from the cache the previous one left, as the paper's back-to-back
iterations did, topped up first to what a long run at its load would hold (ukweb.prewarm). A point: a
fresh server in the series' cgroup, Reset, warm-up + measurement by loadgen, Fetch,
/server-status before and after, system samples throughout (with the disk model's counters).
Everything goes into the point's directory; DONE is written last, so a point without DONE is
incomplete and is redone on resume. A point that cannot complete (server fails to start or
dies, the disk model or the CPU thief dies) gets a FAILED file with the reason.

Carried points (PointRunner.carried, issue 17): where the server is saturated one server process
and its cache go from point to point as the paper's back-to-back iterations did: no pre-warm,
no restart, a Reset between points (it rewrites SPECweb99's tables and post log, no cache). The
block first settles the cache by driving the load for settle_taus x tau (tau = the memory cap /
the disk's bytes/s measured while settling) or settle_max_s, then each point warms up for its
transition and measures one long window (its interval from batch means, ukweb.batches).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from ukweb import loadgen as loadgen_mod
from ukweb import prewarm as prewarm_mod
from ukweb import statuspoll, workload
from ukweb.cgroups import Cgroup
from ukweb.diskmodel import fell_behind
from ukweb.manifest import now
from ukweb.netns import Topology, run_in
from ukweb.plan import Point
from ukweb.sampler import Sampler
from ukweb.servers import Server, ServerConfig, ServerError
from ukweb.specweb99 import ResetParams
from ukweb.testbed import Testbed

log = logging.getLogger(__name__)


class PointFailed(RuntimeError):
    """The point could not be measured; `reason` is one short phrase for FAILED."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class TestbedDied(PointFailed):
    """A part of the emulated testbed (disk model, CPU thief) died: this point fails with the
    reason, and the sweep stops (it cannot go on without it; rerun to resume)."""


# The disk model's counters sampled once a second into system.csv (as disk_<name>): its work,
# how late its replies were (late_s) and how far its busy time overran the model (overrun_s),
# its mean queue depth (queue_depth_s per second) and how many reads continued the last one.
DISK_COUNTERS = ("reads", "bytes", "seeks", "sequential", "busy_s", "service_s", "queue_wait_s",
                 "queue_depth_s", "overruns", "overrun_s", "late_s", "late_wakeups")


class DiskFull(OSError):
    """ENOSPC while writing a point: the sweep stops instead of writing a corrupt log."""


# A point's logs take a few MB per thousand requests; below this, stop before starting one.
MIN_FREE_BYTES = 64 << 20


def check_space(d: Path, point: Point) -> None:
    free = shutil.disk_usage(d).free
    if free < MIN_FREE_BYTES:
        raise DiskFull(errno.ENOSPC, f"disk full: {free >> 20} MB free under {d}, "
                       f"{MIN_FREE_BYTES >> 20} MB needed to measure {point.label()}")


def write_json(path: Path, obj: object) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def mark_failed(d: Path, point: Point, exc: BaseException) -> None:
    reason = exc.reason if isinstance(exc, PointFailed) else type(exc).__name__
    detail = exc.detail if isinstance(exc, PointFailed) else str(exc)
    write_json(d / "FAILED", {"point": point.label(), "reason": reason, "detail": detail,
                              "time": now()})
    log.error("point %s failed: %s: %s", point.label(), reason, detail)


@dataclass
class PointRunner:
    """What every point of a sweep shares: the testbed, the file set, the timing."""

    testbed: Testbed
    docroot: Path
    warmup_s: float
    duration_s: float
    line_speed: int
    seed: int
    loadgen_threads: int = 1
    net: Topology | None = None  # None: clients reach the server over loopback
    disk: object | None = None   # the mounted ukweb.diskmodel.DiskModel serving docroot, if any
    prewarm: bool = True
    max_connections: int = 1500  # the largest point: the file set to evict between series
    point_prewarm: bool = True   # top the cache up before every point (else once per series)
    settle_taus: float = 2.0     # carried series: settle k x tau at their start ...
    settle_max_s: float = 600.0  # ... capped here
    settle_chunk_s: float = 30.0  # loadgen runs of this length while settling (tau re-measured)
    cg: Cgroup | None = field(default=None, init=False)  # the current series' cgroup
    in_series: bool = field(default=False, init=False)
    server: Server | None = field(default=None, init=False)  # the carried server, if any

    @contextlib.contextmanager
    def series(self, label: str, connections: int) -> Iterator[dict]:
        """One series: empty the server's cache once, make its cgroup (and pre-warm it for
        `connections` when points do not); points run inside until the block ends. Yields what
        was done."""
        info: dict = {"series": label, "start": now()}
        if self.disk is not None:  # the server's cache is the mount's: empty just that
            info["evicted_files"] = prewarm_mod.evict(self.docroot, workload.ndirs(self.max_connections))
            info["dropped_cache"] = "disk model mount"
        else:
            info["dropped_cache"] = self.testbed.drop_page_cache()
        with self.testbed.point_cgroup(label) as cg:
            if not self.point_prewarm:  # else every point tops the cache up itself
                info["prewarm"] = self._prewarm(cg, connections)
            self.cg, self.in_series = cg, True
            try:
                yield info
            finally:
                self.cg, self.in_series = None, False

    @contextlib.contextmanager
    def carried(self, work: Path, config: ServerConfig, point: Point) -> Iterator[dict]:
        """One server for the carried points of the current series, settled at `point`'s load
        first; yields the settling record (pid, seconds, tau, k). PointFailed when it cannot."""
        if not self.in_series:
            raise RuntimeError("carried points run inside a series")
        work.mkdir(parents=True, exist_ok=True)
        server = Server(config, self.docroot, work, addr="0.0.0.0" if self.net else "127.0.0.1",
                        preexec=self.testbed.server_preexec(self.cg))
        try:
            self._srv(server.start)
        except (ServerError, OSError) as exc:
            raise PointFailed("server failed to start", str(exc)) from exc
        self.server = server
        try:
            info = self._settle(work / "settle", point)
            yield info
        finally:
            self.server = None
            self._srv(server.stop)

    def _settle(self, work: Path, point: Point) -> dict:
        """Drive `point`'s load until k x tau has passed (tau = cache cap / disk bytes/s read
        meanwhile), or settle_max_s; loadgen runs of settle_chunk_s, logs discarded.

        [I] k = settle_taus (2 in the profiles): the reference run's points decayed from the
        pre-warmed cache for minutes, one turnover (tau ~150 s) leaves ~e^-1 of the start's
        influence, two ~14 %, at the price of 5 min a series (the paper's 1-min warm-up per
        iteration did the same over several iterations)."""
        server, cap = self.server, (self.cg.memory_bytes if self.cg is not None else None)
        assert server is not None
        t0, bytes0 = _monotonic(), self._disk_bytes()
        target, tau, chunks = self.settle_max_s, None, 0
        while True:
            elapsed = _monotonic() - t0
            left = target - elapsed
            if left < 0.5 or (chunks and elapsed >= target):
                break
            chunk = min(self.settle_chunk_s, left)
            reset = ResetParams.for_run(point.connections, int(math.ceil(chunk)))
            self._ask(server, "reset", lambda r=reset: server.reset(r))
            params = loadgen_mod.LoadgenParams(
                connections=point.connections, mix=point.workload, warmup_s=0,
                duration_s=chunk, line_speed=self.line_speed,
                seed=(point.seed(self.seed) + 7919 * (chunks + 1)) % 4_294_967_291 or 1,
                threads=self.loadgen_threads,
                reset=reset)
            out = work / f"chunk{chunks}"
            out.mkdir(parents=True, exist_ok=True)
            try:
                self._client(lambda lp=params, o=out: loadgen_mod.run(
                    lp, self._addrs(server.port), o, preexec=self.testbed.client_preexec()))
            except loadgen_mod.LoadgenError as exc:
                raise PointFailed("loadgen failed while settling", str(exc)) from exc
            finally:
                shutil.rmtree(out, ignore_errors=True)
            chunks += 1
            self._check_testbed()
            if not _alive(server.pid):
                raise PointFailed("server died while settling", f"pid {server.pid} exited")
            rate = (self._disk_bytes() - bytes0) / max(_monotonic() - t0, 1e-3)
            if cap and rate > 0:
                tau = cap / rate
                target = min(self.settle_taus * tau, self.settle_max_s)
        info = {"settle_s": round(_monotonic() - t0, 1), "settle_taus": self.settle_taus,
                "tau_s": None if tau is None else round(tau, 1), "settle_max_s": self.settle_max_s,
                "disk_mb_per_s": round((self._disk_bytes() - bytes0) / max(_monotonic() - t0, 1e-3) / 1e6, 3),
                "connections": point.connections, "server_pid": server.pid, "chunks": chunks,
                "capped": tau is None or self.settle_taus * tau > self.settle_max_s}
        log.info("settled %s at c%d: %s", point.workload, point.connections, info)
        return info

    def _disk_bytes(self) -> float:
        return float(self.disk.stats().get("bytes", 0)) if self.disk is not None else 0.0

    def run_carried(self, run_dir: Path, point: Point, window_s: float, transition_s: float,
                    batch_s: int, settle: dict) -> dict:
        """Measure one carried point on the carried server: Reset, transition_s of warm-up, one
        window_s window; DONE records the window, batch length and the series' settling."""
        server = self.server
        if server is None:
            raise RuntimeError("run_carried needs a carried server (PointRunner.carried)")
        d = run_dir / point.rel()
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        check_space(d, point)
        try:
            return self._drive(d, point, server, self.cg, None, warmup_s=transition_s,
                               duration_s=window_s,
                               extra={"mode": "carried", "batch_s": batch_s,
                                      "window_s": window_s, "transition_s": transition_s,
                                      "settle": settle})
        except DiskFull:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(errno.ENOSPC, f"disk full while measuring {point.label()}: {exc}") from exc
            raise
        except PointFailed:
            check_space(d, point)
            raise

    def server_alive(self) -> bool:
        return self.server is not None and _alive(self.server.pid)

    def _prewarm(self, cg: Cgroup | None, connections: int) -> dict | None:
        """Top the series' cache up to what a long run at `connections` would hold (the files
        asked for most, hottest read last), the disk model off meanwhile.

        [I] Before every point, not only once per series: a point's warm-up cannot move the
        cache to the next load's working set through a disk of ~80 reads/s (~2 MB/s of small
        files), which the paper's minutes-long back-to-back iterations could. Files already
        cached are hits and keep their place; the reading order makes the hottest the most
        recent, so reclaim takes the coldest first."""
        if not self.prewarm or cg is None or not cg.memory_bytes:
            return None
        with self._model_off():
            return prewarm_mod.prewarm(cg, self.docroot, workload.ndirs(connections),
                                       cg.memory_bytes, self.testbed.client_cpu_list)

    @contextlib.contextmanager
    def _model_off(self) -> Iterator[None]:
        """Pre-warming is not measured: the disk model answers without latency meanwhile."""
        if self.disk is None:
            yield
            return
        self.disk.model(False)
        try:
            yield
        finally:
            self.disk.model(True)

    def _disk_counters(self) -> dict[str, float]:
        """The disk model's cumulative counters for the sampler (disk_* columns)."""
        stats = self.disk.stats() if self.disk is not None else {}
        return {f"disk_{k}": float(stats.get(k, 0)) for k in DISK_COUNTERS}

    def _check_testbed(self) -> None:
        """The disk model and the CPU thief must have lived through the point."""
        if self.disk is not None and not self.disk.alive():
            raise TestbedDied("disk model died", self.disk.died() or "the FUSE daemon exited")
        if not self.testbed.thief_alive():
            raise TestbedDied("CPU thief died", "cputhief exited during the point")

    def _check_disk_timing(self, system: Path, warmup_s: float | None = None) -> None:
        """A disk model that fell behind its model for longer than a point can tolerate fails
        the point with the reason (ukweb.diskmodel.fell_behind), not a silent slow point."""
        if self.disk is None or not system.exists():
            return
        warmup = self.warmup_s if warmup_s is None else warmup_s
        with open(system, newline="") as f:
            rows = [r for r in csv.DictReader(f) if "disk_overrun_s" in r]
        seconds = [(float(r["t"]), float(r["disk_busy_s"]), float(r["disk_overrun_s"]))
                   for r in rows if float(r["t"]) - 1.0 >= warmup - 0.1]  # measured
                   # (a row covers the second before its t: the first measured one ends at
                   # warmup_s + 1, as in analysis._measured_samples)
        why = fell_behind(seconds)
        if why:
            raise PointFailed("disk model fell behind", why)

    def _srv(self, fn):
        """Call fn where the server's network is (its namespace when the netns testbed is on)."""
        return run_in(self.net.server_ns, fn) if self.net else fn()

    def _addrs(self, port: int) -> list[str]:
        hosts = self.net.server_addrs() if self.net else ["127.0.0.1"]
        return [f"{h}:{port}" for h in hosts]

    def run(self, run_dir: Path, point: Point, config: ServerConfig) -> dict:
        """Measure one point into its directory; returns the DONE record. PointFailed/DiskFull."""
        d = run_dir / point.rel()
        if d.exists():
            shutil.rmtree(d)  # a partial or failed earlier attempt: start clean
        d.mkdir(parents=True)
        check_space(d, point)
        work = run_dir / "work" / point.rel()
        work.mkdir(parents=True, exist_ok=True)
        try:
            return self._measure(d, work, point, config)
        except DiskFull:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(errno.ENOSPC, f"disk full while measuring {point.label()}: {exc}") from exc
            raise
        except PointFailed:
            check_space(d, point)  # loadgen or the server may have failed for lack of space
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _measure(self, d: Path, work: Path, point: Point, config: ServerConfig) -> dict:
        if not self.in_series:  # a lone point is a series of one
            label = f"{point.workload}-{point.server}-c{point.connections}-r{point.repetition}"
            with self.series(label, point.connections):
                return self._measure(d, work, point, config)
        cg = self.cg
        warmed = self._prewarm(cg, point.connections) if self.point_prewarm else None
        # In a namespace the server listens on every address: one per client subnet.
        server = Server(config, self.docroot, work, addr="0.0.0.0" if self.net else "127.0.0.1",
                        preexec=self.testbed.server_preexec(cg))
        try:
            self._srv(server.start)
        except (ServerError, OSError) as exc:
            raise PointFailed("server failed to start", str(exc)) from exc
        try:
            return self._drive(d, point, server, cg, warmed)
        finally:
            self._srv(server.stop)

    def _drive(self, d: Path, point: Point, server: Server, cg, warmed: dict | None = None,
               warmup_s: float | None = None, duration_s: float | None = None,
               extra: dict | None = None) -> dict:
        warmup_s = self.warmup_s if warmup_s is None else warmup_s
        duration_s = self.duration_s if duration_s is None else duration_s
        reset = ResetParams.for_run(point.connections, int(warmup_s + duration_s))
        before = self._ask(server, "reset", lambda: (server.reset(reset), server.status())[1])
        params = loadgen_mod.LoadgenParams(
            connections=point.connections, mix=point.workload, warmup_s=warmup_s,
            duration_s=duration_s, line_speed=self.line_speed, seed=point.seed(self.seed),
            threads=self.loadgen_threads, reset=reset)
        pids = cg.pids if cg is not None else lambda: _process_tree(server.pid)
        started = now()
        disk = self._disk_counters if self.disk is not None else None
        with statuspoll.sampler_extra(disk, server.config.kind, server.status) as counters, \
                Sampler(d / "system.csv", self.testbed.server_cpu_list, pids, cg,
                        extra=counters) as sampler:
            try:
                summary = self._client(lambda: loadgen_mod.run(
                    params, self._addrs(server.port), d, preexec=self.testbed.client_preexec()))
            except loadgen_mod.LoadgenError as exc:
                raise PointFailed("loadgen failed", str(exc)) from exc
        if sampler.error is not None:
            raise sampler.error
        self._check_testbed()
        self._check_disk_timing(d / "system.csv", warmup_s)
        if not _alive(server.pid):
            raise PointFailed("server died during the point", f"pid {server.pid} exited")
        after = self._ask(server, "status after the point", server.status)
        postlog = self._ask(server, "fetch", server.fetch)
        write_json(d / "server-status.json", {"before": before, "after": after})
        (d / "postlog.txt").write_text(postlog)
        done = {"point": point.label(), "start": started, "end": now(),
                "reset": reset.query(), "server_pids": self._ask(server, "pids", server.pids),
                "ops_per_s": summary.get("measure", {}).get("ops_per_s"),
                "system_samples": sampler.rows,
                "memory_limit_bytes": cg.memory_bytes if cg is not None else None,
                "cgroup": cg.name if cg is not None else None, "prewarm": warmed,
                "mode": "fresh", **(extra or {})}
        write_json(d / "DONE", done)
        return done

    def _client(self, fn):
        return run_in(self.net.client_ns, fn) if self.net else fn()

    def _ask(self, server: Server, what: str, call):
        """An HTTP exchange with the server; a dead or silent server fails the point."""
        try:
            return self._srv(call)
        except (requests.RequestException, ServerError, OSError, ValueError) as exc:
            alive = _alive(server.pid)
            state = "server still running" if alive else "server process is gone"
            raise PointFailed(f"server died or stopped answering ({what})", f"{state}: {exc}") from exc


def _monotonic() -> float:
    return time.monotonic()


def _process_tree(pid: int) -> list[int]:
    """pid and its descendants (the server's processes when there is no cgroup to ask)."""
    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); check its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2] != "Z"
    except OSError:
        return False

