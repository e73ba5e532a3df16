"""No file-level call cycle in the C programs (issue 19 items 2 and 3): within each program, if
file A uses a function or variable defined in file B, B uses nothing defined in A, directly or
through other files. Read from the linker's view of the built objects (`nm`), so a call the
preprocessor hides is counted and a comment is not.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ukweb import paths

OBJ = paths.REPO / "build" / "obj"
# program -> its object directories (servers/common is linked by both servers; loadgen and the
# disk model build their own copies of the one common file each links) and the objects it does
# not link (another program's)
PROGRAMS = {
    "userver": (["userver", "common"], set()),
    "ktux": (["ktux", "common"], set()),
    "loadgen": (["loadgen"], set()),
    "diskmodel": (["emul"], {"cputhief"}),
}


@pytest.fixture(scope="module")
def objects() -> Path:
    subprocess.run(["make", "-s", "build"], cwd=paths.REPO, check=True, capture_output=True)
    return OBJ


def symbols(obj: Path) -> tuple[set[str], set[str]]:
    """(defined global symbols, undefined symbols) of an object file."""
    out = subprocess.run(["nm", "-P", str(obj)], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        name, kind = line.split()[:2]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    return defined - {"main"}, undefined


def file_graph(dirs: list[Path], skip: set[str]) -> dict[str, set[str]]:
    files = {f"{d.name}/{o.stem}": symbols(o) for d in dirs for o in sorted(d.glob("*.o"))
             if o.stem not in skip}
    owner = {s: f for f, (defined, _) in files.items() for s in defined}
    return {f: {owner[s] for s in undefined if s in owner and owner[s] != f}
            for f, (_, undefined) in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Files that reach each other (strongly connected components of more than one file)."""
    reach = {v: set() for v in g}
    for v in g:
        todo = list(g[v])
        while todo:
            w = todo.pop()
            if w not in reach[v]:
                reach[v].add(w)
                todo.extend(g.get(w, ()))
    comps = {frozenset({v} | {w for w in reach[v] if v in reach[w]}) for v in g}
    return sorted(sorted(c) for c in comps if len(c) > 1)


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_no_file_level_cycle(program: str, objects: Path):
    dirs, skip = PROGRAMS[program]
    g = file_graph([objects / d for d in dirs], skip)
    assert len(g) > 3, g
    assert cycles(g) == [], f"{program}: files that use each other"


def test_the_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
