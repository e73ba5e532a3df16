"""The paper's facts, from one source each: its citation (CITATION.cff), its claims
(data/paper/claims.csv) and what follows from them, its figures and the servers they show.

Everything here is read or derived, never measured; claims, figures and the front page import
it, so none of them keeps its own copy of a number from the paper.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from ukweb import paths, workload

CLAIMS_CSV = paths.PAPER / "claims.csv"
CITATION_CFF = paths.REPO / "CITATION.cff"

# figure name -> (workload, the paper's caption)
FIGURES = {
    "fig2": ("static", "100% Static Workload Performance"),
    "fig3": ("dynamic", "100% Dynamic Workload Performance"),
    "fig4": ("mix30", "Mixed Workload (30% dynamic-70% static) Performance"),
    "fig5": ("mix50", "Mixed Workload (50% dynamic-50% static) Performance"),
    "fig6": ("mix80", "Mixed Workload (80% dynamic-20% static) Performance"),
}
# The configurations each of the paper's figures shows (§5).
SERVERS = {"static": ["userver-1", "userver-16", "ktux"],
           "dynamic": ["userver-1", "userver-8", "ktux"],
           "mix30": ["userver-8", "ktux"], "mix50": ["userver-8", "ktux"],
           "mix80": ["userver-8", "ktux"]}
# The paper's best userver per workload (Figs. 2-6), the one its peak gaps are taken against.
USERVER = {"static": "userver-16", "dynamic": "userver-8", "mix30": "userver-8",
           "mix50": "userver-8", "mix80": "userver-8"}
PEAK_GAP_METRICS = ("peak_gap_pct", "abs_peak_gap_pct")


def load_claims(path: Path = CLAIMS_CSV) -> pd.DataFrame:
    """The paper's claims, one row each, every column as text."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def peak_gaps(claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's peak gap of TUX over its userver by dynamic share (§5's conclusion): each
    figure's first peak-gap claim (S2, D1, M1, M3, M6), turned to TUX over the userver where
    the claim reads the other way (D1's userver-8 13 % above TUX is 1/1.13 - 1 = -11.5 %).
    Columns dynamic_share, gap_pct, text (as the paper words it, e.g. "<4"), claim."""
    claims = load_claims() if claims is None else claims
    rows = []
    for figure, (work, _) in FIGURES.items():
        mine = claims[(claims["figure"] == figure) & claims["metric"].isin(PEAK_GAP_METRICS)]
        if mine.empty:
            continue
        c = mine.iloc[0]
        value = float(c["paper_value"])
        gap = value if c["a"] == "tux" else (1 / (1 + value / 100) - 1) * 100
        text = (f"<{c['paper_value']}" if c["comparison"] == "le"
                else f"{gap:.1f}".rstrip("0").rstrip("."))
        rows.append({"dynamic_share": workload.dynamic_share(work), "gap_pct": gap,
                     "text": text + ("" if c["a"] == "tux" else f" ({c['id']})"), "claim": c["id"]})
    return pd.DataFrame(rows, columns=["dynamic_share", "gap_pct", "text", "claim"]).sort_values(
        "dynamic_share", ignore_index=True)


@cache
def citation() -> str:
    """The paper as CITATION.cff's first reference names it, as HTML ("Authors. <i>Title</i>.
    Venue, year.")."""
    ref = yaml.safe_load(CITATION_CFF.read_text())["references"][0]
    authors = ", ".join(f"{a['given-names']} {a['family-names']}" for a in ref["authors"])
    return (f"{html.escape(authors)}. <i>{html.escape(ref['title'])}</i>. "
            f"{html.escape(ref['collection-title'])}, {ref['year']}.")
