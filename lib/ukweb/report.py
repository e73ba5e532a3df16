"""`ukweb report DIR`: figures, claims and report.html from an existing run, without servers.

report.html opens with a front page (ukweb.frontpage: verdicts, the claim table, the run's
provenance, the figures), followed by the analysis notebooks (03-figures, 04-claims, 05-why)
executed with papermill on the run directory, so the HTML shows exactly the code that produced
every number; the executed notebooks are kept beside it for JupyterLab.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from html import escape as html_escape
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbconvert import HTMLExporter
from traitlets import CaselessStrEnum, default

from ukweb import analysis, claims, frontpage, manifest, paths, readme, rules

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

    @default("ip")
    def _private_socket_prefix(self) -> str:
        # jupyter_client's default prefix is "kernel-ipc" in the current directory: five
        # sockets in whatever directory `ukweb report` was started from. A private directory
        # instead, removed with the sockets.
        return os.path.join(tempfile.mkdtemp(prefix="ukweb-kernel-"), "ipc")

    def cleanup_ipc_files(self) -> None:
        super().cleanup_ipc_files()
        if os.path.basename(os.path.dirname(self.ip)).startswith("ukweb-kernel-"):
            shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)


def execute(name: str, out: Path, parameters: dict, notebooks: Path | None = None) -> Path:
    """Run notebooks/<name>.ipynb with papermill; the executed copy goes to out/<name>.ipynb."""
    source = (notebooks or paths.NOTEBOOKS) / f"{name}.ipynb"
    target = out / f"{name}.ipynb"
    out.mkdir(parents=True, exist_ok=True)
    log.info("running %s", source.name)
    declared = papermill.inspect_notebook(str(source))  # each notebook takes only what it declares
    parameters = {k: v for k, v in parameters.items() if k in declared}
    papermill.execute_notebook(str(source), str(target), parameters=parameters,
                               kernel_name=KERNEL, progress_bar=False, cwd=str(paths.REPO),
                               kernel_manager_class=IPCKernelManager)
    return target


def combine(executed: list[Path], title: str) -> nbformat.NotebookNode:
    """One notebook holding every executed notebook in order, each under its own heading.

    The notebooks' own parameters cells (the smoke profile's defaults) are left out: the
    values used are in the cell papermill injected after each, and on the front page."""
    book = nbformat.v4.new_notebook()
    book.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        book.cells.append(nbformat.v4.new_markdown_cell(f"---\n# Notebook {path.stem}"))
        cells = [c for c in nb.cells if "parameters" not in c.get("metadata", {}).get("tags", [])]
        describe_images(cells, path.stem)
        book.cells += cells
    return book


NO_ALT = "No description has been provided for this image"  # what nbconvert puts otherwise


def describe_images(cells: list, notebook: str) -> None:
    """Alternative text for every image a cell shows, in the output's metadata (alt, as
    Jupyter keeps it): the heading of the markdown above it, which says what the figure is.
    write_html carries it into the page (nbconvert's lab template drops it)."""
    heading = ""
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            lines = [x.strip("# ").strip() for x in cell.source.splitlines() if x.strip()]
            heading = lines[0] if lines else heading
            continue
        for output in cell.get("outputs", []):
            for kind in ("image/png", "image/jpeg", "image/svg+xml"):
                if kind in output.get("data", {}):
                    meta = output.setdefault("metadata", {}).setdefault(kind, {})
                    meta.setdefault("alt", f"Figure from notebook {notebook}"
                                    + (f": {heading}" if heading else f", cell {i + 1}"))


def image_alts(book: nbformat.NotebookNode) -> dict[str, str]:
    """base64 data of each image output -> its alternative text."""
    alts = {}
    for cell in book.cells:
        for output in cell.get("outputs", []):
            for kind, meta in output.get("metadata", {}).items():
                data = output.get("data", {}).get(kind)
                if isinstance(meta, dict) and meta.get("alt") and isinstance(data, str):
                    alts[data.replace("\n", "")] = meta["alt"]
    return alts


def with_alts(html: str, alts: dict[str, str]) -> str:
    """Put each image's own alternative text where nbconvert left NO_ALT or none."""
    def one(tag: re.Match) -> str:
        text = tag.group(0)
        src = re.search(r'src="data:[^;"]*;base64,([^"]*)"', text)
        alt = alts.get(src.group(1).replace("\n", "")) if src else None
        if not alt:
            return text
        text = re.sub(r'\salt="[^"]*"', "", text)
        return text.replace("<img", f'<img alt="{html_escape(alt)}"', 1)

    return re.sub(r"<img\b[^>]*>", one, html)


def offline(html: str) -> str:
    """The page without what it would fetch from the network: nbconvert's template loads
    require.js, MathJax and Mermaid from a CDN (an archived report must render on its own; the
    notebooks' outputs need neither)."""
    html = re.sub(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', "", html)
    html = re.sub(r'<link[^>]*\bhref="https?://[^"]*"[^>]*>', "", html)
    # Mermaid's loader (a module script importing from the CDN when a diagram is present).
    html = re.sub(r'<script type="module">(?:(?!</script>).)*?import\(\s*"https?://.*?</script>', "",
                  html, flags=re.S)
    # MathJax's configuration block calls a MathJax that is no longer loaded.
    return re.sub(r'<script type="text/x-mathjax-config">.*?</script>', "", html, flags=re.S)


def write_atomic(target: Path, text: str) -> Path:
    """Write beside the target, then rename: a failure leaves no half-written report."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_html(executed: list[Path], target: Path, title: str, front: str = "",
               fig_dir: Path | None = None) -> Path:
    """report.html: the front page, then the executed notebooks, figures embedded. A notebook
    image that is one of fig_dir's PNGs takes that figure's alternative text."""
    book = combine(executed, title)
    body, _ = HTMLExporter().from_notebook_node(book)
    alts = image_alts(book)
    for png in sorted(Path(fig_dir).glob("*.png")) if fig_dir else []:
        alts[base64.b64encode(png.read_bytes()).decode()] = frontpage.figure_alt(png.stem)
    body = with_alts(body, alts)
    if front:
        # After the opening <main> (or <body>) tag, so the front page is the first thing read.
        for tag in ("<main>", "<body"):
            at = body.find(tag)
            if at >= 0:
                at = body.index(">", at) + 1
                body = body[:at] + front + body[at:]
                break
    return write_atomic(target, offline(body))


def front_page(run: Path, out: Path, title: str) -> str:
    """The front page from what 04-claims and 03-figures wrote (claims.json, figures/)."""
    table = claims.load_written(out)
    return frontpage.page(table, analysis.read_manifest(run), run, out / "figures", title,
                          manifest.git_state())


def build(run: Path, out: Path | None = None, parameters: dict | None = None,
          earlier: list[Path] | None = None) -> Path:
    """Run the analysis notebooks on a run and write report.html; returns its path.

    earlier: notebooks already executed (01-testbed, 02-run under `ukweb reproduce`) to put
    first in the report.
    """
    run = Path(run).resolve()
    check_manifest(run)  # before out/ exists: a bad manifest leaves nothing behind
    out = (out or analysis.processed_dir(run)).resolve()
    values = {**(parameters or {}), "run_dir": str(run), "out_dir": str(out)}
    executed = list(earlier or [])
    executed += [execute(name, out / "notebooks", values) for name in ANALYSIS_NOTEBOOKS]
    title = f"Reproduction report: run {run.name}"
    return write_html(executed, out / "report.html", title, front_page(run, out, title), out / "figures")


class ManifestError(ValueError):
    """A run's manifest.json that cannot be read as a JSON object (one line, naming the file)."""


def check_manifest(run: Path) -> None:
    """Before anything is written: the run's manifest.json is missing (allowed: the report says
    'not recorded') or a JSON object; anything else is a ManifestError naming the file."""
    path = (Path(run) / "manifest.json").resolve()
    if not path.exists():
        return
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ManifestError(f"{path} is not valid JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise ManifestError(f"{path} holds a JSON {type(value).__name__}, not an object")


def use_rules(path: Path | None) -> None:
    """Check the rule table (RulesError, one line) and make the notebooks' kernels use it."""
    if path is not None:
        os.environ[rules.ENV] = str(Path(path).resolve())
    claims.load_rules()


def cli(argv: list[str]) -> int:
    """`ukweb report DIR [--out DIR] [--rules CSV] [--update-readme]`."""
    parser = argparse.ArgumentParser(prog="ukweb report",
                                     description="figures, claims and report.html from a run directory")
    parser.add_argument("run", type=Path, help="run directory, e.g. data/reference/<run-id>")
    parser.add_argument("--out", type=Path, help="output directory (default data/processed/<run-id>)")
    parser.add_argument("--rules", type=Path, help="rule table (default data/paper/rules.csv)")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite the README's claim table from this run (the reference run)")
    args = parser.parse_args(argv)
    try:
        analysis.require_run(args.run)
        check_manifest(args.run)
    except (FileNotFoundError, ManifestError) as exc:
        print(f"ukweb report: {exc}", file=sys.stderr)
        return 2
    try:
        use_rules(args.rules)
    except rules.RulesError as err:
        print(f"ukweb report: {err}", file=sys.stderr)
        return 2
    status = run_and_summarise("ukweb report", lambda: build(args.run, args.out))
    if status == 0 and args.update_readme:
        out = (args.out or analysis.processed_dir(args.run.resolve())).resolve()
        readme.update(claims.load_written(out))
        print(f"updated {readme.README}")
    return status


def run_and_summarise(prog: str, make: Callable[[], Path]) -> int:
    """The CLIs' common tail: make the report, then print the claims table and where it went.
    A failing notebook is one line on stderr and exit status 1."""
    try:
        html = make()
    except papermill.PapermillExecutionError as err:
        print(f"{prog}: notebook failed: {err.ename}: {err.evalue}", file=sys.stderr)
        return 1
    except ManifestError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    print_claims(html.parent)
    print(f"wrote {html}")
    return 0


def print_claims(out: Path) -> None:
    """The claims table on stdout, as the last thing a user sees."""
    table = claims.load_written(out)
    shown = table.assign(ours=table.apply(claims.ours_text, axis=1),
                         n=table["n"].map(lambda n: str(int(n)) if n else "-"))
    print(shown[["id", "servers", "paper_value", "ours", "n", "band", "verdict"]].to_string(index=False))
    print(claims.summary_line(table))
