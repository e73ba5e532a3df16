"""ktux's own behaviour: each TUX switch moves the counters it should, cache misses do not
block the worker, slow and flooding clients do not stall it, and io_uring trouble is one clear
line.  (The behaviour ktux shares with userver is tested in tests/test_servers.py.)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from servers_client import raise_fd_limit, static_ok

from ukweb import paths
from ukweb.servers import Server, ServerConfig, io_uring_unavailable
from ukweb.workload import file_path

pytest_plugins = ["servers_fixtures"]  # docroot: the shared two-directory file set

BIG = file_path(0, 3, 8)  # 921,600 bytes


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
    for srv in started:
        srv.stop()


def get_all(srv: Server, names: list[str]) -> list[bytes]:
    with requests.Session() as s:
        return [s.get(f"{srv.url}/{n}", timeout=10).content for n in names]


def counters(srv: Server) -> dict:
    return srv.status()["total"]


# --- the switches ---------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {}, {"no_cache": True}, {"no_zerocopy": True}, {"no_cache": True, "no_zerocopy": True},
    {"cache_bytes": 1 << 20}, {"sqpoll": True}, {"no_multishot_accept": True},
], ids=lambda o: ",".join(o) or "defaults")
def test_every_path_serves_exact_bytes(start_ktux: StartKtux, docroot: Path, options: dict) -> None:
    """Hits, fills, splice (too big for a 1 MiB cache), copy (--no-zerocopy): same bytes."""
    srv = start_ktux(**options)
    names = [file_path(d, c, n) for d in range(2) for c in range(4) for n in (0, 4, 8)]
    for _ in range(2):  # the second round is served from the cache where there is one
        assert get_all(srv, names) == [(docroot / n).read_bytes() for n in names]
    st = counters(srv)
    assert st["requests"]["static"] == 2 * len(names)
    assert st["ring"]["sqpoll"] is bool(options.get("sqpoll"))
    if options.get("no_cache"):
        assert st["cache"]["hits"] == 0 and st["cache"]["entries"] == 0
        assert st["cache"]["misses"] == 2 * len(names)
    else:  # files over a quarter of the cache bypass it (1 MiB: class3_4 and class3_8)
        limit = options.get("cache_bytes", 256 << 20) // 4
        bypass = sum((docroot / n).stat().st_size + 200 > limit for n in names)
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
    srv = start_ktux(cache_bytes=256 * 1024)
    names = [file_path(d, c, n) for d in range(2) for c in range(3) for n in range(9)]
    want = [(docroot / n).read_bytes() for n in names]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda k: get_all(srv, names[k % 7:] + names[:k % 7]), range(12)))
    for k, bodies in enumerate(got):
        assert bodies == want[k % 7:] + want[:k % 7]
    cache = counters(srv)["cache"]
    assert cache["evictions"] > 50 and cache["bytes"] <= 256 * 1024


def test_multishot_accept_switch(start_ktux: StartKtux) -> None:
    single = start_ktux(no_multishot_accept=True)
    for _ in range(20):
        requests.get(f"{single.url}/{file_path(0, 0, 0)}", timeout=10)
    st = counters(single)
    assert st["accept_calls"] == st["accepts"] >= 21
    multi = start_ktux()
    socks = [socket.create_connection((multi.addr, multi.port)) for _ in range(50)]
    time.sleep(0.3)
    st = counters(multi)
    for s in socks:
        s.close()
    assert st["accepts"] >= 51 and st["accept_calls"] <= st["accepts"]


def test_backlog_and_flags_in_status(start_ktux: StartKtux) -> None:
    srv = start_ktux(backlog=64, iowq_workers=2, no_zerocopy=True)
    st = srv.status()
    assert st["server"] == "ktux"
    assert st["config"]["backlog"] == 64 and st["config"]["iowq_workers"] == 2
    assert st["config"]["no_zerocopy"] is True and st["config"]["no_cache"] is False
    assert {"submissions", "enters", "iowq_punts", "sqpoll"} <= set(st["total"]["ring"])


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


def test_sigterm_finishes_a_spliced_response(start_ktux: StartKtux, docroot: Path) -> None:
    srv = start_ktux(cache_bytes=1 << 20)  # BIG is over a quarter of the cache: spliced
    with socket.create_connection((srv.addr, srv.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the body cannot all be queued
        s.sendall(f"GET /{BIG} HTTP/1.1\r\n\r\n".encode())
        time.sleep(0.3)  # unread: the splice is stuck on a full socket
        srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.partition(b"\r\n\r\n")[2] == (docroot / BIG).read_bytes()
    assert srv.proc.wait(5) == 0  # type: ignore[union-attr]


def test_ring_counts_enters_per_request(start_ktux: StartKtux) -> None:
    srv = start_ktux()
    before = counters(srv)["ring"]
    get_all(srv, [file_path(0, 0, 1)] * 100)
    after = counters(srv)["ring"]
    enters = after["enters"] - before["enters"]
    # one client, one request at a time: about one wait for the request, one for the send
    assert 100 <= enters <= 400
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


def test_slow_cache_miss_does_not_block_the_worker(start_ktux: StartKtux, docroot: Path,
                                                   tmp_path: Path) -> None:
    """A 900 KB miss read from a disk throttled to 300 KB/s takes ~3 s; it runs on the
    kernel's io-wq workers while the one worker thread keeps answering other clients."""
    root = tmp_path / "slowroot"
    (root / "file_set" / "dir00000").mkdir(parents=True)
    small = [file_path(0, 1, n) for n in range(9)]
    for name in [*small, BIG]:
        shutil.copy(docroot / name, root / name)
    with slow_disk(root, 300_000) as join:
        srv = start_ktux(root=root, preexec=join)
        get_all(srv, small)  # now in ktux's cache
        evict(root / BIG)
        punts = counters(srv)["ring"]["iowq_punts"]
        result: dict[str, object] = {}

        def slow_client() -> None:
            r = requests.get(f"{srv.url}/{BIG}", timeout=30)
            result["bytes"], result["done"] = r.content, time.monotonic()

        t = threading.Thread(target=slow_client)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)  # the miss is in flight
        assert get_all(srv, small * 3) == [(root / n).read_bytes() for n in small * 3]
        others_done = time.monotonic()
        t.join(30)
        punted = counters(srv)["ring"]["iowq_punts"] - punts
        srv.stop()  # leave the cgroup empty, so that it can be removed
    assert result["bytes"] == (root / BIG).read_bytes()
    assert others_done < result["done"]  # type: ignore[operator]
    assert result["done"] - t0 > 1.5  # type: ignore[operator]  (the read really was slow)
    assert punted >= 1


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
        time.sleep(0.3)
        for _ in range(10):
            assert static_ok(srv, docroot)
        time.sleep(3)  # no progress on the hogs: the idle timeout closes them
        st = counters(srv)
        assert st["errors"]["timeout"] >= 4 and st["conns_open"] == 1
    finally:
        for s in hogs:
            s.close()


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
        time.sleep(0.5)
    finally:
        for s in socks:
            s.close()
    time.sleep(2.5)
    assert static_ok(srv, docroot)
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


# --- command line and io_uring trouble ------------------------------------------------------


def test_probe_agrees_with_io_uring_unavailable(ktux_ok: None) -> None:
    proc = subprocess.run([str(paths.binary("ktux")), "--probe"], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 0 and proc.stdout.strip() == "io_uring ok"
    assert io_uring_unavailable() is None


@pytest.mark.parametrize("args", [["--sqpoll=x"], ["--cache-bytes", "0"], ["--iowq-workers", "-1"],
                                  ["--no-cache=1"]])
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
