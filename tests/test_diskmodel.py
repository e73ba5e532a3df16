"""The FUSE disk model (emul/diskmodel.c, ukweb.diskmodel) on this machine's kernel.

A real daemon over a temporary directory: latency and rate within 15 % of the parameters, cache
hits that never reach it, the model switched off and on, the page cache charged to the reader's
memory cgroup, a killed daemon failing its readers instead of hanging them and leaving no mount,
and bad input refused in one line. Every wait polls for its condition with a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ukweb import diskmodel
from ukweb.cgroups import Cgroup, CgroupError
from ukweb.diskmodel import DiskModel, DiskModelError, DiskParams, delta, mount_type

WHY = diskmodel.check()
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(WHY is not None, reason=f"no disk model here: {WHY}")]

MB = 1 << 20
BLOCK = 128 * 1024
PARAMS = DiskParams(seek_ms=12.0, transfer_mbps=40.0)


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("dm-src")
    chunk = bytes(range(256)) * 4096
    for name, size in (("rand", 16 * MB), ("seq", 16 * MB), ("cg", 8 * MB), ("small", 5000)):
        with open(src / name, "wb") as f:
            for _ in range(max(1, size // MB)):
                f.write(chunk[:min(size, MB)])
    (src / "sub").mkdir()
    (src / "sub" / "x").write_bytes(b"hello")
    return src


@pytest.fixture(scope="module")
def disk(source, tmp_path_factory):
    work = tmp_path_factory.mktemp("dm-work")
    with DiskModel(source, work / "mnt", PARAMS, sorted(os.sched_getaffinity(0)), work) as d:
        yield d
    assert mount_type(work / "mnt") is None
    assert d.proc.returncode == 0, d.stderr_path.read_text()  # SIGTERM: a clean exit
    assert d.final_stats["final"] is True


def read_at(path: Path, off: int, size: int, flags: int = 0) -> float:
    """Seconds for one pread of size at off (the file opened first, outside the timing)."""
    fd = os.open(path, os.O_RDONLY | flags)
    buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
    try:
        start = time.perf_counter()
        got = os.preadv(fd, [buf], off)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    assert got == size
    return elapsed


def within(measured: float, model: float, tol: float = 0.15) -> bool:
    return abs(measured - model) <= tol * model


def latency_ok(samples: list[float], model: float) -> bool:
    """No read faster than the model, and the best within 15 % of it: a busy machine (another
    engineer measuring) may delay a wake-up, never speed one up, so the minimum is the check."""
    return min(samples) >= 0.85 * model and within(min(samples), model)


def test_mounts_a_read_only_view(disk, source) -> None:
    mnt = disk.mountpoint
    assert disk.alive() and disk.died() is None
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(source))
    assert (mnt / "sub" / "x").read_bytes() == b"hello"
    assert (mnt / "small").stat().st_size == 5000
    with pytest.raises(OSError) as exc:
        open(mnt / "small", "r+b")
    assert exc.value.errno in (errno.EROFS, errno.EACCES)
    desc = disk.describe()
    assert desc["params"]["seek_ms"] == 12.0 and desc["conn"]["max_readahead"] > 0
    # the daemon runs on the CPUs it was given, at its nice value
    assert os.sched_getaffinity(disk.pid) == set(disk.cpus)
    assert os.getpriority(os.PRIO_PROCESS, disk.pid) == PARAMS.nice


def test_cold_random_read_costs_positioning_plus_transfer(disk) -> None:
    f = disk.mountpoint / "rand"
    before = disk.stats(fresh=True)
    lat = [read_at(f, b * BLOCK * 3, 4096) for b in range(1, 9)]  # distinct, far apart
    d = delta(before, disk.stats(fresh=True))
    assert d["reads"] == 8 and d["seeks"] == 8, d
    model = PARAMS.service_s(4096)
    assert latency_ok(lat, model), (lat, model)
    assert within(d["busy_s"], 8 * model, 0.05), d


def test_a_read_continuing_the_previous_pays_transfer_only(disk) -> None:
    f = disk.mountpoint / "rand"
    size = 512 * 1024  # O_DIRECT: exactly one request per read, never cached
    before = disk.stats(fresh=True)
    first, second = [], []
    for off in (2 * MB, 6 * MB, 10 * MB):
        first.append(read_at(f, off, size, os.O_DIRECT))
        second.append(read_at(f, off + size, size, os.O_DIRECT))
    d = delta(before, disk.stats(fresh=True))
    assert d["reads"] == 6 and d["seeks"] == 3 and d["sequential"] == 3, d
    assert d["direct_reads"] == 6
    assert latency_ok(first, PARAMS.service_s(size)), (first, d)
    assert latency_ok(second, PARAMS.service_s(size, sequential=True)), (second, d)


def test_a_large_sequential_read_runs_at_the_transfer_rate(disk) -> None:
    f = disk.mountpoint / "seq"
    size = f.stat().st_size
    before = disk.stats(fresh=True)
    start = time.perf_counter()
    with open(f, "rb", buffering=0) as fh:
        while fh.read(MB):
            pass
    elapsed = time.perf_counter() - start
    d = delta(before, disk.stats(fresh=True))
    assert d["bytes"] == size and d["seeks"] == 1, d
    assert within(size / elapsed, size / PARAMS.service_s(size)), size / elapsed / 1e6


def test_a_warm_read_is_fast_and_never_reaches_the_daemon(disk) -> None:
    f = disk.mountpoint / "rand"
    off = 15 * MB
    cold = read_at(f, off, 4096)
    before = disk.stats(fresh=True)
    warm = [read_at(f, off, 4096) for _ in range(20)]
    for _ in range(20):  # reopening keeps the page cache (no-open / keep_cache), lookups cached
        with open(f, "rb") as fh:
            fh.seek(off)
            fh.read(4096)
        os.stat(f)
    after = disk.stats(fresh=True)
    d = delta(before, after)
    assert d["reads"] == 0 and d["unmodelled_reads"] == 0, d
    assert d["opens"] == 0 and d["lookups"] == 0 and d["getattrs"] == 0, d
    assert statistics.median(warm) < 0.001 < cold, (warm, cold)


def test_the_model_switches_off_and_on(disk) -> None:
    f = disk.mountpoint / "rand"
    before = disk.stats(fresh=True)
    disk.model(False)
    fast = [read_at(f, 13 * MB + i * BLOCK, 4096) for i in range(3)]
    disk.model(True)
    slow = [read_at(f, 14 * MB + i * BLOCK, 4096) for i in range(3)]
    after = disk.stats(fresh=True)
    d = delta(before, after)
    assert after["model_on"] is True and d["model_switches"] == 2, d
    assert d["unmodelled_reads"] == 3 and d["reads"] == 3, d
    assert min(fast) < 0.004 and latency_ok(slow, PARAMS.service_s(4096)), (fast, slow)


def test_page_cache_is_charged_to_the_readers_cgroup(disk) -> None:
    f = disk.mountpoint / "cg"
    size = f.stat().st_size
    try:
        cg = Cgroup(f"ukweb-test-dm-{os.getpid()}").create()
    except CgroupError as exc:
        pytest.skip(f"no memory cgroup here: {exc}")
    try:
        before = cg.page_cache_bytes()
        reader = ("import sys\nwith open(sys.argv[1], 'rb', buffering=0) as f:\n"
                  "    while f.read(1 << 20): pass\n")
        subprocess.run([sys.executable, "-c", reader, str(f)], check=True, timeout=30,
                       preexec_fn=cg.join)
        grown = cg.page_cache_bytes() - before
    finally:
        cg.remove()
    assert 0.9 * size <= grown <= 1.25 * size, (grown, size)


def test_killing_the_daemon_fails_the_reader_and_leaves_no_mount(source, tmp_path) -> None:
    slow = DiskParams(seek_ms=1000.0, transfer_mbps=40.0)
    d = DiskModel(source, tmp_path / "mnt", slow, sorted(os.sched_getaffinity(0)), tmp_path)
    with d:
        reader = ("import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
                  "try:\n    os.pread(fd, 4096, 0)\n    print('read')\n"
                  "except OSError as e:\n    print(e.errno)\n")
        proc = subprocess.Popen([sys.executable, "-c", reader, str(tmp_path / "mnt" / "rand")],
                                stdout=subprocess.PIPE, text=True)
        wait_for(lambda: d.stats()["queue_depth"] >= 1, 10, "the read to reach the daemon")
        d.kill()
        out, _ = proc.communicate(timeout=10)  # fails rather than hangs
        assert int(out) in (errno.EIO, errno.ENOTCONN, errno.ECONNABORTED), out
        assert not d.alive()
        assert "killed by signal 9" in d.died()
    assert mount_type(tmp_path / "mnt") is None


def test_a_stale_mount_is_replaced_and_a_busy_one_refused(source, tmp_path, disk) -> None:
    mnt = tmp_path / "mnt"
    first = DiskModel(source, mnt, PARAMS, None, tmp_path / "a").start()
    first.kill()  # a crashed run's dead mount
    assert mount_type(mnt) == "fuse.diskmodel"
    with DiskModel(source, mnt, PARAMS, None, tmp_path / "b") as second:
        assert (mnt / "small").stat().st_size == 5000
        first.stop()  # the crashed one's cleanup must not unmount the new one
        assert second.alive()
    assert mount_type(mnt) is None
    with pytest.raises(DiskModelError, match="busy"):
        DiskModel(source, disk.mountpoint, PARAMS, None, tmp_path / "c").start()


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path) -> None:
    binary = str(diskmodel.binary_path())
    (tmp_path / "mnt").mkdir()
    cases = [["--source", str(tmp_path / "missing"), "--mountpoint", str(tmp_path / "mnt")],
             ["--source", str(tmp_path), "--mountpoint", str(tmp_path / "nope")],
             ["--source", str(tmp_path), "--mountpoint", str(tmp_path / "mnt"), "--mbps", "0"],
             ["--source", str(tmp_path), "--mountpoint", str(tmp_path / "mnt"), "--seek", "1"]]
    for args in cases:
        res = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
        assert res.returncode != 0 and res.stdout == "", (args, res)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith("diskmodel: ")
    assert mount_type(tmp_path / "mnt") is None
    with pytest.raises(DiskModelError, match="not a directory"):
        DiskModel(tmp_path / "missing", tmp_path / "mnt", PARAMS, None, tmp_path).start()
    with pytest.raises(DiskModelError, match="seek_ms"):
        DiskModel(tmp_path, tmp_path / "mnt", DiskParams(seek_ms=-1), None, tmp_path).start()
    assert mount_type(tmp_path / "mnt") is None


# -- issue 17: timing at load, readahead and order at depth, the daemon's own report

def _spin() -> None:
    while True:
        pass


def _daemon_threads_fifo(pid: int) -> int:
    """How many of the daemon's threads run SCHED_FIFO."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            n += os.sched_getscheduler(int(tid)) == os.SCHED_FIFO
    return n


def random_reads_qd(path: Path, n: int, qd: int, size: int = 4096) -> list[float]:
    """n reads of size at distinct 128 KB blocks, qd at a time (threads); their latencies."""
    offs = [b * BLOCK for b in range(n)]
    lat: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not offs:
                    return
                off = offs.pop()
            t = read_at(path, off, size)
            with lock:
                lat.append(t)

    threads = [threading.Thread(target=worker) for _ in range(qd)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def test_timing_holds_under_a_competing_hog(source, tmp_path) -> None:
    """Busy processes on the daemon's only CPU (as loadgen on the client CPU) do not make its
    replies late: its timing threads are SCHED_FIFO. Measured under three hogs and a TCP
    stream: worst 2.9 ms late of 2,552 reads (23 ms at CFS nice -10), mean 0.05 ms."""
    cpu = max(os.sched_getaffinity(0))
    with DiskModel(source, tmp_path / "mnt", PARAMS, [cpu], tmp_path) as d:
        assert _daemon_threads_fifo(d.pid) == 2  # the loop and the disk thread
        assert d.stats()["timing"] == {"rt_priority": 60, "loop_fifo": 60, "disk_fifo": 60}
        hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(3)]
        for h in hogs:
            h.start()
            os.sched_setaffinity(h.pid, [cpu])
        try:
            before = d.stats(fresh=True)
            lat = random_reads_qd(d.mountpoint / "rand", 48, 4)
            after = d.stats(fresh=True)
        finally:
            for h in hogs:
                h.kill()
                h.join()
    dd = delta(before, after)
    assert dd["reads"] == 48 and dd["seeks"] == 48, dd
    assert dd["late_s"] / dd["reads"] < 0.0005, dd  # mean lateness < 0.5 ms
    assert dd["late_10ms"] == 0 and dd["late_wakeups"] <= 2, dd
    assert dd["overrun_s"] < 0.02 * dd["busy_s"], dd
    # The readers see the model: 4 queued 12.1-ms reads complete one per service time.
    assert within(48 / sum(lat) * 4, 1 / PARAMS.service_s(4096), 0.1), (48 / sum(lat) * 4)


def test_a_deep_queue_is_served_in_elevator_order(disk) -> None:
    """Reads queued behind a busy disk are served sorted by position, adjacent ones back to
    back (2.4's elevator_linus): measured 3 positionings for the 17 reads, 16-17 with
    --elevator fifo (arrival order, shuffled)."""
    f = disk.mountpoint / "seq"
    size = 64 * 1024
    offs = [i * size for i in range(16)]
    random.Random(3).shuffle(offs)
    gate = threading.Barrier(len(offs) + 1)

    def one(off: int) -> None:
        gate.wait()
        read_at(f, 4 * MB + off, size, os.O_DIRECT)

    before = disk.stats(fresh=True)
    blocker = threading.Thread(target=read_at, args=(disk.mountpoint / "rand", 0, MB, os.O_DIRECT))
    blocker.start()  # 12 ms + 26 ms of transfer: the others queue behind it
    time.sleep(0.005)
    threads = [threading.Thread(target=one, args=(o,)) for o in offs]
    for t in threads:
        t.start()
    gate.wait()
    for t in threads + [blocker]:
        t.join()
    d = delta(before, disk.stats(fresh=True))
    assert d["bytes"] == MB + 16 * size, d  # the blocker may reach the disk in pieces
    # The blocker, the first read queued, and the wrap to the lowest offset (C-LOOK): 3
    assert d["seeks"] <= 4 and d["sequential"] >= d["reads"] - 4, d
    assert d["sorted_inserts"] + d["merges"] >= 10, d


def test_readahead_is_kept_at_depth(source, tmp_path) -> None:
    """Many sequential readers at once: the queue passes the old background limits (64, with
    readahead skipped past 48), yet each reader's readahead reaches the disk together, so
    reads at depth stay sequential (measured: 64 readers, 44 % sequential and 13.1 MB/s;
    with the old 64/48, readers blocked chunk by chunk and interleaved: 0 % and 8.6 MB/s)."""
    src = tmp_path / "src"
    src.mkdir()
    chunk = bytes(range(256)) * 4096
    for i in range(48):
        (src / f"r{i}").write_bytes(chunk)  # 1 MB each
    with DiskModel(src, tmp_path / "mnt", PARAMS, None, tmp_path) as d:
        conn = d.stats()["conn"]
        assert conn["max_background"] == 512 and conn["congestion_threshold"] == 512, conn
        before = d.stats(fresh=True)
        threads = [threading.Thread(target=lambda p=p: p.read_bytes())
                   for p in sorted((tmp_path / "mnt").iterdir())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = d.stats(fresh=True)
    dd = delta(before, after)
    assert dd["bytes"] == 48 * MB, dd
    deep = {k: v for k, v in after["by_depth"].items() if k in ("17-64", ">64")}
    reads = sum(v["reads"] for v in deep.values())
    seq = sum(v["sequential"] for v in deep.values())
    assert after["max_queue_depth"] > 48 and reads > 100, after
    assert seq / reads >= 0.3, (seq, reads, after["by_depth"])


def test_a_stalled_daemon_reports_lateness_and_overrun(source, tmp_path) -> None:
    """A daemon held off its CPU (SIGSTOP, as a starved one) reports it: the replies' lateness
    and the busy time beyond the model; the next reads are on time again (the model's clock
    did not move for the stall, so the disk lost no capacity after it)."""
    slow = DiskParams(seek_ms=100.0, transfer_mbps=40.0)  # eight queued reads last 0.8 s
    with DiskModel(source, tmp_path / "mnt", slow, None, tmp_path) as d:
        f = d.mountpoint / "rand"
        before = d.stats(fresh=True)
        reader = threading.Thread(target=random_reads_qd, args=(f, 8, 8))
        reader.start()
        wait_for(lambda: d.stats()["queue_depth"] >= 8, 5, "eight queued reads")
        os.kill(d.pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(d.pid, signal.SIGCONT)
        reader.join()
        mid = d.stats(fresh=True)
        lat = [read_at(f, 15 * MB - b * BLOCK, 4096) for b in range(3)]
        after = d.stats(fresh=True)
    stall = delta(before, mid)
    assert stall["reads"] == 8 and stall["late_s"] >= 0.4, stall
    assert 0.3 <= stall["overrun_s"] <= 0.6 and stall["late_wakeups"] >= 1, stall
    calm = delta(mid, after)
    # on time again: no busy time beyond the model (one late wake-up of three is the shared
    # machine's scheduling, seen in a fresh-clone run; the stall's replies were 0.4 s+ late)
    assert calm["late_wakeups"] <= 1 and calm["overrun_s"] < 0.005, calm
    assert latency_ok(lat, slow.service_s(4096)), lat


def test_overrun_marks_a_point_unsteady_and_a_long_one_fails_it() -> None:
    """steady.checks flags a window whose disk model overran > 2 % of its busy time; a model
    behind for 5 s in a row, or by > 10 % of the window, fails the point with the reason."""
    from ukweb import steady
    rates = np.full(20, 100.0)
    busy = np.full(20, 0.9)

    def verdict(overrun: np.ndarray) -> dict:
        samples = pd.DataFrame({"disk_busy_s": busy, "disk_overrun_s": overrun,
                                "memory_bytes": np.full(20, 100.0)})
        return steady.checks(rates, samples, 100.0, 30.0, 10.0)

    ok = verdict(np.full(20, 0.001))  # 0.1 %: what the SCHED_FIFO daemon shows under a hog
    assert ok["steady"] and ok["disk_overrun_pct"] < 0.2, ok
    bad = verdict(np.full(20, 0.03))  # 3.3 %
    assert not bad["steady"] and "disk model overrun 3.3 %" in bad["steady_reason"], bad
    assert math.isnan(steady.checks(rates, pd.DataFrame({"memory_bytes": [100.0]}), 100.0, 30.0,
                                    10.0)["disk_overrun_pct"])  # no disk model: no verdict

    def secs(over: list[float]) -> list[tuple[float, float, float]]:
        return [(31.0 + i, 0.9, o) for i, o in enumerate(over)]

    assert diskmodel.fell_behind(secs([0.01] * 20)) is None
    assert diskmodel.fell_behind(secs([0.5] + [0.01] * 19)) is None  # one stall: unsteady only
    why = diskmodel.fell_behind(secs([0.01] * 5 + [0.2] * 5 + [0.01] * 10))
    assert why and "5 s in a row" in why and "t=40" in why, why
    why = diskmodel.fell_behind(secs([0.3, 0.01] * 10))
    assert why and "overran its model by 17" in why, why
    # a disk busy 0.1 s that lost 0.02 s of it (20 %) cost no reply anything: not a failure
    assert diskmodel.fell_behind([(31.0, 0.05, 0.01), (32.0, 0.05, 0.01)]) is None


def test_the_daemon_dies_with_its_parent(source, tmp_path) -> None:
    """A runner killed with SIGKILL leaves no daemon: it gets SIGTERM from the kernel
    (parent-death signal) and unmounts itself."""
    runner = ("import sys, time\nfrom pathlib import Path\n"
              "from ukweb.diskmodel import DiskModel\n"
              "d = DiskModel(Path(sys.argv[1]), Path(sys.argv[2]) / 'mnt', None, None,"
              " Path(sys.argv[2])).start()\n"
              "print(d.pid, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", runner, str(source), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert mount_type(tmp_path / "mnt") == "fuse.diskmodel"
        proc.kill()
        proc.wait(10)

        def gone() -> bool:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return True
            return stat[stat.rfind(")") + 2] == "Z"

        wait_for(gone, 10, "the daemon to exit")
        wait_for(lambda: mount_type(tmp_path / "mnt") is None, 10, "the mount to go")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_point_whose_disk_model_fell_behind_fails_with_the_reason(tmp_path) -> None:
    """The point runner reads the measured window of system.csv (after the warm-up) and fails
    the point (PointFailed, FAILED with the reason) instead of keeping a silently slow point."""
    from ukweb.point import PointFailed, PointRunner
    runner = PointRunner(testbed=None, docroot=tmp_path, warmup_s=3.0, duration_s=10.0,
                         line_speed=0, seed=1, disk=object())
    system = tmp_path / "system.csv"

    def write(overruns: list[float]) -> None:
        rows = ["t,cpu_idle,disk_busy_s,disk_overrun_s"]
        rows += [f"{i + 1}.001,50,0.9,{o}" for i, o in enumerate(overruns)]
        system.write_text("\n".join(rows) + "\n")

    write([0.9] * 3 + [0.01] * 10)  # behind only in the warm-up: not measured
    runner._check_disk_timing(system)
    write([0.01] * 3 + [0.01] * 4 + [0.3] * 6)
    with pytest.raises(PointFailed) as exc:
        runner._check_disk_timing(system)
    assert exc.value.reason == "disk model fell behind"
    assert "6 s in a row" in exc.value.detail, exc.value.detail
