"""ukweb.analysis on small hand-made run directories whose throughputs, peaks and gaps are known.

`make_run` writes a run directory in the design's layout ("A run on disk") with request logs in
the docs/interfaces.md format; test_claims and test_notebooks reuse it.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ukweb import analysis, paths

MEASURE_S = 2.0
WARMUP_S = 1.0
HEADER = "t_start_us,t_end_us,conn,type,class,dir,file,status,bytes,ok,error,phase\n"
REPLY_BYTES = 1000


def _requests(ops_per_s: float, types: tuple[str, ...], errors: int, wobble: float = 0.0) -> str:
    """A request log with ops_per_s x MEASURE_S ok measured replies spread over the measured
    seconds: each second gets ops_per_s x (1 +/- wobble), alternating, so the per-second rates
    have a known spread (none by default) around the same mean."""
    rows = [f"{i * 1000},{i * 1000 + 500},0,static,1,0,1,200,{REPLY_BYTES},1,,warmup" for i in range(5)]
    start, i = int(WARMUP_S * 1e6), 0
    for second in range(int(MEASURE_S)):
        count = round(ops_per_s * (1 + wobble * (-1) ** second))
        for j in range(count):
            kind = types[i % len(types)]
            t0 = start + second * 1_000_000 + j * 980_000 // max(count, 1)
            latency = 1000 * (1 + i % 10)  # 1..10 ms, so every reply ends within its second
            rows.append(f"{t0},{t0 + latency},{i % 4},{kind},1,0,1,200,{REPLY_BYTES},1,,measure")
            i += 1
    rows += [f"{start},{start + 9000},1,static,1,0,1,0,0,0,timeout,measure"] * errors
    return HEADER + "\n".join(rows) + "\n"


def _system(idle: float, drops: int, blocked_s: float, iowait: float, drift_s: float = 0.0) -> str:
    """system.csv in ukweb.sampler's form: per-interval counters, one row per second; the
    k-th sample at k x (1 + drift_s) s, as the real sampler drifts a few ms per second."""
    head = ("t,cpu_user,cpu_sys,cpu_idle,cpu_iowait,ctx_switches,listen_overflows,listen_drops,"
            "disk_read_bytes,page_cache_bytes,blocked_s\n")
    busy = 100 - idle - iowait
    rows = [f"{t * (1 + drift_s):.3f},{busy / 2},{busy / 2},{idle},{iowait},100,{drops},{drops},0,0,{blocked_s}"
            for t in range(1, int(WARMUP_S + MEASURE_S) + 1)]
    return head + "\n".join(rows) + "\n"


def _status(accepts: int, rounds: int, served: int) -> dict:
    before = {"total": {"requests": {"static": 0}, "accepts": 0, "accept_batches": {}, "event_waits": 0}}
    after = {"total": {"requests": {"static": served}, "accepts": accepts,
                       "accept_batches": {"0": 7, "4": rounds}, "event_waits": served * 2}}
    return {"before": before, "after": after}


def write_point(run: Path, workload: str, server: str, conns: int, rep: int, ops: float, *,
                idle: float = 20.0, iowait: float = 0.0, drops: int = 0, blocked_s: float = 0.0,
                types: tuple[str, ...] = ("static",), status: str = "DONE", wobble: float = 0.0,
                drift_s: float = 0.0) -> Path:
    """One point directory; status DONE, FAILED (with a reason) or '' (interrupted)."""
    point = run / "points" / workload / server / f"c{conns}" / f"r{rep}"
    point.mkdir(parents=True)
    with gzip.open(point / "requests.csv.gz", "wt") as f:
        f.write(_requests(ops, types, errors=2, wobble=wobble))
    summary = {"loadgen_version": 1, "connections": conns, "warmup_s": WARMUP_S, "measure_s": MEASURE_S,
               "measure": {"requests": round(ops * MEASURE_S) + 2, "ok": round(ops * MEASURE_S),
                           "errors": 2, "ops_per_s": ops},
               "conforming_connections": conns, "conforming_pct": 100.0, "cpu_us_per_request": 5.0}
    (point / "summary.json").write_text(json.dumps(summary))
    (point / "system.csv").write_text(_system(idle, drops, blocked_s, iowait, drift_s))
    (point / "server-status.json").write_text(json.dumps(_status(40, 10, round(ops * MEASURE_S))))
    if status == "DONE":
        (point / "DONE").write_text("")
    elif status == "FAILED":
        (point / "FAILED").write_text(json.dumps({"reason": "server died", "detail": "server exited with code 1"}))
    return point


def make_run(root: Path, curves: dict[tuple[str, str], dict[int, list[float]]],
             extra: dict | None = None) -> Path:
    """A run directory: curves maps (workload, server) -> {connections: [ops/s per repetition]};
    extra maps (workload, server) -> write_point keywords (idle, drops, blocked_s, types)."""
    extra = extra or {}
    run = root / "synthetic-run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(
        {"manifest_version": 1, "params": {"profile": "test", "server_cpus": "0"},
         "deviations": [{"setting": "CPU", "paper": "400 MHz Pentium II", "here": "modern CPU"}]}))
    for (workload, server), points in curves.items():
        for conns, reps in points.items():
            for rep, ops in enumerate(reps):
                write_point(run, workload, server, conns, rep, ops, **extra.get((workload, server), {}))
    return run


def test_server_run_time_beats_tick_sampled_cpu(tmp_path: Path):
    """With schedstat run time in system.csv (server_cpu_s), CPU use comes from it, not from
    /proc/stat's tick-sampled idle, which a CFS quota can make look 100 % idle."""
    run = make_run(tmp_path, {("static", "ktux"): {500: [40.0]}},
                   {("static", "ktux"): {"idle": 100.0}})
    system = next(run.rglob("system.csv"))
    lines = system.read_text().splitlines()
    system.write_text("\n".join([lines[0] + ",server_cpu_s"] + [f"{x},0.1" for x in lines[1:]]) + "\n")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["testbed"] = {"cpu_quota_pct": 20.0}
    (run / "manifest.json").write_text(json.dumps(manifest))
    row = analysis.points_table(run).iloc[0]
    assert row["cpu_busy"] == pytest.approx(0.0)  # the ticks saw nothing
    assert row["cpu_busy_of_capacity"] == pytest.approx(50.0)  # 0.1 s/s of a 0.2 s/s quota
    assert row["server_cpu_us_per_request"] == pytest.approx(
        row["server_cpu_s"] * 1e6 / row["requests"])


def test_cpu_use_is_measured_against_the_cpu_quota(tmp_path: Path):
    """Under a 20 % quota a CPU 15 % busy (85 % idle) is 75 % busy against what it may use."""
    run = make_run(tmp_path, {("dynamic", "ktux"): {500: [40.0]}},
                   {("dynamic", "ktux"): {"idle": 85.0, "iowait": 0.0}})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["testbed"] = {"cpu_quota_pct": 20.0}
    (run / "manifest.json").write_text(json.dumps(manifest))
    row = analysis.points_table(run).iloc[0]
    assert row["cpu_busy"] == pytest.approx(15.0)
    assert row["cpu_busy_of_capacity"] == pytest.approx(75.0)
    assert row["cpu_unused_of_capacity"] == pytest.approx(25.0)


# The static curves of Fig. 2 in miniature: ktux peaks at 300, userver-16 at 200.
STATIC = {("static", "ktux"): {100: [50.0], 200: [80.0], 300: [100.0], 400: [90.0]},
          ("static", "userver-16"): {100: [50.0], 200: [75.0], 300: [70.0], 400: [60.0]}}


@pytest.fixture
def static_run(tmp_path: Path) -> Path:
    return make_run(tmp_path, STATIC)


def test_throughput_counts_only_ok_measured_replies(static_run: Path):
    points = analysis.points_table(static_run)
    row = points[(points.server == "ktux") & (points.connections == 300)].iloc[0]
    assert row["ops_per_s"] == pytest.approx(100.0)
    assert row["errors"] == 2  # the two timeouts, not the warm-up requests
    assert row["mbit_per_s"] == pytest.approx(100.0 * REPLY_BYTES * 8 / 1e6)
    assert row["p50_ms_static"] == pytest.approx(5.5, abs=1.0)


def test_system_and_status_metrics(tmp_path: Path):
    run = make_run(tmp_path, {("dynamic", "userver-1"): {500: [40.0]}},
                   {("dynamic", "userver-1"): {"idle": 30.0, "iowait": 10.0, "drops": 3, "blocked_s": 0.25}})
    row = analysis.points_table(run).iloc[0]
    assert row["cpu_idle"] == pytest.approx(30.0)
    assert row["cpu_unused"] == pytest.approx(40.0)  # Linux 2.4's idle: idle + iowait
    assert row["cpu_busy"] == pytest.approx(60.0)
    assert row["cpu_busy_of_capacity"] == pytest.approx(60.0)  # no CPU quota: the whole CPU
    # per-interval counters over the 2 measured samples (the warm-up sample is dropped)
    assert row["listen_drops"] == 6
    assert row["blocked_pct"] == pytest.approx(25.0)
    assert row["accept_batch_mean"] == pytest.approx(4.0)
    assert row["event_waits_per_request"] == pytest.approx(2.0)


def test_peaks_and_gaps_are_the_known_ones(static_run: Path):
    table = analysis.curves(analysis.points_table(static_run))
    assert analysis.peak(table, "static", "ktux").name == 300
    assert analysis.peak(table, "static", "userver-16").name == 200
    assert analysis.peak_gap(table, "static", "ktux", "userver-16").value == pytest.approx((100 / 75 - 1) * 100)
    est, at = analysis.gap_at(table, "static", "ktux", "userver-16", 390)
    assert at == 400 and est.value == pytest.approx(50.0)
    assert analysis.max_gap(table, "static", "ktux", "userver-16") == (pytest.approx(50.0), 400)
    # one repetition: the interval is the per-second one, here none (every second alike)
    assert est.n == 1 and est.basis == analysis.SECONDS and est.low == pytest.approx(est.high)


def test_confidence_interval_uses_t_distribution(tmp_path: Path):
    run = make_run(tmp_path, {("static", "ktux"): {100: [90.0, 100.0, 110.0]},
                              ("static", "userver-8"): {100: [50.0, 50.0, 50.0]}})
    table = analysis.curves(analysis.points_table(run))
    row = analysis.curve(table, "static", "ktux").loc[100]
    assert row["throughput"] == pytest.approx(100.0)
    assert row["ci95"] == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-4)
    est = analysis.peak_gap(table, "static", "ktux", "userver-8")
    assert est.value == pytest.approx(100.0)
    assert est.low < 100.0 < est.high


def test_failed_points_are_listed_not_dropped(tmp_path: Path):
    run = make_run(tmp_path, STATIC)
    write_point(run, "static", "ktux", 500, 0, 10.0, status="FAILED")
    write_point(run, "static", "ktux", 600, 0, 10.0, status="")
    points = analysis.points_table(run)
    failed = analysis.failed_points(points)
    assert set(failed["connections"]) == {500, 600}
    assert "exited with code 1" in failed.set_index("connections").loc[500, "reason"]
    assert 500 not in analysis.curve(analysis.curves(points), "static", "ktux").index


def test_write_points_and_cli(static_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "processed"
    assert analysis.cli([str(static_run), "--out", str(out)]) == 0
    table = pd.read_parquet(out / "points.parquet")
    assert len(table) == 8 and set(table["status"]) == {"done"}
    assert "wrote" in capsys.readouterr().out


def test_cli_rejects_a_directory_that_is_not_a_run(tmp_path: Path, capsys):
    assert analysis.cli([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
    assert not (paths.PROCESSED / tmp_path.name).exists()  # nothing written for a bad run


def test_a_corrupt_log_is_listed_as_unreadable(tmp_path: Path):
    run = make_run(tmp_path, STATIC)
    point = write_point(run, "static", "ktux", 500, 0, 10.0)
    (point / "requests.csv.gz").write_bytes(b"\x1f\x8b truncated")
    points = analysis.points_table(run)
    bad = analysis.failed_points(points)
    assert list(bad["status"]) == [analysis.UNREADABLE] and "requests.csv.gz" in bad["reason"].iloc[0]
    assert len(points[points["status"] == analysis.DONE]) == 8


def test_the_sample_closing_the_last_warmup_second_is_not_measured(tmp_path: Path):
    """The sampler's k-th sample lands at k x 1.003 s: the one at 1.003 s closes the warm-up's
    last second (t > warmup_s, but its interval starts at 0), so only 2 samples are measured."""
    run = make_run(tmp_path, {("dynamic", "userver-1"): {500: [40.0]}},
                   {("dynamic", "userver-1"): {"drops": 3, "blocked_s": 0.25, "drift_s": 0.003}})
    row = analysis.points_table(run).iloc[0]
    assert row["listen_drops"] == 6  # 2 measured samples x 3, not 3 x 3
    assert row["blocked_pct"] == pytest.approx(25.0, rel=0.01)


def test_one_repetition_gets_a_per_second_interval(tmp_path: Path):
    """n = 1: the per-second rates (t_end_us bins) give the spread; seconds alternate +/-20 %."""
    run = make_run(tmp_path, {("static", "ktux"): {100: [100.0]}, ("static", "userver-8"): {100: [50.0]}},
                   {("static", "ktux"): {"wobble": 0.2}})
    points = analysis.points_table(run).set_index("server")
    assert points.loc["ktux", "ops_per_s"] == pytest.approx(100.0)
    assert points.loc["ktux", "seconds_1s"] == MEASURE_S
    assert points.loc["ktux", "ops_per_s_sd_1s"] == pytest.approx(20 * math.sqrt(2))
    row = analysis.curve(analysis.curves(points.reset_index()), "static", "ktux").loc[100]
    assert row["basis"] == analysis.SECONDS and math.isnan(row["ci95"])  # no repetition CI
    assert row["half95"] == pytest.approx(12.7062 * 20 * math.sqrt(2) / math.sqrt(2), rel=1e-4)
    est = analysis.peak_gap(analysis.curves(points.reset_index()), "static", "ktux", "userver-8")
    assert est.n == 1 and est.low < 100 < est.high


def test_a_single_point_takes_the_repeated_neighbours_spread(tmp_path: Path):
    """n = 1 beside repeated points of the same workload and load: their relative variance,
    pooled over their degrees of freedom, not the point's own (tiny) per-second spread."""
    run = make_run(tmp_path, {("static", "ktux"): {700: [90.0, 110.0, 100.0]},       # sd 10 %
                              ("static", "userver-16"): {700: [40.0, 60.0, 50.0]},   # sd 20 %
                              ("static", "userver-4"): {700: [80.0], 100: [30.0]}},
                   {("static", "userver-4"): {"wobble": 0.01}})
    table = analysis.curves(analysis.points_table(run))
    row = analysis.curve(table, "static", "userver-4").loc[700]
    assert row["basis"] == analysis.POOLED and row["dof"] == 4
    assert row["se"] == pytest.approx(80.0 * math.sqrt((0.1 ** 2 * 2 + 0.2 ** 2 * 2) / 4))
    assert row["half95"] == pytest.approx(analysis.t_quantile(4) * row["se"])
    # no repeated neighbour at 100 connections: the per-second interval stays
    assert analysis.curve(table, "static", "userver-4").loc[100, "basis"] == analysis.SECONDS
    est = analysis.gap(row, analysis.curve(table, "static", "ktux").loc[700])
    assert est.basis == analysis.POOLED and est.low < -20 < est.high


def test_repetitions_beat_per_second_spread(tmp_path: Path):
    run = make_run(tmp_path, {("static", "ktux"): {100: [90.0, 110.0]}}, {("static", "ktux"): {"wobble": 0.5}})
    row = analysis.curve(analysis.curves(analysis.points_table(run)), "static", "ktux").loc[100]
    assert row["basis"] == analysis.REPETITIONS and row["n"] == 2
    assert row["half95"] == pytest.approx(row["ci95"])
