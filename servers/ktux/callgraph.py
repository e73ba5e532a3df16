"""Which ktux source files call which, from the objects' defined (T) and undefined (U) symbols
(`nm`), and the cycles among them (Tarjan's strongly connected components); exit 1 on a cycle.

    python3 servers/ktux/callgraph.py build/obj/ktux
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def edges(objdir: Path) -> dict[str, list[str]]:
    defined: dict[str, str] = {}
    used: dict[str, set[str]] = {}
    objs = sorted(objdir.glob("*.o"))
    for o in objs:
        out = subprocess.run(["nm", str(o)], capture_output=True, text=True, check=True).stdout
        for parts in (line.split() for line in out.splitlines()):
            if len(parts) == 3 and parts[1] == "T":
                defined[parts[2]] = o.stem
            elif len(parts) == 2 and parts[0] == "U":
                used.setdefault(o.stem, set()).add(parts[1])
    return {o.stem: sorted({defined[u] for u in used.get(o.stem, ()) if u in defined} - {o.stem})
            for o in objs}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            comp.append(v)
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def main() -> int:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: callgraph.py OBJDIR (e.g. build/obj/ktux)", file=sys.stderr)
        return 2
    graph = edges(Path(sys.argv[1]))
    for f, to in graph.items():
        print(f"{f:10s} -> {' '.join(to)}")
    found = cycles(graph)
    print("cycles:", "; ".join(" <-> ".join(c) for c in found) or "none")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
