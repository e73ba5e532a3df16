"""The servers (userver, and ktux with the same tests) with real clients on loopback.

Every response is compared with the file on disk or with the Python oracle
(ukweb.specweb99.Oracle) byte for byte; bad inputs get their 4xx while good clients keep
being served; the post log stays complete and strictly numbered under concurrent POSTs, with
several processes, and across kill -9 and a restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from servers_client import connection_flood, exchange, raise_fd_limit, raw, read_response, static_ok

from ukweb import paths
from ukweb.servers import Server, ServerError, named_config
from ukweb.specweb99 import (
    Oracle,
    Request,
    ResetParams,
    custom_ads,
    fetch_records,
    parse_post_log,
    user_personality,
)
from ukweb.workload import CLASSES, FILES_PER_CLASS, file_path

DIRS = 2  # directories in the servers_fixtures.docroot file set

pytest_plugins = ["servers_fixtures"]  # docroot, kind (userver|ktux), start_server, server

ALL_FILES = [(d, c, n) for d in range(DIRS) for c in range(CLASSES) for n in range(FILES_PER_CLASS)]
RESET = ResetParams(maxload=20, pttime=100, maxthread=65, exp1=10, exp2=110)


def send(server: Server, req: Request) -> requests.Response:
    """One SPECweb99 request as the client sends it, through `requests`."""
    headers = {"Cookie": req.cookie()} if req.cookie() else {}
    if req.type == "post":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return requests.post(server.url + req.target(), data=req.post_body(), headers=headers,
                             timeout=10)
    return requests.get(server.url + req.target(), headers=headers, timeout=10)


def oracle_for(server: Server, docroot: Path, tmp: Path, now: float) -> Oracle:
    oracle = Oracle(docroot, tmp / "oracle", server_software=server.config.kind, pid=0)
    oracle.reset(RESET, now)
    return oracle


# --- static files -----------------------------------------------------------------------


def test_every_static_file_byte_for_byte(server: Server, docroot: Path) -> None:
    accepts = server.status()["total"]["accepts"]
    with requests.Session() as s:  # one keep-alive connection for all 72 files
        for d, c, n in ALL_FILES:
            name = file_path(d, c, n)
            r = s.get(f"{server.url}/{name}", timeout=10)
            assert r.status_code == 200, name
            assert r.content == (docroot / name).read_bytes(), name
    st = server.status()["total"]
    assert st["requests"]["static"] == len(ALL_FILES)
    assert st["accepts"] == accepts + 2  # our session, and this status request
    assert st["bytes_out"] > sum((docroot / file_path(*f)).stat().st_size for f in ALL_FILES)


@pytest.mark.parametrize("kind", ["userver"])  # --events and --accept-count are userver flags
@pytest.mark.parametrize("events", ["select", "poll", "epoll"])
@pytest.mark.parametrize("accept_count", [0, 1])
def test_event_mechanisms_and_accept_counts(kind: str, start_server, docroot: Path, events: str,
                                            accept_count: int) -> None:
    srv = start_server(events=events, accept_count=accept_count)
    accepts = srv.status()["total"]["accepts"]
    names = [file_path(d, c, 4) for d, c, _ in ALL_FILES[::9]]
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda n: requests.get(f"{srv.url}/{n}", timeout=10).content, names))
    assert bodies == [(docroot / n).read_bytes() for n in names]
    st = srv.status()
    assert st["config"]["events"] == events and st["total"]["event_waits"] > 0
    batches = {int(k): v for k, v in st["total"]["accept_batches"].items() if v}
    if accept_count == 1:
        assert max(batches) <= 1  # never more than one per round
    assert st["total"]["accepts"] == accepts + len(names) + 1  # + this status request


def test_curl_keepalive_fetches(server: Server, docroot: Path, tmp_path: Path) -> None:
    """curl, a third independent client: several URLs over one connection, bytes compared."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    names = [file_path(0, c, 8) for c in range(CLASSES)]
    outs = [tmp_path / f"out{i}" for i in range(len(names))]
    cmd = ["curl", "-sS", "--fail"]
    for name, out in zip(names, outs, strict=True):
        cmd += [f"{server.url}/{name}", "-o", str(out)]
    before = server.status()["total"]["accepts"]
    subprocess.run(cmd, check=True, timeout=60)
    assert [o.read_bytes() for o in outs] == [(docroot / n).read_bytes() for n in names]
    assert server.status()["total"]["accepts"] == before + 2  # curl's one connection + status


def test_pipelined_requests_answered_in_order(server: Server, docroot: Path) -> None:
    names = [file_path(0, 0, 1), file_path(0, 1, 0), file_path(1, 0, 8)]
    with raw(server) as s:
        s.sendall(b"".join(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in names))
        for n in names:
            status, _, body = read_response(s)
            assert status == 200 and body == (docroot / n).read_bytes()


def test_http10_closes_and_keepalive_keeps(server: Server, docroot: Path) -> None:
    name = file_path(0, 0, 0)
    with raw(server) as s:
        s.sendall(f"GET /{name} HTTP/1.0\r\n\r\n".encode())
        status, headers, _ = read_response(s)
        assert status == 200 and headers.get("connection", "").lower() == "close"
        assert s.recv(1) == b""  # closed after the response
    with raw(server) as s:
        for _ in range(3):
            s.sendall(f"GET /{name} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".encode())
            status, headers, body = read_response(s)
            assert status == 200 and headers["connection"].lower() == "keep-alive"
    with raw(server) as s:  # HTTP/1.1 with Connection: close
        s.sendall(f"GET /{name} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        assert read_response(s)[0] == 200 and s.recv(1) == b""


# --- the SPECweb99 module against the oracle ------------------------------------------------


def _check_against_oracle(server: Server, oracle: Oracle, req: Request, now: float) -> None:
    r = send(server, req)
    body = req.post_body() if req.type == "post" else b""
    headers = {"Cookie": req.cookie()} if req.cookie() else {}
    want = oracle.handle("POST" if req.type == "post" else "GET", req.target(), headers, body,
                         remote_addr="127.0.0.1", now=now)
    assert r.status_code == want.status == 200, (req, r.text[:300])
    assert r.content == want.body, req
    assert r.headers.get("Set-Cookie") == want.header("Set-Cookie"), req


@pytest.mark.parametrize("rtype", ["dyn_get", "cgi_get", "cad_get"])
def test_dynamic_gets_match_oracle(server: Server, docroot: Path, tmp_path: Path, rtype: str) -> None:
    now = time.time()
    server.reset(RESET)
    oracle = oracle_for(server, docroot, tmp_path, now)
    for i, (d, c, n) in enumerate(ALL_FILES):
        req = Request(rtype, d, c, n, user_id=10000 + i % RESET.maxload, last_ad=(i * 37) % 360)
        _check_against_oracle(server, oracle, req, now)


def test_reset_is_seen_by_every_process(start_server, docroot: Path, tmp_path: Path) -> None:
    """Back-to-back Resets with different tables: every process answers CAD GETs from the
    latest one (the ad tables are reloaded when the files change, even within a second)."""
    srv = start_server(procs=4, events="epoll")
    for maxthread in (65, 30):
        reset = ResetParams(maxload=20, pttime=100, maxthread=maxthread, exp1=10, exp2=110)
        now = time.time()
        srv.reset(reset)
        oracle = Oracle(docroot, tmp_path / f"o{maxthread}", server_software=srv.config.kind)
        oracle.reset(reset, now)
        for i in range(40):  # new connections: spread over the processes
            _check_against_oracle(srv, oracle, Request("cad_get", 0, 1, i % 9, user_id=10000 + i % 20,
                                                       last_ad=(i * 53) % 360), now)
    answered = [p["requests"]["cad_get"] for p in srv.status()["processes"]]
    assert sum(answered) == 80


def test_reset_writes_tables_byte_identical(server: Server) -> None:
    t0 = int(time.time())
    server.reset(RESET)
    t1 = int(time.time())
    up = (server.workdir / "User.Personality").read_bytes()
    assert up == user_personality(RESET.maxload, RESET.maxthread)
    ads = (server.workdir / "Custom.Ads").read_bytes()
    candidates = [custom_ads(RESET.pttime, RESET.maxthread, RESET.exp1, RESET.exp2, t)
                  for t in range(t0, t1 + 1)]
    assert ads in candidates


def test_post_matches_oracle_and_is_logged(server: Server, docroot: Path, tmp_path: Path) -> None:
    now = time.time()
    server.reset(RESET)
    oracle = oracle_for(server, docroot, tmp_path, now)
    posts = [Request("post", d, c, n, user_id=10003 + c, client=7 + n) for d, c, n in ALL_FILES[:12]]
    for req in posts:
        _check_against_oracle(server, oracle, req, now)
    got = fetch_records(server.fetch().encode("latin-1"))
    want = parse_post_log(oracle.post_log.read())
    key = ("number", "dir", "cls", "num", "client", "filename", "user_id")
    assert [[getattr(r, k) for k in key] for r in got] == [[getattr(r, k) for k in key] for r in want]
    assert {r.pid for r in got} <= set(server.pids())
    assert all(abs(r.time - now) < 30 for r in got)


def test_reset_fetch_round_trip(server: Server) -> None:
    server.reset(RESET)
    assert fetch_records(server.fetch().encode()) == []
    for i in range(5):
        assert send(server, Request("post", 0, 1, i, user_id=10001, client=i)).status_code == 200
    assert [r.number for r in fetch_records(server.fetch().encode())] == [1, 2, 3, 4, 5]
    server.reset(RESET)  # truncates the log; numbering starts again
    assert fetch_records(server.fetch().encode()) == []
    assert server.post_log.read_bytes() == b"         0\n"


def test_cad_before_any_reset_is_an_error(server: Server) -> None:
    r = send(server, Request("cad_get", 0, 1, 1, user_id=10001, last_ad=3))
    assert r.status_code == 500
    assert static_ok(server, server.docroot)


# --- the post log under concurrency and crashes ---------------------------------------------


def _post_many(server: Server, clients: range, threads: int = 8) -> set[int]:
    """POST once per client id, concurrently; the ids that got a 200."""
    def one(client: int) -> int | None:
        req = Request("post", client % DIRS, client % CLASSES, client % FILES_PER_CLASS,
                      user_id=10000 + client % RESET.maxload, client=client)
        try:
            return client if send(server, req).status_code == 200 else None
        except requests.RequestException:
            return None
    with ThreadPoolExecutor(threads) as pool:
        return {c for c in pool.map(one, clients) if c is not None}


def _log_records(server: Server):
    """The post log read straight from the file, checked like the manager does."""
    return parse_post_log(server.post_log.read_bytes())


def test_concurrent_posts_several_processes(start_server) -> None:
    srv = start_server(procs=4, events="epoll")
    srv.reset(RESET)
    acked = _post_many(srv, range(300))
    records = _log_records(srv)
    assert [r.number for r in records] == list(range(1, len(records) + 1))
    assert sorted(r.client for r in records) == sorted(acked)  # each acked POST exactly once
    assert len(srv.status()["processes"]) == (4 if srv.config.kind == "userver" else 1)
    assert fetch_records(srv.fetch().encode()) == records


def test_post_log_survives_kill9_and_restart(start_server, tmp_path: Path) -> None:
    work = tmp_path / "crash"
    srv = start_server(workdir=work, procs=4)
    srv.reset(RESET)
    acked: set[int] = set()
    stop = threading.Event()

    def load() -> None:
        for base in range(0, 100000, 40):
            if stop.is_set():
                return
            acked.update(_post_many(srv, range(base, base + 40), threads=4))

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.0)
    srv.kill()  # kill -9 of every server process, mid-run
    stop.set()
    t.join(30)
    assert acked, "no POST got through before the kill"
    # restart on the same post log: the count comes from the file, numbering continues
    again = start_server(workdir=work, procs=4)
    records = _log_records(again)
    logged = [r.client for r in records]
    assert [r.number for r in records] == list(range(1, len(records) + 1))
    assert acked <= set(logged) and len(logged) == len(set(logged))
    assert len(logged) - len(acked) <= 4  # at most the POSTs in flight when killed
    more = _post_many(again, range(200000, 200010), threads=2)
    after = _log_records(again)
    assert len(more) == 10 and [r.number for r in after] == list(range(1, len(records) + 11))


def test_post_log_sync_option(start_server) -> None:
    srv = start_server(options={"post_log_sync": True})
    assert srv.status()["config"]["post_log_sync"] is True
    srv.reset(RESET)
    assert _post_many(srv, range(20), threads=4) == set(range(20))
    assert [r.client for r in _log_records(srv)] != [] and len(_log_records(srv)) == 20


def test_rejected_post_is_not_logged(server: Server) -> None:
    server.reset(RESET)
    missing = Request("post", 0, 1, 1, user_id=10001)
    body = missing.post_body().replace(b"dir=00000", b"dir=00042")  # no such directory
    r = requests.post(server.url + "/specweb99", data=body, timeout=10,
                      headers={"Cookie": missing.cookie()})
    assert r.status_code == 404
    no_cookie = requests.post(server.url + "/specweb99", data=missing.post_body(), timeout=10)
    assert no_cookie.status_code == 400
    short = (b"POST /specweb99 HTTP/1.1\r\nHost: x\r\nCookie: " + missing.cookie().encode() +
             b"\r\nContent-Length: 90\r\n\r\n" + missing.post_body()[:20])
    assert exchange(server, short, shut_write=True)[0] == 400
    assert server.post_log.read_bytes() == b"         0\n"


# --- bad input: each gets its 4xx, everyone else is still served ------------------------------

BAD_REQUESTS = {
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "no HTTP version": (b"GET /file_set/dir00000/class0_0\r\n\r\n", 400),
    "bad version": (b"GET / HTTP/2.0\r\n\r\n", 400),
    "unknown method": (b"BREW /file_set/dir00000/class0_0 HTTP/1.1\r\n\r\n", 405),
    "uri over the limit": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414),
    "header over the limit": (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    "header without colon": (b"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n", 400),
    "dot-dot escape": (b"GET /../../../etc/passwd HTTP/1.1\r\n\r\n", 403),
    "encoded dot-dot escape": (b"GET /file_set/%2e%2e/%2E%2E/etc/passwd HTTP/1.1\r\n\r\n", 403),
    "encoded slash escape": (b"GET /file_set/..%2f..%2fetc/passwd HTTP/1.1\r\n\r\n", 403),
    "NUL byte": (b"GET /file_set/dir00000/class0_0%00x HTTP/1.1\r\n\r\n", 400),
    "dynamic escape": (b"GET /specweb99?/../../etc/passwd HTTP/1.1\r\n\r\n", 403),
    "directory": (b"GET /file_set/ HTTP/1.1\r\n\r\n", 403),
    "missing file": (b"GET /file_set/dir00099/class0_0 HTTP/1.1\r\n\r\n", 404),
    "POST without Content-Length": (b"POST /specweb99 HTTP/1.1\r\n\r\n", 411),
    "POST negative Content-Length": (b"POST /specweb99 HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    "POST non-numeric Content-Length": (b"POST /specweb99 HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
    "POST oversized Content-Length": (b"POST /specweb99 HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
    "POST chunked": (b"POST /specweb99 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    "POST to a static path": (b"POST /file_set/dir00000/class0_0 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    "unknown command": (b"GET /specweb99?command/Explode HTTP/1.1\r\n\r\n", 400),
    "bad Reset": (b"GET /specweb99?command/Reset&maxload=x HTTP/1.1\r\n\r\n", 400),
    "bad cookie": (b"GET /specweb99?/file_set/dir00000/class1_0 HTTP/1.1\r\nCookie: nope\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_4xx(server: Server, docroot: Path, case: str) -> None:
    payload, want = BAD_REQUESTS[case]
    with raw(server) as good:  # a client in the middle of a keep-alive session
        good.sendall(f"GET /{file_path(0, 1, 1)} HTTP/1.1\r\n\r\n".encode())
        assert read_response(good)[0] == 200
        status, _, body = exchange(server, payload)
        assert status == want, body[:200]
        assert b"root:" not in body
        good.sendall(f"GET /{file_path(1, 2, 3)} HTTP/1.1\r\n\r\n".encode())
        assert read_response(good)[2] == (docroot / file_path(1, 2, 3)).read_bytes()
    assert static_ok(server, docroot)
    errors = server.status()["total"]["errors"]
    assert sum(errors.values()) >= 1


def test_request_line_at_the_limit_split_after_its_cr(server: Server, docroot: Path) -> None:
    """A request line of exactly the 2,048-byte limit is served even when the server reads it in
    two segments split between its CR and LF (it was answered 414: found by servers/fuzz)."""
    name = "file_set/dir00000/class0_0"
    target = f"/{name}?".encode()  # a query pads the line; the file is served as without it
    line = b"GET " + target + b"q" * (2048 - len(b"GET  HTTP/1.1") - len(target)) + b" HTTP/1.1"
    assert len(line) == 2048
    with raw(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(line + b"\r")
        time.sleep(0.2)  # the server reads the first segment alone
        s.sendall(b"\n\r\n")
        status, _, body = read_response(s)
    assert status == 200 and body == (docroot / name).read_bytes()
    over = line.replace(b"?", b"?q", 1)
    assert exchange(server, over + b"\r")[0] == 414  # one byte more: too long even before its LF


def test_error_response_then_close_even_if_client_keeps_sending(server: Server) -> None:
    """After a 4xx the server half-closes and discards what follows, so the client reads its
    4xx instead of a reset; a client that keeps streaming is cut off after a bounded time."""
    with raw(server, timeout=10) as s:
        s.sendall(b"GET /" + b"a" * 5000)  # over the URI limit, and no end in sight
        status, _, _ = read_response(s)
        assert status == 414
        t0 = time.monotonic()
        closed = False
        while not closed and time.monotonic() - t0 < 8:
            try:  # (reading gives EOF at once: the server half-closed after its 4xx)
                s.sendall(b"x" * 1000)
            except (BrokenPipeError, ConnectionResetError):
                closed = True  # the server closed for good: our data is answered with RST
            time.sleep(0.05)
        assert closed and 1 <= time.monotonic() - t0 < 6


def test_stalled_client_is_closed_after_idle_timeout(start_server, docroot: Path) -> None:
    srv = start_server(idle_timeout=1)
    with raw(srv, timeout=10) as slow:
        slow.sendall(b"G")  # one byte, then (almost) nothing
        t0 = time.monotonic()
        time.sleep(0.8)
        slow.sendall(b"E")  # a trickle does not extend the request deadline
        assert static_ok(srv, docroot)  # others are served meanwhile
        try:
            assert slow.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 5
    assert srv.status()["total"]["errors"]["timeout"] == 1


def test_idle_keepalive_connection_is_closed(start_server) -> None:
    srv = start_server(idle_timeout=1)
    with raw(srv, timeout=10) as s:
        s.sendall(f"GET /{file_path(0, 0, 0)} HTTP/1.1\r\n\r\n".encode())
        read_response(s)
        assert s.recv(1) == b""  # closed by the server within the idle timeout


def test_connection_flood_beyond_max_conns(start_server, docroot: Path) -> None:
    """20,000 connection attempts at once against --max-conns 200: the server stops
    accepting at the limit, lets the backlog hold, and never crashes."""
    srv = start_server(max_conns=200, backlog=128, idle_timeout=2)
    with connection_flood(srv, 20000, hold_s=1.5):
        time.sleep(0.3)
        st = srv.status()["total"]  # answered while flooded (through the backlog too)
    assert st["paused_accepting"] >= 1 and st["conns_max_seen"] <= 200
    if srv.config.kind == "userver":  # Accept-Inf: a round takes everything pending
        assert any(int(k) >= 2 and v for k, v in st["accept_batches"].items())
    assert static_ok(srv, docroot)  # once the flood's idle connections time out
    assert srv.proc is not None and srv.proc.poll() is None


def test_select_with_3000_connections(kind: str, start_server, docroot: Path) -> None:
    raise_fd_limit(3300)
    srv = start_server(events="select", backlog=4096)
    socks = [socket.create_connection((srv.addr, srv.port), timeout=10) for _ in range(3000)]
    try:
        name = file_path(0, 0, 2)
        want = (docroot / name).read_bytes()
        for s in socks:
            s.sendall(f"GET /{name} HTTP/1.1\r\n\r\n".encode())
        for s in socks:
            assert read_response(s, 20)[2] == want
        st = srv.status()["total"]
        assert st["conns_open"] >= 3000 and st["conns_max_seen"] >= 3000
    finally:
        for s in socks:
            s.close()


# --- life cycle, status, command line ---------------------------------------------------------

STATUS_KEYS = {"pid", "requests", "responses", "errors", "bytes_out", "conns_open", "conns_max_seen",
               "accepts", "accept_calls", "accept_batches", "event_waits", "paused_accepting"}


def test_status_counters(start_server, docroot: Path) -> None:
    srv = start_server(procs=3)
    before = srv.status()["total"]
    for d, c, n in ALL_FILES[:10]:
        requests.get(f"{srv.url}/{file_path(d, c, n)}", timeout=10)
    requests.get(f"{srv.url}/file_set/nothing", timeout=10)
    st = srv.status()
    assert st["server"] == srv.config.kind and st["version"] == 1
    assert STATUS_KEYS <= set(st["total"])
    assert set(st["total"]["requests"]) == {"static", "dyn_get", "cad_get", "post", "cgi_get",
                                            "command", "status"}
    total = st["total"]
    assert total["requests"]["static"] == 11 and total["errors"]["not_found"] == 1
    assert total["responses"]["2xx"] - before["responses"]["2xx"] == 10 + 1  # + `before`
    assert total["responses"]["4xx"] == 1
    for key in ("accepts", "bytes_out", "event_waits"):
        assert total[key] == sum(p[key] for p in st["processes"])
    pids = [p["pid"] for p in st["processes"]]
    assert len(set(pids)) == len(pids) == (3 if srv.config.kind == "userver" else 1)
    assert st["config"]["max_conns"] == 15000 and st["config"]["backlog"] == 128


def test_sigterm_finishes_inflight_response_and_exits_0(server: Server, docroot: Path) -> None:
    name = file_path(1, 3, 8)  # 921,600 bytes: still in flight when SIGTERM arrives
    want = (docroot / name).read_bytes()
    with raw(server, timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # the server must wait for us
        s.sendall(f"GET /{name} HTTP/1.1\r\n\r\n".encode())
        first = s.recv(1000)
        os.kill(server.pid, signal.SIGTERM)
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    body = (first + rest).partition(b"\r\n\r\n")[2]
    assert body == want
    assert server.proc is not None and server.proc.wait(5) == 0


def test_startup_failure_reports_servers_message(kind: str, docroot: Path, tmp_path: Path) -> None:
    cfg = named_config("ktux" if kind == "ktux" else "userver-1")
    with pytest.raises(ServerError, match="docroot"):
        Server(cfg, tmp_path / "no-such-docroot", tmp_path / "w").start(timeout=5)
    with Server(cfg, docroot, tmp_path / "a") as first:
        busy = Server(cfg, docroot, tmp_path / "b", port=first.port)
        with pytest.raises(ServerError, match="listen|in use"):
            busy.start(timeout=5)


@pytest.mark.parametrize("args", [
    ["--bogus"], ["--port"], ["--port", "70000"], ["--max-conns", "0"], ["--events", "kqueue"],
    ["--idle-timeout", "x"], [],
])
def test_bad_command_line_exits_2_with_one_line(kind: str, docroot: Path, tmp_path: Path,
                                                args: list[str]) -> None:
    base = ["--docroot", str(docroot), "--post-log", str(tmp_path / "p.log")] if args else []
    proc = subprocess.run([str(paths.binary(kind)), *base, *args], capture_output=True, timeout=10)
    assert proc.returncode == 2
    assert len(proc.stderr.decode().strip().splitlines()) == 1


def test_named_configs() -> None:
    assert named_config("userver-8").procs == 8 and named_config("userver-8").events == "select"
    assert named_config("ktux").kind == "ktux"
    with pytest.raises(ValueError, match="userver-N"):
        named_config("apache")
    assert json.loads(json.dumps(named_config("userver-1").args()))
    # ablation variants: the µserver's blocking sendfile path switched off, one flag each
    assert "--dynamic-writes=nonblocking" in named_config("userver-8.nonblocking").args()
    assert named_config("userver-8.copy.nonblocking").options == {
        "dynamic_send": "copy", "dynamic_writes": "nonblocking"}
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        named_config("userver-8.fast")
    # ktux's: TUX's module API and accept-first loop by default, each switched off by a variant
    assert named_config("ktux").options == {}
    assert named_config("ktux.direct.completion").args()[-2:] == ["--module-api=direct",
                                                                 "--sched=completion"]
    with pytest.raises(ValueError, match="unknown variant 'nonblocking'"):
        named_config("ktux.nonblocking")


def test_ukweb_build_runs_make() -> None:
    proc = subprocess.run(["ukweb", "build"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (paths.REPO / "build" / "userver").is_file()
    bad = subprocess.run(["ukweb", "build", "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr
