"""The emulation's mechanism checks, from a run's raw logs (notebook 05, the README).

A verdict means something only if the testbed put the servers where the paper's were: the
server's cache full (at the memory cap) while measured, steady points, a disk that costs what
the paper's did, a slow CPU where blocked time is lost. Each function returns a small table of
one of those, per point or per server, so a reader sees the regime before the claims.
"""

from __future__ import annotations

import math

import pandas as pd

from ukweb.analysis import DONE, KEYS

PAPER_BLOCKED_PCT, PAPER_IDLE_PCT = 10.0, 40.0  # §5: userver-1, dynamic, 500 connections


def _done(points: pd.DataFrame) -> pd.DataFrame:
    return points[points["status"] == DONE]


def _per_point(points: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Mean over repetitions of cols per workload x server x connections (n alongside)."""
    done = _done(points)
    have = [c for c in cols if c in done]
    if done.empty or not have:
        return pd.DataFrame(columns=KEYS[:3] + ["n"] + cols)
    g = done.groupby(KEYS[:3])
    out = g[have].mean()
    out.insert(0, "n", g.size())
    return out.reset_index()


def cache_at_cap(points: pd.DataFrame) -> pd.DataFrame:
    """Per series: the lowest share of its memory cap the server's cgroup held in any measured
    sample, and how many points were at the cap (>= 90 %) throughout."""
    done = _done(points)
    if "cache_fill_pct" not in done:
        return pd.DataFrame(columns=["workload", "server", "points", "at_cap", "lowest_fill_pct"])
    g = done.groupby(["workload", "server"])
    return pd.DataFrame({"points": g.size(),
                         "at_cap": g["cache_at_cap"].apply(lambda s: int(s.fillna(False).sum())),
                         "lowest_fill_pct": g["cache_fill_pct"].min().round(1)}).reset_index()


def steadiness(points: pd.DataFrame) -> pd.DataFrame:
    """Per point: steady or not, and why not (throughput drift, cache, warm-up)."""
    cols = ["repetition", "steady", "throughput_drift_pct", "cache_fill_pct", "steady_reason"]
    done = _done(points)
    have = [c for c in cols if c in done]
    return done[KEYS[:3] + have].reset_index(drop=True)


def steady_counts(points: pd.DataFrame) -> dict:
    """How many measured points were steady, and the most common reasons for the others."""
    done = _done(points)
    if "steady" not in done:
        return {"points": len(done), "steady": None, "reasons": {}}
    reasons: dict[str, int] = {}
    for text in done.loc[~done["steady"].astype(bool), "steady_reason"].fillna(""):
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key = part.split(" ")[0] + (" " + part.split(" ")[1] if " " in part else "")
            reasons[key] = reasons.get(key, 0) + 1
    return {"points": len(done), "steady": int(done["steady"].astype(bool).sum()),
            "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def disk(points: pd.DataFrame) -> pd.DataFrame:
    """Per point: replies/s, misses that reached the modelled disk per second, its busy time,
    MB/s and positionings per second."""
    return _per_point(points, ["ops_per_s", "misses_per_s", "disk_seeks_per_s", "disk_mb_per_s",
                               "disk_busy_pct", "disk_overruns"]).round(2)


def cpu(points: pd.DataFrame) -> pd.DataFrame:
    """Per point: the emulated CPU's busy and unused share, the server's own share of it, and
    blocked time per process (io-wq threads apart)."""
    return _per_point(points, ["ops_per_s", "cpu_busy_of_capacity", "cpu_unused_of_capacity",
                               "blocked_pct", "blocked_max_pct", "blocked_iowq_pct",
                               "server_cpu_us_per_request"]).round(2)


def blocked_and_idle(points: pd.DataFrame, workload: str = "dynamic", server: str = "userver-1",
                     connections: int = 500) -> dict:
    """Claims D7 and D8 at the paper's point: blocked % and unused CPU % with the paper's."""
    sel = _done(points)
    sel = sel[(sel["workload"] == workload) & (sel["server"] == server)
              & (sel["connections"] == connections)]
    out = {"point": f"{workload}/{server}/c{connections}", "n": len(sel),
           "paper_blocked_pct": f">= {PAPER_BLOCKED_PCT:g}", "paper_idle_pct": PAPER_IDLE_PCT}
    for col, name in (("blocked_pct", "blocked_pct"), ("cpu_unused_of_capacity", "idle_pct")):
        out[name] = round(float(sel[col].mean()), 1) if col in sel and len(sel) else math.nan
    return out


def listen_drops(points: pd.DataFrame) -> pd.DataFrame:
    """Listen-queue drops summed over each workload's points, per server (claim D9)."""
    done = _done(points)
    cols = [c for c in ("listen_drops", "listen_overflows") if c in done]
    return done.groupby(["workload", "server"])[cols].sum().reset_index()


def method(manifest: dict) -> dict:
    """The emulation as the run recorded it: CPU method and share, disk model, cap, shield."""
    tb = manifest.get("testbed") or {}
    dm = tb.get("disk_model") or {}
    cal = manifest.get("calibration") or {}
    return {"cpu_method": tb.get("cpu_method"), "cpu_share": tb.get("cpu_share"),
            "calibration_anchor": cal.get("anchor"),
            "memory_mb": tb.get("memory_mb"),
            "disk_model": {k: dm.get("params", {}).get(k) for k in ("seek_ms", "transfer_mbps",
                                                                     "elevator")} if dm else None,
            "network": (tb.get("network") or {}).get("rps_cpus") if isinstance(
                tb.get("network"), dict) else tb.get("network"),
            "shield": tb.get("shield"),
            "deviations": [d.get("step", str(d)) if isinstance(d, dict) else str(d)
                           for d in manifest.get("deviations") or []]}
