"""ukweb.figures: error bars only with repetitions, n on the figure, hollow markers for points
that were not steady, and the paper's numbers marked at their connection counts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from test_analysis import make_run
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, claims, figures


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> pd.DataFrame:
    return analysis.points_table(make_run(tmp_path_factory.mktemp("figs"), PAPER_LIKE, PAPER_LIKE_SYSTEM))


def _texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts + fig.axes[0].texts)


def test_no_error_bars_and_n_said_with_one_repetition(points):
    fig = figures.throughput_figure(analysis.curves(points), "static", "Figure 2")
    ax = fig.axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert "n = 1 per point" in _texts(fig)


def test_error_bars_with_repetitions(tmp_path: Path):
    run = make_run(tmp_path, {("static", "ktux"): {100: [50.0, 60.0], 300: [80.0, 90.0]}})
    fig = figures.throughput_figure(analysis.curves(analysis.points_table(run)), "static", "Figure 2")
    assert [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert "n = 2 per point; error bars: 95 % CI" in _texts(fig)


def test_unsteady_points_are_hollow_and_footnoted(points):
    marked = points.assign(steady=True)
    marked.loc[(marked["workload"] == "static") & (marked["connections"] >= 1300), "steady"] = False
    fig = figures.throughput_figure(analysis.curves(marked), "static", "Figure 2")
    hollow = [line for line in fig.axes[0].lines if line.get_markerfacecolor() == "white"]
    assert sum(len(line.get_xdata()) for line in hollow) == 6  # 3 servers x 1300, 1500
    assert "Hollow markers: 6 point(s) not steady" in _texts(fig)
    plain = figures.throughput_figure(analysis.curves(points), "static", "Figure 2")
    assert "Hollow" not in _texts(plain)  # no steady column, no claim about steadiness


def test_the_papers_numbers_are_marked(points):
    table = claims.evaluate(points)
    at, lines = figures.paper_marks(table, "fig2")
    assert at == {300: ["S1"], 700: ["S2", "S4"], 1100: ["S3"]}
    assert any(line.startswith("S3 (ktux over userver-16, gap_at_pct): paper 61") for line in lines)
    fig = figures.throughput_figure(analysis.curves(points), "static", "Figure 2", None, (at, lines))
    xs = sorted(line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == ":")
    assert xs == [300, 700, 1100]
    assert "paper: S2, S4" in _texts(fig) and "-> reproduced" in _texts(fig)


def test_write_all_marks_without_a_claims_table_and_survives_bad_rules(points, tmp_path, monkeypatch):
    written = figures.write_all(points, {}, tmp_path / "a")
    assert {p.name for p in written} >= {f"fig{i}.png" for i in range(2, 7)}
    bad = tmp_path / "rules.csv"
    bad.write_text("id,metric\n")
    monkeypatch.setenv("UKWEB_RULES", str(bad))
    assert figures.write_all(points, {}, tmp_path / "b")  # drawn, without the paper's numbers
