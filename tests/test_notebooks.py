"""The notebooks: structure (one parameters cell, no outputs in git) and papermill runs.

03-05 run on the hand-made paper-like run (fast, every claim known), and all five run on a
REAL smoke run: `ukweb reproduce --profile smoke` (01 and 02 start the real servers and
loadgen; 03-05 analyse the run they wrote).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml
from test_analysis import make_run, write_point
from test_claims import PAPER_LIKE, PAPER_LIKE_SYSTEM

from ukweb import analysis, claims, figures, paths, readme, report, reproduce, rules
from ukweb.sweep_params import SweepParams

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
PROFILE_KEYS = set(SweepParams.__dataclass_fields__) - {"extra"}


def _parameters_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_the_six_notebooks_exist():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01-testbed", "02-run", "03-figures", "04-claims", "05-why", "06-point"]


def _declared(cell) -> set[str]:
    return {node.target.id if isinstance(node, ast.AnnAssign) else t.id
            for node in ast.parse(cell.source).body if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets)
            if isinstance(t, ast.Name)}


def _used(nb: nbformat.NotebookNode) -> set[str]:
    """Names the notebook's other code cells read; a cell that hands its globals to
    reproduce.params_from uses every profile key."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code"
                     and "parameters" not in c.get("metadata", {}).get("tags", []))
    names = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    return names | (PROFILE_KEYS if "params_from(globals())" in code else set())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_declaring_only_what_the_notebook_uses_typed_and_described(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name} has {len(cells)} cells tagged 'parameters'"
    declared = _declared(cells[0])
    unused = declared - _used(nb)
    assert not unused, f"{path.name} declares parameters it does not use: {sorted(unused)}"
    # What `papermill --help-notebook` shows: every parameter with its type and a description.
    seen = papermill.inspect_notebook(str(path))
    assert set(seen) == declared, f"papermill cannot parse {sorted(declared ^ set(seen))}"
    vague = [n for n, p in seen.items() if p["inferred_type_name"] == "None" or not p["help"]]
    assert not vague, f"{path.name}: parameters without a type or a description: {vague}"


def test_the_sweep_notebook_declares_every_profile_key():
    # 02-run hands its globals to SweepParams: a key it left out would take the dataclass's
    # default (60 s warm-ups, the machine's calibration), not the smoke profile's.
    nb = nbformat.read(paths.NOTEBOOKS / "02-run.ipynb", as_version=4)
    missing = PROFILE_KEYS - _declared(_parameters_cells(nb)[0])
    assert not missing, f"02-run parameters cell lacks {sorted(missing)}"


def test_the_default_run_is_the_newest_raw_run_else_the_reference(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(paths, "RAW", tmp_path / "raw")
    assert paths.run_dir() == paths.REFERENCE_RUN  # a fresh clone: no raw run
    for i, name in enumerate(["quick-b", "quick-a"]):  # written in this order: a is the newer
        (tmp_path / "raw" / name / "points").mkdir(parents=True)
        (tmp_path / "raw" / name / "manifest.json").write_text("{}")
        os.utime(tmp_path / "raw" / name / "manifest.json", (1e9 + i, 1e9 + i))
    assert paths.run_dir() == tmp_path / "raw" / "quick-a"
    # relative paths are read from the repository root, whatever the current directory
    monkeypatch.chdir(paths.NOTEBOOKS)
    assert paths.run_dir("data/reference/paper") == paths.REFERENCE_RUN
    with pytest.raises(FileNotFoundError, match=f"{paths.REPO}/data/nosuch does not exist"):
        paths.run_dir("data/nosuch")
    with pytest.raises(FileNotFoundError, match=f"{paths.DATA} is not a run directory .no points/"):
        paths.run_dir("data")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"


def test_the_smoke_profile_gives_every_parameter_a_declared_name():
    raw = yaml.safe_load((paths.PARAMS / "smoke.yaml").read_text())
    assert set(raw) <= PROFILE_KEYS


def test_report_runs_the_analysis_notebooks_on_a_run(tmp_path: Path):
    run = make_run(tmp_path, PAPER_LIKE, PAPER_LIKE_SYSTEM)
    out = tmp_path / "processed"
    html = report.build(run, out)
    assert html.stat().st_size > 10_000 and "fig2.png" in html.read_text()
    for name in report.ANALYSIS_NOTEBOOKS:
        executed = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        assert not [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    verdicts = {c["id"]: c["verdict"] for c in json.loads((out / "claims.json").read_text())}
    assert set(verdicts.values()) == {"reproduced"}
    assert {p.name for p in (out / "figures").glob("*.png")} >= {f"fig{i}.png" for i in range(2, 7)}
    # The front page comes first: verdict counts, the claim table, provenance, then notebooks.
    page = html.read_text()
    order = [page.find(s) for s in ("26</b> reproduced", "The gap in the peak throughput",
                                    "Provenance", "Notebook 03-figures")]
    assert -1 not in order and order == sorted(order), order
    assert "Parameters: papermill -f params" not in page  # the notebooks' smoke defaults are left out


def test_report_kernels_keep_their_sockets_out_of_the_repository(tmp_path: Path):
    # The kernel runs with the repository as its directory; jupyter_client's default would put
    # its five IPC sockets there (kernel-ipc-1..5) while it runs.
    probe = nbformat.v4.new_notebook()
    probe.cells.append(nbformat.v4.new_code_cell(
        "import glob, json, os\n"
        "seen = {'repo': glob.glob(os.path.join(os.getcwd(), 'kernel-ipc-*')),\n"
        "        'private': glob.glob('/tmp/ukweb-kernel-*/ipc-*')}\n"
        f"open({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps(seen))"))
    (tmp_path / "nb").mkdir()
    nbformat.write(probe, tmp_path / "nb" / "probe.ipynb")
    report.execute("probe", tmp_path / "out", {}, notebooks=tmp_path / "nb")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["repo"] == [] and seen["private"], seen
    assert not [p for p in seen["private"] if os.path.exists(p)], "sockets left after the kernel stopped"


def test_report_cli_rejects_a_directory_that_is_not_a_run(tmp_path: Path, capsys):
    assert report.cli([str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_report_cli_rejects_a_malformed_rule_table_in_one_line(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv(rules.ENV, raising=False)
    run = make_run(tmp_path, {("static", "ktux"): {100: [50.0]}})
    bad = tmp_path / "rules.csv"
    bad.write_text(rules.RULES_CSV.read_text().replace('"[30, 50]"', '"[30, 50"', 1))
    try:
        assert report.cli([str(run), "--rules", str(bad), "--out", str(tmp_path / "out")]) == 2
    finally:
        os.environ.pop(rules.ENV, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "S2" in err and "not an interval" in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_reproduce_cli_rejects_an_unknown_profile(capsys):
    assert reproduce.cli(["--profile", "no-such-profile"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "smoke" in err


def _smoke_missing() -> str | None:
    """What the real smoke run needs and this checkout lacks, or None."""
    for name in ("userver", "ktux", "loadgen"):
        try:
            paths.binary(name)
        except FileNotFoundError:
            return f"build/{name} is not built (make build)"
    for module in ("ukweb.logs", "ukweb.loadgen", "ukweb.runs"):
        try:
            __import__(module)
        except ImportError as err:
            return f"{module} cannot be imported: {err}"
    return None


@pytest.mark.slow
def test_reproduce_smoke_end_to_end_with_real_servers(capsys, caplog):
    """`make reproduce PROFILE=smoke`: 01-05 with the real servers and loadgen."""
    missing = _smoke_missing()
    if missing:
        pytest.skip(f"real smoke run impossible: {missing}")
    run_id = f"test-smoke-{os.getpid()}"
    run, out = paths.RAW / run_id, paths.PROCESSED / run_id
    try:
        assert reproduce.cli(["--profile", "smoke", "--run-id", run_id]) == 0, capsys.readouterr().err
        # each notebook is passed only the parameters it declares
        assert not [r.message for r in caplog.records if "unknown parameter" in r.getMessage()]
        points = sorted(run.glob("points/*/*/c*/r*"))
        assert len(points) == 8  # 2 workloads x 2 servers x 2 connection counts
        failed = [str(p) for p in points if not (p / "DONE").exists()]
        assert not failed, f"smoke points not DONE: {failed}"
        table = analysis.points_table(run)
        assert (table["status"] == analysis.DONE).all() and (table["ok"] > 0).all(), \
            table[["workload", "server", "connections", "status", "reason", "ok"]].to_string()
        # 06-point inspects one point interactively; the report runs the others
        assert {p.stem for p in (out / "notebooks").glob("*.ipynb")} == \
            set(reproduce.RUN_NOTEBOOKS + report.ANALYSIS_NOTEBOOKS)
        html = (out / "report.html").read_text()
        assert "02-run" in html and "fig2.png" in html and "Provenance" in html
        verdicts = claims.load_written(out)
        assert len(verdicts) == 26 and set(verdicts["verdict"]) <= set(claims.VERDICTS)
        counts = claims.counts(verdicts)
        assert sum(counts.values()) == 26
        assert counts[claims.REPRODUCED] >= 3  # F1-F3 need no run
        printed = capsys.readouterr().out.splitlines()
        assert printed[-2] == claims.summary_line(verdicts)  # the counts add up to 26 claims
        progress = (run / "progress.jsonl")
        if progress.exists():  # written by the runner (ukweb.runs)
            ends = [json.loads(line) for line in progress.read_text().splitlines() if '"end"' in line]
            assert len(ends) == 8 and all(e["status"] == "DONE" for e in ends)
    finally:
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def test_figures_use_the_papers_labels_and_show_deviations(tmp_path: Path):
    run = make_run(tmp_path, PAPER_LIKE, PAPER_LIKE_SYSTEM)
    points = analysis.points_table(run)
    curves = analysis.curves(points)
    assert figures.server_label("userver-1") == "userver-1-process"
    assert figures.server_label("userver-16") == "userver-16-processes"
    assert figures.server_label("ktux") == "ktux (TUX model)"
    # the process sweep's single points stay out of Fig. 2
    assert figures.figure_servers(curves, "static") == ["userver-1", "userver-16", "ktux"]
    notes = figures.deviation_notes({"params": {"profile": "quick", "warmup_s": 2, "duration_s": 4},
                                     "deviations": [{"step": "cpu_quota", "reason": "no quota"}]})
    assert notes[1] == "cpu_quota: no quota" and "2 s warm-up" in notes[0]
    fig = figures.throughput_figure(curves, "static", "Figure 2", notes)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "userver-1-process", "userver-16-processes", "ktux (TUX model)"]
    assert any("cpu_quota: no quota" in t.get_text() for t in fig.texts)
    written = figures.save(fig, tmp_path / "figs", "fig2")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in written)


def test_failed_points_are_named_under_their_figure(tmp_path: Path):
    run = make_run(tmp_path, {("static", "ktux"): {100: [50.0], 200: [60.0]}})
    write_point(run, "static", "ktux", 300, 0, 10.0, status="FAILED")
    written = figures.write_all(analysis.points_table(run), {}, tmp_path / "figs")
    assert (tmp_path / "figs" / "fig2.png") in written
    notes = figures.failed_notes(analysis.points_table(run), "static")
    assert notes == ["not measured: ktux c300 r0 (failed: server died: server exited with code 1)"]


def test_the_reference_run_regenerates_and_matches_the_readme(tmp_path: Path):
    """`make report RUN=data/reference/<run>` works without servers, and the README's claim
    table is exactly what the committed raw logs give today (generated, not stale)."""
    runs = [p for p in sorted(paths.REFERENCE.iterdir()) if (p / "points").is_dir()]
    assert len(runs) == 1, f"one committed reference run expected, found {[r.name for r in runs]}"
    run = runs[0]
    out = tmp_path / "processed"
    report.build(run, out)
    for name in report.ANALYSIS_NOTEBOOKS:
        executed = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        assert not [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    ours = claims.load_written(out)
    assert list(ours["id"]) == list(pd.read_csv(paths.PAPER / "claims.csv")["id"])
    assert readme.current() == readme.section(ours), (
        f"the README's claim table is stale: run `ukweb report {run} --update-readme`")


def test_the_analysis_notebooks_run_all_as_jupyterlab_runs_them(tmp_path: Path, monkeypatch):
    """Run All in JupyterLab on a fresh clone: the kernel in notebooks/, no parameter given.
    03-05 find the reference run (no run under data/raw) and give the claims `make report` gives."""
    monkeypatch.setenv("UKWEB_RAW", str(tmp_path / "raw"))  # read by ukweb.paths in the kernel
    monkeypatch.setenv("UKWEB_PROCESSED", str(tmp_path / "processed"))
    for name in report.ANALYSIS_NOTEBOOKS:
        papermill.execute_notebook(str(paths.NOTEBOOKS / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                   kernel_name=report.KERNEL, progress_bar=False,
                                   cwd=str(paths.NOTEBOOKS), kernel_manager_class=report.IPCKernelManager)
    out = tmp_path / "processed" / paths.REFERENCE_RUN.name
    assert {p.name for p in (out / "figures").glob("*.png")} >= {f"fig{i}.png" for i in range(2, 7)}
    assert readme.section(claims.load_written(out)) == readme.current()


def test_the_readme_section_shows_n_interval_and_band(paper_like_points):
    table = claims.evaluate(paper_like_points)
    text = readme.section(table)
    s2 = next(line for line in text.splitlines() if line.startswith("| S2 |"))
    cells = [c.strip() for c in s2.split("|")[1:-1]]
    assert cells[3] == "ktux over userver-16" and cells[4] == "40 %" and cells[5].startswith("40.0 [") and cells[6] == "1"
    assert cells[7] == "[30, 50] ((0, inf))" and cells[8] == "reproduced"
    assert text.rstrip().endswith(f"{claims.summary_line(table)}.")


@pytest.fixture
def paper_like_points(tmp_path: Path) -> pd.DataFrame:
    return analysis.points_table(make_run(tmp_path, PAPER_LIKE, PAPER_LIKE_SYSTEM))
