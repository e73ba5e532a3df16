"""userver (1 process, epoll) against nginx (1 worker, sendfile) on a cached static file set.

Both servers are pinned to one CPU and driven in turn by the same client (wrk, keep-alive,
a URL list dealt from the SPECweb99 deck) pinned to another CPU, so the ratio of their
throughputs is measured side by side in one run. Also prints each server's CPU microseconds
per request (/proc/<pid>/stat utime+stime) and system calls per request (userver's
event_waits counter; with --strace, `strace -c -f` over a short extra run for both).

    .venv/bin/python bench/userver_vs_nginx.py [--seconds 5] [--connections 50] [--rounds 2]

Goal: userver / nginx >= 1.0. Numbers on a shared, busy machine are noisy: compare ratios.
The helpers (Nginx, static_urls, run_wrk, cpu_seconds, pinned) are meant to be imported by
other benchmarks (bench/servers_static.py adds ktux as a third server).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from ukweb import fileset
from ukweb.servers import Server, ServerConfig
from ukweb.workload import Deck, file_path, mix

SERVER_CPU, CLIENT_CPU = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 60;
    default_type text/plain;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {addr}:{port} backlog=128;
        root {docroot};
    }}
}}
"""

WRK_LUA = """\
local paths = {{}}
for line in io.lines("{urls}") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def pinned(cpu: int) -> Callable[[], None] | None:
    """A preexec function pinning the child to one CPU (None when this machine has one CPU)."""
    if os.cpu_count() == 1:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def static_urls(dirs: int, count: int = 1000, seed: int = 1) -> list[str]:
    """Static URLs dealt from the SPECweb99 deck (class mix, Zipf over dirs and files)."""
    deck = Deck(dirs, mix("static"), seed=seed, size=count)
    return ["/" + file_path(e.dir, e.cls, e.num) for e in deck.deal()]


def warm_cache(root: Path) -> None:
    """Read every file once so that the file set is in the page cache for both servers."""
    for path in root.rglob("class*"):
        path.read_bytes()


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(url: str, urls_file: Path, seconds: int, connections: int, lua: Path) -> WrkResult:
    """wrk pinned to CLIENT_CPU, one thread, keep-alive, cycling through the URL list."""
    lua.write_text(WRK_LUA.format(urls=urls_file))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    if os.cpu_count() and os.cpu_count() > 1:
        cmd = ["taskset", "-c", str(CLIENT_CPU), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    out = done.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return WrkResult(int(m.group(1)), secs, errors)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


class Nginx:
    """nginx with one worker, sendfile on, access_log off, from a temporary config."""

    label = "nginx"

    def __init__(self, docroot: Path, tmp: Path, addr: str = "127.0.0.1") -> None:
        self.docroot, self.tmp, self.addr = docroot, tmp, addr
        self.port = _free_port(addr)
        self.url = f"http://{addr}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Nginx:
        self.tmp.mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, addr=self.addr, port=self.port,
                                          docroot=self.docroot))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(self.tmp)],
                                     preexec_fn=pinned(SERVER_CPU), start_new_session=True,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + "/", timeout=1)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError("nginx did not answer in 10 s")

    def pids(self) -> list[int]:
        assert self.proc is not None
        parent = psutil.Process(self.proc.pid)
        return [parent.pid] + [c.pid for c in parent.children(recursive=True)]

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _free_port(addr: str) -> int:
    import socket
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


@dataclass
class Measurement:
    label: str
    rate: float
    cpu_us_per_req: float
    waits_per_req: float | None
    errors: int


def measure(label: str, url: str, pids: Callable[[], list[int]], status: Callable[[], dict] | None,
            args: argparse.Namespace, work: Path) -> Measurement:
    """One wrk run against a started server: rate, CPU per request, event waits per request.

    `args` needs .seconds and .connections (bench/servers_static.py calls it this way)."""
    procs = pids()
    before_cpu = cpu_seconds(procs)
    before = status()["total"]["event_waits"] if status else None
    res = run_wrk(url, work / "urls.txt", args.seconds, args.connections, work / "urls.lua")
    cpu = cpu_seconds(procs) - before_cpu
    waits = (status()["total"]["event_waits"] - before) / res.requests if status else None
    return Measurement(label, res.rate, cpu * 1e6 / max(res.requests, 1), waits, res.errors)


def strace_syscalls_per_request(url: str, pids: list[int], args: argparse.Namespace,
                                work: Path) -> float:
    """System calls per request over a short extra run under `strace -c -f`."""
    out = work / "strace.txt"
    cmd = ["strace", "-c", "-f", "-o", str(out)]
    for pid in pids:
        cmd += ["-p", str(pid)]
    tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    res = run_wrk(url, work / "urls.txt", 2, args.connections, work / "urls.lua")
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    m = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(?:\d+\s+)?total", out.read_text(), re.M)
    if not m:
        raise RuntimeError(f"cannot parse strace output:\n{out.read_text()}")
    return int(m.group(1)) / max(res.requests, 1)


@contextlib.contextmanager
def userver(docroot: Path, work: Path) -> Iterator[Server]:
    cfg = ServerConfig(label="userver-1-epoll", kind="userver", procs=1, events="epoll")
    server = Server(cfg, docroot, work, preexec=pinned(SERVER_CPU))
    try:
        yield server.start()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5, help="per wrk run")
    p.add_argument("--connections", type=int, default=50, help="keep-alive connections")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per server")
    p.add_argument("--dirs", type=int, default=10, help="file-set directories (cached)")
    p.add_argument("--strace", action="store_true", help="also count syscalls with strace -c")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ukweb-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the files
        fileset.generate(work, dirs=args.dirs, progress=False)
        warm_cache(work / "file_set")
        (work / "urls.txt").write_text("\n".join(static_urls(args.dirs)) + "\n")
        results: dict[str, list[Measurement]] = {"userver": [], "nginx": []}
        strace: dict[str, float] = {}
        with userver(work, work / "userver") as us:
            nginx = Nginx(work, work / "nginx").start()
            try:
                for _ in range(args.rounds):  # alternate, so drift hits both alike
                    results["userver"].append(measure("userver", us.url, us.pids, us.status, args, work))
                    results["nginx"].append(measure("nginx", nginx.url, nginx.pids, None, args, work))
                if args.strace:
                    strace["userver"] = strace_syscalls_per_request(us.url, us.pids(), args, work)
                    strace["nginx"] = strace_syscalls_per_request(nginx.url, nginx.pids(), args, work)
            finally:
                nginx.stop()
    report(results, strace, args)
    return 0


def report(results: dict[str, list[Measurement]], strace: dict[str, float],
           args: argparse.Namespace) -> None:
    print(f"static, cached, keep-alive, {args.connections} conns, {args.seconds:g} s x "
          f"{args.rounds} rounds; server on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}")
    med: dict[str, float] = {}
    for label, runs in results.items():
        med[label] = statistics.median(r.rate for r in runs)
        cpu = statistics.median(r.cpu_us_per_req for r in runs)
        waits = [r.waits_per_req for r in runs if r.waits_per_req is not None]
        extra = f", event waits/req {statistics.median(waits):.3f}" if waits else ""
        if label in strace:
            extra += f", syscalls/req (strace) {strace[label]:.2f}"
        errors = sum(r.errors for r in runs)
        print(f"  {label:8s} {med[label]:10.0f} req/s  cpu {cpu:7.1f} us/req{extra}  errors {errors}")
    if any(r.errors for runs in results.values() for r in runs):
        print("WARNING: some responses were errors; the ratio is not comparable")
    print(f"userver / nginx throughput ratio: {med['userver'] / med['nginx']:.3f} (goal >= 1.0)")


if __name__ == "__main__":
    sys.exit(main())
