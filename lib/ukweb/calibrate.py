"""Calibration: the CPU share that makes this machine's server CPU as fast as the paper's.

The paper's server was a 400 MHz Pentium II. [I] The anchor: its 16-process µserver peaked on
the static workload at 700 simultaneous connections (Fig. 2, claims S2 and S4). With 400 kbit/s
pacing a connection offers 400000/122000 = 3.28 replies/s (§1.2), so at its peak the server's
CPU handled about 700 x 3.28 = 2,295 replies/s. `ukweb calibrate -f params/<profile>.yaml`
finds the CPU share (ukweb.cpuemul) at which the emulated CPU is exactly busy serving that:
share = 2,295 x (CPU seconds of this machine per reply), the CPU per reply measured on
userver-16 at 700 connections in the final regime (the profile's CPU method, the disk model, the
memory cap, one warm series: cache dropped once, pre-warmed, every step in the same cgroup,
paced clients, a warm-up long enough to settle). The CPU per reply counts everything the
emulated CPU did (server, its softirq and kernel threads): the share minus what stayed idle.
It is measured again at each new share (a slower CPU batches more work per event, so the cost
shifts a little), at least three times and until two proposals agree; the share is the mean of
the proposals after the first (one step's CPU per reply is noisy by a few percent).

[I] Why the CPU alone, and not "the peak lands at 700": with the disk model the server is
disk-bound past a few hundred connections (the paper's regime), and there the throughput at a
given share is bistable (a disk queue that builds up stalls every process), so a throughput
target does not converge (measured: shares 0.24 and 0.26 gave 1,606 and 2,490 replies/s). The
disk parameters are the paper's disk; where the peak lands is then a finding (claim S4).

Every step is a real data point, kept under data/raw/calibrate-<time>/; params/calibration.yaml
gets the share, the method, the anchor and each step (replies/s, CPU per reply, misses/s, disk
busy time). Two calibrations on the same machine must agree within 5 %
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

from ukweb import analysis, fileset, machine, manifest, regime, runs
from ukweb.paths import PARAMS, RAW
from ukweb.point import Point, PointFailed, PointRunner
from ukweb.servers import named_config
from ukweb.sweep_params import ParamsError, load_params
from ukweb.workload import BITS_PER_REPLY, USER_LINE_SPEED

log = logging.getLogger(__name__)

PAPER_PEAK_CONNECTIONS = 700  # Fig. 2: userver-16 (and TUX) peak at 700 connections
ANCHOR_SERVER = "userver-16"
ANCHOR_CONNECTIONS = PAPER_PEAK_CONNECTIONS
MIN_SHARE, MAX_SHARE = 0.02, 0.95
FIRST_SHARE = 0.15   # near where the previous session's pilots put the anchor
MIN_STEPS, MAX_STEPS = 3, 6
TOLERANCE = 0.02     # two successive proposals this close end the search
STEP_WARMUP_S, STEP_SECONDS = 10.0, 10.0


class CalibrationError(RuntimeError):
    """The anchor cannot be reached; the message says what limits the server."""


def target_replies(peak_connections: int = PAPER_PEAK_CONNECTIONS,
                   line_speed: int = USER_LINE_SPEED) -> float:
    """Replies/s the emulated server should manage: the load offered at the paper's peak."""
    return peak_connections * line_speed / BITS_PER_REPLY


def clamp(share: float) -> float:
    return round(min(MAX_SHARE, max(MIN_SHARE, share)), 4)


def _step(runner: PointRunner, run: Path, server: str, connections: int, i: int,
          share: float) -> dict:
    """One measurement at `share`: a real point; its replies/s, the emulated CPU's seconds per
    reply (share x busy fraction / replies/s), misses/s and disk busy time."""
    runner.testbed.set_share(share)
    point = Point("static", server, connections, i)
    runner.run(run, point, named_config(server))
    row = analysis.point_row(run / point.rel(), 1, share * 100,
                             {"cpu_method": runner.testbed.describe()["cpu_method"]})
    rate = float(row.get("ops_per_s", 0.0))
    busy = float(row.get("cpu_busy_of_capacity", 100.0)) / 100.0
    out = {"cpu_share": share, "replies_per_s": round(rate, 1),
           "cpu_busy_pct": round(100 * busy, 1),
           "cpu_us_per_reply": round(1e6 * share * busy / rate, 2) if rate > 0 else None}
    for k in ("misses_per_s", "disk_busy_pct", "blocked_pct", "conforming_pct"):
        if k in row:
            out[k] = round(float(row[k]), 2)
    return out


def search(runner: PointRunner, run: Path, server: str, connections: int,
           target: float) -> dict:
    """share <- target x CPU per reply measured at the last share, at least MIN_STEPS times and
    until the last two proposals agree within TOLERANCE; the result is the mean of the
    proposals made from steps near the answer (all but the first), which averages out the
    few-percent noise of one step's CPU per reply."""
    share, steps = FIRST_SHARE, []
    for i in range(MAX_STEPS):
        step = _step(runner, run, server, connections, i + 1, share)
        steps.append(step)
        if not step["cpu_us_per_reply"]:
            raise CalibrationError(f"{server} answered nothing at share {share:.3f}")
        step["proposed_share"] = clamp(target * step["cpu_us_per_reply"] / 1e6)
        log.info("calibrate: share %.4f -> %.0f replies/s, %.1f µs/reply -> share %.4f",
                 share, step["replies_per_s"], step["cpu_us_per_reply"], step["proposed_share"])
        share = step["proposed_share"]
        last = [s["proposed_share"] for s in steps[-2:]]
        if len(steps) >= MIN_STEPS and abs(last[1] / last[0] - 1) <= TOLERANCE:
            break
    else:
        log.warning("calibrate: the last two proposals differ by more than %.0f %% after %d "
                    "steps", 100 * TOLERANCE, MAX_STEPS)
    near = [s["proposed_share"] for s in steps[1:]] or [share]
    share = round(sum(near) / len(near), 4)
    if share >= MAX_SHARE:
        raise CalibrationError(f"{server} needs more than {MAX_SHARE:.0%} of this CPU to serve "
                               f"{target:.0f} replies/s: this machine is slower than the paper's")
    return {"cpu_share": share, "steps": steps}


def calibrate(profile: Path = PARAMS / "paper.yaml", out: Path = PARAMS / "calibration.yaml",
              server: str = ANCHOR_SERVER, connections: int = ANCHOR_CONNECTIONS,
              warmup_s: float | None = None, seconds: float | None = None,
              root: Path = RAW) -> dict:
    """Search the share in the profile's regime; write `out` and return the record."""
    params = load_params(profile)
    if params.cpu_method == "none":
        raise ParamsError(f"{profile}: cpu_method none has no CPU share to calibrate")
    params = dataclasses.replace(params, cpu_share=None,
                                 warmup_s=STEP_WARMUP_S if warmup_s is None else warmup_s,
                                 duration_s=STEP_SECONDS if seconds is None else seconds)
    regime.check_methods(params)
    target = target_replies()
    run = runs.run_path(root, f"calibrate-{dt.datetime.now():%Y%m%d-%H%M%S}")
    run.mkdir(parents=True)
    docroot = regime.docroot_for(params, connections)
    testbed = regime.make_testbed(params, FIRST_SHARE)
    with testbed, runs.links(params, testbed) as net, \
            regime.mounted_disk(params, docroot, testbed) as disk, \
            runs.runner_pinned(testbed.client_cpu_list):
        runner = PointRunner(testbed, disk.mountpoint if disk else docroot, params.warmup_s,
                             params.duration_s, params.line_speed, params.seed,
                             params.loadgen_threads, net, disk=disk, prewarm=params.prewarm,
                             max_connections=max(params.max_connections(), connections))
        with runner.series("calibrate", connections):
            result = search(runner, run, server, connections, target)
        described = testbed.describe()
    record = {"cpu_method": params.cpu_method, **result,
              "anchor": f"the emulated CPU is fully busy when {server} serves {target:.0f} "
                        f"static replies/s (the load {PAPER_PEAK_CONNECTIONS} connections offer: the "
                        f"paper's static peak, Fig. 2), CPU per reply measured at {connections} "
                        "connections",
              "target_replies_per_s": round(target, 1), "server": server,
              "connections": connections, "warmup_s": params.warmup_s,
              "seconds": params.duration_s, "profile": str(profile),
              "regime": {k: described.get(k) for k in ("memory_mb", "disk_model", "network")},
              "host": machine.host().get("cpu_model"), "date": manifest.now(), "run": str(run),
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
    parser.add_argument("--connections", type=int, default=ANCHOR_CONNECTIONS,
                        help=f"paced connections at which CPU per reply is measured (default {ANCHOR_CONNECTIONS})")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up per step (s)")
    parser.add_argument("--seconds", type=float, default=None, help="measurement per step (s)")
    parser.add_argument("-o", "--out", type=Path, default=PARAMS / "calibration.yaml")
    parser.add_argument("--root", type=Path, default=RAW, help="where the measured points go")
    args = parser.parse_args(argv)
    if args.connections < 1 or (args.seconds is not None and not 1 <= args.seconds <= 120) or (
            args.warmup is not None and not 0 <= args.warmup <= 120):
        parser.error("need --connections >= 1, 1 <= --seconds <= 120 and 0 <= --warmup <= 120")
    try:
        result = calibrate(args.params, args.out, args.server, args.connections, args.warmup,
                           args.seconds, args.root)
    except ParamsError as exc:
        print(f"ukweb calibrate: {exc}", file=sys.stderr)
        return 2
    except (PointFailed, CalibrationError, regime.SweepError, fileset.FilesetError) as exc:
        print(f"ukweb calibrate: {exc}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(result, sort_keys=False), end="")
    return 0


__all__ = ["calibrate", "target_replies", "CalibrationError"]
