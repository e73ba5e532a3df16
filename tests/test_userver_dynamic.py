"""userver's dynamic path as the µserver's (paper §4.3): a dynamic reply whose file goes out
unchanged is sent with sendfile after its head, and its write blocks the process.

Byte-for-byte answers are checked by test_servers.py's oracle tests (default switches); here:
sendfile is really used (strace, and the status counter), the reply is the same bytes with
either --dynamic-send, a client that reads slowly holds up the whole process with blocking
writes and not with --dynamic-writes nonblocking, and a client that never reads costs the
process at most --idle-timeout.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from servers_client import read_response

from ukweb import paths
from ukweb.servers import Server
from ukweb.specweb99 import Request, ResetParams

pytest_plugins = ["servers_fixtures"]  # docroot, kind, start_server

RESET = ResetParams(maxload=20, pttime=100, maxthread=65, exp1=10, exp2=110)
BIG = "/specweb99?/file_set/dir00000/class3_8"  # 900 KiB: several overflow any socket buffer
PIPELINED = 6  # 5.4 MB of replies, more than tcp_wmem's 4 MiB maximum send buffer


def _dyn(server: Server) -> dict:
    return server.status()["total"]["dynamic_writes"]


@pytest.mark.parametrize("kind", ["userver"])
def test_unchanged_file_is_sent_with_sendfile(kind: str, start_server, docroot: Path) -> None:
    srv = start_server()
    srv.reset(RESET)
    size = (docroot / "file_set/dir00000/class2_3").stat().st_size
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    trace = srv.workdir / "strace.txt"
    tracer = subprocess.Popen(["strace", "-f", "-p", str(srv.pid), "-e", "trace=sendfile",
                               "-o", str(trace)], stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stderr is not None
        tracer.stderr.readline()  # "strace: Process N attached": from here it sees the calls
        r = requests.get(srv.url + "/specweb99?/file_set/dir00000/class2_3", timeout=10)
        assert r.status_code == 200
    finally:
        tracer.terminate()
        tracer.wait(10)
    calls = [ln for ln in trace.read_text().splitlines() if "sendfile(" in ln]
    assert calls and sum(int(ln.rsplit("=", 1)[1]) for ln in calls) == size
    assert _dyn(srv)["sendfile_bytes"] == size and _dyn(srv)["replies"] == 1


@pytest.mark.parametrize("kind", ["userver"])
def test_sendfile_and_copy_send_the_same_bytes(kind: str, start_server) -> None:
    """Every reply type the module builds around a file, through both paths: a custom-ad GET
    of a class1 file substitutes ads (copied either way), a POST is logged once either way."""
    targets = [Request("dyn_get", 1, c, n) for c in range(4) for n in (0, 8)]
    targets += [Request("cad_get", 0, c, 2, user_id=10001, last_ad=7) for c in range(4)]
    targets += [Request("post", 0, 1, 3, user_id=10002, client=5)]
    bodies: dict[str, list[bytes]] = {}
    for mode in ("sendfile", "copy"):
        srv = start_server(options={"dynamic_send": mode})
        srv.reset(RESET)
        got = []
        for req in targets:
            headers = {"Cookie": req.cookie()} if req.cookie() else {}
            if req.type == "post":
                r = requests.post(srv.url + req.target(), data=req.post_body(), headers=headers,
                                  timeout=10)
            else:
                r = requests.get(srv.url + req.target(), headers=headers, timeout=10)
            assert r.status_code == 200, (mode, req)
            got.append(r.content.replace(str(srv.port).encode(), b"PORT"))
        bodies[mode] = got
        sent = _dyn(srv)["sendfile_bytes"]
        assert (sent > 0) == (mode == "sendfile")
        srv.stop()
    assert bodies["sendfile"] == bodies["copy"]


def _slow_reader(srv: Server, read_after_s: float, out: dict) -> socket.socket:
    """A client that pipelines PIPELINED big dynamic GETs and reads nothing for read_after_s."""
    a = socket.socket()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.connect((srv.addr, srv.port))
    a.sendall(f"GET {BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * PIPELINED)

    def read() -> None:
        time.sleep(read_after_s)
        a.settimeout(10)
        try:
            out["replies"] = [read_response(a, 10) for _ in range(PIPELINED)]
        except (OSError, ConnectionError) as exc:
            out["error"] = exc

    if read_after_s >= 0:
        t = threading.Thread(target=read)
        t.start()
        out["thread"] = t
    return a


def _other_client_wait(srv: Server) -> float:
    time.sleep(0.2)  # the big replies are being written
    t0 = time.monotonic()
    assert requests.get(srv.url + "/file_set/dir00000/class0_0", timeout=10).status_code == 200
    return time.monotonic() - t0


@pytest.mark.parametrize("kind", ["userver"])
@pytest.mark.parametrize("writes", ["blocking", "nonblocking"])
def test_slow_reader_blocks_the_process_only_with_blocking_writes(kind: str, start_server,
                                                                 writes: str) -> None:
    srv = start_server(idle_timeout=5, options={"dynamic_writes": writes})
    out: dict = {}
    a = _slow_reader(srv, 1.0, out)
    try:
        waited = _other_client_wait(srv)
        out["thread"].join(20)
    finally:
        a.close()
    assert "error" not in out
    replies = out["replies"]
    assert [r[0] for r in replies] == [200] * PIPELINED and len({r[2] for r in replies}) == 1
    dyn = _dyn(srv)
    assert dyn["replies"] == PIPELINED and dyn["blocked"] >= 1  # the socket buffer overflowed
    if writes == "blocking":  # the process slept in the write until the reader woke up
        assert waited > 0.5 and dyn["blocked_s"] > 0.5
    else:  # the loop went on serving; nothing slept
        assert waited < 0.5 and dyn["blocked_s"] == 0


@pytest.mark.parametrize("kind", ["userver"])
def test_reader_that_never_reads_costs_at_most_the_idle_timeout(kind: str, start_server) -> None:
    srv = start_server(idle_timeout=2)
    a = _slow_reader(srv, -1, {})
    try:
        waited = _other_client_wait(srv)
    finally:
        a.close()
    # the write is given up --idle-timeout after its last progress (the kernel may still take
    # a few hundred KB into a growing send buffer during the first seconds)
    assert 1.0 < waited < 8.0
    st = srv.status()["total"]
    assert st["errors"]["timeout"] == 1 and st["dynamic_writes"]["blocked"] == 1


@pytest.mark.parametrize("kind", ["userver"])
def test_sigterm_ends_a_blocked_write_within_the_drain(kind: str, start_server) -> None:
    srv = start_server()  # --idle-timeout 60: only the drain can end the blocked write soon
    a = _slow_reader(srv, -1, {})
    try:
        time.sleep(0.5)  # the process sleeps in the write of the second reply
        t0 = time.monotonic()
        code = srv.stop()
        took = time.monotonic() - t0
    finally:
        a.close()
    # given up at its first 1-s slice without progress after SIGTERM (the kernel may still be
    # taking bytes for a while): exit 0 before Server.stop's 5-s grace ends in SIGKILL
    assert code == 0 and took < 5.0


@pytest.mark.parametrize("args", [["--dynamic-writes", "sometimes"], ["--dynamic-send", "mmap"],
                                  ["--dynamic-send"]])
def test_bad_dynamic_switch_exits_2_with_one_line(docroot: Path, tmp_path: Path,
                                                  args: list[str]) -> None:
    cmd = [str(paths.binary("userver")), "--docroot", str(docroot), "--post-log",
           str(tmp_path / "post.log"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--dynamic" in done.stderr or "incomplete option" in done.stderr
