"""userver's dynamic path, old against new: throughput on loopback, cached file set.

Variants (the two userver switches, docs/interfaces.md):
  copy+nonblocking     the path before issue 16 (pread into a buffer, non-blocking sendmsg)
  sendfile+nonblocking the file's bytes by sendfile, the write still non-blocking
  sendfile+blocking    the µserver's (the default): sendfile, and the write blocks the process

userver (--procs N, select, Accept-Inf) pinned to CPU 0, loadgen unpaced (--line-speed 0) on
CPU 1 with the dynamic mix, the variants interleaved round by round so drift hits all alike.
Prints per variant: ops/s (median over rounds), server CPU µs per reply, and the
dynamic_writes counters (replies that blocked, seconds blocked, MB by sendfile).
Run under the measurement lock:

    flock /tmp/ukweb-measure.lock .venv/bin/python bench/userver_dynamic_writes.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from userver_vs_nginx import CLIENT_CPU, SERVER_CPU, cpu_seconds, pinned, warm_cache

from ukweb import fileset, loadgen
from ukweb.servers import Server, ServerConfig
from ukweb.specweb99 import ResetParams

VARIANTS = {
    "copy+nonblocking": {"dynamic_send": "copy", "dynamic_writes": "nonblocking"},
    "sendfile+nonblocking": {"dynamic_send": "sendfile", "dynamic_writes": "nonblocking"},
    "sendfile+blocking": {"dynamic_send": "sendfile", "dynamic_writes": "blocking"},
}


def one_run(name: str, args: argparse.Namespace, docroot: Path, work: Path) -> dict:
    cfg = ServerConfig(label=f"userver-{args.procs}", procs=args.procs, options=VARIANTS[name])
    with Server(cfg, docroot, work / name, preexec=pinned(SERVER_CPU)) as srv:
        reset = ResetParams.for_run(args.connections, int(args.warmup + args.seconds))
        srv.reset(reset)
        pids = srv.pids()
        for _ in range(100):  # a child fills its slot's pid once it runs
            if all(pids):
                break
            time.sleep(0.05)
            pids = srv.pids()
        cpu0 = cpu_seconds(pids)
        params = loadgen.LoadgenParams(connections=args.connections, mix="dynamic",
                                       warmup_s=args.warmup, duration_s=args.seconds,
                                       line_speed=0, dirs=args.dirs, reset=reset)
        summary = loadgen.run(params, [f"{srv.addr}:{srv.port}"], work / f"{name}-lg",
                              preexec=pinned(CLIENT_CPU))
        cpu = cpu_seconds(pids) - cpu0
        total = srv.status()["total"]
    replies = total["responses"]["2xx"]
    m = summary["measure"]
    return {"ops": m["ops_per_s"], "errors": m["errors"],
            "cpu_us": cpu / max(replies, 1) * 1e6, "dyn": total["dynamic_writes"],
            "replies": replies}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--dirs", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ukweb-dynw-") as tmp:
        work = Path(tmp)
        docroot = work / "docroot"
        fileset.generate(docroot, dirs=args.dirs, progress=False)
        warm_cache(docroot)
        results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for rnd in range(args.rounds):
            for name in VARIANTS:
                results[name].append(one_run(name, args, docroot, work / f"r{rnd}"))
    print(f"userver-{args.procs}, dynamic mix, {args.connections} connections unpaced, "
          f"{args.dirs} dirs cached, {args.rounds} x {args.seconds:g} s")
    print(f"{'variant':22} {'ops/s median':>12} {'rounds':>26} {'CPU us/reply':>12} "
          f"{'errors':>6} {'blocked':>8} {'blocked s':>9} {'sendfile MB':>11}")
    base = statistics.median(r["ops"] for r in results["copy+nonblocking"])
    for name, runs in results.items():
        ops = statistics.median(r["ops"] for r in runs)
        last = runs[-1]["dyn"]
        each = " ".join(f"{r['ops']:.0f}" for r in runs)
        print(f"{name:22} {ops:12.0f} {each:>26} "
              f"{statistics.median(r['cpu_us'] for r in runs):12.0f} "
              f"{sum(r['errors'] for r in runs):6d} {last['blocked']:8d} {last['blocked_s']:9.2f} "
              f"{last['sendfile_bytes'] / 1e6:11.1f}   ({ops / base - 1:+.1%} vs copy+nonblocking)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
