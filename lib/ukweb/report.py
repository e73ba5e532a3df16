"""`ukweb report DIR`: figures, claims and report.html from an existing run, without servers.

The report is the analysis notebooks (03-figures, 04-claims, 05-why) executed with papermill on
the run directory, so the HTML shows exactly the code that produced every number; the executed
notebooks are kept beside it for JupyterLab.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from traitlets import CaselessStrEnum

from ukweb import analysis, claims, paths

log = logging.getLogger(__name__)

ANALYSIS_NOTEBOOKS = ("03-figures", "04-claims", "05-why")
KERNEL = "python3"


class IPCKernelManager(AsyncKernelManager):
    """A kernel reached over Unix sockets instead of loopback TCP ports.

    [I] With TCP, jupyter_client picks free ports and the kernel binds them a moment later; on
    a machine where servers and load generators churn through ephemeral ports (exactly what a
    sweep does) another process can take one first and the kernel dies at start-up.
    """

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)


def execute(name: str, out: Path, parameters: dict, notebooks: Path | None = None) -> Path:
    """Run notebooks/<name>.ipynb with papermill; the executed copy goes to out/<name>.ipynb."""
    source = (notebooks or paths.NOTEBOOKS) / f"{name}.ipynb"
    target = out / f"{name}.ipynb"
    out.mkdir(parents=True, exist_ok=True)
    log.info("running %s", source.name)
    papermill.execute_notebook(str(source), str(target), parameters=parameters,
                               kernel_name=KERNEL, progress_bar=False, cwd=str(paths.REPO),
                               kernel_manager_class=IPCKernelManager)
    return target


def combine(executed: list[Path], title: str) -> nbformat.NotebookNode:
    """One notebook holding every executed notebook in order, each under its own heading."""
    book = nbformat.v4.new_notebook()
    book.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        book.cells.append(nbformat.v4.new_markdown_cell(f"---\n# Notebook {path.stem}"))
        book.cells += nb.cells
    return book


def write_html(executed: list[Path], target: Path, title: str) -> Path:
    """report.html: the executed notebooks as one page, figures embedded."""
    body, _ = HTMLExporter().from_notebook_node(combine(executed, title))
    target.write_text(body)
    return target


def build(run: Path, out: Path | None = None, parameters: dict | None = None,
          earlier: list[Path] | None = None) -> Path:
    """Run the analysis notebooks on a run and write report.html; returns its path.

    earlier: notebooks already executed (01-testbed, 02-run under `ukweb reproduce`) to put
    first in the report.
    """
    run = Path(run).resolve()
    out = (out or analysis.processed_dir(run)).resolve()
    values = {**(parameters or {}), "run_dir": str(run), "out_dir": str(out)}
    executed = list(earlier or [])
    executed += [execute(name, out / "notebooks", values) for name in ANALYSIS_NOTEBOOKS]
    return write_html(executed, out / "report.html", f"Reproduction report: run {run.name}")


def cli(argv: list[str]) -> int:
    """`ukweb report DIR [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="ukweb report",
                                     description="figures, claims and report.html from a run directory")
    parser.add_argument("run", type=Path, help="run directory, e.g. data/reference/<run-id>")
    parser.add_argument("--out", type=Path, help="output directory (default data/processed/<run-id>)")
    args = parser.parse_args(argv)
    if not (args.run / "points").is_dir():
        print(f"ukweb report: {args.run} is not a run directory (no points/ inside)", file=sys.stderr)
        return 2
    return run_and_summarise("ukweb report", lambda: build(args.run, args.out))


def run_and_summarise(prog: str, make: Callable[[], Path]) -> int:
    """The CLIs' common tail: make the report, then print the claims table and where it went.
    A failing notebook is one line on stderr and exit status 1."""
    try:
        html = make()
    except papermill.PapermillExecutionError as err:
        print(f"{prog}: notebook failed: {err.ename}: {err.evalue}", file=sys.stderr)
        return 1
    print_claims(html.parent)
    print(f"wrote {html}")
    return 0


def print_claims(out: Path) -> None:
    """The claims table on stdout, as the last thing a user sees."""
    table = claims.load_written(out)
    print(table[["id", "workload", "metric", "paper_value", "ours", "verdict"]].to_string(
        index=False, float_format=lambda v: f"{v:.1f}"))
    print(claims.summary_line(table))
