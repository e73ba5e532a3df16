"""From a run directory to a tidy table: one row per data point, then curves, peaks and gaps.

The raw request log (requests.csv.gz) is the source of truth for throughput; summary.json is
only a cross-check (its ops/s is kept in the table as `summary_ops_per_s`). Metrics follow the
design: throughput = ok replies that *complete* inside the measured window / its seconds,
whatever phase they started in (ukweb.completions: t_end_us against the window loadgen wrote in
summary.json); the gap of A over B is (A/B - 1) x 100 %; a curve's peak is its highest mean
throughput.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from ukweb import batches, completions, logs, paths, points_columns, steady
from ukweb.cpulist import parse_cpus
from ukweb.workload import fileset_bytes, ndirs

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
PERCENTILES = (50, 90, 99)
# Status of a point directory: DONE written last by the runner, FAILED when it gave up.
DONE, FAILED, INCOMPLETE, UNREADABLE = "done", "failed", "incomplete", "unreadable"
KEYS = ["workload", "server", "connections", "repetition"]


# ---------------------------------------------------------------- one data point


def point_dirs(run: Path) -> list[Path]:
    """Every point directory of a run, layout points/<workload>/<server>/c<N>/r<R>/."""
    return sorted(p for p in (Path(run) / "points").glob("*/*/c*/r*") if p.is_dir())


def point_key(point: Path) -> dict:
    """workload, server, connections, repetition parsed from the point's path."""
    rep, conns, server, workload = point.name, point.parent.name, point.parent.parent.name, point.parents[2].name
    return {"workload": workload, "server": server,
            "connections": int(conns[1:]), "repetition": int(rep[1:])}


def point_status(point: Path) -> tuple[str, str]:
    """(status, reason): a point is done only when DONE exists; FAILED carries its reason."""
    if (point / "DONE").exists():
        return DONE, ""
    if (point / "FAILED").exists():
        return FAILED, _failure_reason((point / "FAILED").read_text(errors="replace"))
    return INCOMPLETE, "no DONE marker (interrupted point)"


def _failure_reason(text: str) -> str:
    """The reason in a FAILED file: the runner writes JSON {reason, detail}; plain text also works."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return ": ".join(str(data[k]) for k in ("reason", "detail") if data.get(k)) or "FAILED"
    lines = text.strip().splitlines()
    return lines[0] if lines else "FAILED without a reason"


def _latencies(ok: pd.DataFrame) -> dict:
    """Latency percentiles in ms of ok measured requests, one column per type and percentile."""
    out: dict[str, float] = {}
    ms = (ok["t_end_us"] - ok["t_start_us"]) / 1000.0
    for kind, group in ms.groupby(ok["type"].astype(str), observed=True):
        for p in PERCENTILES:
            out[f"p{p}_ms_{kind}"] = float(np.percentile(group, p))
    return out


def throughput(window: completions.Measured, measure_s: float) -> dict:
    """Replies/s, Mbit/s, errors and latency of the requests completed in the measured window.

    Latency is that of the ok replies the log has rows for (all of them, except in a loadgen-1
    run compacted by phase, whose warm-up-started replies survive only as counts)."""
    totals = window.totals()
    row = {"requests": totals["requests"], "ok": totals["ok"], "errors": totals["errors"],
           "ops_per_s": totals["ok"] / measure_s,
           "mbit_per_s": totals["ok_bytes"] * 8 / measure_s / 1e6,
           "started_in_warmup": totals["started_in_warmup"],
           "counted_from_warmup_counts": totals["from_counts"],
           "inflight_at_close": math.nan if window.inflight is None else window.inflight,
           "inflight_logged": window.inflight is not None}
    row.update(_latencies(window.ok))
    row.update(per_second_spread(window.rates()))
    return row


def per_second_rates(window: completions.Measured) -> np.ndarray:
    """ok replies completed in each whole second of the measured window (by t_end_us, from the
    window's start in summary.json)."""
    return window.rates()


def per_second_spread(rates: np.ndarray) -> dict:
    """The within-point spread of throughput: the standard deviation of the per-second rates
    and how many seconds it rests on (a point with n = 1 has no other measure of noise)."""
    sd = float(rates.std(ddof=1)) if len(rates) > 1 else math.nan
    return {"seconds_1s": len(rates), "ops_per_s_sd_1s": sd}


def counter_total(series: pd.Series) -> float:
    """Events counted by a system.csv counter column over the samples given.

    [I] The sampler (ukweb.sampler) writes counters as the change over each 1 s interval, so
    the total is their sum; negative values (a counter reset) are clipped to zero.
    """
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(values.clip(lower=0).sum()) if len(values) else math.nan


def _measured_samples(system: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """The 1 s samples of the measurement phase; all are kept if that leaves none.

    [I] A sample at t covers the interval since the previous sample, so it is measured only
    when that interval starts at or after the warm-up's end: the sample closing the last
    warm-up second (t = warmup_s + a few ms) is warm-up, not measurement. t counts from the
    sampler's start, which precedes loadgen's by a fraction of a second; a tenth of a step of
    slack absorbs the sampler's own jitter."""
    if system.empty or "t" not in system:
        return system
    t = pd.to_numeric(system["t"], errors="coerce")
    step = float(t.diff().median()) if len(t) > 1 else 1.0
    step = step if step > 0 else 1.0
    starts = t.shift(1).fillna(t - step)
    kept = system[starts >= warmup_s - 0.1 * step]
    return kept if len(kept) else system


def _span_s(samples: pd.DataFrame) -> float:
    """Seconds covered by the samples (each sample closes one interval)."""
    t = pd.to_numeric(samples["t"], errors="coerce").dropna() if "t" in samples else pd.Series()
    step = float(t.diff().median()) if len(t) > 1 else 1.0
    return max(len(samples), 1) * (step if step > 0 else 1.0)


def _blocked_s(samples: pd.DataFrame) -> float:
    """Seconds the server's threads were blocked on disk I/O, summed over the samples."""
    if "blocked_s" in samples:
        return counter_total(samples["blocked_s"])
    if "server_blocked_ms" in samples:  # the column name in docs/interfaces.md's first draft
        return counter_total(samples["server_blocked_ms"]) / 1000.0
    return math.nan


def system_metrics(system: pd.DataFrame, warmup_s: float, capacity_pct: float = 100.0,
                   server_cpus: int = 1, cpu_method: str = "quota") -> dict:
    """Server CPU idle/iowait/busy %, blocked %, listen drops and overflows of one point.

    capacity_pct is the share of the server's CPUs it may use (its CPU quota; 100 without one):
    the *_of_capacity columns say how much of that the server used or left unused, which is
    what the paper's idle and busy percentages mean on its dedicated 400 MHz CPU."""
    if system is None or system.empty:
        return {}
    s = _measured_samples(system, warmup_s)
    row: dict[str, float] = {}
    for col in ("cpu_user", "cpu_sys", "cpu_idle", "cpu_iowait"):
        if col in s:
            row[col] = float(pd.to_numeric(s[col], errors="coerce").mean())
    if "cpu_idle" in row:
        # [I] The paper's vmstat ran on Linux 2.4, which had no iowait: a CPU waiting for the
        # disk counted as idle. cpu_unused is that idle (idle + iowait); busy is the rest, so
        # softirq network work counts as busy.
        row["cpu_unused"] = row["cpu_idle"] + row.get("cpu_iowait", 0.0)
        row["cpu_busy"] = 100.0 - row["cpu_unused"]
    busy = row.get("cpu_busy")
    if "server_cpu_s" in s:
        # The server's own run time (schedstat, exact) as a share of its CPU set; preferred
        # to /proc/stat's tick-sampled times, which a CFS quota can make miss the server.
        row["server_cpu_s"] = counter_total(s["server_cpu_s"])
        busy = 100.0 * row["server_cpu_s"] / (_span_s(s) * server_cpus)
    if busy is not None:
        # [I] Under a CPU quota the throttled time shows as idle on the CPU; against the
        # quota, a saturated server is ~100 % busy, as the paper's slower CPU was.
        row["cpu_busy_of_capacity"] = min(100.0, 100.0 * busy / capacity_pct)
        row["cpu_unused_of_capacity"] = 100.0 - row["cpu_busy_of_capacity"]
    if cpu_method == "thief" and "cpu_unused" in row:
        # The thief spins through (1 - share) of the CPU and never idles, so every idle or
        # iowait moment of the CPU is the emulated CPU's own: unused = idle / share, directly
        # measured (NO_HZ idle time is exact), as vmstat's idle was on the paper's server.
        row["cpu_unused_of_capacity"] = min(100.0, 100.0 * row["cpu_unused"] / capacity_pct)
        row["cpu_busy_of_capacity"] = 100.0 - row["cpu_unused_of_capacity"]
    for col in ("listen_drops", "listen_overflows", "ctx_switches", "disk_read_bytes"):
        if col in s:
            row[col] = counter_total(s[col])
    span = _span_s(s)
    row.update(_blocked(s, span))
    row.update(_disk(s, span))
    return row


def _blocked(s: pd.DataFrame, span: float) -> dict:
    """The paper's "blocked for x % of the experiment", per server process.

    [I] blocked_pct is the mean over the server's processes of the share of time each was
    blocked on I/O (delay accounting), io_uring's io-wq threads excluded: they are TUX's async
    I/O threads, blocking so that the worker does not (blocked_iowq_pct, summed over them).
    blocked_max_pct is the most blocked process. Runs sampled before these columns existed sum
    every thread (which can pass 100 % with several processes)."""
    if "blocked_iowq_s" not in s:
        return {"blocked_pct": 100.0 * _blocked_s(s) / span}
    procs = pd.to_numeric(s["procs"], errors="coerce").clip(lower=1)
    own = (pd.to_numeric(s["blocked_s"], errors="coerce").clip(lower=0)
           - pd.to_numeric(s["blocked_iowq_s"], errors="coerce").clip(lower=0)).clip(lower=0)
    step = pd.to_numeric(s["t"], errors="coerce").diff().fillna(1.0).clip(lower=0.5)
    per_proc = (own / procs).clip(upper=step)  # ticks are sampled: never more than the interval
    # A share of the time, so at most 100: the tick-sampled counters and the samples' span can
    # disagree by a tick (100.05 % was seen).
    return {"blocked_pct": min(100.0, 100.0 * float(per_proc.sum()) / span),
            "blocked_max_pct": min(100.0, 100.0 * counter_total(s["blocked_max_s"]) / span),
            "blocked_iowq_pct": 100.0 * counter_total(s["blocked_iowq_s"]) / span,
            "server_procs": float(procs.mean())}


def _disk(s: pd.DataFrame, span: float) -> dict:
    """Misses that reached the disk model, and how busy it was (disk_* columns, when sampled)."""
    if "disk_reads" not in s:
        return {}
    return {"misses_per_s": counter_total(s["disk_reads"]) / span,
            "disk_seeks_per_s": counter_total(s["disk_seeks"]) / span,
            "disk_mb_per_s": counter_total(s["disk_bytes"]) / span / 1e6,
            "disk_busy_pct": 100.0 * counter_total(s["disk_busy_s"]) / span,
            "disk_overruns": counter_total(s["disk_overruns"]) if "disk_overruns" in s else math.nan}


def system_seconds(point: Path, server_cpus: int = 1, capacity_pct: float = 100.0,
                   **options) -> pd.DataFrame:
    """system_metrics of each measured 1 s sample of one point, a row per second: the
    within-point spread of CPU use and blocked time when the point was measured once.
    options go to system_metrics as they are (the run's method)."""
    measured = _measured_samples(logs.read_system(point),
                                 float(logs.read_summary(point).get("warmup_s", 0)))
    return pd.DataFrame([system_metrics(measured.iloc[[i]], -math.inf, capacity_pct, server_cpus,
                                        **options) for i in range(len(measured))])


def _status_counters(status: dict) -> dict:
    """Accept batch size, event waits and requests from a /server-status snapshot pair."""
    after = status.get("after", status)
    before = status.get("before", {})
    total_after, total_before = after.get("total", {}), before.get("total", {})

    def delta(key: str) -> float:
        return float(total_after.get(key, 0)) - float(total_before.get(key, 0))

    served = sum(total_after.get("requests", {}).get(k, 0) - total_before.get("requests", {}).get(k, 0)
                 for k in ("static", "dyn_get", "cad_get", "post", "cgi_get"))
    batches_a = total_after.get("accept_batches", {})
    batches_b = total_before.get("accept_batches", {})
    rounds = sum(batches_a.get(k, 0) - batches_b.get(k, 0) for k in batches_a if k != "0")
    return {"server_requests": served, "accepts": delta("accepts"),
            "accept_batch_mean": delta("accepts") / rounds if rounds else math.nan,
            "event_waits_per_request": delta("event_waits") / served if served else math.nan}


def point_row(point: Path, server_cpus: int = 1, capacity_pct: float = 100.0,
              testbed: dict | None = None) -> dict:
    """One row of the tidy table for one point directory (failed points keep NaN metrics).

    testbed: what the run's manifest says of the method (cpu_method, memory cap, settle_s)."""
    row = point_key(point)
    row["status"], row["reason"] = point_status(point)
    row["path"] = str(point)
    if row["status"] != DONE:
        return row
    try:
        return _measured_row(point, row, server_cpus, capacity_pct, testbed or {})
    except (ValueError, KeyError) as err:  # logs.LogError is a ValueError
        # A corrupt or truncated log is listed with the failed points, never silently dropped.
        log.error("%s: unreadable point: %s", point, err)
        return {**row, "status": UNREADABLE, "reason": f"unreadable log: {err}"}


def _measured_row(point: Path, row: dict, server_cpus: int, capacity_pct: float,
                  testbed: dict) -> dict:
    summary = logs.read_summary(point)
    measure_s = float(summary["measure_s"])
    warmup_s = float(summary.get("warmup_s", 0))
    window = completions.measured(point, summary=summary)
    row.update(throughput(window, measure_s))
    row["measure_s"] = measure_s
    row["summary_ops_per_s"] = summary.get("measure", {}).get("ops_per_s", math.nan)
    row["conforming_connections"] = summary.get("conforming_connections", math.nan)
    row["conforming_pct"] = summary.get("conforming_pct", math.nan)
    row["client_cpu_us_per_request"] = summary.get("cpu_us_per_request", math.nan)
    samples = pd.DataFrame()
    if (point / "system.csv").exists():
        system = logs.read_system(point)
        samples = _measured_samples(system, warmup_s)
        row.update(system_metrics(system, warmup_s, capacity_pct, server_cpus,
                                  testbed.get("cpu_method", "quota")))
    done = _done_record(point)
    if done.get("mode") == "carried" and done.get("batch_s"):
        rates = per_second_rates(window)
        row.update(batch_columns(rates, int(done["batch_s"])))
        row["mode"], row["window_s"] = "carried", measure_s
        row["settle_s"] = (done.get("settle") or {}).get("settle_s", math.nan)
        row["server_pid"] = (done.get("server_pids") or [math.nan])[0]
    elif done:
        row["mode"] = done.get("mode", "fresh")
    if testbed.get("steadiness"):
        rates = per_second_rates(window)
        row.update(steady.checks(rates, samples, testbed.get("memory_bytes"), warmup_s,
                                 testbed.get("settle_s", 10.0),
                                 fileset_bytes(ndirs(int(row["connections"]))),
                                 settle=done.get("settle") if done.get("mode") == "carried" else None))
    if (point / "server-status.json").exists():
        row.update(_status_counters(json.loads((point / "server-status.json").read_text())))
    if "server_cpu_s" in row and row["requests"]:
        # Server CPU time per reply, from its threads' own run time over the measured samples.
        row["server_cpu_us_per_request"] = row["server_cpu_s"] * 1e6 / max(row["requests"], 1)
    elif "cpu_busy" in row and row["requests"]:
        # Older runs: busy share x server CPUs x seconds / replies.
        row["server_cpu_us_per_request"] = (row["cpu_busy"] / 100 * server_cpus * measure_s * 1e6
                                            / max(row["requests"], 1))
    if completions.inflight_logged(summary):  # loadgen 1's summary counted by start
        _cross_check(row)
    return row


def _done_record(point: Path) -> dict:
    """The DONE record's JSON ({} when it is not JSON: older runs wrote it plainly)."""
    try:
        data = json.loads((point / "DONE").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def batch_columns(rates: np.ndarray, batch_s: int) -> dict:
    """The batch-means columns of a carried point's window (ukweb.batches): batch length and
    count, the standard error and dof of its mean, and the window's own integrated
    autocorrelation time (batch_s should be >= 2 x tau_int_window_s for the batches to be
    nearly independent; batch_over_tau says by how much)."""
    bm = batches.batch_means(rates, batch_s)
    tau = batches.integrated_time(batches.autocorrelation(rates, min(20, max(len(rates) // 4, 1))))
    return {"batch_s": batch_s, "batches": bm.batches, "batch_se": bm.se, "batch_dof": bm.dof,
            "batch_mean": bm.mean, "tau_int_window_s": tau,
            "batch_over_tau": batch_s / tau if tau > 0 else math.nan}


def _cross_check(row: dict) -> None:
    """Warn when loadgen's own summary disagrees with the raw log by more than 1 %."""
    ours, theirs = row["ops_per_s"], row["summary_ops_per_s"]
    if theirs and not math.isnan(theirs) and abs(ours - theirs) > 0.01 * max(theirs, 1e-9):
        log.warning("%s: %.1f ops/s from the request log but %.1f in summary.json",
                    row["path"], ours, theirs)


# ---------------------------------------------------------------- the run


def read_manifest(run: Path) -> dict:
    """The run's manifest.json ({} when missing, with a warning)."""
    path = Path(run) / "manifest.json"
    if not path.exists():
        log.warning("%s has no manifest.json", run)
        return {}
    return json.loads(path.read_text())


def server_cpu_count(manifest: dict) -> int:
    """How many CPUs the server had (params.server_cpus, e.g. '0' or '0-1'; 1 when unknown)."""
    cpus = manifest.get("params", {}).get("server_cpus")
    if isinstance(cpus, int) and not isinstance(cpus, bool):
        return max(cpus, 1)
    try:
        return max(len(parse_cpus(cpus)), 1) if cpus else 1
    except ValueError:
        log.warning("manifest server_cpus=%r is not a CPU list; assuming 1 CPU", cpus)
        return 1


def cpu_capacity_pct(manifest: dict, server_cpus: int) -> float:
    """The share of its CPU set the server could use, in percent: the CPU thief's share or the
    CPU quota (percent of one CPU, spread over the set) when the testbed applied one, else 100."""
    tb = manifest.get("testbed", {})
    share = tb.get("cpu_share")
    quota = share * 100 if share else tb.get("cpu_quota_pct")
    if not quota or quota <= 0:
        return 100.0
    return min(100.0, float(quota) / max(server_cpus, 1))


def method_of(manifest: dict) -> dict:
    """What the analysis must know of a run's method: the CPU method, the memory cap, the
    warm-up steadiness needs; steadiness is judged for runs made with warm series."""
    tb, params = manifest.get("testbed", {}), manifest.get("params", {})
    memory_mb = tb.get("memory_mb", params.get("memory_mb"))
    return {"cpu_method": tb.get("cpu_method", "quota"),
            "memory_bytes": memory_mb * 1024 * 1024 if memory_mb else None,
            "settle_s": params.get("settle_s", 10.0),
            "steadiness": "settle_s" in params}


def require_run(run: Path) -> Path:
    """run, when it is a run directory (it has points/); FileNotFoundError saying why if not."""
    run = Path(run)
    if not (run / "points").is_dir():
        raise FileNotFoundError(f"{run} is not a run directory (no points/ inside)")
    return run


def points_table(run: Path) -> pd.DataFrame:
    """The tidy table of a run: one row per point directory, failed and incomplete included."""
    run = require_run(run)
    manifest = read_manifest(run)
    cpus = server_cpu_count(manifest)
    capacity = cpu_capacity_pct(manifest, cpus)
    method = method_of(manifest)
    rows = [point_row(p, cpus, capacity, method) for p in point_dirs(run)]
    if not rows:
        raise ValueError(f"{run} has no data points under points/")
    table = pd.DataFrame(rows).sort_values(KEYS, ignore_index=True)
    if "inflight_logged" in table and table["inflight_logged"].eq(False).any():
        log.warning("%s: loadgen 1 did not log the requests in flight when a measured window "
                    "closed; throughput counts completions from t_end_us (ukweb.completions)", run)
    for bad in table[table["status"] != DONE].itertuples():
        log.warning("point %s/%s/c%d/r%d %s: %s", bad.workload, bad.server, bad.connections,
                    bad.repetition, bad.status, bad.reason)
    return table


def failed_points(points: pd.DataFrame) -> pd.DataFrame:
    """The points that did not complete, with their reason."""
    return points.loc[points["status"] != DONE, KEYS + ["status", "reason"]]


def processed_dir(run: Path, root: Path | None = None) -> Path:
    """data/processed/<run-id>/ for a run directory (run-id = the directory's name)."""
    return (root or paths.PROCESSED) / Path(run).resolve().name


def write_points(run: Path, out: Path | None = None) -> Path:
    """Analyse a run and write points.parquet under its processed directory."""
    table = points_table(run)  # first: a bad run directory must leave nothing behind
    out = out or processed_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "points.parquet"
    pq.write_table(described(pa.Table.from_pandas(table, preserve_index=False)), target)
    return target


def described(table: pa.Table) -> pa.Table:
    """The table with each field's description, unit and source (ukweb.points_columns) as
    Parquet field metadata, so points.parquet explains itself; a column the dictionary lacks
    is written without."""
    fields = []
    for field in table.schema:
        entry = points_columns.describe(field.name)
        if entry is not None:
            unit, source, meaning = entry
            field = field.with_metadata({"description": meaning, "unit": unit, "source": source})
        fields.append(field)
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


# ---------------------------------------------------------------- curves, peaks, gaps


def mean_ci(values: pd.Series, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and half-width of its t-distribution confidence interval (NaN with one value)."""
    values = pd.Series(values, dtype=float).dropna()
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n == 1:
        return float(values.iloc[0]), math.nan
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half)


# How a curve row's standard error was obtained: from repetitions (n >= 2); for a single point
# (n = 1) from the repetitions of the other servers at the same workload and load (pooled), or
# failing those from its own per-second rates; or not at all (older runs, points < 2 s).
REPETITIONS, POOLED, SECONDS, NO_SPREAD = "repetitions", "pooled", "seconds", "none"
# ... or, for a carried point (one long window, issue 17), from its batch means (ukweb.batches).
BATCHES = "batches"
CURVE_COLUMNS = ["workload", "server", "connections", "n", "throughput", "ci95", "std",
                 "mbit_per_s", "se", "dof", "basis", "half95", "steady"]


def _standard_error(group: pd.DataFrame) -> tuple[float, int, str]:
    """(standard error of the mean throughput, its degrees of freedom, basis) of one curve row.

    [I] With one repetition the per-second rates stand in for repetitions: their standard
    error with k - 1 degrees of freedom. Consecutive seconds are correlated (and a point that
    is still warming up trends), so this is a rough, usually optimistic, measure of noise."""
    n = len(group)
    if n >= 2:
        return float(group["ops_per_s"].std(ddof=1)) / math.sqrt(n), n - 1, REPETITIONS
    if "batch_se" in group and pd.notna(group["batch_se"].iloc[0]) \
            and int(group["batch_dof"].iloc[0]) >= 1:
        # A carried point: its window's batch means (the mean is the window's replies/s; the
        # batches drop at most batch_s - 1 trailing seconds, so their se stands for it).
        return float(group["batch_se"].iloc[0]), int(group["batch_dof"].iloc[0]), BATCHES
    sd = float(group["ops_per_s_sd_1s"].iloc[0]) if "ops_per_s_sd_1s" in group else math.nan
    k = int(group["seconds_1s"].iloc[0]) if "seconds_1s" in group and pd.notna(
        group["seconds_1s"].iloc[0]) else 0
    if k >= 2 and not math.isnan(sd):
        return sd / math.sqrt(k), k - 1, SECONDS
    return math.nan, 0, NO_SPREAD


def _steady(group: pd.DataFrame) -> object:
    """True/False when the run says whether every repetition was steady, else None."""
    if "steady" not in group or group["steady"].isna().all():
        return None
    return bool(group["steady"].dropna().astype(bool).all())


def _pooled(rows: list[dict]) -> None:
    """Give each single point (n = 1) the between-repetition spread of its neighbours.

    [I] The per-second rates of one point miss what differs from one repetition to the next
    (past saturation the emulated testbed is bistable), and so understate it: two `make
    reproduce` of the paper profile moved the process sweep's single points by up to 20 % where
    their per-second intervals said 4-29 %. A single point therefore takes the relative variance
    of the repeated points of the same workload at the same connection count (the other servers'
    figure points at the sweep's load), pooled over their degrees of freedom: se = its
    throughput x the pooled relative standard deviation (one observation), dof = the pooled
    dof. Without such neighbours it keeps its per-second interval."""
    repeated: dict[tuple, list[tuple[float, int]]] = {}
    for r in rows:
        if r["basis"] == REPETITIONS and r["throughput"] > 0:
            rel_var = (r["se"] * math.sqrt(r["n"]) / r["throughput"]) ** 2
            repeated.setdefault((r["workload"], r["connections"]), []).append((rel_var, r["dof"]))
    for r in rows:
        pool = repeated.get((r["workload"], r["connections"]))
        if r["n"] != 1 or not pool or r["basis"] == BATCHES:
            continue
        dof = sum(d for _, d in pool)
        r["se"] = r["throughput"] * math.sqrt(sum(v * d for v, d in pool) / dof)
        r["dof"], r["basis"] = dof, POOLED
        r["half95"] = t_quantile(dof) * r["se"]


def curves(points: pd.DataFrame) -> pd.DataFrame:
    """Mean throughput per (workload, server, connections) over the completed repetitions.

    ci95 is the repetitions' 95 % t interval, or a carried point's batch-means interval (NaN
    with n = 1 otherwise, so figures draw no error bar);
    se/dof/basis/half95 are the uncertainty verdicts use: for n = 1 pooled from the repeated
    points beside it, else per-second (see _pooled)."""
    done = points[points["status"] == DONE]
    rows = []
    for (workload, server, conns), group in done.groupby(KEYS[:3], sort=True):
        mean, half = mean_ci(group["ops_per_s"])
        se, dof, basis = _standard_error(group)
        if basis == BATCHES:  # a carried point's error bar: its batch-means interval
            half = t_quantile(dof) * se
        rows.append({"workload": workload, "server": server, "connections": conns,
                     "n": len(group), "throughput": mean, "ci95": half,
                     "std": float(group["ops_per_s"].std(ddof=1)) if len(group) > 1 else math.nan,
                     "mbit_per_s": float(group["mbit_per_s"].mean()),
                     "se": se, "dof": dof, "basis": basis,
                     "half95": t_quantile(dof) * se if dof else math.nan,
                     "steady": _steady(group)})
    _pooled(rows)
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def t_quantile(dof: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided t quantile for a confidence interval (NaN without degrees of freedom)."""
    return float(stats.t.ppf((1 + confidence) / 2, dof)) if dof and dof >= 1 else math.nan


def curve(table: pd.DataFrame, workload: str, server: str) -> pd.DataFrame:
    """One server's curve in one workload, indexed by connections."""
    sel = table[(table["workload"] == workload) & (table["server"] == server)]
    return sel.set_index("connections").sort_index()


@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95 % interval (low/high NaN when there is no spread).

    n is the fewest repetitions behind it, basis how the interval was obtained (REPETITIONS,
    SECONDS for n = 1, NO_SPREAD), se and dof its standard error for combining estimates."""

    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    basis: str = NO_SPREAD
    se: float = math.nan
    dof: int = 0

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.value:.1f}"
        return f"{self.value:.1f} [{self.low:.1f}, {self.high:.1f}]"


def _se_dof(row: pd.Series) -> tuple[float, int, str]:
    """A curve row's standard error, degrees of freedom and basis (older tables: from std)."""
    if "se" in row and pd.notna(row["se"]):
        return float(row["se"]), int(row["dof"]), str(row["basis"])
    if row["n"] >= 2 and pd.notna(row["std"]):
        return float(row["std"]) / math.sqrt(row["n"]), int(row["n"]) - 1, REPETITIONS
    return math.nan, 0, NO_SPREAD


def weaker_basis(*bases: str) -> str:
    """The basis of an estimate combining others: the weakest of theirs."""
    for basis in (NO_SPREAD, SECONDS, POOLED, BATCHES):
        if basis in bases:
            return basis
    return REPETITIONS


def gap(a: pd.Series, b: pd.Series) -> Estimate:
    """Gap of A over B in %, (A/B - 1) x 100, from two curve rows (throughput, se, dof, n).

    [I] The interval uses the delta method for a ratio of two independent means and a t
    quantile with the smaller of the two rows' degrees of freedom (conservative); with n = 1
    the rows' per-second standard errors stand in (see curves); none without either.
    """
    ratio = a["throughput"] / b["throughput"]
    value = (ratio - 1) * 100
    n = int(min(a["n"], b["n"]))
    (se_a, dof_a, basis_a), (se_b, dof_b, basis_b) = _se_dof(a), _se_dof(b)
    basis = weaker_basis(basis_a, basis_b)
    if math.isnan(se_a) or math.isnan(se_b):
        return Estimate(value, n=n, basis=NO_SPREAD)
    se = ratio * math.sqrt((se_a / a["throughput"]) ** 2 + (se_b / b["throughput"]) ** 2) * 100
    dof = min(dof_a, dof_b)
    half = t_quantile(dof) * se
    return Estimate(value, value - half, value + half, n=n, basis=basis, se=se, dof=dof)


def peak(table: pd.DataFrame, workload: str, server: str) -> pd.Series:
    """The curve row with the highest mean throughput (its index name is the connections)."""
    c = curve(table, workload, server)
    if c.empty:
        raise KeyError(f"no completed points for {server} in workload {workload}")
    return c.loc[c["throughput"].idxmax()]


def peak_gap(table: pd.DataFrame, workload: str, a: str, b: str) -> Estimate:
    """Gap of A's peak over B's peak (the peaks may lie at different connection counts)."""
    return gap(peak(table, workload, a), peak(table, workload, b))


def common_connections(table: pd.DataFrame, workload: str, a: str, b: str) -> list[int]:
    """Connection counts measured for both servers."""
    ca, cb = curve(table, workload, a), curve(table, workload, b)
    return sorted(set(ca.index) & set(cb.index))


def nearest(values: list[int], target: int) -> int:
    """The measured connection count closest to target (ties: the smaller)."""
    if not values:
        raise KeyError("no connection counts measured")
    return min(values, key=lambda v: (abs(v - target), v))


def gap_at(table: pd.DataFrame, workload: str, a: str, b: str, connections: int) -> tuple[Estimate, int]:
    """Gap of A over B at the common measured point nearest to connections, and that point."""
    at = nearest(common_connections(table, workload, a, b), connections)
    return gap(curve(table, workload, a).loc[at], curve(table, workload, b).loc[at]), at


def gaps(table: pd.DataFrame, workload: str, a: str, b: str) -> pd.Series:
    """Gap of A over B in % at every common connection count."""
    common = common_connections(table, workload, a, b)
    ca, cb = curve(table, workload, a), curve(table, workload, b)
    return pd.Series({c: gap(ca.loc[c], cb.loc[c]).value for c in common}, name="gap_pct", dtype=float)


def max_gap(table: pd.DataFrame, workload: str, a: str, b: str) -> tuple[float, int]:
    """The largest gap of A over B over the common points, and where it occurs."""
    g = gaps(table, workload, a, b)
    if g.empty:
        raise KeyError(f"{a} and {b} share no measured point in workload {workload}")
    return float(g.max()), int(g.idxmax())


# ---------------------------------------------------------------- command line


def cli(argv: list[str]) -> int:
    """`ukweb analyze RUN [--out DIR]`: write points.parquet and print the curves."""
    parser = argparse.ArgumentParser(prog="ukweb analyze", description="tidy table of a run's data points")
    parser.add_argument("run", type=Path, help="run directory (data/raw/<run-id>)")
    parser.add_argument("--out", type=Path, help="output directory (default data/processed/<run-id>)")
    args = parser.parse_args(argv)
    try:
        target = write_points(args.run, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"ukweb analyze: {err}", file=sys.stderr)
        return 2
    points = pd.read_parquet(target)
    print(curves(points).to_string(index=False))
    failed = failed_points(points)
    if len(failed):
        print(f"\n{len(failed)} point(s) not completed:\n{failed.to_string(index=False)}")
    print(f"\nwrote {target}")
    return 0


def find_run(run_dir: str | Path | None = None, run_id: str | None = None,
             profile: str | None = None, root: Path | None = None) -> Path:
    """The run a notebook analyses: run_dir if given, else <root>/<run_id>, else the newest run
    of the profile under root (data/raw); FileNotFoundError says what was looked for."""
    root = root or paths.RAW
    if run_dir:
        run = Path(run_dir)
    elif run_id:
        run = root / run_id
    else:
        runs = sorted(root.glob(f"{profile or ''}*/manifest.json"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise FileNotFoundError(f"no run of profile {profile!r} under {root}; give run_dir")
        run = runs[-1].parent
    return require_run(run)


# ---------------------------------------------------------------- the paper's explanations (§5)

WHY_COLUMNS = ["ops_per_s", "cpu_idle", "cpu_iowait", "cpu_unused", "cpu_busy",
               "cpu_unused_of_capacity", "cpu_busy_of_capacity", "blocked_pct", "listen_drops",
               "listen_overflows", "accept_batch_mean", "event_waits_per_request",
               "server_cpu_us_per_request", "ctx_switches"]


def explain(points: pd.DataFrame, workload: str | None = None,
            servers: list[str] | None = None) -> pd.DataFrame:
    """Mean of the signals the paper used to explain its results (§5: CPU idle and blocked
    time, listen-queue drops, accept batches, CPU per request), per server and load."""
    done = points[points["status"] == DONE]
    if workload is not None:
        done = done[done["workload"] == workload]
    if servers is not None:
        done = done[done["server"].isin(servers)]
    cols = [c for c in WHY_COLUMNS if c in done]
    return done.groupby(KEYS[:3])[cols].mean().reset_index()


def listen_drops_by_server(points: pd.DataFrame) -> pd.DataFrame:
    """Listen-queue drops and overflows summed over each workload's points, per server."""
    done = points[points["status"] == DONE]
    cols = [c for c in ("listen_drops", "listen_overflows") if c in done]
    return done.groupby(["workload", "server"])[cols].sum().reset_index()
