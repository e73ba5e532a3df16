"""ktux's own behaviour: each TUX switch moves the counters it should, cache misses and the
files of dynamic requests do not block the worker, its idle ring waits are not counted as
blocked on I/O, its pinned cache and page cache stay inside a memory cap, slow and flooding
clients do not stall it, and io_uring trouble is one clear line.  (The behaviour ktux shares
with userver is tested in tests/test_servers.py.)

Waits are for events (wait_until polls a condition against a deadline), never fixed sleeps;
timing thresholds keep a margin of at least 2x over what they measure.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from servers_client import raise_fd_limit, static_ok

from ukweb import cgroups, fileset, knobs, paths
from ukweb.sampler import thread_blkio_ticks
from ukweb.servers import Server, ServerConfig, io_uring_unavailable
from ukweb.workload import CLASSES, FILES_PER_CLASS, file_path

pytest_plugins = ["servers_fixtures"]  # docroot: the shared two-directory file set

BIG = file_path(0, 3, 8)  # 921,600 bytes
WRAP_SUFFIX = b"\n</pre>\n</body></html>\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_until(cond: Callable[[], object], timeout: float = 10, what: str = "condition") -> object:
    """Poll cond() until it is true (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except (OSError, requests.RequestException):
            value = None  # e.g. a status request refused while the server is at its limit
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        time.sleep(0.02)


def _unavailable() -> str | None:
    try:
        paths.binary("ktux")
    except FileNotFoundError as exc:
        return f"ktux is not built: {exc}"
    return io_uring_unavailable()


@pytest.fixture(scope="module")
def ktux_ok() -> None:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)


StartKtux = Callable[..., Server]


@pytest.fixture
def start_ktux(ktux_ok: None, docroot: Path, tmp_path: Path) -> Iterator[StartKtux]:
    """start_ktux(root=None, **ServerConfig fields or ktux options) -> a started ktux."""
    started: list[Server] = []

    def start(root: Path | None = None, preexec: Callable[[], None] | None = None,
              **fields: object) -> Server:
        base = {k: fields.pop(k) for k in ("backlog", "max_conns", "idle_timeout") if k in fields}
        cfg = ServerConfig(label="ktux-test", kind="ktux", options=fields, **base)  # type: ignore[arg-type]
        srv = Server(cfg, root or docroot, tmp_path / f"work{len(started)}", preexec=preexec)
        started.append(srv)
        return srv.start()

    yield start
    from servers_fixtures import SANITIZER_RE  # the plugin is registered by now
    problems = []
    for srv in started:
        srv.stop()
        text = srv.stderr_path.read_text(errors="replace") if srv.stderr_path.exists() else ""
        if SANITIZER_RE.search(text):  # the asan build (UKWEB_BIN=build/asan) reports here
            problems.append(text.strip()[-2000:])
    assert not problems, "\n".join(problems)


def get_all(srv: Server, names: list[str]) -> list[bytes]:
    with requests.Session() as s:
        return [s.get(f"{srv.url}/{n}", timeout=10).content for n in names]


def counters(srv: Server) -> dict:
    return srv.status()["total"]


# --- the switches ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"no_cache": True}, {"no_zerocopy": True}, {"no_cache": True, "no_zerocopy": True},
    {"cache_bytes": 1 << 20}, {"sqpoll": True}, {"no_multishot_accept": True, "sched": "completion"},
    {"cache_entry_max": 1 << 20}, {"cache_entry_max": 1 << 20, "no_zerocopy": True},
    {"sched": "completion"}, {"module_api": "direct"}, {"io_threads": 1}, {"io_threads": 0},
], ids=lambda o: ",".join(f"{k}={v}" if v is not True else k for k, v in o.items()) or "defaults")
def test_every_path_serves_exact_bytes(start_ktux: StartKtux, docroot: Path, options: dict) -> None:
    """Hits (head + pinned pages; send_zc from 16 KiB when entries may be that large), fills,
    splice (files over the entry limit), copy (--no-zerocopy): the same bytes."""
    srv = start_ktux(**options)
    names = [file_path(d, c, n) for d in range(2) for c in range(4) for n in (0, 4, 8)]
    for _ in range(2):  # the second round is served from the cache where there is one
        assert get_all(srv, names) == [(docroot / n).read_bytes() for n in names]
    status = srv.status()
    st = status["total"]
    assert st["requests"]["static"] == 2 * len(names)
    assert st["ring"]["sqpoll"] is bool(options.get("sqpoll"))
    if options.get("no_cache"):
        assert st["cache"]["hits"] == 0 and st["cache"]["entries"] == 0
        assert st["cache"]["misses"] == 2 * len(names)
    else:  # responses over the entry limit bypass the cache (--cache-entry-max, at most 1/4)
        limit = st["cache"]["entry_max"]
        assert limit == min(status["config"]["cache_entry_max"], st["cache"]["limit"] // 4)
        bypass = sum((docroot / n).stat().st_size + 200 > limit for n in names)
        assert bypass < len(names) and (bypass > 0) is ("cache_entry_max" not in options)
        assert st["cache"]["hits"] == len(names) - bypass


@pytest.mark.parametrize("options", [{}, {"no_cache": True}, {"no_cache": True, "no_zerocopy": True}],
                         ids=["cache", "splice", "copy"])
def test_empty_file(start_ktux: StartKtux, tmp_path: Path, options: dict) -> None:
    root = tmp_path / "emptyroot"
    (root / "file_set").mkdir(parents=True)
    (root / "file_set" / "empty").write_bytes(b"")
    srv = start_ktux(root=root, **options)
    for _ in range(2):
        r = requests.get(f"{srv.url}/file_set/empty", timeout=10)
        assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"


def test_cache_hits_and_misses(start_ktux: StartKtux) -> None:
    srv = start_ktux()
    get_all(srv, [file_path(0, 1, 1)] * 5)
    cache = counters(srv)["cache"]
    assert (cache["hits"], cache["misses"], cache["entries"]) == (4, 1, 1)
    assert cache["bytes"] >= 2048


def test_eviction_under_a_small_cache(start_ktux: StartKtux, docroot: Path) -> None:
    cap = 128 * 1024
    srv = start_ktux(cache_bytes=cap)
    names = [file_path(d, c, n) for d in range(2) for c in (0, 1) for n in range(9)]
    assert get_all(srv, names) == [(docroot / n).read_bytes() for n in names]
    cache = counters(srv)["cache"]
    assert cache["evictions"] > 0 and cache["bytes"] <= cap
    # LRU: the most recent file is still cached, the first one was evicted
    get_all(srv, [names[-1], names[0]])
    after = counters(srv)["cache"]
    assert after["hits"] == cache["hits"] + 1 and after["misses"] == cache["misses"] + 1


def test_cache_churn_under_concurrency(start_ktux: StartKtux, docroot: Path) -> None:
    """A cache far smaller than the file set: entries are evicted, their pinned memory reused
    for later misses of the same size, while other clients are still sending from them."""
    srv = start_ktux(cache_bytes=256 * 1024, cache_entry_max=64 * 1024)  # class 2 churns too
    names = [file_path(d, c, n) for d in range(2) for c in range(3) for n in range(9)]
    want = [(docroot / n).read_bytes() for n in names]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda k: get_all(srv, names[k % 7:] + names[:k % 7]), range(12)))
    for k, bodies in enumerate(got):
        assert bodies == want[k % 7:] + want[:k % 7]
    cache = counters(srv)["cache"]
    assert cache["evictions"] > 50 and cache["bytes"] <= 256 * 1024


def test_multishot_accept_switch(start_ktux: StartKtux) -> None:
    single = start_ktux(no_multishot_accept=True, sched="completion")
    for _ in range(20):
        requests.get(f"{single.url}/{file_path(0, 0, 0)}", timeout=10)
    st = counters(single)
    assert st["accept_calls"] == st["accepts"] >= 21
    multi = start_ktux(sched="completion")
    socks = [socket.create_connection((multi.addr, multi.port)) for _ in range(50)]
    try:  # the status request itself is accepted after the 50 (one listen queue, in order)
        st = wait_until(lambda: (c := counters(multi))["accepts"] >= 51 and c, what="51 accepts")
    finally:
        for s in socks:
            s.close()
    assert st["accept_calls"] <= st["accepts"]


@pytest.mark.parametrize("defer", [True, False], ids=["defer_accept", "no_defer_accept"])
def test_defer_accept_hands_over_a_connection_with_its_request(start_ktux: StartKtux,
                                                               defer: bool) -> None:
    """TUX's default TCP_DEFER_ACCEPT: a connected client that has sent nothing is not
    accepted (it waits in the kernel); its first bytes hand it over.  --no-defer-accept: it is
    accepted at the handshake."""
    srv = start_ktux(**({} if defer else {"no_defer_accept": True}))
    assert srv.status()["config"]["no_defer_accept"] is (not defer)
    with socket.create_connection((srv.addr, srv.port)) as quiet:
        if defer:
            time.sleep(0.3)  # a negative: nothing to wait for; 0.3 s is >> a loopback accept
            assert counters(srv)["conns_open"] == 1  # only the status request's own
            quiet.sendall(b"GET /server-status HTTP/1.1\r\n\r\n")
        # the quiet client and the status request's own connection
        wait_until(lambda: counters(srv)["conns_open"] == 2, what="the quiet client accepted")


def test_backlog_and_flags_in_status(start_ktux: StartKtux) -> None:
    srv = start_ktux(backlog=64, iowq_workers=2, no_zerocopy=True)
    st = srv.status()
    assert st["server"] == "ktux"
    assert st["config"]["backlog"] == 64 and st["config"]["iowq_workers"] == 2
    assert st["config"]["no_zerocopy"] is True and st["config"]["no_cache"] is False
    assert st["config"]["ring_iowait"] is False
    assert {"submissions", "enters", "iowq_punts", "sqpoll", "no_iowait"} <= set(st["total"]["ring"])
    assert {"hits", "misses", "evictions", "bytes", "entries", "limit", "entry_max"} <= set(
        st["total"]["cache"])


def test_default_cache_leaves_the_memory_cap_to_the_page_cache(start_ktux: StartKtux) -> None:
    """The defaults suit the paper's 512 MB cap: a pinned cache of the small files (1/8 of the
    cap, pages shared with the page cache), the page cache holding everything else."""
    st = start_ktux().status()
    cache = st["total"]["cache"]
    assert st["config"]["cache_bytes"] == cache["limit"] == 64 << 20
    assert st["config"]["cache_entry_max"] == cache["entry_max"] == 16 << 10


def listen_backlog(port: int) -> int:
    """The accept-queue limit the kernel holds for a listener (ss: Send-Q of a LISTEN socket)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2])


def test_backlog_reaches_listen(start_ktux: StartKtux, docroot: Path, tmp_path: Path) -> None:
    if not shutil.which("ss"):
        pytest.skip("needs ss (iproute2) to read the listen backlog")
    assert listen_backlog(start_ktux(backlog=64).port) == 64
    proc = subprocess.Popen([str(paths.binary("ktux")), "--port", "0", "--docroot", str(docroot),
                             "--post-log", str(tmp_path / "p.log")], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])  # type: ignore[union-attr]
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert listen_backlog(port) == min(2048, somaxconn)  # TUX's default
    finally:
        proc.terminate()
        proc.wait(10)


def unread_bytes(s: socket.socket) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def test_sigterm_finishes_a_spliced_response(start_ktux: StartKtux, docroot: Path) -> None:
    srv = start_ktux(cache_bytes=1 << 20)  # BIG is over a quarter of the cache: spliced
    with socket.create_connection((srv.addr, srv.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the body cannot all be queued
        s.sendall(f"GET /{BIG} HTTP/1.1\r\n\r\n".encode())
        # the response has started (and, unread, the splice is stuck on a full socket)
        wait_until(lambda: unread_bytes(s) > 0, what="the response's first bytes")
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.partition(b"\r\n\r\n")[2] == (docroot / BIG).read_bytes()
    assert srv.proc.wait(5) == 0  # type: ignore[union-attr]


def test_ring_counts_enters_per_request(start_ktux: StartKtux) -> None:
    srv = start_ktux()
    before = counters(srv)["ring"]
    t0 = time.monotonic()
    get_all(srv, [file_path(0, 0, 1)] * 100)
    elapsed = time.monotonic() - t0
    after = counters(srv)["ring"]
    enters = after["enters"] - before["enters"]
    # one client, one request at a time: about one wait for the request, one for the send
    # (~200), at most one more per 250 ms timer tick however slow the machine is; 2x margin
    ticks = int(elapsed / 0.25) + 2
    assert 100 <= enters <= 2 * (200 + ticks)
    assert after["submissions"] - before["submissions"] >= 100


# --- the worker never blocks ----------------------------------------------------------------


BLKIO = Path("/sys/fs/cgroup/blkio")


@contextlib.contextmanager
def slow_disk(path: Path, bytes_per_s: int) -> Iterator[Callable[[], None]]:
    """A blkio cgroup (v1) that throttles reads from path's disk; yields a preexec that joins it.
    A cache miss of a file evicted from the page cache then takes seconds: a real slow read."""
    if os.geteuid() != 0 or not (BLKIO / "blkio.throttle.read_bps_device").exists():
        pytest.skip("a slow disk needs root and the cgroup-v1 blkio throttle")
    dev = os.stat(path).st_dev
    group = BLKIO / f"ukweb-ktux-test-{os.getpid()}"
    group.mkdir(exist_ok=True)
    try:
        try:
            (group / "blkio.throttle.read_bps_device").write_text(
                f"{os.major(dev)}:{os.minor(dev)} {bytes_per_s}\n")
        except OSError as exc:
            pytest.skip(f"cannot throttle {path}'s device {os.major(dev)}:{os.minor(dev)}: {exc}")
        procs = str(group / "cgroup.procs")
        yield lambda: Path(procs).write_text("0\n")  # runs in the child: join the group
    finally:
        for _ in range(50):  # the server has stopped; its io-wq threads may linger a moment
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def evict(path: Path) -> None:
    """Drop one file's pages from the page cache (only that file: others are not disturbed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


QUITTER = file_path(0, 2, 8)  # 92,160 bytes: ~0.3 s at 300 KB/s


def slow_root(tmp_path: Path, docroot: Path) -> tuple[Path, list[str]]:
    """A copy of BIG, QUITTER and the nine class-1 files of dir00000 (so that evicting BIG from
    the page cache touches nothing the session-wide docroot serves)."""
    root = tmp_path / "slowroot"
    (root / "file_set" / "dir00000").mkdir(parents=True)
    small = [file_path(0, 1, n) for n in range(9)]
    for name in [*small, BIG, QUITTER]:
        shutil.copy(docroot / name, root / name)
    return root, small


@pytest.mark.parametrize("options", [{"cache_entry_max": 1 << 20}, {}], ids=["fill", "splice"])
def test_slow_cache_miss_does_not_block_the_worker(start_ktux: StartKtux, docroot: Path,
                                                   tmp_path: Path, options: dict) -> None:
    """A 900 KB miss read from a disk throttled to 300 KB/s takes ~3 s; it runs on the
    kernel's io-wq workers (a fill into the pinned cache, or by default a splice from the page
    cache) while the one worker thread keeps answering other clients."""
    root, small = slow_root(tmp_path, docroot)
    with slow_disk(root, 300_000) as join:
        srv = start_ktux(root=root, preexec=join, **options)
        get_all(srv, small)  # now in ktux's cache
        evict(root / BIG)
        punts = counters(srv)["ring"]["iowq_punts"]
        result: dict[str, object] = {}

        def slow_client() -> None:
            r = requests.get(f"{srv.url}/{BIG}", timeout=30)
            result["bytes"], result["done"] = r.content, time.monotonic()

        t = threading.Thread(target=slow_client)
        misses = counters(srv)["cache"]["misses"]
        t0 = time.monotonic()
        t.start()
        wait_until(lambda: counters(srv)["cache"]["misses"] > misses, what="the miss in flight")
        assert get_all(srv, small * 3) == [(root / n).read_bytes() for n in small * 3]
        others_done = time.monotonic()
        t.join(30)
        punted = counters(srv)["ring"]["iowq_punts"] - punts
        srv.stop()  # leave the cgroup empty, so that it can be removed
    assert result["bytes"] == (root / BIG).read_bytes()
    assert others_done < result["done"]  # type: ignore[operator]
    assert result["done"] - t0 > 1.5  # type: ignore[operator]  (the read really was slow: ~3 s)
    if "cache_entry_max" in options:  # read_fixed into the entry; splices are not counted
        assert punted >= 1


def dyn_get(srv: Server, name: str, timeout: float = 30) -> bytes:
    """A standard dynamic GET (no cookie) wrapping file `name`; the body."""
    r = requests.get(f"{srv.url}/specweb99?/{name}", timeout=timeout)
    assert r.status_code == 200, r.text[:200]
    return r.content


def blkio_ticks(pid: int, tid: int | None = None) -> int:
    """Delay accounting's blkio ticks: of one thread, or summed over the process's threads."""
    ticks = thread_blkio_ticks(pid)
    return ticks.get(tid, 0) if tid is not None else sum(ticks.values())


def test_dynamic_file_read_does_not_block_the_worker(start_ktux: StartKtux, docroot: Path,
                                                     tmp_path: Path) -> None:
    """A dynamic GET wraps a file; ktux reads it through the ring (the module plans the
    response, ktux reads, the module finishes it), so a ~3 s read from a throttled disk does
    not hold up static and dynamic requests of other clients, nor does it count as blocked
    time of the worker thread: delay accounting's blkio ticks grow for a server that blocks in
    the read (userver, whose module reads with pread) and not for ktux's worker."""
    root, small = slow_root(tmp_path, docroot)
    with knobs.delay_accounting() as on, slow_disk(root, 300_000) as join:
        srv = start_ktux(root=root, preexec=join)
        want_small = {n: dyn_get(srv, n) for n in small}  # page cache now holds them
        evict(root / BIG)
        worker0 = blkio_ticks(srv.pid, srv.pid)
        result: dict[str, object] = {}

        def slow_client() -> None:
            result["body"], result["done"] = dyn_get(srv, BIG), time.monotonic()

        # a client that gives up while its file is still being read: the read completes into
        # a connection that is closing, and nobody else notices
        evict(root / QUITTER)
        quitter = socket.create_connection((srv.addr, srv.port))
        quitter.sendall(f"GET /specweb99?/{QUITTER} HTTP/1.1\r\n\r\n".encode())
        wait_until(lambda: counters(srv)["requests"]["dyn_get"] > len(small), what="its read")
        quitter.close()
        dyn_before = counters(srv)["requests"]["dyn_get"]
        t = threading.Thread(target=slow_client)
        t0 = time.monotonic()
        t.start()
        wait_until(lambda: counters(srv)["requests"]["dyn_get"] > dyn_before, what="the slow read")
        for _ in range(3):
            assert [dyn_get(srv, n) for n in small] == list(want_small.values())
            assert get_all(srv, small) == [(root / n).read_bytes() for n in small]
        others_done = time.monotonic()
        t.join(30)
        worker = blkio_ticks(srv.pid, srv.pid) - worker0
        srv.stop()
        body = result["body"]
        assert isinstance(body, bytes) and body.endswith(WRAP_SUFFIX)
        assert (root / BIG).read_bytes() in body
        assert others_done < result["done"]  # type: ignore[operator]
        assert result["done"] - t0 > 1.5  # type: ignore[operator]  (~3 s: it really was slow)
        if not on:
            return  # no delay accounting here (kernel.task_delayacct needs root)
        assert worker <= 5, f"ktux's worker thread was blocked {worker} ticks"
        # the same request to a server that blocks in the read
        userver = Server(ServerConfig(label="userver-blocking", kind="userver"), root,
                         tmp_path / "userver", preexec=join).start()
        try:
            evict(root / BIG)
            before = blkio_ticks(userver.pid)
            t0 = time.monotonic()
            assert dyn_get(userver, BIG) == body.replace(b"ktux", b"userver")
            took = time.monotonic() - t0
            blocked = blkio_ticks(userver.pid) - before
        finally:
            userver.stop()
        assert took > 1.5 and blocked >= 0.5 * took * CLK_TCK, (took, blocked)


def test_idle_ring_waits_are_not_blocked_time(start_ktux: StartKtux, docroot: Path) -> None:
    """io_uring counts a wait with requests in flight as iowait (and delay accounting's blkio
    time) unless it is entered with IORING_ENTER_NO_IOWAIT (Linux >= 6.15); ktux always has
    requests in flight (multishot accept and receives), so without the flag an idle ktux looks
    100 % blocked on I/O.  With it the idle worker accrues ~0 ticks; --ring-iowait (the
    kernel's default) shows what the flag removes."""
    with knobs.delay_accounting() as on:
        if not on:
            pytest.skip("delay accounting needs root (kernel.task_delayacct)")
        srv = start_ktux()
        if not srv.status()["total"]["ring"]["no_iowait"]:
            pytest.skip(f"kernel {platform.release()} lacks IORING_FEAT_NO_IOWAIT (Linux >= 6.15)")
        control = start_ktux(ring_iowait=True)
        assert control.status()["total"]["ring"]["no_iowait"] is False
        held = []
        for server in (srv, control):  # idle keep-alive connections and half-sent requests
            for i in range(20):
                s = socket.create_connection((server.addr, server.port))
                s.sendall(f"GET /{file_path(0, 1, i % 9)} HTTP/1.1\r\n".encode()
                          + (b"\r\n" if i % 2 else b""))
                held.append(s)
        try:
            for server in (srv, control):
                wait_until(lambda server=server: counters(server)["conns_open"] >= 21,
                           what="the held connections")
            window = 1.0
            t0 = {x.pid: blkio_ticks(x.pid, x.pid) for x in (srv, control)}
            time.sleep(window)  # the measurement window: both servers idle
            ticks = {x.pid: blkio_ticks(x.pid, x.pid) - t0[x.pid] for x in (srv, control)}
        finally:
            for s in held:
                s.close()
        assert ticks[srv.pid] <= 2, ticks
        assert ticks[control.pid] >= 0.5 * window * CLK_TCK, ticks


def test_client_that_never_reads_does_not_stall_others(start_ktux: StartKtux, docroot: Path) -> None:
    srv = start_ktux(idle_timeout=2, cache_bytes=1 << 20)  # BIG goes out by splice
    hogs = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((srv.addr, srv.port))
        s.sendall(f"GET /{BIG} HTTP/1.1\r\n\r\n".encode() * 10)  # and never reads
        hogs.append(s)
    try:
        # every hog's first request is being answered (and stuck: the hog does not read)
        wait_until(lambda: counters(srv)["requests"]["static"] >= 4, what="the hogs' requests")
        for _ in range(10):
            assert static_ok(srv, docroot)
        # no progress on the hogs: the 2 s idle timeout closes them (the status request's own
        # connection is the one left open)
        wait_until(lambda: (c := counters(srv))["errors"]["timeout"] >= 4 and c["conns_open"] == 1,
                   timeout=15, what="the idle timeout closing the 4 hogs")
    finally:
        for s in hogs:
            s.close()


def read_responses(sock: socket.socket, n: int, timeout: float = 30) -> list[int]:
    """Read n HTTP responses off sock; their status codes (fewer if the server closes)."""
    sock.settimeout(timeout)
    buf = b""
    codes: list[int] = []
    while len(codes) < n:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                          if line.lower().startswith("content-length:"))
            if len(buf) >= end + 4 + length:
                codes.append(int(head.split(" ", 2)[1]))
                buf = buf[end + 4 + length:]
                continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    return codes


@pytest.mark.parametrize(("count", "name"), [(320, file_path(0, 3, 0)), (5000, file_path(0, 0, 0))])
def test_pipelined_requests_beyond_the_input_buffer_are_all_answered(
        start_ktux: StartKtux, count: int, name: str) -> None:
    """One write of 320 (16,960 B) or 5,000 GETs: each is answered; ktux reads less (cancels its
    receive) while it holds a backlog rather than dropping the client (issue 16, Bad input)."""
    srv = start_ktux()
    with socket.create_connection((srv.addr, srv.port)) as s:
        payload = f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * count
        sender = threading.Thread(target=s.sendall, args=(payload,))  # may block: back-pressure
        sender.start()
        codes = read_responses(s, count)
        sender.join(timeout=30)
    assert codes == [200] * count
    assert counters(srv)["errors"]["header_too_large"] == 0


def rss_kib(pid: int) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


@pytest.mark.parametrize(("options", "window"), [
    ({}, 64), ({"module_api": "direct"}, 0), ({"module_api": "direct", "no_zerocopy": True}, 64),
], ids=["tux_module", "direct_splice", "direct_no_zerocopy"])
def test_dynamic_replies_to_clients_that_never_read_do_not_grow_memory(
        start_ktux: StartKtux, docroot: Path, options: dict, window: int) -> None:
    """800 connections each send a dynamic GET of the 921,600-byte file and never read: ktux
    holds the module's 64 KiB send window (TUX's SEND_BUFFER), a pipe (direct, splice) or a
    64 KiB bounce (direct, --no-zerocopy), not a copy of the reply (it held ~235 MB before:
    issue 16, Bad input); a normal client is still served at once."""
    raise_fd_limit(2000)
    srv = start_ktux(**options)
    rss0 = rss_kib(srv.pid)
    hogs = []
    try:
        for _ in range(800):
            h = socket.socket()
            h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            h.connect((srv.addr, srv.port))
            h.sendall(f"GET /specweb99?/{BIG} HTTP/1.1\r\n\r\n".encode())
            hogs.append(h)
        wait_until(lambda: counters(srv)["requests"]["dyn_get"] >= 800, what="800 dynamic GETs")
        t0 = time.monotonic()
        assert static_ok(srv, docroot)
        assert time.monotonic() - t0 < 0.5
        grown = rss_kib(srv.pid) - rss0
        # KiB per connection (measured: tux module 32 MB, splice 7 MB, bounce 58 MB)
        assert grown < 800 * window + 24 * 1024, f"RSS grew {grown} KiB for 800 stuck dynamic replies"
    finally:
        for h in hogs:
            h.close()


def test_client_that_resets_or_half_closes_during_a_dynamic_request(start_ktux: StartKtux) -> None:
    """A client that half-closes right after its dynamic GET still gets the whole reply; 50
    that reset (SO_LINGER 0) while their 900 KB replies are on the way cost the worker
    nothing: each ends (as a reset, or a reply already handed to the kernel), every slot is
    freed and the next client is served (issue 16, Bad input)."""
    srv = start_ktux()
    want = dyn_get(srv, BIG)
    with socket.create_connection((srv.addr, srv.port)) as half:
        half.sendall(f"GET /specweb99?/{BIG} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        half.shutdown(socket.SHUT_WR)
        got = b""
        half.settimeout(10)
        while chunk := half.recv(1 << 20):
            got += chunk
    assert got.split(b"\r\n\r\n", 1)[1] == want
    for _ in range(50):
        r = socket.create_connection((srv.addr, srv.port))
        r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        r.sendall(f"GET /specweb99?/{BIG} HTTP/1.1\r\n\r\n".encode())
        r.close()  # RST
    wait_until(lambda: counters(srv)["conns_open"] == 1, what="every reset connection freed")
    assert dyn_get(srv, BIG) == want
    c = counters(srv)
    assert c["errors"]["internal"] == 0


def open_sockets(pid: int) -> int:
    """Sockets among a process's descriptors."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            count += os.readlink(fds / fd).startswith("socket:")
    return count


def test_flood_beyond_max_conns_pauses_accepting(start_ktux: StartKtux, docroot: Path) -> None:
    raise_fd_limit(3500)
    srv = start_ktux(max_conns=50, backlog=128, idle_timeout=2)
    socks = []
    try:
        for _ in range(3000):
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.connect_ex((srv.addr, srv.port))
            socks.append(s)
        # ktux took connections up to its limit (a socket each, besides the listener)
        wait_until(lambda: open_sockets(srv.pid) >= 51, what="50 accepted connections")
    finally:
        for s in socks:
            s.close()
    # the resets close what was accepted, the backlog drains, a good client is served again
    wait_until(lambda: static_ok(srv, docroot), timeout=20, what="serving a good client again")
    st = counters(srv)
    assert st["paused_accepting"] >= 1 and st["conns_max_seen"] <= 50
    assert srv.proc is not None and srv.proc.poll() is None


def test_many_concurrent_clients(start_ktux: StartKtux, docroot: Path) -> None:
    srv = start_ktux(cache_bytes=1 << 20)
    names = [file_path(d, c, n) for d in range(2) for c in range(4) for n in (1, 5)]
    errors: list[str] = []

    def client() -> None:
        try:
            if get_all(srv, names) != [(docroot / n).read_bytes() for n in names]:
                errors.append("wrong bytes")
        except requests.RequestException as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


# --- memory: the pinned cache and the page cache share one cap ----------------------------

CAP = 64 << 20      # the server's memory cgroup (the paper's is 512 MB)
PINNED = 8 << 20    # ktux's pinned cache inside it
BIG_SET_DIRS = 20   # 20 x 5.1 MB = 102 MB: 1.6 x the cap


@pytest.fixture(scope="module")
def big_fileset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bigset")
    fileset.generate(root, dirs=BIG_SET_DIRS, progress=False)
    return root


def evict_tree(root: Path) -> None:
    for path in root.rglob("class*_*"):
        evict(path)


def cap_reached(cg: cgroups.Cgroup) -> tuple[int, int]:
    """(peak memory use, times the limit was hit) of a memory cgroup, v1 or v2."""
    d = cg.dirs["memory"]
    if cg.ver == "v2":
        events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
        return int((d / "memory.peak").read_text()), int(events.get("max", 0))
    return int((d / "memory.max_usage_in_bytes").read_text()), int((d / "memory.failcnt").read_text())


def test_pinned_cache_and_page_cache_stay_under_the_memory_cap(ktux_ok: None, big_fileset: Path,
                                                               tmp_path: Path) -> None:
    """Serving a file set larger than the memory cgroup's cap: the pinned cache (mlock'd,
    charged to the cgroup as unevictable memory, full and evicting) and the page cache holding
    the rest fit in the cap together, the kernel reclaims page cache instead of killing ktux, every response
    is right, and /server-status reports the pinned bytes."""
    if os.geteuid() != 0:
        pytest.skip("a memory cgroup needs root")
    try:
        cg = cgroups.Cgroup(f"ukweb-ktux-test-cap-{os.getpid()}", memory_bytes=CAP).create()
    except cgroups.CgroupError as exc:
        pytest.skip(f"no memory cgroup here: {exc}")
    try:
        evict_tree(big_fileset)  # generating it left pages charged to this process's cgroup
        # entries up to 256 KiB (class 3 is spliced), so the pinned cache fills and evicts
        cfg = ServerConfig(label="ktux-cap", kind="ktux",
                           options={"cache_bytes": PINNED, "cache_entry_max": 256 << 10})
        srv = Server(cfg, big_fileset, tmp_path / "work", preexec=cg.join).start()
        try:
            names = [(d, c, n) for d in range(BIG_SET_DIRS) for c in range(CLASSES)
                     for n in range(FILES_PER_CLASS)]
            served: list[int] = []

            def fetch(chunk: list[tuple[int, int, int]]) -> None:
                # checked against the file set's rules in memory: reading the files here would
                # put them in this process's page cache, outside the cap
                with requests.Session() as session:
                    for d, c, n in chunk:
                        r = session.get(f"{srv.url}/{file_path(d, c, n)}", timeout=30)
                        assert r.status_code == 200, (d, c, n)
                        problem = fileset._file_problem(np.frombuffer(r.content, np.uint8), c, n, d)
                        assert problem is None, (d, c, n, problem)
                        served.append(len(r.content))

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(fetch, [names[k::4] for k in range(4)]))
            hot = [(d, c, n) for d in range(BIG_SET_DIRS - 4, BIG_SET_DIRS) for c in (0, 1)
                   for n in range(FILES_PER_CLASS)]  # the last ones read: still pinned
            fetch(hot)
            st = srv.status()["total"]
            pinned, page_cache = st["cache"]["bytes"], cg.page_cache_bytes()
            mem = cg.memory_stat()
            peak, limit_hits = cap_reached(cg)
            alive = srv.proc is not None and srv.proc.poll() is None
        finally:
            srv.stop()
    finally:
        cg.remove()
    assert alive, "ktux died under the memory cap"
    assert sum(served) > 1.5 * CAP  # the file set did not fit ...
    assert limit_hits > 0           # ... so the cap was reached and page cache reclaimed
    assert st["cache"]["limit"] == PINNED and 0.75 * PINNED < pinned <= PINNED  # full
    assert st["cache"]["evictions"] > 0
    assert st["cache"]["hits"] >= len(hot) // 2
    # the pinned cache is the page cache's own pages, mapped and locked: inside the cgroup,
    # counted once (as page cache), no anonymous copy of them
    anon = mem.get("rss", mem.get("anon", 0))
    mapped = mem.get("mapped_file", mem.get("file_mapped", 0))
    assert mem.get("unevictable", 0) >= 0.9 * pinned and mapped >= 0.9 * pinned
    assert anon < pinned  # ktux's own memory (receive buffers, ring: ~4 MB) holds no copy
    assert page_cache + anon <= CAP and peak <= CAP


# --- command line and io_uring trouble ------------------------------------------------------


def test_probe_agrees_with_io_uring_unavailable(ktux_ok: None) -> None:
    proc = subprocess.run([str(paths.binary("ktux")), "--probe"], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 0 and proc.stdout.strip() == "io_uring ok"
    assert io_uring_unavailable() is None


@pytest.mark.parametrize("args", [["--sqpoll=x"], ["--cache-bytes", "0"], ["--iowq-workers", "-1"],
                                  ["--no-cache=1"], ["--bogus"]])
def test_bad_ktux_flags_exit_2(ktux_ok: None, docroot: Path, tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run([str(paths.binary("ktux")), "--docroot", str(docroot), "--post-log",
                           str(tmp_path / "p.log"), *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_memlock_too_low_is_one_line_exit_1(ktux_ok: None, docroot: Path, tmp_path: Path) -> None:
    """A user without the locked-memory allowance for the pinned cache: exit 1, cause + fix."""
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if os.geteuid() != 0 or not setpriv or not prlimit:
        pytest.skip("needs root with setpriv and prlimit to run ktux as an unprivileged user")
    tmp_path.chmod(0o777)
    cmd = [prlimit, "--memlock=65536", setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
           str(paths.binary("ktux")), "--port", "0", "--docroot", str(docroot),
           "--post-log", str(tmp_path / "p.log"), "--cache-bytes", str(64 << 20)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "locked-memory" in lines[0] and "fix:" in lines[0]


IO_URING_SETUP = 425  # the same number on x86_64 and aarch64


def deny_io_uring() -> None:
    """preexec: a seccomp filter that fails io_uring_setup with EPERM, as Docker's default
    profile does; everything else is allowed."""
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    prog = (SockFilter * 4)(
        SockFilter(0x20, 0, 0, 0),                    # A = seccomp_data.nr
        SockFilter(0x15, 0, 1, IO_URING_SETUP),       # A == io_uring_setup ?
        SockFilter(0x06, 0, 0, 0x00050000 | 1),       #   return ERRNO(EPERM)
        SockFilter(0x06, 0, 0, 0x7FFF0000))           # return ALLOW
    fprog = SockFprog(len(prog), prog)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        os._exit(99)  # PR_SET_NO_NEW_PRIVS / PR_SET_SECCOMP failed


def test_io_uring_blocked_by_seccomp_is_one_line_exit_1(ktux_ok: None, docroot: Path,
                                                        tmp_path: Path) -> None:
    """No silent fallback to epoll: with io_uring_setup denied, --probe and a real start both
    exit 1 with one line naming the cause and the fix."""
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"the seccomp filter here knows the syscall number on x86_64/aarch64 only, "
                    f"not {platform.machine()}")
    ktux = str(paths.binary("ktux"))
    for args in (["--probe"], ["--port", "0", "--docroot", str(docroot), "--post-log",
                               str(tmp_path / "p.log")]):
        proc = subprocess.run([ktux, *args], capture_output=True, text=True, timeout=10,
                              preexec_fn=deny_io_uring)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "io_uring unavailable" in lines[0], lines
        assert "seccomp" in lines[0] and "fix:" in lines[0]
        assert "listening" not in proc.stdout
