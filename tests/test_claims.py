"""ukweb.claims and ukweb.rules: every claim is judged by its rule, and every rule kind can give
every verdict it allows.

PAPER_LIKE is a hand-made run whose curves have the paper's peaks and gaps (Figs. 2-6, §5), so
every claim must come out `reproduced`; the table-driven tests move one claim of each rule kind
to each other verdict by changing the points table it reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import make_run

from ukweb import analysis, claim_metrics, claims, frontpage, paper, rules

CONNS = [100, 300, 500, 700, 900, 1100, 1300, 1500]


def _curve(values: list[float]) -> dict[int, list[float]]:
    return {c: [v] for c, v in zip(CONNS, values, strict=True)}


PAPER_LIKE = {
    ("static", "ktux"): _curve([50, 90, 125, 140, 125, 113, 100, 90]),
    ("static", "userver-16"): _curve([50, 88, 95, 100, 85, 70, 65, 60]),
    ("static", "userver-1"): _curve([50, 85, 88, 90, 80, 70, 60, 55]),
    ("dynamic", "ktux"): _curve([40, 80, 100, 95, 85, 70, 50, 45]),
    ("dynamic", "userver-8"): _curve([40, 80, 105, 113, 105, 95, 71, 65]),
    ("dynamic", "userver-1"): _curve([38, 70, 85, 87.6, 80, 70, 60, 55]),
    ("mix30", "ktux"): _curve([45, 85, 105, 113, 105, 100, 90, 83.4]),
    ("mix30", "userver-8"): _curve([45, 80, 95, 100, 90, 80, 70, 60]),
    ("mix50", "ktux"): _curve([45, 85, 100, 100, 95, 90, 85, 80]),
    ("mix50", "userver-8"): _curve([45, 84, 97, 98, 94, 88, 84, 79]),
    ("mix80", "ktux"): _curve([42, 80, 100, 98, 92, 85, 80, 75]),
    ("mix80", "userver-8"): _curve([42, 82, 103, 101, 95, 88, 83, 78]),
    # the process-count sweeps at 500 connections (claims S6, D6)
    **{("static", f"userver-{n}"): {500: [v]} for n, v in ((2, 80), (4, 88), (8, 92), (32, 90))},
    **{("dynamic", f"userver-{n}"): {500: [v]} for n, v in ((2, 95), (4, 100), (16, 98))},
}
PAPER_LIKE_SYSTEM = {
    ("dynamic", "userver-1"): {"idle": 25.0, "iowait": 15.0, "blocked_s": 0.12, "drops": 40},
    ("dynamic", "userver-8"): {"idle": 5.0, "drops": 30},
    ("dynamic", "ktux"): {"idle": 10.0, "drops": 1},
}


@pytest.fixture(scope="module")
def paper_like(tmp_path_factory) -> pd.DataFrame:
    run = make_run(tmp_path_factory.mktemp("paper"), PAPER_LIKE, PAPER_LIKE_SYSTEM)
    return analysis.points_table(run)


def _table(points: pd.DataFrame, **kw) -> pd.DataFrame:
    return claims.evaluate(points, **kw).set_index("id")


def _scale(points: pd.DataFrame, work: str, server: str, factor: float, conns=None) -> pd.DataFrame:
    """A copy with one curve's throughput scaled (at some connection counts, or all)."""
    out = points.copy()
    rows = (out["workload"] == work) & (out["server"] == server)
    if conns is not None:
        rows &= out["connections"].isin(conns)
    out.loc[rows, "ops_per_s"] *= factor
    return out


def _noisy(points: pd.DataFrame, work: str, server: str, sd_pct: float, conns=None) -> pd.DataFrame:
    """A copy whose single points have per-second rates with this standard deviation (%)."""
    out = points.copy()
    rows = (out["workload"] == work) & (out["server"] == server)
    if conns is not None:
        rows &= out["connections"].isin(conns)
    out.loc[rows, "ops_per_s_sd_1s"] = out.loc[rows, "ops_per_s"] * sd_pct / 100
    out.loc[rows, "seconds_1s"] = 4
    return out


def _repeated(points: pd.DataFrame, work: str, server: str, conns: int, column: str,
              values: list[float]) -> pd.DataFrame:
    """A copy where one point has len(values) repetitions with these values of column."""
    rows = (points["workload"] == work) & (points["server"] == server) & (points["connections"] == conns)
    base = points[rows].iloc[0]
    reps = pd.DataFrame([{**base.to_dict(), "repetition": i, column: v} for i, v in enumerate(values)])
    return pd.concat([points[~rows], reps], ignore_index=True)


# ---------------------------------------------------------------- the paper-like run


def test_every_claim_has_a_rule_and_a_verdict(paper_like):
    table = claims.evaluate(paper_like)
    assert list(table["id"]) == list(paper.load_claims()["id"])
    assert set(table["verdict"]) <= set(claims.VERDICTS)
    assert sum(claims.counts(table).values()) == len(table) == 26


def test_a_run_with_the_papers_numbers_reproduces_every_claim(paper_like):
    table = _table(paper_like)
    wrong = table[table["verdict"] != claims.REPRODUCED]
    assert wrong.empty, wrong[["verdict", "ours", "low", "high", "where", "reason"]].to_string()
    assert table.loc["S2", "ours"] == pytest.approx(40.0)
    assert table.loc["D4", "ours"] == pytest.approx(42.0, abs=0.1)
    assert table.loc["T1", "ours"] == pytest.approx(-48, abs=2)
    assert table.loc["S2", "n"] == 1 and "per-second" in table.loc["S2", "uncertainty"]
    assert table.loc["F1", "uncertainty"] == "exact (formula)"


def test_a_claim_over_several_servers_holds_only_for_all(paper_like):
    """S4: 'both servers deteriorate past 700' -- userver-16's peak moved to 1,300 is enough."""
    moved = _scale(paper_like, "static", "userver-16", 2.0, conns=[1300])
    verdict = _table(moved).loc["S4"]
    assert verdict["verdict"] == claims.SAME and verdict["ours"] == 1300
    assert "ktux peaks at 700" in verdict["where"] and "userver-16 peaks at 1300" in verdict["where"]


def test_d9_must_hold_against_both_userver_configurations(paper_like):
    fewer = paper_like.copy()
    fewer.loc[(fewer["workload"] == "dynamic") & (fewer["server"] == "userver-1"), "listen_drops"] = 4
    verdict = _table(fewer).loc["D9"]
    assert verdict["verdict"] == claims.SAME  # userver-1: 32 vs 16 drops, ratio 2 [1.1, 3.6]
    assert "userver-1" in verdict["where"] and "userver-8" in verdict["where"]


def test_ties_at_light_load_are_not_losses(paper_like):
    """M5: equal throughput at 100 and 300 connections (both serve the offered load)."""
    tied = _scale(paper_like, "mix80", "userver-8", 0.99, conns=[100, 300])
    assert _table(tied).loc["M5", "verdict"] == claims.REPRODUCED


def test_m4_is_two_sided(paper_like):
    above = _scale(paper_like, "mix50", "userver-8", 1.25, conns=[900])  # 23 % above ktux
    assert _table(above).loc["M4", "verdict"] == claims.NOT_REPRODUCED


def test_d10_a_saturated_cpu_is_not_close_to_90(paper_like):
    saturated = paper_like.copy()
    saturated.loc[(saturated["workload"] == "dynamic") & (saturated["server"] == "ktux"),
                  "cpu_busy_of_capacity"] = 100.0
    assert _table(saturated).loc["D10", "verdict"] == claims.NOT_REPRODUCED


def test_m6_band_keeps_the_sign(paper_like):
    below = _scale(paper_like, "mix80", "userver-8", 0.93)  # peak gap 3 % -> -4 %
    assert _table(below).loc["M6", "verdict"] == claims.NOT_REPRODUCED


# ---------------------------------------------------------------- every kind x every verdict
# (claim, kind, verdict, how the paper-like points are changed); a kind without a
# same-direction band (level, interior optimum) cannot give "same direction" by construction.

R, S, U, N = claims.REPRODUCED, claims.SAME, claims.INCONCLUSIVE, claims.NOT_REPRODUCED  # U: undecided
CASES = [
    ("S2", "sign", R, lambda p: p),
    ("S2", "sign", S, lambda p: _scale(p, "static", "ktux", 0.85)),  # 40 % -> 19 %
    ("S2", "sign", N, lambda p: _scale(p, "static", "ktux", 0.6)),  # -> -16 %
    ("S2", "sign", U, lambda p: _noisy(p, "static", "ktux", 20)),  # [~10, ~70]
    ("D7", "level", R, lambda p: p),
    ("D7", "level", N, lambda p: _repeated(p, "dynamic", "userver-1", 500, "cpu_unused_of_capacity", [5, 6, 7])),
    ("D7", "level", U, lambda p: _repeated(p, "dynamic", "userver-1", 500, "cpu_unused_of_capacity", [25, 40, 55])),
    ("D2", "peak location", R, lambda p: p),
    ("D2", "peak location", S, lambda p: _scale(p, "dynamic", "ktux", 1.8, conns=[1100])),  # interior 1100
    ("D2", "peak location", N, lambda p: _scale(p, "dynamic", "ktux", 3.0, conns=[1500])),  # at the edge
    ("D2", "peak location", U, lambda p: _noisy(p, "dynamic", "ktux", 10)),  # 500-900 indistinguishable
    ("M5", "majority of points", R, lambda p: p),
    ("M5", "majority of points", S, lambda p: _scale(p, "mix80", "userver-8", 0.9, conns=[1300, 1500])),
    ("M5", "majority of points", N, lambda p: _scale(p, "mix80", "userver-8", 0.9, conns=CONNS[3:])),
    ("M5", "majority of points", U, lambda p: _noisy(p, "mix80", "ktux", 15)),
    ("S6", "interior optimum", R, lambda p: p),
    ("S6", "interior optimum", N, lambda p: _scale(p, "static", "userver-32", 1.2)),
    ("S6", "interior optimum", U, lambda p: _noisy(p, "static", "userver-32", 10)),
    ("T1", "trend", R, lambda p: p),
    ("T1", "trend", S, lambda p: _scale(_scale(p, "static", "ktux", 0.75), "mix30", "ktux", 0.93)),
    ("T1", "trend", N, lambda p: _scale(_scale(p, "static", "ktux", 0.6), "dynamic", "userver-8", 0.8)),
    ("T1", "trend", U, lambda p: _noisy(p, "static", "ktux", 20)),
]


@pytest.mark.parametrize(("cid", "kind", "verdict", "change"), CASES,
                         ids=[f"{c[0]}-{c[1].replace(' ', '_')}-{c[2].replace(' ', '_')}" for c in CASES])
def test_every_rule_kind_gives_each_verdict(paper_like, cid, kind, verdict, change):
    rule = claims.load_rules()[cid]
    assert rule.kind == kind
    row = _table(change(paper_like)).loc[cid]
    assert row["verdict"] == verdict, row[["ours", "low", "high", "where", "reason"]].to_dict()
    if verdict != R:
        assert row["reason"], "a verdict other than reproduced says why"


def test_every_kind_in_the_table_is_tested():
    assert {c[1] for c in CASES} == set(rules.KINDS)
    assert {r.kind for r in claims.load_rules().values()} <= set(rules.KINDS)


def test_kinds_without_a_same_band_cannot_say_same_direction():
    for rule in claims.load_rules().values():
        if rule.kind in ("level", "interior optimum"):
            assert rule.same is None, rule.id


# ---------------------------------------------------------------- judge, on its own

BAND, SAME_BAND = rules.parse_interval("[30, 50]"), rules.parse_interval("(0, inf)")


@pytest.mark.parametrize(("value", "low", "high", "same", "verdict"), [
    (40, 35, 45, R, None), (40, math.nan, math.nan, R, None), (20, 15, 25, S, None),
    (-5, -9, -1, N, None), (40, 25, 45, U, None), (10, -5, 25, U, None),
    (20, 15, 25, N, "no same band"), (40, 25, 45, U, "no same band"),
])
def test_judge(value, low, high, same, verdict):
    got, why = rules.judge(value, low, high, BAND, None if verdict else SAME_BAND)
    assert got == same
    assert (why == "") == (got == R)


def test_open_ends_and_names():
    band = rules.parse_interval("[0, half)").resolve({"half": 4})
    assert band.contains(0) and band.contains(3.9) and not band.contains(4)
    assert rules.parse_interval("(first, last)").resolve({"first": 100, "last": 1500}).contains(1300)
    with pytest.raises(ValueError):
        rules.parse_interval("[50, 30]")


# ---------------------------------------------------------------- bad input


def _rules_csv(tmp_path: Path, change: dict[str, dict[str, str]] | None = None,
               drop: list[str] | None = None) -> Path:
    table = pd.read_csv(rules.RULES_CSV, dtype=str, keep_default_na=False)
    for cid, cells in (change or {}).items():
        for col, value in cells.items():
            table.loc[table["id"] == cid, col] = value
    table = table[~table["id"].isin(drop or [])]
    path = tmp_path / "rules.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("change", "reason"), [
    ({"S3": {"metric": "gap_at_percent"}}, "unknown metric"),
    ({"S3": {"a": "tux"}}, "unknown server tux"),
    ({"S3": {"points": "c7x"}}, "unknown points"),
    ({"S3": {"points": "1000"}}, "not measured at 1000 connections"),
    ({"S3": {"points": "all"}}, "reads points at"),
    ({"S3": {"b": ""}}, "the rule gives"),
])
def test_a_bad_rule_row_leaves_that_claim_not_measured_and_the_rest_judged(paper_like, tmp_path, change, reason):
    table = _table(paper_like, rules_path=_rules_csv(tmp_path, change))
    assert table.loc["S3", "verdict"] == claims.NOT_MEASURED
    assert reason in table.loc["S3", "reason"], table.loc["S3", "reason"]
    others = table.drop(index="S3")
    assert (others["verdict"] == claims.REPRODUCED).all()


@pytest.mark.parametrize(("change", "drop", "message"), [
    ({"S2": {"band": "[30, 50"}}, None, "not an interval"),
    ({"S2": {"kind": "roughly"}}, None, "kind 'roughly'"),
    ({"S2": {"band": "[-10, 50]"}}, None, "does not keep the paper's sign"),
    ({"D7": {"same": "[0, 100]"}}, None, "no 'same' band"),
    ({"S2": {"paper": "60"}}, None, "outside its own band"),
    ({"S2": {"id": "S3"}}, None, "a second rule for claim S3"),
    (None, ["T1"], "no rule for claim(s) T1"),
])
def test_a_malformed_rule_table_is_one_clear_error(tmp_path, change, drop, message):
    with pytest.raises(rules.RulesError) as err:
        claims.load_rules(_rules_csv(tmp_path, change, drop))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_columns_are_named(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text("id,metric\nS1,peak_gap_pct\n")
    with pytest.raises(rules.RulesError, match="missing column"):
        claims.load_rules(path)


def test_a_run_lacking_workloads_or_counters_is_not_measured_with_a_reason(paper_like):
    static_only = paper_like[paper_like["workload"] == "static"].drop(columns=["listen_drops"])
    table = _table(static_only)
    assert table.loc["S2", "verdict"] == claims.REPRODUCED
    assert table.loc["F1", "verdict"] == claims.REPRODUCED  # needs no run
    for cid in ("D1", "M1", "M6", "D9", "T1"):
        assert table.loc[cid, "verdict"] == claims.NOT_MEASURED, cid
        assert len(table.loc[cid, "reason"]) > 10
    assert "dynamic" in table.loc["D1", "reason"]


def test_the_papers_connection_counts_are_required(paper_like):
    coarse = paper_like[paper_like["connections"].isin([100, 500, 900, 1500])]
    verdict = _table(coarse).loc["S3"]  # the paper's 1100
    assert verdict["verdict"] == claims.NOT_MEASURED and "1100" in verdict["reason"]


def test_peaks_outside_the_range_and_blocked_time_without_delay_accounting(paper_like):
    narrow = paper_like[paper_like["connections"] <= 300]
    table = _table(narrow, manifest={"testbed": {"delay_accounting": False}})
    assert table.loc["S4", "verdict"] == claims.NOT_MEASURED and "outside" in table.loc["S4", "reason"]
    assert "delay accounting" in table.loc["D8", "reason"]


def test_unsteady_points_are_named_in_the_reason(paper_like):
    marked = paper_like.assign(steady=True)
    marked.loc[(marked["workload"] == "static") & (marked["connections"] == 1100), "steady"] = False
    assert "static/ktux/c1100" in _table(marked).loc["S3", "reason"]


# ---------------------------------------------------------------- outputs


def test_outputs_are_written(paper_like, tmp_path: Path):
    table = claims.evaluate(paper_like)
    written = frontpage.write_claims(table, tmp_path)
    records = json.loads((tmp_path / "claims.json").read_text())
    assert len(records) == len(table) and {"id", "paper_value", "ours", "n", "band", "verdict"} <= set(records[0])
    assert (tmp_path / "claims.md").read_text().count("\n") == len(table) + 2
    html = (tmp_path / "claims.html").read_text()
    assert "The gap in the peak throughput" in html and "ktux over userver-16" in html and "[30, 50]" in html
    assert all(p.exists() for p in written)
    assert claims.summary_line(table).startswith(f"{len(table)} reproduced")
    back = claims.load_written(tmp_path)
    assert claims.ours_text(back.set_index("id").loc["S2"]).startswith("40.0")


def test_trend_figure_falls_back_to_the_best_measured_userver(paper_like):
    no16 = paper_like[paper_like["server"] != "userver-16"]
    table = claims.peak_gap_by_share(analysis.curves(no16)).set_index("workload")
    assert table.loc["static", "userver"] == "userver-8"  # the sweep's best at 500 (92/s)
    assert table.loc["static", "gap_pct"] == pytest.approx((140 / 92 - 1) * 100)
    assert list(table["dynamic_share"]) == sorted(table["dynamic_share"])


def test_every_metric_named_in_the_table_exists():
    for rule in claims.load_rules().values():
        assert rule.metric in claim_metrics.METRICS, rule.id
