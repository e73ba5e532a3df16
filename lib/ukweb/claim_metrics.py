"""The metrics a rule (data/paper/rules.csv) can name: each measures one quantity of a run, with
its 95 % interval, for given servers and points. None knows a claim; the rule says which
servers and points, and ukweb.rules.judge the verdict.

Each metric returns a Reading or raises NotMeasured with the reason the run cannot give it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ukweb import analysis, workload
from ukweb.analysis import DONE, NO_SPREAD, REPETITIONS, SECONDS, Estimate

EXACT, COUNTS = "exact", "counts"  # bases beyond analysis': a formula; Poisson counts
SERVER = re.compile(r"^(ktux|userver-\d+)$")


class NotMeasured(Exception):
    """The run (or the rule) lacks what a metric needs; the message is the reason."""


@dataclass
class Context:
    """What metrics read: the tidy points table, its curves and the run's manifest. Rows
    read are noted so a verdict can say when it rests on points that were not steady."""

    points: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict
    unsteady: set[str] = field(default_factory=set)

    def curve(self, work: str, server: str) -> pd.DataFrame:
        c = analysis.curve(self.curves, work, server)
        if c.empty:
            raise NotMeasured(f"the run has no completed {server} points in workload {work}")
        return c

    def note(self, work: str, server: str, rows: pd.DataFrame | pd.Series) -> None:
        rows = rows.to_frame().T if isinstance(rows, pd.Series) else rows
        for conns, row in rows.iterrows():
            steady = row.get("steady")
            if steady is not None and not pd.isna(steady) and not bool(steady):
                self.unsteady.add(f"{work}/{server}/c{conns}")

    def row(self, work: str, server: str, conns: int) -> pd.Series:
        c = self.curve(work, server)
        if conns not in c.index:
            raise NotMeasured(f"{server} was not measured at {conns} connections in {work} "
                              f"(measured: {', '.join(map(str, c.index))})")
        self.note(work, server, c.loc[[conns]])
        return c.loc[conns]

    def peak(self, work: str, server: str) -> pd.Series:
        c = self.curve(work, server)
        self.note(work, server, c)  # the peak is chosen among all points
        return c.loc[c["throughput"].idxmax()]


@dataclass
class Reading:
    """A metric's answer: the estimate, where it was read, and the names band ends may use."""

    estimate: Estimate
    where: str
    scale: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Points:
    """A rule's points cell: 'peak', 'all', 'sweep', '<=N' or 'N' (connections)."""

    kind: str
    connections: int | None = None

    @staticmethod
    def parse(text: str) -> Points:
        if text in ("peak", "all", "sweep"):
            return Points(text)
        m = re.fullmatch(r"(<=)?\s*(\d+)", text)
        if not m:
            raise NotMeasured(f"unknown points {text!r} (peak, all, sweep, <=N or N connections)")
        return Points("upto" if m.group(1) else "at", int(m.group(2)))


# ---------------------------------------------------------------- helpers


def _fold(est: Estimate) -> Estimate:
    """|x| with its interval: [distance of the interval from 0, its farthest end]."""
    if math.isnan(est.low):
        return Estimate(abs(est.value), n=est.n, basis=est.basis)
    lo, hi = sorted((abs(est.low), abs(est.high)))
    low = 0.0 if est.low <= 0 <= est.high else lo
    return Estimate(abs(est.value), low, hi, n=est.n, basis=est.basis, dof=est.dof)


def _common_gaps(ctx: Context, work: str, a: str, b: str) -> dict[int, Estimate]:
    ca, cb = ctx.curve(work, a), ctx.curve(work, b)
    common = sorted(set(ca.index) & set(cb.index))
    if not common:
        raise NotMeasured(f"{a} and {b} share no measured point in {work}")
    ctx.note(work, a, ca.loc[common])
    ctx.note(work, b, cb.loc[common])
    return {c: analysis.gap(ca.loc[c], cb.loc[c]) for c in common}


def _summary(ests: list[Estimate], value: float, low: float, high: float) -> Estimate:
    """An estimate built from several: the fewest repetitions and the weakest basis."""
    bases = [e.basis for e in ests]
    nan = any(math.isnan(e.low) for e in ests)
    return Estimate(value, math.nan if nan else low, math.nan if nan else high,
                    n=min(e.n for e in ests), basis=NO_SPREAD if nan else analysis.weaker_basis(*bases),
                    dof=min(e.dof for e in ests))


# ---------------------------------------------------------------- the metrics
# Signature: (ctx, work, a, b, points, rule) -> Reading; a/b are our server labels or None.


def fileset_gb(ctx, work, a, b, pts, rule) -> Reading:
    return Reading(Estimate(workload.fileset_gib(pts.connections), basis=EXACT),
                   f"formula for {pts.connections} connections (GiB)")


def peak_gap_pct(ctx, work, a, b, pts, rule) -> Reading:
    pa, pb = ctx.peak(work, a), ctx.peak(work, b)
    return Reading(analysis.gap(pa, pb), f"peaks: {a} at {pa.name}, {b} at {pb.name} connections")


def abs_peak_gap_pct(ctx, work, a, b, pts, rule) -> Reading:
    r = peak_gap_pct(ctx, work, a, b, pts, rule)
    return Reading(_fold(r.estimate), r.where + f"; signed gap {r.estimate.value:+.1f} %")


def gap_at_pct(ctx, work, a, b, pts, rule) -> Reading:
    at = pts.connections
    return Reading(analysis.gap(ctx.row(work, a, at), ctx.row(work, b, at)), f"at {at} connections")


def max_abs_gap_pct(ctx, work, a, b, pts, rule) -> Reading:
    gaps = _common_gaps(ctx, work, a, b)
    if pts.kind == "upto":
        gaps = {c: g for c, g in gaps.items() if c <= pts.connections}
        if not gaps:
            raise NotMeasured(f"{a} and {b} share no point at or below {pts.connections} "
                              f"connections in {work}")
    folded = {c: _fold(g) for c, g in gaps.items()}
    worst = max(folded, key=lambda c: folded[c].value)
    est = _summary(list(folded.values()), folded[worst].value,
                   max(f.low for f in folded.values()), max(f.high for f in folded.values()))
    return Reading(est, f"largest |gap| at {worst} of {len(gaps)} points "
                        f"({min(gaps)}-{max(gaps)} connections): {gaps[worst].value:+.1f} %")


def peak_location(ctx, work, a, b, pts, rule) -> Reading:
    """The peak's connection count; its interval spans every point whose throughput is not
    distinguishable from the peak's (upper end of its interval at or above the peak's lower)."""
    c = ctx.curve(work, a)
    first, last = int(c.index.min()), int(c.index.max())
    if not math.isnan(rule.paper) and not first <= rule.paper <= last:
        raise NotMeasured(f"{a} was measured at {first}-{last} connections; the paper's "
                          f"{rule.paper:g} lies outside that range")
    ctx.note(work, a, c)
    at = int(c["throughput"].idxmax())
    half = c["half95"].fillna(0) if "half95" in c else pd.Series(0.0, index=c.index)
    floor = c.loc[at, "throughput"] - half[at]
    plausible = c.index[c["throughput"] + half >= floor]
    est = Estimate(float(at), float(plausible.min()), float(plausible.max()), n=int(c["n"].min()),
                   basis=analysis.weaker_basis(*c["basis"]), dof=int(c["dof"].min()))
    return Reading(est, f"{a} peaks at {at} of {first}-{last} connections"
                        + (f"; indistinguishable at {', '.join(map(str, plausible))}"
                           if len(plausible) > 1 else ""), {"first": first, "last": last})


def losses(ctx, work, a, b, pts, rule) -> Reading:
    """Points where a is below b by more than the rule's tie margin; the interval runs from
    the points where that is certain (whole interval below) to where it is possible."""
    gaps = _common_gaps(ctx, work, a, b)
    tie = -abs(rule.tie)
    lows = [g.value if math.isnan(g.low) else g.low for g in gaps.values()]
    highs = [g.value if math.isnan(g.high) else g.high for g in gaps.values()]
    value = sum(g.value < tie for g in gaps.values())
    est = _summary(list(gaps.values()), float(value), float(sum(h < tie for h in highs)),
                   float(sum(lo < tie for lo in lows)))
    below = [c for c, g in gaps.items() if g.value < tie]
    return Reading(est, f"{a} more than {abs(tie):g} % below {b} at {value} of {len(gaps)} points"
                        + (f" ({', '.join(map(str, below))})" if below else ""),
                   {"points": len(gaps), "half": len(gaps) / 2})


def _sweep_connections(ctx: Context, work: str, pts: Points) -> int:
    if pts.kind == "at":
        return pts.connections
    sweep = (ctx.manifest.get("params") or {}).get("process_sweep") or {}
    if sweep.get("connections"):
        return int(sweep["connections"])
    sel = ctx.curves[(ctx.curves["workload"] == work) & ctx.curves["server"].str.fullmatch(r"userver-\d+")]
    if sel.empty:
        raise NotMeasured(f"the run has no userver points in {work}")
    return int(sel.groupby("connections")["server"].nunique().idxmax())


def sweep_gap_past_pct(ctx, work, a, b, pts, rule) -> Reading:
    """Gap of the best userver with more processes than a's over a, at the sweep's load."""
    procs = int(a.split("-")[1]) if a.startswith("userver-") else None
    if procs is None:
        raise NotMeasured(f"a process sweep compares userver configurations, not {a}")
    at = _sweep_connections(ctx, work, pts)
    sel = ctx.curves[(ctx.curves["workload"] == work) & (ctx.curves["connections"] == at)
                     & ctx.curves["server"].str.fullmatch(r"userver-\d+")]
    more = sel[sel["server"].str.split("-").str[1].astype(int) > procs]
    if more.empty:
        raise NotMeasured(f"no userver with more than {procs} processes measured at {at} "
                          f"connections in {work} (a process sweep, params process_sweep)")
    best = more.loc[more["throughput"].idxmax(), "server"]
    measured = sorted(int(s.split("-")[1]) for s in sel["server"])
    est = analysis.gap(ctx.row(work, best, at), ctx.row(work, a, at))
    return Reading(est, f"at {at} connections: {best} over {a} (processes measured {measured})")


_LEVEL_COLUMNS = {"cpu_unused_pct": "cpu_unused_of_capacity",
                  "cpu_busy_pct": "cpu_busy_of_capacity", "blocked_pct": "blocked_pct"}


def _level(ctx: Context, work: str, a: str, pts: Points, column: str) -> Reading:
    """A per-point system metric at one load: with repetitions their mean and t interval;
    with one, the point's value and a t interval from its per-second samples."""
    at = pts.connections if pts.kind == "at" else int(ctx.peak(work, a).name)
    ctx.row(work, a, at)
    done = ctx.points[(ctx.points["workload"] == work) & (ctx.points["server"] == a)
                      & (ctx.points["connections"] == at) & (ctx.points["status"] == DONE)]
    if column not in done or done[column].isna().all():
        raise NotMeasured(f"no {column} samples (system.csv) for {a} in {work}")
    values = done[column].dropna()
    where = f"at {at} connections" if pts.kind == "at" else f"at {a}'s peak, {at} connections"
    if len(values) >= 2:
        mean, half = analysis.mean_ci(values)
        return Reading(Estimate(mean, mean - half, mean + half, n=len(values), basis=REPETITIONS,
                                dof=len(values) - 1), where)
    value = float(values.iloc[0])
    seconds = _seconds(ctx, done.iloc[0], column)
    if len(seconds) < 2:
        return Reading(Estimate(value, n=1, basis=NO_SPREAD), where + " (no per-second samples)")
    _, half = analysis.mean_ci(seconds)
    return Reading(Estimate(value, value - half, value + half, n=1, basis=SECONDS,
                            dof=len(seconds) - 1), where)


def _seconds(ctx: Context, row: pd.Series, column: str) -> pd.Series:
    """The per-second values of a system metric for one point ([] when its raw logs are gone)."""
    testbed = ctx.manifest.get("testbed", {})
    # The CPU method changes what idle means (the thief never idles); older analyses lack it.
    options = {"cpu_method": testbed["cpu_method"]} if "cpu_method" in testbed else {}
    try:
        cpus = analysis.server_cpu_count(ctx.manifest)
        per_s = analysis.system_seconds(row["path"], cpus, analysis.cpu_capacity_pct(ctx.manifest, cpus),
                                        **options)
    except (OSError, ValueError, KeyError, TypeError):
        return pd.Series(dtype=float)
    return per_s[column].dropna() if column in per_s else pd.Series(dtype=float)


def cpu_unused_pct(ctx, work, a, b, pts, rule) -> Reading:
    return _level(ctx, work, a, pts, "cpu_unused_of_capacity")


def cpu_busy_pct(ctx, work, a, b, pts, rule) -> Reading:
    return _level(ctx, work, a, pts, "cpu_busy_of_capacity")


def blocked_pct(ctx, work, a, b, pts, rule) -> Reading:
    # Without delay accounting blocked_s is 0, not a measurement.
    if ctx.manifest.get("testbed", {}).get("delay_accounting") is False:
        raise NotMeasured("delay accounting was off in this run (kernel.task_delayacct needs "
                          "root), so blocked time was not recorded")
    return _level(ctx, work, a, pts, "blocked_pct")


def listen_drops_ratio(ctx, work, a, b, pts, rule) -> Reading:
    """Listen-queue drops of a over b, summed over the workload's points. [I] The interval
    treats each total as a Poisson count (log-ratio normal approximation, +0.5 for zeros);
    drops come in bursts, so it understates the noise."""
    done = ctx.points[(ctx.points["workload"] == work) & (ctx.points["status"] == DONE)]
    if "listen_drops" not in done:
        raise NotMeasured("no listen_drops samples (system.csv) in the run")
    ctx.curve(work, a), ctx.curve(work, b)
    da = float(done.loc[done["server"] == a, "listen_drops"].sum())
    db = float(done.loc[done["server"] == b, "listen_drops"].sum())
    if da == 0 and db == 0:
        raise NotMeasured(f"no listen-queue drops for either {a} or {b}: the load never "
                          "overflowed the accept backlog")
    ratio = math.inf if db == 0 else da / db
    log_r = math.log((da + 0.5) / (db + 0.5))
    half = 1.96 * math.sqrt(1 / (da + 0.5) + 1 / (db + 0.5))
    n = int(min(ctx.curve(work, a)["n"].min(), ctx.curve(work, b)["n"].min()))
    est = Estimate(ratio, math.exp(log_r - half), math.exp(log_r + half), n=n, basis=COUNTS)
    return Reading(est, f"all {work} points: {a} {da:.0f} drops, {b} {db:.0f} drops")


def peak_gap_slope(ctx, work, a, b, pts, rule) -> Reading:
    """Least-squares slope of a's peak gap over each workload's server (b: workload=server)
    against the workload's dynamic share, in pp per 100 % dynamic; the interval propagates
    each gap's standard error through the slope's weights."""
    pairs = dict(tok.split("=", 1) for tok in b)
    gaps = {w: peak_gap_pct(ctx, w, a, s, pts, rule).estimate for w, s in pairs.items()}
    x = np.array([workload.dynamic_share(w) for w in gaps])
    if len(gaps) < 3 or np.ptp(x) == 0:
        raise NotMeasured(f"a trend needs at least 3 workloads of different dynamic share; "
                          f"the rule gives {len(gaps)}")
    y = np.array([g.value for g in gaps.values()])
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    slope = float(weights @ y)
    se = float(math.sqrt(sum(w ** 2 * g.se ** 2 for w, g in zip(weights, gaps.values(), strict=True))))
    ests = list(gaps.values())
    dof = min(g.dof for g in ests)
    half = analysis.t_quantile(dof) * se
    est = _summary(ests, slope, slope - half, slope + half)
    where = ", ".join(f"{w} {g.value:+.0f}%" for w, g in sorted(gaps.items(), key=lambda i: workload.dynamic_share(i[0])))
    return Reading(est, f"peak gap by dynamic share: {where}")


@dataclass(frozen=True)
class Metric:
    """A metric's function, unit, neutral value (for sign rules) and what it reads."""

    fn: Callable[..., Reading]
    unit: str
    points: frozenset[str]
    servers: str  # "none", "a", "ab" (one a, one b each), "a+map" (b is workload=server)
    neutral: float = 0.0


def _m(fn, unit, points, servers, neutral=0.0) -> Metric:
    return Metric(fn, unit, frozenset(points.split()), servers, neutral)


METRICS: dict[str, Metric] = {
    "fileset_gb": _m(fileset_gb, "GiB", "at", "none"),
    "peak_gap_pct": _m(peak_gap_pct, "%", "peak", "ab"),
    "abs_peak_gap_pct": _m(abs_peak_gap_pct, "%", "peak", "ab"),
    "gap_at_pct": _m(gap_at_pct, "%", "at", "ab"),
    "max_abs_gap_pct": _m(max_abs_gap_pct, "%", "all upto", "ab"),
    "peak_location": _m(peak_location, "connections", "all", "a"),
    "losses": _m(losses, "points", "all", "ab"),
    "sweep_gap_past_pct": _m(sweep_gap_past_pct, "%", "sweep at", "a"),
    "cpu_unused_pct": _m(cpu_unused_pct, "% of CPU", "at peak", "a"),
    "cpu_busy_pct": _m(cpu_busy_pct, "% of CPU", "at peak", "a"),
    "blocked_pct": _m(blocked_pct, "% of time", "at peak", "a"),
    "listen_drops_ratio": _m(listen_drops_ratio, "ratio", "all", "ab", neutral=1.0),
    "peak_gap_slope": _m(peak_gap_slope, "pp per 100 % dynamic", "peak", "a+map"),
}


def check_servers(metric: Metric, a: tuple[str, ...], b: tuple[str, ...]) -> None:
    """NotMeasured when the rule's servers do not fit the metric or name no known server."""
    wants_a, wants_b = metric.servers != "none", metric.servers in ("ab", "a+map")
    if bool(a) != wants_a or bool(b) != wants_b:
        raise NotMeasured(f"the metric compares {metric.servers!r} servers; the rule gives "
                          f"a={' '.join(a) or '-'}, b={' '.join(b) or '-'}")
    names = list(a) + ([t.partition("=")[2] for t in b] if metric.servers == "a+map" else list(b))
    unknown = [s for s in names if not SERVER.match(s)]
    if unknown:
        raise NotMeasured(f"unknown server {', '.join(unknown)} (servers are ktux or userver-N)")
    if metric.servers == "a+map":
        works = [t.partition("=")[0] for t in b]
        bad = [w for w in works if w not in workload.WORKLOADS]
        if bad or any("=" not in t for t in b):
            raise NotMeasured(f"b must map workloads to servers (workload=server), got {' '.join(b)}")
