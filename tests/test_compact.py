"""`ukweb compact`: request logs as Parquet read back as the CSV did; the readers take both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_analysis import make_run

from ukweb import analysis, compact, logs


def test_compacted_run_analyses_exactly_as_before(tmp_path: Path) -> None:
    run = make_run(tmp_path, {("static", "ktux"): {100: [300.0, 310.0], 300: [900.0]}})
    before = analysis.points_table(run)
    csv = logs.read_requests(analysis.point_dirs(run)[0])
    done = compact.compact(run)
    assert done["points"] == 3 and done["parquet_bytes"] > 0
    point = analysis.point_dirs(run)[0]
    assert (point / "requests.parquet").is_file() and not (point / "requests.csv.gz").exists()
    pq = logs.read_requests(point)
    assert pq.equals(csv) and list(pq.dtypes) == list(csv.dtypes)
    after = analysis.points_table(run)
    assert after.drop(columns=["path"]).equals(before.drop(columns=["path"]))
    assert compact.compact(run)["points"] == 0  # nothing left to do: reruns are harmless


def test_compact_cli_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "compact", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a run directory" in res.stderr
