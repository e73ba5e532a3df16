"""The paper's facts come from one source each (issue 19 item 5): the peak gaps of the summary
figure from data/paper/claims.csv, the citation from CITATION.cff."""

from __future__ import annotations

import pytest

from ukweb import paper


def test_peak_gaps_are_the_figures_peak_gap_claims_turned_to_tux_over_userver():
    gaps = paper.peak_gaps()
    assert list(gaps["claim"]) == ["S2", "M1", "M3", "M6", "D1"]
    assert list(gaps["dynamic_share"]) == [0.0, 0.3, 0.5, 0.8, 1.0]
    assert list(gaps["text"]) == ["40", "13", "<4", "-2.9 (M6)", "-11.5 (D1)"]
    assert gaps["gap_pct"].iloc[4] == pytest.approx((1 / 1.13 - 1) * 100)


def test_peak_gaps_follow_claims_csv():
    claims = paper.load_claims()
    claims.loc[claims["id"] == "S2", "paper_value"] = "35"
    claims.loc[claims["id"] == "D1", "paper_value"] = "25"
    gaps = paper.peak_gaps(claims).set_index("claim")
    assert gaps.loc["S2", "gap_pct"] == 35.0
    assert gaps.loc["D1", "gap_pct"] == pytest.approx(-20.0)


def test_citation_is_cffs_first_reference():
    text = paper.citation()
    assert text.startswith("Amol Shukla, Lily Li, Anand Subramanian, Paul A. S. Ward, Tim Brecht.")
    assert "<i>Evaluating the Performance of User-Space and Kernel-Space Web Servers</i>" in text
    assert "CASCON" in text and text.endswith("2004.")
