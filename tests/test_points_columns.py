"""The data dictionary of points.parquet covers every column, in docs/points.md and as
Parquet field metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from test_analysis import make_run
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, paths, points_columns


def test_docs_points_md_is_generated_from_the_dictionary():
    assert (paths.REPO / "docs" / "points.md").read_text() == points_columns.markdown(), (
        "docs/points.md is stale: python -m ukweb.points_columns > docs/points.md")


def test_every_column_of_the_reference_run_is_described(tmp_path: Path):
    # One workload of the reference run (hard-linked) is enough to produce every column kind.
    ref = paths.REFERENCE / "paper"
    run = tmp_path / "ref"
    (run / "points").mkdir(parents=True)
    (run / "manifest.json").symlink_to(ref / "manifest.json")
    (run / "points" / "mix80").symlink_to(ref / "points" / "mix80")
    target = analysis.write_points(run, tmp_path / "out")
    schema = pq.read_schema(target)
    lacking = [f.name for f in schema if not (f.metadata or {}).get(b"description")]
    assert lacking == [], f"columns missing from ukweb.points_columns: {lacking}"
    assert schema.field("cpu_idle").metadata[b"unit"] == b"%"
    assert schema.field("cache_fill_pct").metadata[b"unit"] == b"%"


def test_a_synthetic_run_is_described_and_reads_back(tmp_path: Path):
    run = make_run(tmp_path, PAPER_LIKE, PAPER_LIKE_SYSTEM)
    target = analysis.write_points(run, tmp_path / "out")
    schema = pq.read_schema(target)
    assert not [f.name for f in schema if not (f.metadata or {}).get(b"description")]
    assert analysis.points_table(run).equals(pd.read_parquet(target))
