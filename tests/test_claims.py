"""ukweb.claims: every claim of claims.csv gets a verdict, and the verdicts follow the numbers.

PAPER_LIKE is a hand-made run whose curves have the paper's peaks and gaps (Figs. 2-6, §5), so
every claim must come out `reproduced`; variations of it move single claims to the other verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import make_run

from ukweb import analysis, claims

CONNS = [100, 300, 500, 700, 900, 1100, 1300, 1500]


def _curve(values: list[float]) -> dict[int, list[float]]:
    return {c: [v] for c, v in zip(CONNS, values, strict=True)}


PAPER_LIKE = {
    ("static", "ktux"): _curve([50, 90, 125, 140, 125, 113, 100, 90]),
    ("static", "userver-16"): _curve([50, 88, 95, 100, 85, 70, 65, 60]),
    ("static", "userver-1"): _curve([45, 60, 70, 72, 65, 60, 55, 50]),
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
    ("dynamic", "userver-1"): {"idle": 25.0, "iowait": 15.0, "blocked_s": 0.12},
    ("dynamic", "userver-8"): {"idle": 5.0, "drops": 10},
    ("dynamic", "ktux"): {"idle": 10.0, "drops": 1},
}


@pytest.fixture(scope="module")
def paper_like(tmp_path_factory) -> pd.DataFrame:
    run = make_run(tmp_path_factory.mktemp("paper"), PAPER_LIKE, PAPER_LIKE_SYSTEM)
    return analysis.points_table(run)


def _verdicts(points: pd.DataFrame) -> pd.Series:
    return claims.evaluate(points).set_index("id")["verdict"]


def test_every_claim_gets_a_verdict_or_a_reason(paper_like):
    table = claims.evaluate(paper_like)
    assert list(table["id"]) == list(claims.load_claims()["id"])
    assert set(table["verdict"]) <= {claims.REPRODUCED, claims.SAME, claims.NOT_REPRODUCED, claims.NOT_MEASURED}
    unmeasured = table[table["verdict"] == claims.NOT_MEASURED]
    assert (unmeasured["reason"].str.len() > 10).all()


def test_a_run_with_the_papers_numbers_reproduces_every_claim(paper_like):
    table = claims.evaluate(paper_like).set_index("id")
    wrong = table[table["verdict"] != claims.REPRODUCED]
    assert wrong.empty, wrong[["verdict", "ours", "where", "reason"]].to_string()
    assert table.loc["S2", "ours"] == pytest.approx(40.0)
    assert table.loc["D4", "ours"] == pytest.approx(42.0, abs=0.1)
    assert table.loc["S6", "ours"] == 16 and table.loc["D6", "ours"] == 8


def test_reversed_static_gap_is_not_reproduced(paper_like):
    swapped = paper_like.copy()
    static = swapped["workload"] == "static"
    ktux, u16 = static & (swapped["server"] == "ktux"), static & (swapped["server"] == "userver-16")
    swapped.loc[ktux, "server"], swapped.loc[u16, "server"] = "userver-16", "ktux"
    verdicts = _verdicts(swapped)
    assert verdicts["S2"] == claims.NOT_REPRODUCED
    assert verdicts["S3"] == claims.NOT_REPRODUCED


def test_a_smaller_gap_of_the_same_sign_is_same_direction(paper_like):
    smaller = paper_like.copy()
    rows = (smaller["workload"] == "static") & (smaller["server"] == "ktux")
    smaller.loc[rows, "ops_per_s"] *= 0.85  # peak gap 40 % -> 19 %
    verdict = claims.evaluate(smaller).set_index("id").loc["S2"]
    assert verdict["ours"] == pytest.approx(19.0, abs=0.1)
    assert verdict["verdict"] == claims.SAME


def test_missing_workloads_and_counters_are_not_measured_with_a_reason(paper_like):
    static_only = paper_like[paper_like["workload"] == "static"].drop(columns=["listen_drops"])
    table = claims.evaluate(static_only).set_index("id")
    assert table.loc["S2", "verdict"] == claims.REPRODUCED
    assert table.loc["F1", "verdict"] == claims.REPRODUCED  # needs no run
    for cid in ("D1", "M1", "M6", "D9", "T1"):
        assert table.loc[cid, "verdict"] == claims.NOT_MEASURED, cid
    assert "dynamic" in table.loc["D1", "reason"]
    assert "at least 3 workloads" in table.loc["T1", "reason"]


def test_nearest_measured_point_is_used_and_said(paper_like):
    coarse = paper_like[paper_like["connections"].isin([100, 500, 900, 1500])]
    verdict = claims.evaluate(coarse).set_index("id").loc["S3"]  # the paper's 1100
    assert "900" in verdict["where"] and "nearest" in verdict["where"]


def test_every_comparison_and_metric_has_a_tolerance():
    for row in claims.load_claims().itertuples():
        assert claims.tolerance(row.comparison, row.metric)["rule"]
        assert row.metric in claims.EVALUATORS


def test_outputs_are_written(paper_like, tmp_path: Path):
    table = claims.evaluate(paper_like)
    written = claims.write(table, tmp_path)
    records = json.loads((tmp_path / "claims.json").read_text())
    assert len(records) == len(table) and {"id", "paper_value", "ours", "verdict"} <= set(records[0])
    assert (tmp_path / "claims.md").read_text().count("\n") == len(table) + 2
    assert all(p.exists() for p in written)
    assert claims.summary_line(table).startswith(f"{len(table)} reproduced")


def test_levels_have_no_direction_and_peaks_outside_the_range_are_not_measured(paper_like):
    idle = paper_like.copy()
    idle.loc[(idle["workload"] == "dynamic") & (idle["server"] == "userver-1"), "cpu_unused_of_capacity"] = 5.0
    narrow = idle[idle["connections"] <= 300]
    table = claims.evaluate(narrow, {"testbed": {"delay_accounting": False}}).set_index("id")
    assert table.loc["D7", "verdict"] == claims.NOT_REPRODUCED  # 5 % idle is not "40 %, roughly"
    assert table.loc["S4", "verdict"] == claims.NOT_MEASURED
    assert "outside" in table.loc["S4", "reason"]
    assert "delay accounting" in table.loc["D8", "reason"]


def test_trend_falls_back_to_the_best_measured_userver(paper_like):
    no16 = paper_like[paper_like["server"] != "userver-16"]
    table = claims.peak_gap_by_share(analysis.curves(no16)).set_index("workload")
    assert table.loc["static", "userver"] == "userver-8"  # the sweep's best at 500 (92/s)
    assert table.loc["static", "gap_pct"] == pytest.approx((140 / 92 - 1) * 100)
    assert list(table["dynamic_share"]) == sorted(table["dynamic_share"])
