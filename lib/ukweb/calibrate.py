"""Calibration: the CPU share that makes this machine's server as fast as the paper's.

The paper's server was a 400 MHz Pentium II. [I] The anchor: its 16-process µserver peaked on
the static workload at 700 simultaneous connections (Fig. 2, claims S2 and S4). With 400 kbit/s
pacing a connection offers 400000/122000 = 3.28 replies/s (§1.2), so the server saturated at
about 700 x 3.28 = 2,295 replies/s. `ukweb calibrate -f params/<profile>.yaml` finds the
CPU share (ukweb.cpuemul) at which userver-16, saturated by more connections than that (1,100),
serves exactly that — in the final regime: the profile's CPU method, the disk model, the memory
cap, one warm series (cache dropped once, pre-warmed, every step in the same cgroup), paced
clients, warm-up long enough to settle. Every step is a real data point, kept under
data/raw/calibrate-<time>/; params/calibration.yaml gets the share, the method, the anchor, each
step with its misses/s and disk busy time (to show whether the CPU or the disk limited it).

A share the anchor cannot be reached at (the server is disk-bound even at full speed) is an
error naming what limits it. The search brackets the target and interpolates, and stops within
TOLERANCE: two calibrations on the same machine must agree within 5 %
(bench/calibration_repeat.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import sys
from pathlib import Path

import yaml

from ukweb import analysis, manifest
from ukweb.paths import PARAMS, RAW
from ukweb.point import Point, PointFailed, PointRunner
from ukweb.servers import named_config
from ukweb.sweep_params import ParamsError, SweepParams, load_params
from ukweb.testbed import pin
from ukweb.workload import BITS_PER_REPLY, USER_LINE_SPEED

log = logging.getLogger(__name__)

PAPER_PEAK_CONNECTIONS = 700  # Fig. 2: userver-16 (and TUX) peak at 700 connections
ANCHOR_SERVER = "userver-16"
OVERLOAD_CONNECTIONS = 1100
MIN_SHARE, MAX_SHARE = 0.02, 0.95
FIRST_SHARE = 0.12   # the share the previous session's pilots put near the anchor
MAX_STEPS = 7
TOLERANCE = 0.03     # |measured / target - 1| that ends the search


class CalibrationError(RuntimeError):
    """The anchor cannot be reached; the message says what limits the server."""


def target_replies(peak_connections: int = PAPER_PEAK_CONNECTIONS,
                   line_speed: int = USER_LINE_SPEED) -> float:
    """Replies/s the emulated server should manage: the load offered at the paper's peak."""
    return peak_connections * line_speed / BITS_PER_REPLY


def clamp(share: float) -> float:
    return round(min(MAX_SHARE, max(MIN_SHARE, share)), 4)


def next_share(steps: list[dict], target: float) -> float:
    """The next share to try: interpolated between the closest measurements on either side of
    the target once there are both, else scaled in proportion from the last one (capacity is
    roughly proportional to the share while the CPU limits the server)."""
    below = [s for s in steps if s["replies_per_s"] < target]
    above = [s for s in steps if s["replies_per_s"] >= target]
    if below and above:
        lo = max(below, key=lambda s: s["replies_per_s"])
        hi = min(above, key=lambda s: s["replies_per_s"])
        frac = (target - lo["replies_per_s"]) / (hi["replies_per_s"] - lo["replies_per_s"])
        return clamp(lo["cpu_share"] + frac * (hi["cpu_share"] - lo["cpu_share"]))
    last = steps[-1]
    if last["replies_per_s"] <= 0:
        return clamp(last["cpu_share"] * 2)
    return clamp(last["cpu_share"] * target / last["replies_per_s"])


def _step(runner: PointRunner, run: Path, server: str, connections: int, i: int,
          share: float) -> dict:
    """One measurement at `share`: a real point; its replies/s, misses/s, disk busy, CPU use."""
    runner.testbed.set_share(share)
    point = Point("static", server, connections, i)
    runner.run(run, point, named_config(server))
    row = analysis.point_row(run / point.rel(), 1, share * 100,
                             {"cpu_method": runner.testbed.describe()["cpu_method"]})
    keep = ("ops_per_s", "misses_per_s", "disk_busy_pct", "cpu_busy_of_capacity",
            "blocked_pct", "conforming_pct")
    out = {"cpu_share": share, "replies_per_s": round(float(row.get("ops_per_s", 0.0)), 1)}
    out.update({k: round(float(row[k]), 2) for k in keep[1:] if k in row})
    return out


def search(runner: PointRunner, run: Path, server: str, connections: int,
           target: float) -> dict:
    """Measure until the capacity lands within TOLERANCE of the target; the closest step wins."""
    share, steps = FIRST_SHARE, []
    for i in range(MAX_STEPS):
        steps.append(_step(runner, run, server, connections, i + 1, share))
        log.info("calibrate: share %.4f -> %.0f replies/s (target %.0f)", share,
                 steps[-1]["replies_per_s"], target)
        if abs(steps[-1]["replies_per_s"] / target - 1) <= TOLERANCE:
            break
        share = next_share(steps, target)
        if any(s["cpu_share"] == share for s in steps):
            break  # converged to a share already measured
    best = min(steps, key=lambda s: abs(s["replies_per_s"] / target - 1))
    if best["replies_per_s"] < target * (1 - 0.15) and best["cpu_share"] >= MAX_SHARE * 0.9:
        raise CalibrationError(
            f"{server} reaches only {best['replies_per_s']:.0f} replies/s at a CPU share of "
            f"{best['cpu_share']:.2f} (target {target:.0f}; disk busy "
            f"{best.get('disk_busy_pct', float('nan')):.0f} %): the disk, not the CPU, limits "
            "it; lower disk_seek_ms or raise memory_mb in the profile")
    return {"cpu_share": best["cpu_share"], "at_share_replies_per_s": best["replies_per_s"],
            "steps": steps}


def calibrate(profile: Path = PARAMS / "paper.yaml", out: Path = PARAMS / "calibration.yaml",
              server: str = ANCHOR_SERVER, connections: int = OVERLOAD_CONNECTIONS,
              warmup_s: float | None = None, seconds: float | None = None,
              root: Path = RAW) -> dict:
    """Search the share in the profile's regime; write `out` and return the record."""
    from ukweb import runs  # late: runs imports this module's users

    params = load_params(profile)
    if params.cpu_method == "none":
        raise ParamsError(f"{profile}: cpu_method none has no CPU share to calibrate")
    params = dataclasses.replace(params, cpu_share=None,
                                 warmup_s=warmup_s if warmup_s is not None else min(params.warmup_s, 10.0),
                                 duration_s=seconds if seconds is not None else min(params.duration_s, 10.0))
    runs.check_methods(params)
    target = target_replies()
    run = runs.run_path(root, f"calibrate-{dt.datetime.now():%Y%m%d-%H%M%S}")
    run.mkdir(parents=True)
    docroot = runs.docroot_for(params, connections)
    testbed = runs.make_testbed(params, FIRST_SHARE)
    affinity = os.sched_getaffinity(0)
    with testbed, runs.links(params, testbed) as net, runs.mounted_disk(params, docroot, testbed) as disk:
        pin(testbed.client_cpu_list)
        try:
            runner = PointRunner(testbed, disk.mountpoint if disk else docroot, params.warmup_s,
                                 params.duration_s, params.line_speed, params.seed,
                                 params.loadgen_threads, net, disk=disk, prewarm=params.prewarm)
            with runner.series("calibrate", connections):
                result = search(runner, run, server, connections, target)
        finally:
            os.sched_setaffinity(0, affinity)
        described = testbed.describe()
    record = {"cpu_method": params.cpu_method, **result,
              "anchor": f"{server} static at {connections} connections (saturated) serves the load "
                        f"{PAPER_PEAK_CONNECTIONS} connections offer, {target:.0f} replies/s: the "
                        "paper's static peak (Fig. 2)",
              "target_replies_per_s": round(target, 1), "server": server,
              "connections": connections, "warmup_s": params.warmup_s,
              "seconds": params.duration_s, "profile": str(profile),
              "regime": {k: described.get(k) for k in ("memory_mb", "disk_model", "network")},
              "host": manifest.host().get("cpu_model"), "date": manifest.now(), "run": str(run),
              "git": manifest.git_state().get("commit"),
              "deviations": testbed.deviation_list()}
    write(out, record)
    return record


def write(out: Path, result: dict) -> None:
    head = ("# Written by `ukweb calibrate`: the CPU share (of this machine's CPU) at which the\n"
            "# server's static capacity matches the paper's anchor, on the machine named below.\n")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(head + yaml.safe_dump(result, sort_keys=False))
    os.replace(tmp, out)
    log.info("calibration written to %s", out)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb calibrate",
                                     description="Find the CPU share that matches the paper's anchor.")
    parser.add_argument("-f", "--params", type=Path, default=PARAMS / "paper.yaml",
                        help="the profile whose regime to calibrate in (default params/paper.yaml)")
    parser.add_argument("--server", default=ANCHOR_SERVER, help=f"server label (default {ANCHOR_SERVER})")
    parser.add_argument("--connections", type=int, default=OVERLOAD_CONNECTIONS,
                        help=f"paced connections, more than the anchor's (default {OVERLOAD_CONNECTIONS})")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up per step (s)")
    parser.add_argument("--seconds", type=float, default=None, help="measurement per step (s)")
    parser.add_argument("-o", "--out", type=Path, default=PARAMS / "calibration.yaml")
    parser.add_argument("--root", type=Path, default=RAW, help="where the measured points go")
    args = parser.parse_args(argv)
    if args.connections < 1 or (args.seconds is not None and not 1 <= args.seconds <= 120) or (
            args.warmup is not None and not 0 <= args.warmup <= 120):
        parser.error("need --connections >= 1, 1 <= --seconds <= 120 and 0 <= --warmup <= 120")
    from ukweb import fileset, runs

    try:
        result = calibrate(args.params, args.out, args.server, args.connections, args.warmup,
                           args.seconds, args.root)
    except ParamsError as exc:
        print(f"ukweb calibrate: {exc}", file=sys.stderr)
        return 2
    except (PointFailed, CalibrationError, runs.SweepError, fileset.FilesetError) as exc:
        print(f"ukweb calibrate: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(result, sort_keys=False), end="")
    return 0


__all__ = ["calibrate", "target_replies", "next_share", "CalibrationError", "SweepParams"]
