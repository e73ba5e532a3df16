"""`ukweb compact`: request logs as Parquet read back as the CSV did; the readers take both."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import make_run

from ukweb import analysis, compact, completions, logs


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
    # beside make_run's 5 ok warm-up rows: two more, a timeout, and one started in the warm-up
    # (window start 1 s) that completes in the measured window: kept as a row, counted there
    warm = [f"{t},{t + d},0,static,1,0,1,200,{b},{ok},{err},warmup"
            for t, d, b, ok, err in ((100, 2000, 500, 1, ""), (400_000, 2000, 500, 1, ""),
                                     (900_000, 2000, 0, 0, "timeout"), (950_000, 200_000, 700, 1, ""))]
    with gzip.open(point / "requests.csv.gz", "wt") as f:
        f.write("\n".join([header, *warm, *rows]) + "\n")
    post = "<html>a post log</html>\n" * 100
    (point / "postlog.txt").write_text(post)
    before = analysis.points_table(run)
    assert before.loc[0, "ok"] == 600 + 1 and before.loc[0, "started_in_warmup"] == 1
    kept = logs.read_requests(point).query("t_end_us >= 1_000_000").reset_index(drop=True)
    assert (kept["phase"] == "warmup").sum() == 1
    done = compact.compact(run, measured_only=True)
    assert done["points"] == 2
    assert logs.read_requests(point).equals(kept)
    after = analysis.points_table(run)
    assert after.drop(columns=["path"]).equals(before.drop(columns=["path"]))
    warmup = pd.read_csv(point / compact.WARMUP_FILE)
    assert warmup.to_dict("list") == {"second": [0], "requests": [5 + 3], "ok": [5 + 2],
                                      "ok_bytes": [5 * 1000 + 1000]}
    assert not (point / "postlog.txt").exists()
    assert gzip.decompress((point / "postlog.txt.gz").read_bytes()).decode() == post
    record = json.loads((run / "manifest.json").read_text())["compacted"]
    assert record[-1]["measured_only"] is True and record[-1]["points"] == 2
    assert record[-1]["kept"] == compact.KEPT


def test_phase_compacted_run_counts_straddlers_from_the_warmup_counts(tmp_path: Path) -> None:
    """A loadgen-1 run compacted by phase (as data/reference/paper): the replies started in the
    warm-up and completed in the window have no rows, only counts in warmup_per_second.csv at
    seconds >= warmup_s; they count in the window's throughput and per-second rates."""
    run = make_run(tmp_path, {("static", "ktux"): {100: [300.0]}})
    point = analysis.point_dirs(run)[0]
    before = analysis.points_table(run).iloc[0]
    measured = logs.read_requests(point).query("phase == 'measure'")
    with gzip.open(point / "requests.csv.gz", "wt") as f:  # the warm-up's rows gone
        f.write(measured.astype({"ok": int}).to_csv(index=False))
    (point / compact.WARMUP_FILE).write_text("second,requests,ok,ok_bytes\n0,5,5,5000\n"
                                             "1,40,39,39000\n2,2,2,2000\n")
    after = analysis.points_table(run).iloc[0]
    assert after["ok"] == before["ok"] + 41 and after["errors"] == before["errors"] + 1
    assert after["started_in_warmup"] == after["counted_from_warmup_counts"] == 42
    assert after["ops_per_s"] == pytest.approx((before["ok"] + 41) / 2)
    assert after["mbit_per_s"] == pytest.approx(before["mbit_per_s"] + 41_000 * 8 / 2 / 1e6)
    assert not after["inflight_logged"] and pd.isna(after["inflight_at_close"])
    window = completions.measured(point)
    assert window.rates().tolist() == [300 + 39, 300 + 2]


def test_loadgen2_point_with_inflight_rows_reads_and_compacts(tmp_path: Path) -> None:
    """A loadgen-2 log (window_us in its summary, rows in flight at the close) reads from CSV
    and from Parquet alike; in-flight rows count in no window and survive --measured-only."""
    run = make_run(tmp_path, {("static", "ktux"): {100: [300.0]}})
    point = analysis.point_dirs(run)[0]
    summary = json.loads((point / "summary.json").read_text())
    summary.update({"loadgen_version": 2, "count_rule": "completion",
                    "window_us": {"warmup": [0, 1_000_000], "measure": [1_000_000, 3_000_000]},
                    "inflight_at_close": 2})
    (point / "summary.json").write_text(json.dumps(summary))
    with gzip.open(point / "requests.csv.gz", "rt") as f:
        text = f.read()
    with gzip.open(point / "requests.csv.gz", "wt") as f:  # a straddler and two in flight
        f.write(text + "990000,1010000,2,static,1,0,1,200,1000,1,,warmup\n"
                "2900000,3000000,0,static,2,0,1,200,512,0,inflight,measure\n"
                "2950000,3000000,3,static,1,0,1,0,0,0,inflight,measure\n")
    before = analysis.points_table(run).iloc[0]
    assert before["ok"] == 600 + 1 and before["started_in_warmup"] == 1
    assert before["inflight_at_close"] == 2 and before["inflight_logged"]
    assert before["errors"] == 2  # make_run's two timeouts; in-flight rows are no errors
    window = completions.measured(point)
    assert window.rates().tolist() == [301, 300] and window.inflight == 2
    rows = logs.read_requests(point)
    compact.compact(run, measured_only=True)
    back = logs.read_requests(point)
    assert (back["error"] == "inflight").sum() == 2
    assert back.equals(rows[rows["t_end_us"] >= 1_000_000].reset_index(drop=True))
    after = analysis.points_table(run).iloc[0]
    assert after.drop(labels=["path"]).equals(before.drop(labels=["path"]))


def test_compact_cli_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "compact", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a run directory" in res.stderr
