"""Evaluate every claim of the paper (data/paper/claims.csv) against a run.

Each claim gets the paper's value, ours (with its 95 % interval when the run has repetitions),
where ours was measured, and a verdict:

  reproduced      within the claim's tolerance (TOLERANCES below)
  same direction  outside the tolerance, but the effect points the same way
  not reproduced  the effect is absent or reversed
  not measured    the run lacks what the claim needs (the reason says what)

claims.csv has no tolerance column: TOLERANCES is the one table that defines them [I].
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from ukweb import analysis, paths, workload
from ukweb.analysis import DONE, Estimate

CLAIMS_CSV = paths.PAPER / "claims.csv"
REPRODUCED, SAME, NOT_REPRODUCED, NOT_MEASURED = (
    "reproduced", "same direction", "not reproduced", "not measured")
# The paper's labels for our servers (design, "Metrics").
PAPER_LABELS = {"tux": "ktux"}
# The paper's best userver per workload (Figs. 2-6); 'userver' in a claim means this one.
PAPER_USERVER = {"static": "userver-16", "dynamic": "userver-8", "mix30": "userver-8",
                 "mix50": "userver-8", "mix80": "userver-8"}
# Metrics that are levels (a CPU share), not effects with a sign.
LEVEL_METRICS = {"server_cpu_idle_pct", "server_cpu_pct"}
SMALL_PCT = 10.0  # the paper's "similar"/"small": |gap| <= 10 % [I]

# [I] Tolerances, one row per (comparison, metric); "*" matches any metric of that comparison.
# band: how far ours may be from the paper's value (approx) or past the bound (le/ge) and still
# be "reproduced"; slack: the looser limit that still counts as "same direction".
TOLERANCES = pd.DataFrame([
    ("approx", "fileset_gb", 0.10, math.nan, "relative", "within ±10 % of the paper's size"),
    ("approx", "peak_at_connections", 200, math.nan, "connections",
     "peak within ±200 connections; same direction: the curve falls after an interior peak"),
    ("approx", "server_cpu_idle_pct", 10.0, math.nan, "percentage points",
     "within ±10 pp (a level, so no 'same direction')"),
    ("approx", "server_cpu_pct", 10.0, math.nan, "percentage points",
     "within ±10 pp (a level, so no 'same direction')"),
    ("approx", "*", 10.0, math.nan, "percentage points",
     "within ±10 pp; same direction: same sign as the paper's value"),
    ("le", "max_abs_gap_up_to_pct", 0.0, 10.0, "percentage points",
     "|gap| <= 10 % ('similar'); same direction: <= 20 %"),
    ("le", "abs_peak_gap_pct", 0.0, 6.0, "percentage points",
     "|peak gap| <= 4 %; same direction: <= 10 % ('small')"),
    ("le", "points_a_above_b_missing", 0.0, math.nan, "points",
     "A above B at all but <= 1 point; same direction: A above B at most points"),
    ("ge", "server_blocked_pct", 0.0, 5.0, "percentage points",
     ">= 10 % of the time blocked; same direction: >= 5 %"),
    ("ge", "listen_drops_ratio", 0.0, 9.0, "ratio", ">= 10x fewer drops; same direction: fewer (> 1x)"),
    ("ge", "min_ratio_pct", 0.0, 10.0, "percent", ">= 85 % everywhere; same direction: >= 75 %"),
    ("gt0", "*", 0.0, math.nan, "percent", "gap > 0"),
    ("eq", "process_sweep_best", 0.0, math.nan, "processes",
     "same best process count; same direction: an interior optimum (more helps, then hurts)"),
    ("trend", "peak_gap_trend", -0.8, math.nan, "Spearman rho",
     "rho(dynamic share, gap) <= -0.8 and static gap > 80 % gap; same direction: rho < 0"),
], columns=["comparison", "metric", "band", "slack", "unit", "rule"])


class NotMeasured(Exception):
    """The run lacks the data a claim needs; the message is the reason."""


@dataclass
class Verdict:
    """One evaluated claim."""

    id: str
    metric: str
    paper_value: str
    ours: float
    low: float
    high: float
    where: str
    verdict: str
    reason: str
    rule: str


@dataclass
class Context:
    """What the evaluators read: the tidy points table, its curves and the run's manifest."""

    points: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict

    def label(self, paper_label: str, work: str) -> str:
        """Our server label for a paper label, checking the run measured it in `work`."""
        ours = PAPER_LABELS.get(paper_label, paper_label)
        if ours == "userver":
            ours = PAPER_USERVER.get(work, "userver-8")
        if analysis.curve(self.curves, work, ours).empty:
            raise NotMeasured(f"the run has no completed {ours} points for workload {work}")
        return ours


def tolerance(comparison: str, metric: str) -> pd.Series:
    """The TOLERANCES row for a claim (a metric-specific row wins over '*')."""
    rows = TOLERANCES[(TOLERANCES["comparison"] == comparison)
                      & TOLERANCES["metric"].isin([metric, "*"])]
    if rows.empty:
        raise ValueError(f"no tolerance defined for comparison {comparison!r}, metric {metric!r}")
    return rows.sort_values("metric", key=lambda m: m == "*").iloc[0]


def load_claims(path: Path = CLAIMS_CSV) -> pd.DataFrame:
    """The paper's claims, one row each, every column as text."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def paper_number(value: str) -> float:
    """The paper's value as a number ('small' -> SMALL_PCT; 'positive'/'decreasing' -> 0)."""
    named = {"small": SMALL_PCT, "positive": 0.0, "decreasing": 0.0}
    return named[value] if value in named else float(value)


def _at(claim: pd.Series) -> int | None:
    return int(claim["at_connections"]) if claim["at_connections"] else None


def _where(at: int, wanted: int | None) -> str:
    if wanted is None or at == wanted:
        return f"at {at} connections"
    return f"at {at} connections (nearest measured to the paper's {wanted})"


# ---------------------------------------------------------------- evaluators: one per metric
# Each returns (estimate, where) or raises NotMeasured.


def _fileset_gb(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    return Estimate(workload.fileset_gib(_at(c))), f"formula for {_at(c)} connections (GiB)"


def _peak_gap(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    w = c["workload"]
    a, b = ctx.label(c["a"], w), ctx.label(c["b"], w)
    pa, pb = analysis.peak(ctx.curves, w, a), analysis.peak(ctx.curves, w, b)
    return analysis.gap(pa, pb), f"peaks: {a} at {pa.name}, {b} at {pb.name} connections"


def _abs_peak_gap(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    est, where = _peak_gap(ctx, c)
    return Estimate(abs(est.value)), where


def _gap_at(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    w = c["workload"]
    a, b = ctx.label(c["a"], w), ctx.label(c["b"], w)
    try:
        est, at = analysis.gap_at(ctx.curves, w, a, b, _at(c))
    except KeyError as err:
        raise NotMeasured(f"{a} and {b} share no measured point in {w}") from err
    return est, _where(at, _at(c))


def _shared_gaps(ctx: Context, c: pd.Series) -> tuple[pd.Series, str, str]:
    """Gap of a over b (%) at each load both were measured at, with their labels."""
    w = c["workload"]
    a, b = ctx.label(c["a"], w), ctx.label(c["b"], w)
    g = analysis.gaps(ctx.curves, w, a, b)
    if g.empty:
        raise NotMeasured(f"{a} and {b} share no measured point in {w}")
    return g, a, b


def _max_abs_gap_up_to(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    g, _, _ = _shared_gaps(ctx, c)
    upto = _at(c)
    sel = g[g.index <= upto]
    if sel.empty:  # the run starts above the paper's range: its lightest load stands in
        sel = g.iloc[:1]
        return Estimate(float(sel.abs().max())), f"at {sel.index[0]} connections (none <= {upto})"
    return Estimate(float(sel.abs().max())), f"max over {len(sel)} points <= {upto} connections"


def _peak_at(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    w = c["workload"]
    a = ctx.label(c["a"], w)
    p = analysis.peak(ctx.curves, w, a)
    measured = analysis.curve(ctx.curves, w, a).index
    if not measured.min() <= paper_number(c["paper_value"]) <= measured.max():
        raise NotMeasured(f"{a} was measured at {measured.min()}-{measured.max()} connections; "
                          f"the paper's peak at {c['paper_value']} lies outside that range")
    return Estimate(float(p.name)), f"{a}; measured {measured.min()}-{measured.max()} connections"


def _process_sweep(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    w = c["workload"]
    table = ctx.curves[(ctx.curves["workload"] == w)
                       & ctx.curves["server"].str.fullmatch(r"userver-\d+")]
    if table["server"].nunique() < 3:
        raise NotMeasured(f"the run has {table['server'].nunique()} userver process counts in {w}; "
                          "a process-count sweep needs at least 3")
    # The connection count measured by the most process counts: the sweep's point.
    at = int(table.groupby("connections")["server"].nunique().idxmax())
    at_point = table[table["connections"] == at]
    best = at_point.loc[at_point["throughput"].idxmax(), "server"]
    procs = sorted(int(s.split("-")[1]) for s in at_point["server"])
    return Estimate(float(best.split("-")[1])), f"at {at} connections over processes {procs}"


def _point_metric(ctx: Context, c: pd.Series, column: str) -> tuple[Estimate, str]:
    """Mean (with CI) of a per-point column for server a at the claim's (or the peak's) load."""
    w = c["workload"]
    a = ctx.label(c["a"], w)
    done = ctx.points[(ctx.points["workload"] == w) & (ctx.points["server"] == a)
                      & (ctx.points["status"] == DONE)]
    if column not in done or done[column].isna().all():
        raise NotMeasured(f"no {column} samples (system.csv) for {a} in {w}")
    wanted = _at(c)
    at = (analysis.nearest(sorted(done["connections"].unique()), wanted) if wanted
          else int(analysis.peak(ctx.curves, w, a).name))
    mean, half = analysis.mean_ci(done.loc[done["connections"] == at, column])
    where = _where(at, wanted) if wanted else f"at {a}'s peak, {at} connections"
    return Estimate(mean, mean - half, mean + half), where


def _blocked(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    """Blocked time needs delay accounting; without it blocked_s is 0, not a measurement."""
    if ctx.manifest.get("testbed", {}).get("delay_accounting") is False:
        raise NotMeasured("delay accounting was off in this run (kernel.task_delayacct needs root), "
                          "so blocked time was not recorded")
    return _point_metric(ctx, c, "blocked_pct")


def _listen_drops_ratio(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    w = c["workload"]
    a, b = ctx.label(c["a"], w), ctx.label(c["b"], w)
    done = ctx.points[(ctx.points["workload"] == w) & (ctx.points["status"] == DONE)]
    if "listen_drops" not in done:
        raise NotMeasured("no listen_drops samples (system.csv) in the run")
    da = done.loc[done["server"] == a, "listen_drops"].sum()
    db = done.loc[done["server"] == b, "listen_drops"].sum()
    if da == 0 and db == 0:
        raise NotMeasured(f"no listen-queue drops for either {a} or {b}: the load never "
                          "overflowed the accept backlog")
    ratio = math.inf if db == 0 else da / db
    return Estimate(ratio), f"all {w} points: {a} {da:.0f} drops, {b} {db:.0f} drops"


def _min_ratio(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    g, _, _ = _shared_gaps(ctx, c)
    return Estimate(float(g.min()) + 100), f"lowest at {g.idxmin()} connections of {len(g)}"


def _points_missing(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    g, a, b = _shared_gaps(ctx, c)
    return Estimate(float((g <= 0).sum())), f"{a} not above {b} at {(g <= 0).sum()} of {len(g)} points"


def _userver_for(curves: pd.DataFrame, work: str) -> str | None:
    """The paper's userver configuration for a workload, else the measured userver-N with the
    highest peak (a run without the paper's configuration still shows the trend)."""
    if not analysis.curve(curves, work, PAPER_USERVER[work]).empty:
        return PAPER_USERVER[work]
    sel = curves[(curves["workload"] == work) & curves["server"].str.startswith("userver-")]
    return None if sel.empty else str(sel.loc[sel["throughput"].idxmax(), "server"])


def peak_gap_by_share(curves: pd.DataFrame) -> pd.DataFrame:
    """ktux's peak gap over the paper's userver configuration, per measured workload."""
    rows = []
    for w in workload.WORKLOADS:
        userver = _userver_for(curves, w)
        if analysis.curve(curves, w, "ktux").empty or userver is None:
            continue
        est = analysis.peak_gap(curves, w, "ktux", userver)
        rows.append({"workload": w, "dynamic_share": workload.dynamic_share(w), "userver": userver,
                     "gap_pct": est.value, "low": est.low, "high": est.high})
    table = pd.DataFrame(rows, columns=["workload", "dynamic_share", "userver", "gap_pct", "low", "high"])
    return table.sort_values("dynamic_share", ignore_index=True)


def _trend(ctx: Context, c: pd.Series) -> tuple[Estimate, str]:
    table = peak_gap_by_share(ctx.curves)
    if len(table) < 3:
        raise NotMeasured(f"the trend needs ktux and userver in at least 3 workloads, the run has {len(table)}")
    rho = float(stats.spearmanr(table["dynamic_share"], table["gap_pct"]).statistic)
    ends = table.sort_values("dynamic_share")["gap_pct"]
    where = ", ".join(f"{r.workload} {r.gap_pct:+.0f}%" for r in table.itertuples())
    return Estimate(rho), f"Spearman rho over {where}; first-last {ends.iloc[0] - ends.iloc[-1]:+.0f} pp"


EVALUATORS: dict[str, Callable[[Context, pd.Series], tuple[Estimate, str]]] = {
    "fileset_gb": _fileset_gb,
    "max_abs_gap_up_to_pct": _max_abs_gap_up_to,
    "peak_gap_pct": _peak_gap,
    "gap_at_pct": _gap_at,
    "peak_at_connections": _peak_at,
    "process_sweep_best": _process_sweep,
    # Linux 2.4's idle, which included I/O wait (see analysis.system_metrics).
    "server_cpu_idle_pct": lambda ctx, c: _point_metric(ctx, c, "cpu_unused_of_capacity"),
    "server_blocked_pct": lambda ctx, c: _blocked(ctx, c),
    "listen_drops_ratio": _listen_drops_ratio,
    "server_cpu_pct": lambda ctx, c: _point_metric(ctx, c, "cpu_busy_of_capacity"),
    "abs_peak_gap_pct": _abs_peak_gap,
    "min_ratio_pct": _min_ratio,
    "points_a_above_b_missing": _points_missing,
    "peak_gap_trend": _trend,
}


# ---------------------------------------------------------------- verdicts


def judge(ctx: Context, claim: pd.Series, ours: float) -> str:
    """The verdict for our value against the paper's under the claim's tolerance."""
    kind, metric = claim["comparison"], claim["metric"]
    tol = tolerance(kind, metric)
    paper = paper_number(claim["paper_value"])
    if kind == "approx":
        limit = tol["band"] * (paper if tol["unit"] == "relative" else 1)
        if abs(ours - paper) <= limit:
            return REPRODUCED
        if metric == "peak_at_connections":
            return SAME if _interior_peak(ctx, claim) else NOT_REPRODUCED
        if metric in LEVEL_METRICS:
            return NOT_REPRODUCED
        return SAME if math.copysign(1, ours) == math.copysign(1, paper) else NOT_REPRODUCED
    if kind == "le":
        if ours <= paper + tol["band"]:
            return REPRODUCED
        if metric == "points_a_above_b_missing":
            total = len(analysis.gaps(ctx.curves, claim["workload"], ctx.label(claim["a"], claim["workload"]),
                                      ctx.label(claim["b"], claim["workload"])))
            return SAME if ours < total / 2 else NOT_REPRODUCED
        return SAME if ours <= paper + tol["slack"] else NOT_REPRODUCED
    if kind == "ge":
        if ours >= paper - tol["band"]:
            return REPRODUCED
        return SAME if ours > paper - tol["slack"] else NOT_REPRODUCED
    if kind == "gt0":
        return REPRODUCED if ours > 0 else NOT_REPRODUCED
    if kind == "eq":
        if ours == paper:
            return REPRODUCED
        return SAME if _interior_best(ctx, claim, ours) else NOT_REPRODUCED
    if kind == "trend":
        table = peak_gap_by_share(ctx.curves).sort_values("dynamic_share")
        if ours <= tol["band"] and table["gap_pct"].iloc[0] > table["gap_pct"].iloc[-1]:
            return REPRODUCED
        return SAME if ours < 0 else NOT_REPRODUCED
    raise ValueError(f"claim {claim['id']}: unknown comparison {kind!r}")


def _interior_peak(ctx: Context, claim: pd.Series) -> bool:
    """True when A's curve rises to a peak and falls after it (the paper's 'deteriorates')."""
    c = analysis.curve(ctx.curves, claim["workload"], ctx.label(claim["a"], claim["workload"]))
    at = c["throughput"].idxmax()
    return c.index.min() < at < c.index.max()


def _interior_best(ctx: Context, claim: pd.Series, best: float) -> bool:
    """True when the best process count is neither the fewest nor the most tried."""
    servers = ctx.curves.loc[ctx.curves["workload"] == claim["workload"], "server"]
    procs = [int(s.split("-")[1]) for s in servers.unique() if s.startswith("userver-")]
    return min(procs) < best < max(procs)


def evaluate_claim(ctx: Context, claim: pd.Series) -> Verdict:
    """One claim against the run: ours, where, and the verdict (or not measured, with why)."""
    rule = tolerance(claim["comparison"], claim["metric"])["rule"]
    base = {"id": claim["id"], "metric": claim["metric"], "paper_value": claim["paper_value"], "rule": rule}
    evaluator = EVALUATORS.get(claim["metric"])
    if evaluator is None:
        return Verdict(**base, ours=math.nan, low=math.nan, high=math.nan, where="",
                       verdict=NOT_MEASURED, reason=f"no evaluator for metric {claim['metric']!r}")
    try:
        est, where = evaluator(ctx, claim)
    except NotMeasured as why:
        return Verdict(**base, ours=math.nan, low=math.nan, high=math.nan, where="",
                       verdict=NOT_MEASURED, reason=str(why))
    return Verdict(**base, ours=est.value, low=est.low, high=est.high, where=where,
                   verdict=judge(ctx, claim, est.value), reason="")


def evaluate(points: pd.DataFrame, manifest: dict | None = None,
             claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim against the run's tidy points table, one row per claim."""
    claims = load_claims() if claims is None else claims
    ctx = Context(points, analysis.curves(points), manifest or {})
    rows = [asdict(evaluate_claim(ctx, claim)) for _, claim in claims.iterrows()]
    table = pd.DataFrame(rows)
    return claims[["id", "figure", "workload", "paper_text"]].merge(table, on="id")


# ---------------------------------------------------------------- outputs


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.1f}"
    return str(value).replace("|", "\\|")


SHOWN = ["id", "figure", "workload", "metric", "paper_value", "ours", "low", "high", "verdict",
         "where", "reason"]


def markdown(table: pd.DataFrame) -> str:
    """The claims table as GitHub markdown."""
    lines = ["| " + " | ".join(SHOWN) + " |", "|" + "---|" * len(SHOWN)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in SHOWN) + " |" for _, row in table.iterrows()]
    return "\n".join(lines) + "\n"


def write(table: pd.DataFrame, out: Path) -> list[Path]:
    """claims.json, claims.md and claims.html in out/."""
    out.mkdir(parents=True, exist_ok=True)
    records = json.loads(table.to_json(orient="records"))  # NaN -> null, inf -> null
    targets = [out / "claims.json", out / "claims.md", out / "claims.html"]
    targets[0].write_text(json.dumps(records, indent=2) + "\n")
    targets[1].write_text(markdown(table))
    targets[2].write_text(table[SHOWN].to_html(index=False, na_rep="", float_format="%.1f"))
    return targets


def load_written(out: Path) -> pd.DataFrame:
    """The claims table that `write` left in out/claims.json."""
    return pd.DataFrame(json.loads((out / "claims.json").read_text()))


def summary_line(table: pd.DataFrame) -> str:
    """'n reproduced, n same direction, ...' for the end of a report."""
    counts = table["verdict"].value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in (REPRODUCED, SAME, NOT_REPRODUCED, NOT_MEASURED))
