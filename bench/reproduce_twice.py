"""Two runs of the same profile, side by side: are their peaks within each other's CIs?

    .venv/bin/python bench/reproduce_twice.py RUN_A RUN_B

RUN_A and RUN_B are run directories (data/raw/<id> or data/reference/<id>), e.g. the committed
reference run and a new `make reproduce PROFILE=paper`. For every workload x server curve it
prints each run's peak (mean of the repetitions at the connection count with the highest mean)
with its 95 % t interval (over the repetitions; for n = 1 over the point's per-second
throughput, as the verdicts use), where the peak is, the difference, and whether each peak lies inside
the other's interval. Exit 0 when every peak does, 1 when one does not (it prints which).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ukweb import analysis


def peaks(run: Path) -> dict[tuple[str, str], tuple[float, float, int, int]]:
    """(workload, server) -> (peak replies/s, its 95 % half-width, connections, n)."""
    table = analysis.curves(analysis.points_table(run))
    out = {}
    for (workload, server), _ in table.groupby(["workload", "server"]):
        row = analysis.peak(table, workload, server)
        out[(workload, server)] = (float(row["throughput"]), float(row["half95"]), int(row.name), int(row["n"]))
    return out


def inside(value: float, centre: float, half: float) -> bool:
    return not math.isnan(half) and abs(value - centre) <= half


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    a, b = peaks(args.run_a), peaks(args.run_b)
    print(f"{'workload':8} {'server':11} {'A peak [95 %]':>24} {'B peak [95 %]':>24} {'B-A':>7}  within")
    apart = []
    for key in sorted(a.keys() & b.keys()):
        (pa, ha, ca, na), (pb, hb, cb, nb) = a[key], b[key]
        ok = inside(pb, pa, ha) and inside(pa, pb, hb)
        if not ok:
            apart.append(key)
        print(f"{key[0]:8} {key[1]:11} {pa:8.0f} ±{ha:5.0f} @{ca:<5} n{na} {pb:8.0f} ±{hb:5.0f} @{cb:<5} n{nb} "
              f"{100 * (pb / pa - 1):+6.1f}%  {'yes' if ok else 'NO'}")
    missing = sorted(a.keys() ^ b.keys())
    if missing:
        print(f"in one run only: {missing}")
    print(f"{len(a.keys() & b.keys()) - len(apart)} of {len(a.keys() & b.keys())} peaks within each other's "
          f"95 % intervals" + (f"; apart: {apart}" if apart else ""))
    return 1 if apart or missing else 0


if __name__ == "__main__":
    sys.exit(main())
