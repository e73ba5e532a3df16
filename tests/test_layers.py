"""The layers of lib/ukweb (issue 19 item 5): each module belongs to one layer and imports only
its own layer and those below it, and no modules import each other in a cycle, counting imports
inside functions (a late import is still a dependency). The offline layers, the paper and the
results, import nothing that needs root, servers or a testbed, so a run can be analysed and
reported anywhere.

The rule is read from the sources (ast), not from what happens to be imported at run time, and a
test shows it failing on a deliberate violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ukweb import paths

PACKAGE = paths.REPO / "lib" / "ukweb"

# Lowest first. A module may import modules of its own layer and of the layers above it here.
LAYERS = {
    "base": {"__init__", "paths", "cpulist", "progress"},
    "paper and profile": {"workload", "specweb99", "fileset", "paper", "sweep_params", "plan",
                          "budget", "deviations", "points_columns", "batches"},
    "results": {"logs", "completions", "steady", "analysis", "claim_metrics", "variance",
                "mechanisms", "manifest", "compact", "compare", "export", "pointview",
                "runstatus", "rules", "claims", "figures", "frontpage", "readme", "report"},
    "testbed": {"changes", "knobs", "cgroups", "shield", "startup", "cpuemul", "diskmodel",
                "leftovers", "netns", "sampler", "servers", "loadgen", "prewarm", "statuspoll",
                "machine", "testbed", "regime"},
    "runs": {"point", "runs", "hosts", "remote", "multihost", "agent", "multirun", "calibrate",
             "ablation", "reproduce"},
    "commands": {"cli"},
}
OFFLINE = ("base", "paper and profile", "results")


def imports(source: str, modules: set[str]) -> dict[str, int]:
    """The package's modules a module's source imports (anywhere in it) -> first line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ukweb":
                names = [a.name for a in node.names]
            elif node.module.startswith("ukweb."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("ukweb.")]
        for name in names:
            if name in modules:
                found.setdefault(name, node.lineno)
    return found


def graph(package: Path) -> dict[str, dict[str, int]]:
    modules = {p.stem for p in package.glob("*.py")}
    return {p.stem: imports(p.read_text(), modules) for p in sorted(package.glob("*.py"))}


def rank() -> dict[str, int]:
    return {m: i for i, layer in enumerate(LAYERS.values()) for m in layer}


def upward(g: dict[str, dict[str, int]]) -> list[str]:
    """Every import of a module from a higher layer, as 'a (layer) imports b (layer), line n'."""
    r, names = rank(), list(LAYERS)
    return [f"{a} ({names[r[a]]}) imports {b} ({names[r[b]]}), line {line}"
            for a, deps in g.items() for b, line in deps.items() if r[b] > r[a]]


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_every_module_is_in_exactly_one_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    placed = [m for layer in LAYERS.values() for m in layer]
    assert len(placed) == len(set(placed)), "a module in two layers"
    assert modules == set(placed), (f"not in a layer: {sorted(modules - set(placed))}; "
                                    f"no such module: {sorted(set(placed) - modules)}")


def test_no_module_imports_a_higher_layer():
    assert upward(graph(PACKAGE)) == []


def test_no_import_cycle():
    assert cycles(graph(PACKAGE)) == []


def test_the_offline_layers_need_no_testbed_at_run_time():
    """What `import ukweb.report` (and every offline module) loads: none of the testbed or
    runs layers, in a fresh interpreter."""
    import subprocess
    import sys

    offline = sorted(m for name in OFFLINE for m in LAYERS[name] if m != "__init__")
    higher = sorted(m for name in LAYERS if name not in OFFLINE for m in LAYERS[name])
    code = (f"import importlib, sys\nfor m in {offline!r}: importlib.import_module('ukweb.' + m)\n"
            f"print(sorted(m for m in {higher!r} if 'ukweb.' + m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize("module, forbidden", [("analysis", "testbed"), ("logs", "sampler"),
                                               ("claims", "runs")])
def test_the_rule_fails_on_a_deliberate_import(tmp_path: Path, module: str, forbidden: str):
    """A copy of the package in which an offline module imports the testbed (at the top, or
    late inside a function) is caught, naming both modules and the line."""
    for p in PACKAGE.glob("*.py"):
        (tmp_path / p.name).write_text(p.read_text())
    target = tmp_path / f"{module}.py"
    target.write_text(target.read_text() + f"\n\ndef _late():\n    from ukweb import {forbidden}\n"
                      f"    return {forbidden}\n")
    found = upward(graph(tmp_path))
    assert len(found) == 1 and found[0].startswith(f"{module} (") and f"imports {forbidden} (" \
        in found[0], found


def test_the_cycle_check_fails_on_a_deliberate_cycle(tmp_path: Path):
    for p in PACKAGE.glob("*.py"):
        (tmp_path / p.name).write_text(p.read_text())
    (tmp_path / "workload.py").write_text((tmp_path / "workload.py").read_text()
                                         + "\n\ndef _late():\n    from ukweb import fileset\n")
    assert cycles(graph(tmp_path)) == [["fileset", "workload"]]
