"""The README's claim table, generated from a run's claims (the committed reference run).

`ukweb report data/reference/<run> --update-readme` rewrites the table between the markers;
tests/test_notebooks.py checks that the README holds exactly what the run gives today.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ukweb import claims, paths

README = paths.REPO / "README.md"
BEGIN, END = "<!-- claims:begin (generated: ukweb report RUN --update-readme) -->", "<!-- claims:end -->"
HEAD = ["claim", "figure", "what the paper says", "servers (a over b)", "paper", "reference run [95 %]",
        "n", "band (same direction)", "verdict", "where to see it"]


def _where(row: pd.Series) -> str:
    """Which figure or notebook shows the claim."""
    if row["metric"] == "fileset_gb":
        return "formula in `ukweb.workload`"
    if row["metric"] == "sweep_gap_past_pct":
        return f"`figures/process_sweep_{row['workload']}.png`, 05-why"
    if row["metric"] == "peak_gap_slope":
        return "`figures/peak_gap_by_dynamic_share.png`"
    if str(row["figure"]).startswith("fig"):
        return f"`figures/{row['figure']}.png`"
    return "05-why"


def _text(value: object, width: int = 0) -> str:
    text = "" if value is None else str(value)
    text = text if not width or len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|")


def section(table: pd.DataFrame) -> str:
    """The markdown table, one row per claim, from a claims table (claims.evaluate)."""
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for _, r in table.iterrows():
        band = r["band"] + (f" ({r['same']})" if r["same"] else "")
        n = "–" if str(r["uncertainty"]).startswith("exact") or not r["n"] else str(r["n"])
        cells = [r["id"], r["figure"], _text(r["paper_text"], 90), r["servers"],
                 claims.paper_text(r), claims.ours_text(r) or "–", n, band,
                 r["verdict"], _where(r)]
        lines.append("| " + " | ".join(_text(c) for c in cells) + " |")
    return "\n".join(lines) + "\n\n" + claims.summary_line(table) + ".\n"


def current(path: Path = README) -> str:
    """The generated part of the README as it stands ('' without markers)."""
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), path.read_text(), re.S)
    return m.group(1) if m else ""


def update(table: pd.DataFrame, path: Path = README) -> None:
    """Rewrite the generated part of the README; ValueError when the markers are missing."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {BEGIN} ... {END} section")
    path.write_text(text[: start + len(BEGIN)] + "\n" + section(table) + text[end:])
