"""The dynamic-path ablation (issue 16 item 6): which of TUX's mechanisms moves the dynamic gap.

The paper blames two things for TUX's weakness on dynamic content (§5): its SPECweb99 module ran
in user space behind TUX's module API (every action a system call, the request copied out at
each hand-back), and its event loop accepted until the listen queue was empty before every
module step. ktux has both as switches (`--module-api tux|direct`, `--sched tux|completion`),
userver has the µserver's blocking dynamic writes as one (`--dynamic-writes`). This module
builds the profile that measures every combination on 100 % dynamic at the paper's points in
the emulated regime (fresh points, `repetitions` each), and reads the run back as one table:
ktux variant ÷ userver variant per connection count with its 95 % interval, and the module's
share of the server's CPU beside the paper's (< 25 %, TUX ~90 % in all).

Labels (ukweb.servers.named_config): `ktux` is TUX's API and scheduling (the paper's runs);
`ktux.direct`, `ktux.completion`, `ktux.direct.completion` switch one or both off;
`userver-8` writes dynamic replies blocking (the µserver), `userver-8.nonblocking` does not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from ukweb import analysis
from ukweb.paths import RAW, REPO
from ukweb.servers import KTUX_OPTIONS, named_config

KTUX = ("ktux", "ktux.direct", "ktux.completion", "ktux.direct.completion")
USERVER = ("userver-8", "userver-8.nonblocking")
CONNECTIONS = (500, 700)
PAPER_MODULE_CPU_PCT = 25.0   # §5: TUX's dynamic module used less than 25 % of the CPU
PAPER_TUX_CPU_PCT = 90.0      # §5: TUX's overall CPU use, the module included, was about 90 %


def available(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The labels this build of the package can run (a ktux without --module-api has only
    `ktux`: the ablation then measures what exists and says which combinations it lacks)."""
    out = []
    for label in labels:
        try:
            named_config(label)
        except ValueError:
            continue
        out.append(label)
    return tuple(out)


def _api_sched(label: str) -> tuple[str, str]:
    """ktux's module API and scheduling under a label; a ktux built without the switches has
    only the direct call and completion order."""
    opts = named_config(label).options
    if "module_api" not in KTUX_OPTIONS:
        return "direct", "completion"
    return opts.get("module_api", "tux"), opts.get("sched", "tux")


def profile(base: Path = REPO / "params" / "paper.yaml", *, connections: tuple[int, ...] = CONNECTIONS,
            repetitions: int = 3, warmup_s: float = 10.0, duration_s: float = 10.0,
            ktux: tuple[str, ...] | None = None, userver: tuple[str, ...] = USERVER) -> dict:
    """The paper profile narrowed to the ablation: dynamic only, these servers and points,
    fresh points (no carried series: 500-700 connections are where the reference run's
    repetitions agreed within 1-3 %), no process sweep, no time budget."""
    ktux = available(KTUX) if ktux is None else ktux
    raw = yaml.safe_load(Path(base).read_text())
    raw.update(profile="ablation", run_id=None, workloads=["dynamic"],
               servers={"dynamic": list(userver) + list(ktux)}, connections=list(connections),
               repetitions=repetitions, warmup_s=warmup_s, duration_s=duration_s,
               process_sweep=None, carry_from=None, max_minutes=None, target_half_pp=None)
    return raw


def newest_run(root: Path | None = None) -> Path | None:
    """The newest ablation run under data/raw (its manifest's profile is "ablation"), or None."""
    found = []
    for m in (root or RAW).glob("*/manifest.json"):
        try:
            params = json.loads(m.read_text()).get("params") or {}
            if params.get("profile") == "ablation" and (m.parent / "points").is_dir():
                found.append(m.parent)
        except (OSError, ValueError):
            continue
    return max(found, key=lambda r: (r / "manifest.json").stat().st_mtime, default=None)


def _status_delta(point: Path) -> dict:
    """The module counters' change over the point (server-status.json before/after)."""
    try:
        status = json.loads((point / "server-status.json").read_text())
    except (OSError, ValueError):
        return {}
    def module(side: str) -> dict:
        snap = status.get(side) or {}
        return (snap.get("total") or snap).get("module") or {}
    before, after = module("before"), module("after")
    return {k: after[k] - before.get(k, 0) for k in after
            if isinstance(after[k], (int, float)) and not isinstance(after[k], bool)}


def module_cpu(point: Path) -> dict:
    """The module's CPU seconds against the worker's over one point (ktux's `module` counters:
    thread CPU clock read around each module step and over the whole worker)."""
    d = _status_delta(point)
    module_s, worker_s = d.get("cpu_s"), d.get("worker_cpu_s")
    if not module_s or not worker_s:
        return {"module_cpu_of_worker_pct": math.nan}
    return {"module_cpu_of_worker_pct": 100.0 * module_s / worker_s}


def module_counts(point: Path) -> dict:
    """TUX's module API per request over one point (ktux's `module` counters): actions
    (kernel crossings) per dynamic GET and per POST, and the accept rounds the loop ran at
    re-entries per request handed to the module."""
    d = _status_delta(point)
    try:
        status = json.loads((point / "server-status.json").read_text())
        b, a = ((status[k].get("total") or status[k])["module"] for k in ("before", "after"))
    except (OSError, ValueError, KeyError, AttributeError):
        return {"actions_per_dyn_get": math.nan, "actions_per_post": math.nan,
                "accept_rounds_per_request": math.nan}

    def per(kind: str, key: str) -> float:
        n = a["requests"][key] - b["requests"][key]
        return (a[kind][key] - b[kind][key]) / n if n else math.nan
    n = sum(a["requests"][k] - b["requests"][k] for k in a["requests"])
    return {"actions_per_dyn_get": per("actions", "dyn_get"), "actions_per_post": per("actions", "post"),
            "accept_rounds_per_request": d.get("accept_rounds", 0) / n if n else math.nan}


def table(run: Path) -> pd.DataFrame:
    """One row per ktux variant x userver variant x connections: the gap of ktux over userver
    (%, 95 % interval) and ktux's CPU use and its module's share, beside the paper's."""
    points = analysis.points_table(run)
    curves = analysis.curves(points)
    done = points[points["status"] == analysis.DONE]
    rows = []
    for conns in sorted(curves["connections"].unique()):
        for k in sorted(curves["server"].unique()):
            if not k.startswith("ktux"):
                continue
            krow = _row(curves, k, conns)
            if krow is None:
                continue
            mine = done[(done["server"] == k) & (done["connections"] == conns)]
            pdirs = [Path(run) / "points" / "dynamic" / k / f"c{conns}" / f"r{r}" for r in mine["repetition"]]
            shares = [module_cpu(p)["module_cpu_of_worker_pct"] for p in pdirs]
            counts = [module_counts(p) for p in pdirs]
            # the emulated CPU's busy share (of the thief's capacity), as the paper's "CPU usage"
            cpu_busy = (float(mine["cpu_busy_of_capacity"].mean())
                        if "cpu_busy_of_capacity" in mine else math.nan)
            for u in sorted(curves["server"].unique()):
                urow = _row(curves, u, conns) if u.startswith("userver") else None
                if urow is None:
                    continue
                g = analysis.gap(krow, urow)
                api, sched = _api_sched(k)
                rows.append({"connections": int(conns), "ktux": k, "module_api": api, "sched": sched,
                             "userver": u, "ktux_replies_per_s": krow["throughput"],
                             "userver_replies_per_s": urow["throughput"],
                             "gap_pct": g.value, "gap_lo": g.low, "gap_hi": g.high, "n": g.n,
                             "ktux_cpu_busy_pct": cpu_busy,
                             "module_cpu_of_worker_pct": _nanmean(shares),
                             **{key: _nanmean([c[key] for c in counts]) for key in
                                ("actions_per_dyn_get", "actions_per_post", "accept_rounds_per_request")}})
    return pd.DataFrame(rows)


def _row(curves: pd.DataFrame, server: str, conns: int) -> pd.Series | None:
    c = curves[(curves["server"] == server) & (curves["connections"] == conns)]
    return None if c.empty else c.iloc[0]


def _nanmean(values: list[float]) -> float:
    ok = [v for v in values if not math.isnan(v)]
    return sum(ok) / len(ok) if ok else math.nan


def _pct(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.0f} %"


def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.2f}"


def markdown(t: pd.DataFrame) -> str:
    """The ablation as a Markdown table (README, notebook 05)."""
    lines = ["| connections | ktux (api, sched) | over | ktux replies/s | userver replies/s | "
             "gap [95 %] | ktux CPU busy | module share of worker CPU | actions per GET / POST | "
             "accept rounds per request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.connections} | {r.ktux} ({r.module_api}, {r.sched}) | {r.userver} | "
                     f"{r.ktux_replies_per_s:,.0f} | {r.userver_replies_per_s:,.0f} | "
                     f"{r.gap_pct:+.1f} % [{r.gap_lo:+.1f}, {r.gap_hi:+.1f}] | "
                     f"{_pct(r.ktux_cpu_busy_pct)} | {_pct(r.module_cpu_of_worker_pct)} | "
                     f"{_num(r.actions_per_dyn_get)} / {_num(r.actions_per_post)} | "
                     f"{_num(r.accept_rounds_per_request)} |")
    lines.append(f"\nPaper (§5, 100 % dynamic, 500 connections): TUX's module < "
                 f"{PAPER_MODULE_CPU_PCT:.0f} % of the CPU, TUX in all ~{PAPER_TUX_CPU_PCT:.0f} %; "
                 "userver-8 13 % ahead of TUX at the dynamic peaks (Fig. 3).")
    return "\n".join(lines)
