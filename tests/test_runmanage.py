"""Run management: `ukweb status`, `ukweb compare` and `ukweb export` on the reference run and
on hand-made runs (tests/test_analysis.make_run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_analysis import make_run, write_point
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, compare, paths, runstatus

REFERENCE = paths.REFERENCE / "paper"


def _ukweb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ukweb", *map(str, args)], capture_output=True, text=True, cwd=paths.REPO)


def _linked_copy(src: Path, dst: Path) -> Path:
    """A copy of a run whose files are hard links (fast, 43 MB not copied); the manifest is a
    real copy, so rewriting it cannot touch the original. Unlink before changing any file."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    return dst


# ---------------------------------------------------------------- status


def _planned(run: Path) -> int:
    """The points the run's manifest plans (its params), counted by ukweb.plan."""
    return len(runstatus.status(run))


def test_status_of_the_reference_run_is_all_done():
    out = _ukweb("status", REFERENCE.relative_to(paths.REPO))
    assert out.returncode == 0, out.stderr
    n = len(list((REFERENCE / "points").glob("*/*/*/*/DONE")))
    assert n == _planned(REFERENCE) > 100
    assert out.stdout.splitlines()[0] == (f"{REFERENCE.relative_to(paths.REPO)}: {n} planned; {n} done, "
                                          "0 failed, 0 incomplete, 0 missing, 0 unplanned")


def test_status_names_failed_incomplete_missing_and_unplanned_points(tmp_path: Path):
    run = _linked_copy(REFERENCE, tmp_path / "paper-copy")
    points = run / "points"
    n = _planned(run)
    shutil.rmtree(points / "static/ktux/c300/r2")                          # never reached
    failed = points / "mix30/userver-8/c500/r1"
    (failed / "DONE").unlink()
    (failed / "FAILED").write_text(json.dumps({"reason": "server died", "detail": "exit code 1"}))
    (points / "mix50/ktux/c100/r3/DONE").unlink()                          # stopped inside it
    (points / "dynamic/ktux/c300/r1/summary.json").unlink()                # DONE, logs gone
    (points / "static/ktux/c200/r1").mkdir(parents=True)                   # not in the plan
    man = json.loads((run / "manifest.json").read_text())
    man["runs"][-1]["status"] = "interrupted"
    (run / "manifest.json").write_text(json.dumps(man))

    table = runstatus.status(run).set_index("point")
    assert runstatus.counts(table) == {"done": n - 4, "failed": 2, "incomplete": 1, "missing": 1,
                                       "unplanned": 1}
    assert table.loc["mix30/userver-8/c500/r1", "reason"] == "server died: exit code 1"
    assert table.loc["dynamic/ktux/c300/r1", "reason"] == "DONE but no summary.json"
    assert table.loc["mix50/ktux/c100/r3", "status"] == "incomplete"
    assert "interrupted" in table.loc["static/ktux/c300/r2", "reason"]
    assert table.loc["static/ktux/c200/r1", "status"] == "unplanned"
    out = _ukweb("status", run)
    assert out.returncode == 1
    assert "missing (1): not reached: the run was interrupted" in out.stdout
    assert "  static/ktux/c300/r2" in out.stdout and "server died: exit code 1" in out.stdout


def test_status_rejects_a_directory_that_is_not_a_run(tmp_path: Path):
    out = _ukweb("status", tmp_path)
    assert out.returncode == 2 and "not a run directory" in out.stderr


# ---------------------------------------------------------------- compare


def test_compare_the_reference_run_with_itself():
    out = _ukweb("compare", REFERENCE, REFERENCE)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "points: 104 of 104 inside each other's 95 % intervals" in out.stdout
    assert "peaks: 20 of 20" in out.stdout and "claims: 26 of 26 with the same verdict" in out.stdout
    assert out.stdout.rstrip().endswith("the runs agree")


def test_compare_finds_the_one_point_that_was_altered(tmp_path: Path):
    run_a = make_run(tmp_path / "a", PAPER_LIKE, PAPER_LIKE_SYSTEM)
    run_b = shutil.copytree(run_a, tmp_path / "b" / run_a.name)
    shutil.rmtree(run_b / "points/static/ktux/c700")
    write_point(run_b, "static", "ktux", 700, 0, 100.0)  # the peak: 140 replies/s in A
    result = compare.compare_runs(run_a, run_b)
    pts = result.points.set_index(compare.CURVE_KEYS)
    changed = pts[pts["diff"] != 0]
    assert list(changed.index) == [("static", "ktux", 700)]
    assert changed["diff_pct"].iloc[0] == pytest.approx(100 * (100 / 140 - 1), abs=0.5)
    assert changed["apart"].iloc[0] and not pts.drop(changed.index)["apart"].any()
    peak = result.peaks.set_index(["workload", "server"]).loc[("static", "ktux")]
    assert (peak["at_a"], peak["at_b"]) == (700, 500)  # the peak moved to 125 at 500
    # The claims that read static ktux's peak change (and the summary over all workloads);
    # those of other workloads do not.
    claims = result.claims.set_index("id")
    moved = claims[claims["diff"].fillna(0) != 0]
    assert "static" in set(moved["workload"]) and set(moved["workload"]) <= {"static", "all"}
    assert not claims[~claims["workload"].isin(["static", "all"])]["diff"].fillna(0).any()
    out = _ukweb("compare", run_a, run_b, "--out", tmp_path / "cmp")
    assert out.returncode == 1
    assert "static/ktux/c700" in out.stdout and "APART" in out.stdout
    assert "1 points apart family-wise" in out.stdout.splitlines()[-1]
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"points.csv", "peaks.csv", "claims.csv"}


def test_compare_lists_points_in_one_run_only(tmp_path: Path):
    run_a = make_run(tmp_path / "a", PAPER_LIKE, PAPER_LIKE_SYSTEM)
    run_b = shutil.copytree(run_a, tmp_path / "b" / run_a.name)
    shutil.rmtree(run_b / "points/mix80/userver-8/c1500")
    table = compare.compare_runs(run_a, run_b).points
    assert table[table["in"] != "both"][compare.CURVE_KEYS + ["in"]].values.tolist() == [
        ["mix80", "userver-8", 1500, "A only"]]
    assert analysis.points_table(run_b).shape[0] == analysis.points_table(run_a).shape[0] - 1


# ---------------------------------------------------------------- export


def test_export_unpack_report_gives_the_same_claims(tmp_path: Path):
    from ukweb import report

    run = make_run(tmp_path / "measured", PAPER_LIKE, PAPER_LIKE_SYSTEM)
    (run / "work").mkdir()
    (run / "work" / "post.log").write_text("scratch\n")
    out = tmp_path / "processed"
    report.build(run, out)
    archive = tmp_path / "run.tar.gz"
    done = _ukweb("export", run, "-o", archive, "--processed", out)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob("*.part"))
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", archive, "-C", unpacked], check=True)
    copy = unpacked / run.name
    assert (copy / "manifest.json").read_bytes() == (run / "manifest.json").read_bytes()
    assert not (copy / "work").exists()
    assert (copy / "processed" / "claims.json").is_file()
    env = copy / "environment"
    assert (env / "version.txt").read_text().startswith("ukweb ")
    assert any(line.startswith("pandas==") for line in (env / "requirements.txt").read_text().splitlines())
    assert (env / "rules.csv").read_bytes() == (paths.PAPER / "rules.csv").read_bytes()
    again = tmp_path / "again"
    report.build(copy, again)
    assert json.loads((again / "claims.json").read_text()) == json.loads((out / "claims.json").read_text())
    assert runstatus.counts(runstatus.status(copy))["done"] == len(analysis.point_dirs(run))
