"""Benchmark: loadgen against wrk, side by side in one run (a benchmark, not a test).

Unpaced, keep-alive only, 100 connections; the server is pinned to CPU 0 and the client to
CPU 1 (when the machine has two CPUs).

- client-bound: both clients against bench/responder.c, a minimal epoll responder answering
  every request with a pre-built 1 KiB response. Reported: loadgen req/s ÷ wrk req/s (goal
  >= 1.0 while loadgen writes its full per-request log).
- server-bound: both clients against nginx (1 worker) for a 1 KiB and a 15 KiB file. Reported:
  the two throughputs and their difference (goal: within 5 %).

Also prints loadgen's own CPU µs per request (from its summary) and the server's (from
/proc/<pid>/stat), which must be higher than loadgen's.

    .venv/bin/python bench/loadgen_vs_wrk.py [--seconds 5] [--connections 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ukweb import paths

REPO = paths.REPO
RESPONDER_SRC = REPO / "bench" / "responder.c"
TICKS = os.sysconf("SC_CLK_TCK")
KA_FOREVER = 100000  # requests per connection: wrk keeps its connections for the whole run


def pin(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): 0 and 1 when there are two, else no pinning."""
    avail = sorted(os.sched_getaffinity(0))
    return (avail[0], avail[1]) if len(avail) >= 2 else (None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on port {port}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def build_responder() -> Path:
    out = paths.bin_dir() / "responder"
    if not out.exists() or out.stat().st_mtime < RESPONDER_SRC.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                        str(RESPONDER_SRC)], check=True)
    return out


@contextmanager
def started(argv: list[str], port: int, cpu: int | None) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=pin(cpu))
    try:
        wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def nginx_argv(work: Path, docroot: Path, port: int) -> list[str]:
    (work / "tmp").mkdir(exist_ok=True)
    temp = " ".join(f"{k}_temp_path {work}/tmp;" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user} worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        f"events {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; sendfile on; keepalive_requests 10000000; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port}; root {docroot}; }} }}\n")
    return ["/usr/sbin/nginx", "-c", str(work / "nginx.conf"), "-g", "daemon off;"]


def server_pids(proc: subprocess.Popen) -> list[int]:
    """The server and its children (nginx's worker does the work)."""
    kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return [proc.pid, *map(int, kids)]


def measure(client: Callable[[], tuple[float, float | None, int]], pids: list[int]) -> dict:
    """Run one client; its req/s, its CPU µs/request and the server's CPU µs/request."""
    before = sum(cpu_seconds(p) for p in pids)
    rps, client_us, requests = client()
    server_s = sum(cpu_seconds(p) for p in pids) - before
    return {"rps": rps, "client_us": client_us,
            "server_us": server_s * 1e6 / requests if requests else float("nan")}


def run_wrk(port: int, path: str, conns: int, seconds: float, cpu: int | None):
    def go() -> tuple[float, float | None, int]:
        t0 = os.times()
        out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s",
                              f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                             check=True, preexec_fn=pin(cpu)).stdout
        t1 = os.times()
        rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        cpu_s = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
        return rps, cpu_s * 1e6 / total, total
    return go


def run_loadgen(port: int, path: str, conns: int, seconds: float, cpu: int | None,
                out: Path):
    def go() -> tuple[float, float | None, int]:
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([str(paths.binary("loadgen")), "--server", f"127.0.0.1:{port}",
                        "--connections", str(conns), "--out", str(out), "--url", path,
                        "--line-speed", "0", "--keepalive-pct", "1", "--ka-min", str(KA_FOREVER),
                        "--ka-max", str(KA_FOREVER), "--warmup", "0", "--duration", f"{seconds:g}"],
                       check=True, preexec_fn=pin(cpu))
        s = json.loads((out / "summary.json").read_text())
        if s["measure"]["errors"]:
            sys.exit(f"loadgen saw errors: {s['errors_by_kind']}")
        return s["achieved_ops_per_s"], s["cpu_us_per_request"], s["requests_all_phases"]
    return go


def compare(label: str, port: int, path: str, pids: list[int], args, cpu, work: Path) -> dict:
    """Alternate the two clients for args.rounds rounds; medians of each, so that a burst of
    other load on this machine hits one round, not one client."""
    runs: dict[str, list[dict]] = {"wrk": [], "loadgen": []}
    for _ in range(args.rounds):
        runs["wrk"].append(measure(run_wrk(port, path, args.connections, args.seconds, cpu), pids))
        runs["loadgen"].append(measure(run_loadgen(port, path, args.connections, args.seconds,
                                                   cpu, work / "lg"), pids))
    wrk = {k: statistics.median(r[k] for r in runs["wrk"]) for k in runs["wrk"][0]}
    lg = {k: statistics.median(r[k] for r in runs["loadgen"]) for k in runs["loadgen"][0]}
    ratios = [b["rps"] / a["rps"] for a, b in zip(runs["wrk"], runs["loadgen"], strict=True)]
    row = {"case": label, "wrk_rps": wrk["rps"], "loadgen_rps": lg["rps"],
           "ratio": statistics.median(ratios), "ratios": ratios,
           "loadgen_cpu_us": lg["client_us"], "wrk_cpu_us": wrk["client_us"],
           "server_cpu_us": lg["server_us"]}
    print(f"{label:<24} wrk {wrk['rps']:>8.0f} req/s  loadgen {lg['rps']:>8.0f} req/s  "
          f"ratio {row['ratio']:.3f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})  "
          f"CPU µs/req: loadgen {lg['client_us']:.2f}  wrk {wrk['client_us']:.2f}  "
          f"server {lg['server_us']:.2f}", flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per client")
    args = ap.parse_args()
    server_cpu, client_cpu = cpus()
    if server_cpu is None:
        print("one CPU only: server and client are not pinned apart", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        with started([str(build_responder()), str(port)], port, server_cpu) as proc:
            rows.append(compare("client-bound responder", port, "/", [proc.pid], args,
                                client_cpu, work))
        docroot = work / "docroot"
        docroot.mkdir()
        (docroot / "f1k").write_bytes(b"x" * 1024)
        (docroot / "f15k").write_bytes(b"x" * 15 * 1024)
        port = free_port()
        with started(nginx_argv(work, docroot, port), port, server_cpu) as proc:
            time.sleep(0.2)
            pids = server_pids(proc)
            for name in ("f1k", "f15k"):
                rows.append(compare(f"server-bound nginx {name}", port, f"/{name}", pids, args,
                                    client_cpu, work))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
