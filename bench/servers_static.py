"""ktux against nginx (1 worker) and userver (1 process, epoll) on a cached static file set,
and ktux's CPU cost per request against the minimal in-memory responder (bench/responder.c).

Every server is pinned to one CPU and driven in turn by the same client (wrk, keep-alive)
pinned to another, so ratios are measured side by side in one run:

1. peak: wrk unpaced, URLs dealt from the SPECweb99 static deck; req/s of each server.
   Goals: ktux / nginx >= 1.3; ktux / userver reported. One wrk core can fall short of an
   unthrottled server; --server-cpu-pct P gives every server (and the responder) the same
   CPU quota, P % of its core, so that the servers and not the client set the peak.
2. same offered load: wrk paced (lua delay) at a rate every server sustains, one 1 KiB file
   (the responder's response size); CPU µs per request (/proc/<pid>/stat, all threads: io-wq
   and SQPOLL threads included) and kernel entries per request (ktux: io_uring_enter calls
   from its own counter; everyone, with --strace: syscalls from strace -c).
   Goal: ktux CPU/req <= 1.25 x the responder's.

    .venv/bin/python bench/servers_static.py [--seconds 5] [--connections 50] [--rounds 2]
                                             [--paced-rate 4000] [--strace] [--ktux-option OPT ...]
                                             [--server-cpu-pct 50]
                                             [--ablate no_zerocopy --ablate sched=completion ...]
                                             [--ktux-before /tmp/ktux-before/build/ktux]

Numbers on a shared, busy machine are noisy: compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loadgen_vs_wrk import build_responder, free_port, started
from userver_vs_nginx import (
    CLIENT_CPU,
    SERVER_CPU,
    Measurement,
    Nginx,
    cpu_seconds,
    measure,
    pinned,
    static_urls,
    strace_syscalls_per_request,
    userver,
    warm_cache,
)

from ukweb import fileset
from ukweb.cgroups import Cgroup
from ukweb.servers import Server, ServerConfig
from ukweb.workload import file_path

ONE_KIB = "/" + file_path(0, 1, 0)  # 1024 bytes, as the responder's body

PACED_LUA = """\
request = function() return wrk.format("GET", "{path}") end
delay = function() return {delay_ms} end
"""


class BinaryServer(Server):
    """A Server run from a given binary (e.g. a baseline build in a git worktree)."""

    def __init__(self, binary: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.binary = binary

    def command(self) -> list[str]:
        return [str(self.binary), *super().command()[1:]]


@contextlib.contextmanager
def ktux(docroot: Path, work: Path, options: dict, binary: Path | None = None) -> Iterator[Server]:
    cfg = ServerConfig(label="ktux", kind="ktux", backlog=128, options=options)
    server = (BinaryServer(binary, cfg, docroot, work, preexec=pinned(SERVER_CPU)) if binary
              else Server(cfg, docroot, work, preexec=pinned(SERVER_CPU)))
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class Target:
    """One server under test: where it listens, its pids, its status page (if any)."""

    label: str
    url: str
    pids: Callable[[], list[int]]
    status: Callable[[], dict] | None


@dataclass
class Paced:
    label: str
    rate: float
    cpu_us_per_req: float
    enters_per_req: float | None


def run_paced(target: Target, args: argparse.Namespace, work: Path) -> Paced:
    """wrk with a per-request delay: each connection offers 1000/delay_ms req/s."""
    delay_ms = max(1, round(args.connections * 1000 / args.paced_rate))
    lua = work / "paced.lua"
    lua.write_text(PACED_LUA.format(path=ONE_KIB, delay_ms=delay_ms))
    procs = target.pids()
    cpu0 = cpu_seconds(procs)
    enters0 = target.status()["total"]["event_waits"] if target.status else None
    cmd = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{args.connections}",
           f"-d{args.seconds}s", "-s", str(lua), target.url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 30,
                         check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu = cpu_seconds(procs) - cpu0
    enters = (target.status()["total"]["event_waits"] - enters0) / n if target.status else None
    return Paced(target.label, n / args.seconds, cpu * 1e6 / max(n, 1), enters)


def cpu_quotas(stack: contextlib.ExitStack, targets: list[Target], pct: float | None) -> None:
    """Give each target its own cgroup with the same CPU quota (removed when the stack closes,
    after the servers have stopped)."""
    if not pct:
        return
    for t in targets:
        cg = stack.enter_context(Cgroup(f"ukweb-bench-{os.getpid()}-{t.label}", cpu_quota_pct=pct))
        for pid in t.pids():
            cg.join(pid)


def peak_rounds(targets: list[Target], args: argparse.Namespace, work: Path) -> dict[str, list[Measurement]]:
    results: dict[str, list[Measurement]] = {t.label: [] for t in targets}
    for _ in range(args.rounds):  # alternate, so drift hits every server alike
        for t in targets:
            results[t.label].append(measure(t.label, t.url, t.pids, t.status, args, work))
    return results


def paced_rounds(targets: list[Target], args: argparse.Namespace, work: Path) -> dict[str, list[Paced]]:
    results: dict[str, list[Paced]] = {t.label: [] for t in targets}
    for _ in range(args.rounds):
        for t in targets:
            results[t.label].append(run_paced(t, args, work))
    return results


def report(peak: dict[str, list[Measurement]], paced: dict[str, list[Paced]],
           strace: dict[str, float], args: argparse.Namespace) -> None:
    print(f"static, cached, keep-alive, {args.connections} conns, {args.seconds} s x {args.rounds} "
          f"rounds; servers on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}; ktux options "
          f"{args.ktux_option or 'defaults'}; CPU quota per server "
          f"{f'{args.server_cpu_pct:g} %' if args.server_cpu_pct else 'none'}")
    rate = {k: statistics.median(m.rate for m in v) for k, v in peak.items()}
    print("peak (unpaced, SPECweb99 static deck):")
    for label, runs in peak.items():
        cpu = statistics.median(m.cpu_us_per_req for m in runs)
        errors = sum(m.errors for m in runs)
        print(f"  {label:22s} {rate[label]:9.0f} req/s  cpu {cpu:6.1f} us/req  errors {errors}")
    print(f"paced at {args.paced_rate} req/s offered, 1 KiB response:")
    cpu = {k: statistics.median(p.cpu_us_per_req for p in v) for k, v in paced.items()}
    for label, runs in paced.items():
        enters = [p.enters_per_req for p in runs if p.enters_per_req is not None]
        extra = f"  kernel entries/req {statistics.median(enters):.2f} (own counter)" if enters else ""
        if label in strace:
            extra += f"  syscalls/req {strace[label]:.2f} (strace)"
        print(f"  {label:22s} {statistics.median(p.rate for p in runs):9.0f} req/s  "
              f"cpu {cpu[label]:6.1f} us/req{extra}")
    for label in (k for k in rate if k.startswith("ktux-")):
        print(f"{label} / ktux throughput: {rate[label] / rate['ktux']:.3f}")
    for label in (k for k in rate if k.startswith("ktux")):
        print(f"{label:12s} / nginx throughput: {rate[label] / rate['nginx']:.3f}  "
              f"peak cpu {statistics.median(m.cpu_us_per_req for m in peak[label]):6.1f} us/req  "
              f"paced cpu {cpu[label]:6.1f} us/req")
    print(f"ktux / nginx   throughput: {rate['ktux'] / rate['nginx']:.3f}  (goal >= 1.3)")
    print(f"ktux / userver throughput: {rate['ktux'] / rate['userver']:.3f}")
    print(f"ktux / responder CPU per request: {cpu['ktux'] / cpu['responder']:.3f}  (goal <= 1.25)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5, help="per wrk run")
    p.add_argument("--connections", type=int, default=50, help="keep-alive connections")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per server")
    p.add_argument("--dirs", type=int, default=10, help="file-set directories (cached)")
    p.add_argument("--paced-rate", type=int, default=4000, help="offered req/s in the CPU phase")
    p.add_argument("--strace", action="store_true", help="also count syscalls with strace -c")
    p.add_argument("--server-cpu-pct", type=float, default=None,
                   help="CPU quota for every server, %% of one core (needs root and cgroups)")
    p.add_argument("--ktux-option", action="append", default=[],
                   help="a switch or value for the main ktux, e.g. no_zerocopy, sched=completion (repeatable)")
    p.add_argument("--ktux-before", type=Path, default=None,
                   help="also measure this ktux binary (e.g. a baseline build) as ktux-before")
    p.add_argument("--ablate", action="append", default=[],
                   help="also measure a ktux with this one switch or value, side by side (repeatable)")
    return p.parse_args(argv)


def switches(options: list[str]) -> dict:
    """ktux options from the command line: a switch ("no_cache") or a value ("sched=completion")."""
    return dict(o.split("=", 1) if "=" in o else (o, True) for o in options)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ukweb-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs unprivileged and must read the files
        fileset.generate(work, dirs=args.dirs, progress=False)
        warm_cache(work / "file_set")
        (work / "urls.txt").write_text("\n".join(static_urls(args.dirs)) + "\n")
        port = free_port()
        with contextlib.ExitStack() as quotas, contextlib.ExitStack() as stack:
            kt = stack.enter_context(ktux(work, work / "ktux", switches(args.ktux_option)))
            us = stack.enter_context(userver(work, work / "userver"))
            resp = stack.enter_context(started([str(build_responder()), str(port)], port, SERVER_CPU))
            variants = [(f"ktux-{o}", stack.enter_context(ktux(work, work / o.replace("=", "-"), switches([o]))))
                        for o in args.ablate]
            if args.ktux_before:
                variants.append(("ktux-before", stack.enter_context(
                    ktux(work, work / "ktux-before", switches(args.ktux_option),
                         binary=args.ktux_before))))
            nginx = Nginx(work, work / "nginx").start()
            try:
                servers = [Target("ktux", kt.url, kt.pids, kt.status),
                           Target("nginx", nginx.url, nginx.pids, None),
                           Target("userver", us.url, us.pids, us.status),
                           *(Target(label, v.url, v.pids, v.status) for label, v in variants)]
                responder = Target("responder", f"http://127.0.0.1:{port}", lambda: [resp.pid], None)
                cpu_quotas(quotas, [*servers, responder], args.server_cpu_pct)
                peak = peak_rounds(servers, args, work)
                paced = paced_rounds([*servers, responder], args, work)
                strace = {t.label: strace_syscalls_per_request(t.url, t.pids(), args, work)
                          for t in [*servers, responder]} if args.strace else {}
            finally:
                nginx.stop()
    report(peak, paced, strace, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
