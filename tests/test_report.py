"""ukweb.frontpage and ukweb.readme: what a reviewer reads first, without running notebooks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_analysis import make_run
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, claims, frontpage, readme

MANIFEST = {
    "git": {"commit": "cb411ca22d7b", "dirty": True},
    "host": {"hostname": "vm", "kernel": "6.18.44", "cpu_model": "Intel Xeon", "cpu_count": 2},
    "testbed": {"cpu_method": "thief", "cpu_share": 0.12, "disk_model": {"seek_ms": 12.0}},
    "params": {"profile": "paper", "warmup_s": 20, "duration_s": 30},
    "deviations": [{"step": "netns", "reason": "no network namespaces"}],
    "start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T11:30:00+00:00",
    "runs": [{"start": "2026-12-01T10:00:00+00:00", "end": "2026-12-01T11:30:00+00:00",
              "status": "done", "git": {"commit": "cb411ca22d7b"}}],
}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    points = analysis.points_table(make_run(tmp_path_factory.mktemp("r"), PAPER_LIKE, PAPER_LIKE_SYSTEM))
    return claims.evaluate(points)


def test_front_page_order_and_contents(table, tmp_path: Path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig2.png").write_bytes(b"\x89PNG fake")
    page = frontpage.page(table, MANIFEST, Path("data/raw/x"), tmp_path / "figures", "Report",
                          {"commit": "f00d", "dirty": False})
    marks = ["26</b> reproduced", "The gap in the peak throughput", "ktux over userver-16",
             "[30, 50] ((0, inf))", "Provenance", "cb411ca22d7b", "6.18.44", "Intel Xeon",
             "cpu_share", "disk_model.seek_ms", "no network namespaces", "2026-12-01T11:30:00",
             "Figures", "fig2.png", "The notebooks"]
    at = [page.find(m) for m in marks]
    assert -1 not in at, [m for m, i in zip(marks, at, strict=True) if i < 0]
    assert page.find("26</b> reproduced") < page.find("Provenance") < page.find("fig2.png")
    assert frontpage.COLOURS["reproduced"] in page


def test_claim_rows_are_coloured_by_verdict(table):
    mixed = table.copy()
    mixed.loc[mixed["id"] == "S2", "verdict"] = claims.INCONCLUSIVE
    html = frontpage.claims_table_html(mixed)
    s2 = html[html.index("<b>S2</b>"):html.index("<b>S3</b>")]
    assert frontpage.COLOURS[claims.INCONCLUSIVE] in s2
    assert "n = 1: 95 % interval over 2 per-second values" in s2


def test_readme_section_round_trip(table, tmp_path: Path):
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{readme.BEGIN}\nold\n{readme.END}\nrest\n")
    readme.update(table, path)
    assert readme.current(path) == readme.section(table)
    assert path.read_text().startswith("intro\n") and path.read_text().endswith("rest\n")
    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("no markers here\n")
    with pytest.raises(ValueError, match="section"):
        readme.update(table, unmarked)
