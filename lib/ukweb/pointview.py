"""One data point up close: what notebooks/06-point shows.

From a point directory (raw or compacted, ukweb.logs) it gives tidy tables:
- per_second: ok replies completed in each second of the log's time base, with the phase the
  second belongs to (warm-up, measured window, after it), from the request log's t_end_us and,
  in a compacted run, the warm-up's per-second counts (warmup_per_second.csv);
- latency: per request type the latency of the ok replies completed in the measured window
  (ukweb.completions), as percentiles, and the values themselves for a distribution plot;
- timeline: system.csv's 1 s samples (CPU, blocked, page cache, disk reads and queue, drops),
  each marked warm-up or measured as the analysis counts them (ukweb.analysis);
- status_diff: the /server-status counters after the point minus before, flattened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ukweb import analysis, completions, logs, paths

PERCENTILES = (50, 90, 99, 99.9)
# system.csv columns the timeline shows, by panel; a run without a column leaves it out.
TIMELINE = {"CPU (%)": ["cpu_user", "cpu_sys", "cpu_idle", "cpu_iowait"],
            "blocked (s per s, summed over threads)": ["blocked_s", "blocked_iowq_s"],
            "page cache (MB)": ["page_cache_bytes"],
            "disk reads per s, queue wait (s per s)": ["disk_reads", "disk_queue_wait_s"],
            "listen drops per s": ["listen_drops"]}


@dataclass
class PointView:
    """A point directory read once."""

    path: Path
    label: str
    summary: dict
    requests: pd.DataFrame
    window: completions.Measured
    system: pd.DataFrame
    status: dict


def resolve(path: str | Path) -> Path:
    """A path as given, or relative to the repository root (whatever the kernel's directory)."""
    path = Path(path)
    return path if path.is_absolute() else paths.REPO / path


def load(run_dir: str | Path, point: str) -> PointView:
    """The point `workload/server/cN/rR` of a run (FileNotFoundError naming what is missing)."""
    run = analysis.require_run(resolve(run_dir))
    where = run / "points" / point
    if not (where / "summary.json").is_file():
        raise FileNotFoundError(f"{where.resolve()} is not a measured point (no summary.json)")
    summary = logs.read_summary(where)
    requests = logs.read_requests(where)
    system = logs.read_system(where) if (where / "system.csv").is_file() else pd.DataFrame()
    status_path = where / "server-status.json"
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    return PointView(where, point, summary, requests,
                     completions.measured(where, requests, summary), system, status)


def per_second(view: PointView) -> pd.DataFrame:
    """ok replies per second of the log's time base (by completion), with each second's phase."""
    ok = view.requests[view.requests["ok"]]
    counts = (ok["t_end_us"] // 1_000_000).value_counts()
    warm_file = view.path / completions.WARMUP_FILE
    if warm_file.is_file():  # compacted: the warm-up's rows survive as counts
        warm = pd.read_csv(warm_file).set_index("second")["ok"]
        counts = counts.add(warm, fill_value=0)
    table = counts.sort_index().rename_axis("second").rename("ok_per_s").reset_index()
    start, end = view.window.start_us / 1e6, view.window.end_us / 1e6
    table["phase"] = np.where(table["second"] < np.floor(start), "warm-up",
                              np.where(table["second"] < end, "measured", "after"))
    return table


def latencies_ms(view: PointView) -> pd.DataFrame:
    """Latency in ms of each ok reply completed in the measured window, with its type."""
    ok = view.window.ok
    return pd.DataFrame({"type": ok["type"].astype(str).to_numpy(),
                         "ms": ((ok["t_end_us"] - ok["t_start_us"]) / 1000.0).to_numpy()})


def latency(view: PointView) -> pd.DataFrame:
    """Per request type: replies and latency percentiles (ms) in the measured window."""
    ms = latencies_ms(view)
    rows = [{"type": kind, "replies": len(g), "mean_ms": g["ms"].mean(),
             **{f"p{p:g}_ms": float(np.percentile(g["ms"], p)) for p in PERCENTILES}}
            for kind, g in ms.groupby("type")]
    return pd.DataFrame(rows)


def timeline(view: PointView) -> pd.DataFrame:
    """system.csv's samples with `phase`: measured as ukweb.analysis counts them, else warm-up."""
    if view.system.empty:
        return view.system
    measured = analysis._measured_samples(view.system, float(view.summary.get("warmup_s", 0)))
    table = view.system.copy()
    table["phase"] = np.where(table.index.isin(measured.index), "measured", "warm-up")
    table["page_cache_mb"] = table.get("page_cache_bytes", np.nan) / 1e6
    if "blocked_s" in table:
        # As ukweb.analysis reads it: the server processes' own blocked time (io_uring's io-wq
        # threads, TUX's async I/O threads, excluded), per process, as % of the sample.
        own = table["blocked_s"] - table.get("blocked_iowq_s", 0.0)
        procs = table["procs"].clip(lower=1) if "procs" in table else 1
        step = table["t"].diff().fillna(table["t"].iloc[0]).clip(lower=0.5)
        table["blocked_pct"] = (100 * own.clip(lower=0) / procs / step).clip(upper=100)
    return table


def _flatten(data: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def status_diff(view: PointView) -> pd.DataFrame:
    """The server's counters after the point minus before (the 'total' block), non-zero ones."""
    after = _flatten((view.status.get("after") or {}).get("total", {}))
    before = _flatten((view.status.get("before") or {}).get("total", {}))
    rows = [{"counter": k, "before": before.get(k, 0.0), "after": v, "diff": v - before.get(k, 0.0)}
            for k, v in after.items()]
    table = pd.DataFrame(rows, columns=["counter", "before", "after", "diff"])
    return table[table["diff"] != 0].reset_index(drop=True)


# ---------------------------------------------------------------- figures


def figure(view: PointView) -> plt.Figure:
    """Four panels: throughput per second with its windows, latency by type, CPU and blocked
    time, cache and disk; one column per point."""
    fig, axes = plt.subplots(4, 1, figsize=(7, 11), constrained_layout=True)
    draw(view, axes)
    return fig


def draw(view: PointView, axes) -> None:
    """Draw a point into four axes (a column of figure() or of a side-by-side grid)."""
    ps = per_second(view)
    ax = axes[0]
    for phase, colour in (("warm-up", "tab:gray"), ("measured", "tab:blue"), ("after", "tab:orange")):
        sel = ps[ps["phase"] == phase]
        ax.bar(sel["second"], sel["ok_per_s"], width=0.9, color=colour, label=phase)
    ax.axvspan(view.window.start_us / 1e6, view.window.end_us / 1e6, alpha=0.1, color="tab:blue")
    ax.set(title=f"{view.label}: ok replies per second", xlabel="second of the run", ylabel="replies/s")
    ax.legend(fontsize=8)
    ms = latencies_ms(view)
    ax = axes[1]
    for kind, g in ms.groupby("type"):
        values = np.sort(g["ms"].to_numpy())
        ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=f"{kind} ({len(values)})")
    ax.set(xscale="log", xlabel="latency (ms), measured window", ylabel="fraction of replies",
           title="latency by request type")
    ax.legend(fontsize=8)
    tl = timeline(view)
    ax = axes[2]
    if not tl.empty:
        for col in [c for c in TIMELINE["CPU (%)"] if c in tl]:
            ax.plot(tl["t"], tl[col], label=col)
        if "blocked_pct" in tl:
            ax.plot(tl["t"], tl["blocked_pct"], label="blocked (% per server process)", color="k")
        ax.axvline(float(view.summary.get("warmup_s", 0)), color="k", lw=0.8, ls=":")
    ax.set(title="CPU and blocked time", xlabel="t (s, sampler)", ylabel="% of the sample")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[3]
    if not tl.empty:
        ax.plot(tl["t"], tl["page_cache_mb"], label="page cache (MB)", color="tab:green")
        twin = ax.twinx()
        for col in ("disk_reads", "disk_queue_wait_s", "listen_drops"):
            if col in tl:
                twin.plot(tl["t"], tl[col], label=col, ls="--")
        twin.legend(fontsize=7, loc="lower right")
        twin.set_ylabel("per 1 s sample")
    ax.set(title="cache, disk, drops", xlabel="t (s, sampler)", ylabel="MB")
    ax.legend(fontsize=7, loc="lower left")


def side_by_side(views: list[PointView]) -> plt.Figure:
    """figure() for several points, one column each, rows sharing their y axis."""
    fig, axes = plt.subplots(4, len(views), figsize=(7 * len(views), 11), constrained_layout=True,
                             squeeze=False, sharey="row")
    for i, view in enumerate(views):
        draw(view, axes[:, i])
    return fig
