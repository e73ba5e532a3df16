"""Calibration: the CPU quota that makes this machine's server as fast as the paper's.

The paper's server was a 400 MHz Pentium II whose static peak came at about 700 connections
(Fig. 2). With 400 kbit/s pacing a connection offers 400000/122000 = 3.28 ops/s (§1.2), so that
server's static capacity was about 700 x 3.28 = 2,300 replies/s. A modern CPU is many times
faster, so its peak would lie far right of the paper's x axis. `ukweb calibrate` measures the
server's static capacity at full CPU (unpaced clients, short points), proposes the quota that
scales it down to the target, checks that quota once with a second measurement and corrects it
in proportion, and writes the result to params/calibration.yaml, which sweeps read when their
cpu_quota_pct is null.

[I] Two kinds of measurement. The first, CPU-bound (a small cached file set, unpaced
clients, full CPU), only gives the first guess. Every later one runs under the sweep's own
conditions — memory cap, page cache dropped before the point, the file set of the largest
point, 400 kbit/s clients — at more connections than the paper's peak (1,100), so that the
server is saturated and its throughput is its capacity under the quota there. A quota
calibrated on a cached set alone put the peaks of the first reference run at 300-500
connections, because cold, memory-capped serving is slower. If this machine has no cgroup cpu
controller, the equivalent line speed (which moves the peak the same way by offering less load
per connection) is proposed instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

import yaml

from ukweb import fileset, manifest
from ukweb.paths import DATA, PARAMS, RAW
from ukweb.point import Point, PointFailed, PointRunner
from ukweb.servers import named_config
from ukweb.testbed import Testbed
from ukweb.workload import BITS_PER_REPLY, USER_LINE_SPEED

log = logging.getLogger(__name__)

PAPER_PEAK_CONNECTIONS = 700  # Fig. 2: both servers peak at 700 simultaneous connections
MIN_QUOTA, MAX_QUOTA = 1.0, 100.0
MAX_STEPS = 6       # measurements under a quota; with the first at full CPU, about 1 min in all
TOLERANCE = 0.15    # |measured / target - 1| that ends the search


def target_replies(peak_connections: int = PAPER_PEAK_CONNECTIONS,
                   line_speed: int = USER_LINE_SPEED) -> float:
    """Replies/s the emulated server should manage: the load offered at the paper's peak."""
    return peak_connections * line_speed / BITS_PER_REPLY


def propose_quota(capacity_full: float, target: float) -> float:
    """Percent of one CPU that scales capacity_full down to target, within [1, 100]."""
    if capacity_full <= 0:
        raise ValueError("measured capacity is zero: the server answered nothing")
    return round(min(MAX_QUOTA, max(MIN_QUOTA, 100.0 * target / capacity_full)), 1)


def equivalent_line_speed(capacity: float, peak_connections: int = PAPER_PEAK_CONNECTIONS) -> int:
    """Per-connection line speed at which peak_connections offer exactly `capacity`."""
    return int(capacity * BITS_PER_REPLY / peak_connections)


def measure(runner: PointRunner, run: Path, server: str, connections: int, label: int) -> float:
    """Replies/s of one short unpaced static point (ops_per_s from loadgen's summary)."""
    point = Point("static", server, connections, label)
    done = runner.run(run, point, named_config(server))
    return float(done["ops_per_s"] or 0.0)


def next_quota(steps: list[dict], target: float) -> float:
    """The next quota to try: interpolated between the closest measurements on either side of
    the target once there are both (capacity is far from proportional to the quota at a few
    percent, where CFS throttling dominates), else scaled in proportion from the last one."""
    below = [s for s in steps if s["replies_per_s"] < target]
    above = [s for s in steps if s["replies_per_s"] >= target]
    if below and above:
        lo = max(below, key=lambda s: s["replies_per_s"])
        hi = min(above, key=lambda s: s["replies_per_s"])
        frac = (target - lo["replies_per_s"]) / (hi["replies_per_s"] - lo["replies_per_s"])
        quota = lo["cpu_quota_pct"] + frac * (hi["cpu_quota_pct"] - lo["cpu_quota_pct"])
        return round(min(MAX_QUOTA, max(MIN_QUOTA, quota)), 1)
    last = steps[-1]
    return propose_quota(last["replies_per_s"] * 100.0 / last["cpu_quota_pct"], target)


def search(runner: PointRunner, run: Path, server: str, connections: int, full: float,
           target: float) -> dict:
    """Measure under a quota until the capacity lands within TOLERANCE of the target.

    The first guess scales the full-CPU capacity (measured cached, so too high a capacity and
    too low a quota); each further step brackets and interpolates. The step closest to the
    target is the result.
    """
    quota, steps = propose_quota(full, target), []
    for i in range(MAX_STEPS):
        runner.testbed.cpu_quota_pct = quota
        got = measure(runner, run, server, connections, i + 2)
        steps.append({"cpu_quota_pct": quota, "replies_per_s": round(got, 1)})
        if got <= 0 or abs(got / target - 1) <= TOLERANCE:
            break
        quota = next_quota(steps, target)
        if any(s["cpu_quota_pct"] == quota for s in steps):
            break  # converged to a quota already measured
    best = min(steps, key=lambda s: abs(s["replies_per_s"] / target - 1))
    return {"cpu_quota_pct": best["cpu_quota_pct"], "steps": steps,
            "at_quota_replies_per_s": best["replies_per_s"]}


def calibrate(server: str = "userver-16", connections: int = 64, seconds: float = 5.0,
              out: Path = PARAMS / "calibration.yaml", fileset_dir: Path | None = None,
              server_cpus: str = "0", client_cpus: str = "1", root: Path = RAW,
              overload_connections: int = 1100, memory_mb: int | None = 512) -> dict:
    """Measure, propose, correct under the sweep's conditions; write out and return the record."""
    target = target_replies()
    run = Path(root) / f"calibrate-{dt.datetime.now():%Y%m%d-%H%M%S}"
    docroot = fileset.ensure(fileset_dir or DATA / "fileset", max(connections, overload_connections)).parent
    with Testbed(server_cpus=server_cpus, client_cpus=client_cpus, memory_mb=None,
                 drop_caches=False) as tb:
        runner = PointRunner(tb, docroot, warmup_s=1.0, duration_s=seconds, line_speed=0, seed=1)
        full = measure(runner, run, server, connections, 1)
        cpu_quota_possible = "cpu" in tb.caps.cgroup_controllers and not tb.caps.problems().get("cgroup")
    result = {"server": server, "connections": connections, "seconds": seconds,
              "overload_connections": overload_connections, "memory_mb": memory_mb,
              "target_replies_per_s": round(target, 1),
              "full_cpu_replies_per_s": round(full, 1),
              "line_speed_alternative": equivalent_line_speed(full)}
    with Testbed(server_cpus=server_cpus, client_cpus=client_cpus, memory_mb=memory_mb,
                 drop_caches=True) as tb:
        if not cpu_quota_possible:
            result["cpu_quota_pct"] = None
            result["note"] = "no cgroup cpu controller: use line_speed_alternative"
        else:
            paced = PointRunner(tb, docroot, warmup_s=2.0, duration_s=seconds,
                                line_speed=USER_LINE_SPEED, seed=1)
            result.update(search(paced, run, server, overload_connections, full, target))
        result.update(host=manifest.host()["cpu_model"], date=manifest.now(), run=str(run),
                      deviations=tb.deviation_list())
    write(out, result)
    return result


def write(out: Path, result: dict) -> None:
    head = ("# Written by `ukweb calibrate`: the CPU quota (percent of one CPU) that puts the\n"
            "# static peak near the paper's 700 connections on the machine named below.\n")
    out.write_text(head + yaml.safe_dump(result, sort_keys=False))
    log.info("calibration written to %s", out)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb calibrate",
                                     description="Measure capacity; propose the CPU quota.")
    parser.add_argument("--server", default="userver-16", help="server label (default userver-16)")
    parser.add_argument("--connections", type=int, default=64, help="unpaced clients (default 64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement per point")
    parser.add_argument("--overload-connections", type=int, default=1100,
                        help="paced connections for the measurements under the quota (default 1100)")
    parser.add_argument("--memory-mb", type=int, default=512, help="server memory cap (default 512)")
    parser.add_argument("-o", "--out", type=Path, default=PARAMS / "calibration.yaml")
    parser.add_argument("--fileset-dir", type=Path, default=None)
    parser.add_argument("--root", type=Path, default=RAW, help="where the measured points go")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.overload_connections < 1 or not 0.5 <= args.seconds <= 30:
        parser.error("need --connections >= 1, --overload-connections >= 1 and 0.5 <= --seconds <= 30")
    try:
        result = calibrate(args.server, args.connections, args.seconds, args.out, args.fileset_dir,
                           root=args.root, overload_connections=args.overload_connections,
                           memory_mb=args.memory_mb)
    except (PointFailed, ValueError, fileset.FilesetError) as exc:
        print(f"ukweb calibrate: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(result, sort_keys=False), end="")
    return 0
