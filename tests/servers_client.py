"""Raw-socket HTTP client helpers for tests/test_servers.py (exact framing, pipelining)."""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ukweb.servers import Server


def raise_fd_limit(n: int) -> None:
    """Let this test process hold n sockets (within the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n:
        pytest.skip(f"cannot open {n} descriptors here (hard limit {hard})")


@contextlib.contextmanager
def raw(server: Server, timeout: float = 5) -> Iterator[socket.socket]:
    """A raw TCP connection to the server."""
    s = socket.create_connection((server.addr, server.port), timeout=timeout)
    try:
        yield s
    finally:
        s.close()


def read_response(s: socket.socket, deadline_s: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Exactly one HTTP response from a raw socket (Content-Length framed), leaving any
    pipelined response after it unread: status, headers (lower-case names), body."""
    end = time.monotonic() + deadline_s
    while True:  # peek until the whole head is there, then consume exactly the head
        peek = s.recv(65536, socket.MSG_PEEK)
        if not peek:
            raise ConnectionError("closed before a response head")
        at = peek.find(b"\r\n\r\n")
        if at >= 0:
            break
        if time.monotonic() > end:
            raise TimeoutError(f"no complete response head in time: {peek[:200]!r}")
        time.sleep(0.01)
    head = s.recv(at + 4, socket.MSG_WAITALL)[:at]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body = b""
    while len(body) < length:
        chunk = s.recv(min(65536, length - len(body)))
        if not chunk:
            raise ConnectionError(f"closed after {len(body)} of {length} body bytes")
        body += chunk
    return status, headers, body


def exchange(server: Server, payload: bytes, *, shut_write: bool = False) -> tuple[int, dict, bytes]:
    """Send raw bytes on a new connection and read one response."""
    with raw(server) as s:
        s.sendall(payload)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        return read_response(s)


def static_ok(server: Server, docroot: Path, name: str = "file_set/dir00000/class0_0") -> bool:
    """Is the server still serving a good client correctly?"""
    with raw(server) as s:
        s.sendall(f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _, body = read_response(s)
    return status == 200 and body == (docroot / name).read_bytes()


def _flood_worker(addr: str, port: int, count: int, hold_s: float, ready) -> None:
    raise_fd_limit(count + 100)
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        # SO_LINGER 0: close sends RST and leaves no TIME_WAIT behind
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.connect_ex((addr, port))
        socks.append(s)
    ready.release()
    time.sleep(hold_s)
    for s in socks:
        s.close()


@contextlib.contextmanager
def connection_flood(server: Server, count: int, procs: int = 2, hold_s: float = 1.0) -> Iterator[None]:
    """`count` non-blocking connection attempts at once, from `procs` processes (one process
    may not hold 20,000 descriptors); the body runs while they are all pending or open."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Semaphore(0)
    workers = [ctx.Process(target=_flood_worker,
                           args=(server.addr, server.port, count // procs, hold_s, ready))
               for _ in range(procs)]
    for w in workers:
        w.start()
    try:
        for _ in workers:
            if not ready.acquire(timeout=60):
                raise TimeoutError("flood workers did not open their sockets in time")
        yield
    finally:
        for w in workers:
            w.join(60)
            if w.is_alive():
                w.kill()
