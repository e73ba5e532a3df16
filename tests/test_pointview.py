"""ukweb.pointview and notebooks/06-point on a point of the reference run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import papermill

from ukweb import analysis, paths, pointview, report

RUN = "data/reference/paper"
POINT = "static/ktux/c900/r1"


def test_a_points_tables_agree_with_the_analysis():
    view = pointview.load(RUN, POINT)
    row = analysis.point_row(paths.REPO / RUN / "points" / POINT)
    ps = pointview.per_second(view)
    measured = ps[ps["phase"] == "measured"]
    assert measured["ok_per_s"].sum() == row["ok"]
    assert np.allclose(np.sort(measured["ok_per_s"].to_numpy()), np.sort(view.window.rates()))
    assert (ps["phase"] == "warm-up").sum() >= view.summary["warmup_s"] - 1
    lat = pointview.latency(view).set_index("type")
    assert lat["replies"].sum() == len(view.window.ok)
    assert lat.loc["static", "p50_ms"] == np.float64(row["p50_ms_static"])
    tl = pointview.timeline(view)
    assert set(tl["phase"]) == {"warm-up", "measured"} and len(tl) == len(view.system)
    diff = pointview.status_diff(view).set_index("counter")["diff"]
    assert diff["accepts"] == row["accepts"]


def test_a_missing_point_is_named_with_its_absolute_path():
    try:
        pointview.load(RUN, "static/ktux/c901/r1")
    except FileNotFoundError as exc:
        assert str(paths.REPO / RUN / "points/static/ktux/c901/r1") in str(exc)
    else:
        raise AssertionError("no error for a point that does not exist")


def test_06_point_runs_as_lab_runs_it(tmp_path: Path):
    """Kernel in notebooks/ (as JupyterLab starts it), relative run_dir, two points side by side."""
    out = tmp_path / "06-point.ipynb"
    papermill.execute_notebook(str(paths.NOTEBOOKS / "06-point.ipynb"), str(out),
                               parameters={"point_b": "static/userver-16/c900/r1"},
                               kernel_name=report.KERNEL, progress_bar=False, cwd=str(paths.NOTEBOOKS),
                               kernel_manager_class=report.IPCKernelManager)
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    assert any(POINT in str(o.get("data", {}).get("text/html", "")) for o in outputs)
