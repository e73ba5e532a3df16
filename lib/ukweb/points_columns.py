"""The data dictionary of points.parquet: every column's meaning, unit and source.

One entry per column (a pattern for the per-type latency columns). docs/points.md is generated
from it (`python -m ukweb.points_columns > docs/points.md`; a test keeps it current), and
ukweb.analysis.write_points stores each description as the Parquet field's metadata, so the
file explains itself. Units: every share is a percentage, 0-100 (`_pct`, `_of_capacity`,
and the `cpu_*` times of the server's CPUs as vmstat named them); only a busy time summed over
threads or overrunning its window (`blocked_iowq_pct`, `disk_busy_pct`) passes 100. Times and
rates say their unit in the name.
"""

from __future__ import annotations

import re
import sys

# name -> (unit, source, meaning). Sources: path = the point's directory name; log = the
# request log (requests.csv.gz / .parquet); summary = loadgen's summary.json; system = the
# runner's 1 s samples (system.csv, measured samples only); status = /server-status before
# and after; DONE = the runner's DONE record; manifest = the run's manifest.json.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "workload": ("", "path", "SPECweb99 workload: static, dynamic, mix30, mix50, mix80"),
    "server": ("", "path", "server configuration: ktux, userver-N (N processes), nginx"),
    "connections": ("connections", "path", "simultaneous connections loadgen kept open"),
    "repetition": ("", "path", "repetition number of the point (r<N>)"),
    "status": ("", "DONE/FAILED", "done, failed, incomplete (no marker) or unreadable (bad log)"),
    "reason": ("", "FAILED", "why a point is not done; empty when done"),
    "path": ("", "path", "the point's directory as analysed"),
    "requests": ("requests", "log", "requests completed in the measured window (ok or not)"),
    "ok": ("replies", "log", "ok replies completed in the measured window"),
    "errors": ("requests", "log", "requests completed in the window that were not ok"),
    "ops_per_s": ("replies/s", "log", "throughput: ok replies completed in the window / its seconds"),
    "mbit_per_s": ("Mbit/s", "log", "ok reply bytes completed in the window x 8 / its seconds / 1e6"),
    "started_in_warmup": ("requests", "log", "of `requests`, those started before the window"),
    "counted_from_warmup_counts": ("requests", "warmup_per_second.csv",
                                   "completions counted from a compacted run's per-second counts (no rows)"),
    "inflight_at_close": ("requests", "log", "requests in flight when the window closed (NaN: loadgen 1 did not log them)"),
    "inflight_logged": ("bool", "summary", "whether loadgen logged the requests in flight (loadgen 2 on)"),
    "seconds_1s": ("s", "log", "whole seconds of the window the per-second spread rests on"),
    "ops_per_s_sd_1s": ("replies/s", "log", "standard deviation of the per-second ok replies in the window"),
    "measure_s": ("s", "summary", "length of the measured window"),
    "summary_ops_per_s": ("replies/s", "summary", "loadgen's own throughput (cross-check only)"),
    "conforming_connections": ("connections", "summary", "connections at or above SPECweb99's conforming bit rate"),
    "conforming_pct": ("%", "summary", "conforming connections as a share of all"),
    "client_cpu_us_per_request": ("µs/request", "summary", "loadgen's CPU time per request (all phases)"),
    "cpu_user": ("%", "system", "server CPUs' user time, mean over measured samples (/proc/stat)"),
    "cpu_sys": ("%", "system", "server CPUs' system time, mean over measured samples"),
    "cpu_idle": ("%", "system", "server CPUs' idle time (excluding iowait), mean over measured samples"),
    "cpu_iowait": ("%", "system", "server CPUs' iowait, mean over measured samples"),
    "cpu_unused": ("%", "system", "cpu_idle + cpu_iowait: idle as Linux 2.4's vmstat counted it"),
    "cpu_busy": ("%", "system", "100 - cpu_unused"),
    "server_cpu_s": ("s", "system", "the server's own run time over the measured samples (schedstat)"),
    "cpu_busy_of_capacity": ("%", "system+manifest", "server CPU use as a share of what it may use (its CPU share or quota)"),
    "cpu_unused_of_capacity": ("%", "system+manifest", "100 - cpu_busy_of_capacity: the paper's idle on its 400 MHz CPU"),
    "listen_drops": ("connections", "system", "ListenDrops in the server's namespace over the measured samples"),
    "listen_overflows": ("connections", "system", "ListenOverflows over the measured samples"),
    "ctx_switches": ("switches", "system", "context switches over the measured samples"),
    "disk_read_bytes": ("bytes", "system", "block-device reads over the measured samples"),
    "blocked_pct": ("%", "system", "mean over server processes of the time each was blocked on I/O (delay accounting, io-wq threads excluded), at most 100"),
    "blocked_max_pct": ("%", "system", "the most blocked server process's blocked time, at most 100"),
    "blocked_iowq_pct": ("% of one thread", "system", "io_uring io-wq threads' blocked time summed over them (can exceed 100)"),
    "server_procs": ("processes", "system", "mean number of server processes sampled"),
    "misses_per_s": ("reads/s", "system", "page-cache misses that reached the disk model"),
    "disk_seeks_per_s": ("seeks/s", "system", "disk model positionings"),
    "disk_mb_per_s": ("MB/s", "system", "bytes the disk model transferred / 1e6"),
    "disk_busy_pct": ("%", "system", "disk model busy time over the measured samples (can pass 100 when it overruns)"),
    "disk_overruns": ("reads", "system", "reads whose service overran the model"),
    "mode": ("", "DONE", "fresh (own warm-up) or carried (one long window of a carried series)"),
    "window_s": ("s", "DONE", "a carried point's window"),
    "settle_s": ("s", "DONE", "a carried series' settling time before its window"),
    "server_pid": ("", "DONE", "a carried point's server process id"),
    "batch_s": ("s", "log", "batch length of a carried point's batch means"),
    "batches": ("batches", "log", "number of batches"),
    "batch_se": ("replies/s", "log", "standard error of the window's mean from its batch means"),
    "batch_dof": ("", "log", "degrees of freedom of batch_se"),
    "batch_mean": ("replies/s", "log", "mean of the batch means"),
    "tau_int_window_s": ("s", "log", "integrated autocorrelation time of the window's per-second rates"),
    "batch_over_tau": ("", "log", "batch_s / tau_int_window_s (>= 2 for nearly independent batches)"),
    "throughput_drift_pct": ("%", "log", "change of throughput across the window (steadiness check)"),
    "cache_fill_pct": ("%", "system+manifest", "lowest page cache + server memory in the window, in % of the memory cap"),
    "disk_overrun_s": ("s", "system", "disk model busy time beyond its modelled service"),
    "disk_overrun_pct": ("%", "system",
                         "disk_overrun_s as a share of the disk model's busy time in the window"),
    "cache_at_cap": ("bool", "system+manifest", "the cache had filled the memory cap (as the paper's server)"),
    "offered_settled": ("bool", "summary+manifest", "the warm-up lasted at least settle_s"),
    "series_settled": ("bool", "DONE", "a carried series settled before its window (None for fresh points)"),
    "steady": ("bool", "log+system", "every steadiness check passed"),
    "steady_reason": ("", "log+system", "the checks that failed"),
    "server_requests": ("requests", "status", "requests the server counted over the point (static, dyn_get, cad_get, post, cgi_get)"),
    "accepts": ("connections", "status", "connections the server accepted over the point"),
    "accept_batch_mean": ("connections/batch", "status", "mean connections per non-empty accept round"),
    "event_waits_per_request": ("waits/request", "status", "event waits (epoll/select/io_uring) per request"),
    "server_cpu_us_per_request": ("µs/request", "system+log", "server CPU time per request in the window"),
}
# Latency: one column per percentile and request type (static, dyn_get, cad_get, post, cgi_get).
LATENCY = re.compile(r"p(\d+)_ms_(\w+)")


def describe(name: str) -> tuple[str, str, str] | None:
    """(unit, source, meaning) of a column, or None when the dictionary lacks it."""
    if name in COLUMNS:
        return COLUMNS[name]
    m = LATENCY.fullmatch(name)
    if m:
        return ("ms", "log", f"{m.group(1)}th percentile latency (t_end - t_start) of the ok "
                             f"{m.group(2)} replies completed in the window")
    return None


def markdown() -> str:
    lines = ["# points.parquet: the data dictionary", "",
             "One row per point directory of a run (`ukweb analyze`, `ukweb.analysis.points_table`);",
             "generated from `lib/ukweb/points_columns.py` (`python -m ukweb.points_columns > docs/points.md`),",
             "whose entries are also stored as each Parquet field's metadata (`description`, `unit`, `source`).",
             "Every share is a percentage (0–100; only summed or overrunning busy times pass 100). Sources: path = the point's directory; log = the request log;",
             "summary = loadgen's summary.json; system = system.csv's measured 1 s samples; status =",
             "/server-status before and after; DONE/FAILED = the runner's markers; manifest = the run's manifest.",
             "", "| column | unit | source | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {u} | {s} | {m} |" for k, (u, s, m) in COLUMNS.items()]
    lines.append("| `p50_ms_<type>`, `p90_ms_<type>`, `p99_ms_<type>` | ms | log | that percentile "
                 "of the latency (t_end - t_start) of the ok <type> replies completed in the window |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
