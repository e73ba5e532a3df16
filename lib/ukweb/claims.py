"""Evaluate every claim of the paper (data/paper/claims.csv) against a run.

How each claim is read lives in the rule table, data/paper/rules.csv (ukweb.rules): the metric
(ukweb.claim_metrics), the servers compared, the points read, the bands. Each claim gets the
paper's value, ours with its 95 % interval, n, where it was measured, and a verdict:

  reproduced      the interval lies inside the rule's band
  same direction  outside the band, inside the looser same-direction band
  inconclusive    the interval straddles a band's edge
  not reproduced  outside both bands
  not measured    the run (or the rule) lacks what the claim needs; the reason says what

With repetitions the interval is the 95 % t confidence interval; with one (n = 1) it is a t
interval over the point's per-second rates (analysis.curves), and the table says so.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ukweb import analysis, claim_metrics, paper, rules, workload
from ukweb.analysis import BATCHES, NO_SPREAD, POOLED, REPETITIONS, SECONDS
from ukweb.claim_metrics import COUNTS, EXACT, Context, NotMeasured, Points
from ukweb.rules import (
    INCONCLUSIVE,
    NOT_MEASURED,
    NOT_REPRODUCED,
    RANK,
    REPRODUCED,
    SAME,
    VERDICTS,
    RulesError,
)

__all__ = ["REPRODUCED", "SAME", "INCONCLUSIVE", "NOT_REPRODUCED", "NOT_MEASURED", "VERDICTS",
           "RulesError", "evaluate", "write", "summary_line"]


def load_rules(path: Path | None = None, claims: pd.DataFrame | None = None) -> dict[str, rules.Rule]:
    """The rule table, checked against the claims (RulesError when malformed), with each sign
    rule's bands checked against its metric's neutral value."""
    claims = paper.load_claims() if claims is None else claims
    table = rules.load(path, list(claims["id"]))
    for rule in table.values():
        metric = claim_metrics.METRICS.get(rule.metric)
        if rule.kind == "sign" and metric is not None:
            rules.check_sign(rule, metric.neutral)
    return table


@dataclass
class Verdict:
    """One evaluated claim."""

    id: str
    metric: str
    unit: str
    servers: str
    points: str
    kind: str
    paper_value: str
    ours: float
    low: float
    high: float
    n: int
    uncertainty: str
    band: str
    same: str
    verdict: str
    where: str
    reason: str
    reading: str


def uncertainty(est: analysis.Estimate) -> str:
    """How the interval of an estimate was obtained, in words (n is always said)."""
    if est.basis == EXACT:
        return "exact (formula)"
    if est.basis == COUNTS:
        return f"n = {est.n}: Poisson 95 % interval on the totals"
    if est.basis == REPETITIONS:
        return f"n = {est.n}: 95 % CI over repetitions"
    if est.basis == POOLED:
        return (f"n = {est.n}: 95 % interval from the repetitions of the other servers at this "
                f"load (pooled, {est.dof} dof)")
    if est.basis == SECONDS:
        return f"n = {est.n}: 95 % interval over {est.dof + 1} per-second values (no repetitions)"
    if est.basis == BATCHES:
        return (f"n = {est.n}: 95 % interval from batch means of one long window "
                f"({est.dof} dof, the fewest batches - 1)")
    return f"n = {est.n}: no spread available"


def _servers(rule: rules.Rule) -> str:
    """'ktux over userver-16', 'userver-1 & userver-8 over ktux'; a workload map grouped by server."""
    if rule.b and all("=" in t for t in rule.b):
        by: dict[str, list[str]] = {}
        for w, s in (t.split("=", 1) for t in rule.b):
            by.setdefault(s, []).append(w)
        b = ", ".join(f"{s} ({' '.join(ws)})" for s, ws in by.items())
    else:
        b = " & ".join(rule.b)
    a = " & ".join(rule.a)
    return f"{a} over {b}" if a and b else a


def _pairs(rule: rules.Rule, metric: claim_metrics.Metric) -> list[tuple[str | None, object]]:
    """Every (a, b) the claim must hold for: each a with each b; b whole for a workload map."""
    if metric.servers == "a+map":
        return [(a, rule.b) for a in rule.a]
    return list(itertools.product(rule.a or (None,), rule.b or (None,)))


def evaluate_claim(ctx: Context, claim: pd.Series, rule: rules.Rule) -> Verdict:
    """One claim against the run; over several servers it holds only as well as its weakest pair."""
    metric = claim_metrics.METRICS.get(rule.metric)
    base = {"id": claim["id"], "metric": rule.metric, "unit": metric.unit if metric else "",
            "servers": _servers(rule), "points": rule.points, "kind": rule.kind,
            "paper_value": rule.paper_text or claim["paper_value"], "band": rule.band.text,
            "same": rule.same.text if rule.same else "", "reading": rule.reading}
    try:
        if metric is None:
            raise NotMeasured(f"unknown metric {rule.metric!r} (known: {', '.join(claim_metrics.METRICS)})")
        claim_metrics.check_servers(metric, rule.a, rule.b)
        pts = Points.parse(rule.points)
        if pts.kind not in metric.points:
            raise NotMeasured(f"metric {rule.metric} reads points {' or '.join(sorted(metric.points))}, "
                              f"not {rule.points!r}")
        results = [_judged(ctx, claim["workload"], a, b, pts, rule, metric) for a, b in _pairs(rule, metric)]
    except NotMeasured as why:
        return Verdict(**base, ours=math.nan, low=math.nan, high=math.nan, n=0, uncertainty="",
                       verdict=NOT_MEASURED, where="", reason=str(why))
    verdict, est, where, reason = min(results, key=lambda r: RANK[r[0]])
    if len(results) > 1:
        where = "; ".join(r[2] for r in results)
    return Verdict(**base, ours=est.value, low=est.low, high=est.high, n=est.n,
                   uncertainty=uncertainty(est), verdict=verdict, where=where, reason=reason)


def _judged(ctx: Context, work: str, a, b, pts: Points, rule: rules.Rule,
            metric: claim_metrics.Metric) -> tuple[str, analysis.Estimate, str, str]:
    ctx.unsteady.clear()
    reading = metric.fn(ctx, work, a, b, pts, rule)
    try:
        band, same = rule.band.resolve(reading.scale), rule.same.resolve(reading.scale) if rule.same else None
    except KeyError as err:
        raise NotMeasured(f"band end {err} is not a value metric {rule.metric} supplies") from err
    est = reading.estimate
    verdict, why = rules.judge(est.value, est.low, est.high, band, same)
    notes = [why] if why else []
    if est.n == 1 and est.basis == SECONDS:
        notes.append("n = 1: the interval is within-point noise only, not a repetition CI")
    elif est.basis == NO_SPREAD:
        notes.append(f"n = {est.n} and no spread: the verdict cannot account for noise")
    if ctx.unsteady:
        notes.append(f"reads points not steady: {', '.join(sorted(ctx.unsteady))}")
    return verdict, est, reading.where, "; ".join(notes)


def evaluate(points: pd.DataFrame, manifest: dict | None = None,
             claims: pd.DataFrame | None = None, rules_path: Path | None = None) -> pd.DataFrame:
    """Every claim against the run's tidy points table, one row per claim (RulesError when
    the rule table is malformed)."""
    claims = paper.load_claims() if claims is None else claims
    table_of_rules = load_rules(rules_path, claims)
    ctx = Context(points, analysis.curves(points), manifest or {})
    rows = [asdict(evaluate_claim(ctx, claim, table_of_rules[claim["id"]]))
            for _, claim in claims.iterrows()]
    return claims[["id", "figure", "workload", "paper_text"]].merge(pd.DataFrame(rows), on="id")


def peak_gap_by_share(curves: pd.DataFrame) -> pd.DataFrame:
    """ktux's peak gap over the paper's userver per measured workload (the summary figure);
    a run without the paper's configuration falls back to its best measured userver-N."""
    rows = []
    for w in workload.WORKLOADS:
        userver = paper.USERVER[w]
        if analysis.curve(curves, w, userver).empty:
            sel = curves[(curves["workload"] == w) & curves["server"].str.startswith("userver-")]
            userver = None if sel.empty else str(sel.loc[sel["throughput"].idxmax(), "server"])
        if analysis.curve(curves, w, "ktux").empty or userver is None:
            continue
        est = analysis.peak_gap(curves, w, "ktux", userver)
        rows.append({"workload": w, "dynamic_share": workload.dynamic_share(w), "userver": userver,
                     "gap_pct": est.value, "low": est.low, "high": est.high, "n": est.n})
    columns = ["workload", "dynamic_share", "userver", "gap_pct", "low", "high", "n"]
    return pd.DataFrame(rows, columns=columns).sort_values("dynamic_share", ignore_index=True)


# ---------------------------------------------------------------- outputs


def ours_text(row: pd.Series | dict) -> str:
    """'-20.8 [-71.2, 29.6]', '4.0', or '' when not measured."""
    value, low, high = row["ours"], row["low"], row["high"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{value:.1f}"
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def paper_text(row: pd.Series | dict) -> str:
    """The paper's value with the metric's unit when it is a number ('40 %', 'drop')."""
    value = str(row["paper_value"])
    try:
        float(value)
    except ValueError:
        return value
    return f"{value} {row['unit']}".strip()


SHOWN = ["id", "figure", "workload", "servers", "paper_value", "ours", "low", "high", "n",
         "band", "same", "verdict", "where", "reason"]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def markdown(table: pd.DataFrame) -> str:
    """The claims table as GitHub markdown."""
    lines = ["| " + " | ".join(SHOWN) + " |", "|" + "---|" * len(SHOWN)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in SHOWN) + " |" for _, row in table.iterrows()]
    return "\n".join(lines) + "\n"


def write(table: pd.DataFrame, out: Path) -> list[Path]:
    """claims.json and claims.md in out/ (report.write_claims adds claims.html)."""
    out.mkdir(parents=True, exist_ok=True)
    records = json.loads(table.to_json(orient="records"))  # NaN -> null, inf -> null
    targets = [out / "claims.json", out / "claims.md"]
    targets[0].write_text(json.dumps(records, indent=2) + "\n")
    targets[1].write_text(markdown(table))
    return targets


def load_written(out: Path) -> pd.DataFrame:
    """The claims table that `write` left in out/claims.json (nulls back to NaN)."""
    table = pd.DataFrame(json.loads((out / "claims.json").read_text()))
    for col in ("ours", "low", "high"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def counts(table: pd.DataFrame) -> dict[str, int]:
    """Claims per verdict, every verdict present (0 when none)."""
    found = table["verdict"].value_counts()
    return {v: int(found.get(v, 0)) for v in VERDICTS}


def summary_line(table: pd.DataFrame) -> str:
    """'n reproduced, n same direction, n inconclusive, ...' for the end of a report."""
    return ", ".join(f"{n} {v}" for v, n in counts(table).items()) + f" ({len(table)} claims)"
