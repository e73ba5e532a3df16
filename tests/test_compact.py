"""`ukweb compact`: request logs as Parquet read back as the CSV did; the readers take both."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
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


def test_measured_only_keeps_every_row_the_analysis_reads(tmp_path: Path) -> None:
    run = make_run(tmp_path, {("static", "ktux"): {100: [300.0], 300: [900.0]}})
    point = analysis.point_dirs(run)[0]
    with gzip.open(point / "requests.csv.gz", "rt") as f:
        header, *rows = f.read().splitlines()
    warm = [f"{t},{t + 2000},0,static,1,0,1,200,{b},{ok},{err},warmup"  # beside make_run's 5 ok
            for t, b, ok, err in ((100, 500, 1, ""), (400_000, 500, 1, ""), (900_000, 0, 0, "timeout"),
                                  (1_200_000, 700, 1, ""))]
    with gzip.open(point / "requests.csv.gz", "wt") as f:
        f.write("\n".join([header, *warm, *rows]) + "\n")
    post = "<html>a post log</html>\n" * 100
    (point / "postlog.txt").write_text(post)
    before = analysis.points_table(run)
    measured = logs.read_requests(point).query("phase == 'measure'").reset_index(drop=True)
    done = compact.compact(run, measured_only=True)
    assert done["points"] == 2
    assert logs.read_requests(point).equals(measured)
    after = analysis.points_table(run)
    assert after.drop(columns=["path"]).equals(before.drop(columns=["path"]))
    warmup = pd.read_csv(point / compact.WARMUP_FILE)
    assert warmup.to_dict("list") == {"second": [0, 1], "requests": [5 + 3, 1], "ok": [5 + 2, 1],
                                      "ok_bytes": [5 * 1000 + 1000, 700]}
    assert not (point / "postlog.txt").exists()
    assert gzip.decompress((point / "postlog.txt.gz").read_bytes()).decode() == post
    record = json.loads((run / "manifest.json").read_text())["compacted"]
    assert record[-1]["measured_only"] is True and record[-1]["points"] == 2


def test_compact_cli_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "compact", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a run directory" in res.stderr
