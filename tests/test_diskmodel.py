"""The FUSE disk model (emul/diskmodel.c, ukweb.diskmodel) on this machine's kernel.

A real daemon over a temporary directory: latency and rate within 15 % of the parameters, cache
hits that never reach it, the model switched off and on, the page cache charged to the reader's
memory cgroup, a killed daemon failing its readers instead of hanging them and leaving no mount,
and bad input refused in one line. Every wait polls for its condition with a deadline.
"""

from __future__ import annotations

import errno
import mmap
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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
