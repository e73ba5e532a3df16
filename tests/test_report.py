"""ukweb.frontpage and ukweb.readme: what a reviewer reads first, without running notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from test_analysis import make_run
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, claims, frontpage, readme, report

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
    # verdicts, then figures, then the provenance, folded
    assert page.find("26</b> reproduced") < page.find("fig2.png") < page.find("Provenance")
    assert page.find("<details>") < page.find("Provenance") < page.find("cb411ca22d7b") < page.find("</details>")
    assert frontpage.COLOURS["reproduced"] in page
    assert "Shukla" in page and "Brecht" in page and "User-Space and Kernel-Space Web Servers" in page
    assert page.find("Shukla") < page.find("26</b> reproduced")


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


def test_the_interval_legend_names_only_the_methods_the_claims_used(table):
    legend = frontpage.interval_legend(table)
    used = set(table["uncertainty"])
    assert any("per-second values" in u for u in used)
    assert "per-second values" in legend and "pooled" not in legend
    pooled = table.copy()
    pooled.loc[pooled["id"] == "S6", "uncertainty"] = (
        "n = 1: 95 % interval from the repetitions of the other servers at this load (pooled, 4 dof)")
    legend = frontpage.interval_legend(pooled)
    line = re.search(r"<li>pooled:[^<]*</li>", legend).group(0)
    assert "(S6)" in line  # the claims each method was used for are named


def test_a_deviation_the_runs_own_load_averages_refute_is_not_shown_as_one(tmp_path: Path):
    quiet = {"step": "quiet_machine", "reason": "load average 10.44 at start: other processes share"
             " the machine (the paper stopped all non-essential services)"}
    burst = {**MANIFEST, "deviations": [quiet, MANIFEST["deviations"][0]],
             "host": {**MANIFEST["host"], "loadavg": [9.76, 4.11, 2.17]}}
    html = frontpage.provenance_html(burst, Path("r"))
    kept = html[html.index("Deviations from the paper"):html.index("refuted by the run")]
    assert "no network namespaces" in kept and "quiet_machine" not in kept
    assert "9.76 / 4.11 / 2.17" in html[html.index("refuted by the run"):]
    busy = {**burst, "host": {**MANIFEST["host"], "loadavg": [10.2, 9.9, 9.5]}}  # sustained: it stands
    html = frontpage.provenance_html(busy, Path("r"))
    assert "refuted" not in html and "quiet_machine" in html
    # the figures' footnotes follow the same rule
    from ukweb import figures
    assert not any("quiet_machine" in n for n in figures.deviation_notes(burst))
    assert any("quiet_machine" in n for n in figures.deviation_notes(busy))


def _png() -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    buf = io.BytesIO()
    Figure(figsize=(1, 1)).savefig(buf, format="png")
    return buf.getvalue()


def test_report_html_has_alt_text_on_every_figure_and_fetches_nothing(tmp_path: Path):
    import base64

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Figure 2: static workload"),
                nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
                    "display_data", data={"image/png": base64.b64encode(_png()).decode(),
                                          "text/plain": "<Figure>"})]),
                nbformat.v4.new_markdown_cell("$x^2$ and math")]
    executed = tmp_path / "03-figures.ipynb"
    nbformat.write(nb, executed)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig2.png").write_bytes(_png())
    front = frontpage.page(_empty_table(), MANIFEST, Path("r"), tmp_path / "figures", "T")
    html = report.write_html([executed], tmp_path / "report.html", "T", front).read_text()
    imgs = re.findall(r"<img\b[^>]*>", html)
    assert len(imgs) == 2
    alts = [re.search(r'alt="([^"]*)"', i).group(1) for i in imgs]
    assert "Figure 2" in alts[0] and "static" in alts[0]  # the front page's figure
    assert alts[1] == "Figure from notebook 03-figures: Figure 2: static workload"
    assert "No description" not in html
    # nothing fetched: no script, stylesheet or font from the network
    assert not re.search(r'<script[^>]*src="https?:', html)
    assert not re.search(r'<link[^>]*href="https?:', html)
    assert not re.search(r"""import\(\s*["']https?:""", html)
    assert not re.search(r"@import\s+url\(['\"]?https?:|url\(['\"]?https?://[^)]*\.(woff2?|ttf|otf)", html)
    assert not list(tmp_path.glob(".report.html.*"))  # no temporary file left


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=["id", "verdict", "uncertainty"])


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_bad_manifest_is_one_line_naming_the_file_and_nothing_is_written(tmp_path: Path, capsys, text):
    run = tmp_path / "run"
    (run / "points").mkdir(parents=True)
    (run / "manifest.json").write_text(text)
    out = tmp_path / "out"
    assert report.cli([str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str((run / "manifest.json").resolve()) in err[0]
    assert not out.exists()
    with pytest.raises(report.ManifestError, match="manifest.json"):
        report.build(run, out)
    assert not out.exists()
