"""Does each side pay for its own packets? Receive steering (RPS) on the testbed's veths, on/off.

    .venv/bin/python bench/network_steering.py [--connections 400] [--seconds 8]

A veth delivers a packet on the CPU that sent it, so without steering the clients' CPU does the
server's TCP receive work. With rps_cpus on each veth end (ukweb.netns) the receiving side's CPU
does it, as a NIC interrupt did on the paper's server. For each setting, userver-1 serves the
static workload from a cached file set to paced clients in the two-link namespaces (no CPU
thief, no disk model: the network alone), and the bench prints, per second of wall time:
the server CPU's busy time (wall - idle, exact), the server's own run time (schedstat, exact),
their difference (kernel work on the server's CPU outside the server's own context: receive
processing in softirq, exact), and the softirq time of each CPU as /proc/stat samples it on
ticks (receive bursts shorter than a tick mostly escape it, so it undercounts). Steering passes
when the server CPU's kernel work grows by the receive processing that leaves the clients' CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from ukweb import fileset, logs
from ukweb.netns import Topology
from ukweb.paths import DATA
from ukweb.point import Point, PointRunner
from ukweb.sampler import CLK_TCK, cpu_times
from ukweb.servers import named_config
from ukweb.testbed import Testbed, pin


def measure(steer: bool, connections: int, seconds: float, docroot: Path, out: Path) -> dict:
    with Testbed(memory_mb=None, drop_caches=False, prefix="ukweb-bench") as tb:
        pin(tb.client_cpu_list)
        topo = Topology(prefix="ukweb-bench-net", server_cpus=tb.server_cpu_list if steer else None,
                        client_cpus=tb.client_cpu_list if steer else None).create()
        try:
            runner = PointRunner(tb, docroot, 2.0, seconds, 400_000, 1, 1, topo, prewarm=False)
            point = Point("static", "userver-1", connections, 1 + int(steer))
            c0, t0 = cpu_times(tb.client_cpu_list), time.monotonic()
            runner.run(out, point, named_config("userver-1"))
            c1, t1 = cpu_times(tb.client_cpu_list), time.monotonic()
        finally:
            topo.remove()
    sys_ = logs.read_system(out / point.rel())
    s = sys_[pd.to_numeric(sys_["t"]) > 2.5]
    busy = (100 - s["cpu_idle"] - s["cpu_iowait"]).mean() / 100
    own = s["server_cpu_s"].mean() / s["t"].diff().median()
    soft0 = s["cpu_softirq"].mean() / 100
    soft1 = (c1["softirq"] - c0["softirq"]) / CLK_TCK / (t1 - t0)  # the whole point, warm-up in
    return {"rps": "on" if steer else "off", "busy_s": busy, "server_s": own, "softirq0_s": soft0,
            "softirq1_s": soft1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    docroot = Path(fileset.ensure(DATA / "fileset", 8)).parent  # a small, cached file set
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(steer, args.connections, args.seconds, docroot, Path(tmp))
                for steer in (False, True)]
    print(f"userver-1, static, {args.connections} paced connections over two veth links, "
          "per second of wall time on the server's CPU")
    print(f"{'RPS':<4} {'busy s':>7} {'server s':>9} {'busy - server':>14} {'softirq (ticks)':>16} "
          f"{'clients softirq (ticks)':>24}")
    for r in rows:
        print(f"{r['rps']:<4} {r['busy_s']:>7.3f} {r['server_s']:>9.3f} "
              f"{r['busy_s'] - r['server_s']:>14.3f} {r['softirq0_s']:>16.3f} {r['softirq1_s']:>24.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
