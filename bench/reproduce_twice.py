"""Two runs of the same profile, side by side: do their peaks agree within their uncertainty?

    .venv/bin/python bench/reproduce_twice.py RUN_A RUN_B

RUN_A and RUN_B are run directories (data/raw/<id> or data/reference/<id>), e.g. the committed
reference run and a new `make reproduce PROFILE=paper`. For every workload x server curve it
prints each run's peak (mean of the repetitions at the connection count with the highest mean)
with the 95 % interval the verdicts use (ukweb.analysis.curves: over repetitions; for a single
point pooled from the repeated points beside it, or per-second), where the peak is, and two
tests:

- `within`: each peak lies inside the other's interval (the literal reading; even a perfectly
  repeatable package fails it often: a second mean falls inside the first's 95 % interval with
  probability ~0.83 for normal errors, so 20 curves all pass both ways about 1 time in 100);
- `agree`: the difference's own 95 % interval (Welch: sqrt(se_A^2 + se_B^2),
  Welch-Satterthwaite dof) contains 0 -- the test of "the same command gives the same peak".

Exit 0 when every curve agrees at a family-wise 95 % (Bonferroni over the curves), 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scipy import stats

from ukweb import analysis

CONFIDENCE = 0.95


def peaks(run: Path) -> dict[tuple[str, str], dict]:
    """(workload, server) -> the peak row: throughput, half95, se, dof, n, basis, connections."""
    table = analysis.curves(analysis.points_table(run))
    out = {}
    for (workload, server), _ in table.groupby(["workload", "server"]):
        row = analysis.peak(table, workload, server)
        out[(workload, server)] = {"value": float(row["throughput"]), "half": float(row["half95"]),
                                   "se": float(row["se"]), "dof": int(row["dof"]), "n": int(row["n"]),
                                   "basis": str(row["basis"]), "at": int(row.name)}
    return out


def inside(value: float, centre: float, half: float) -> bool:
    return not math.isnan(half) and abs(value - centre) <= half


def difference_half(a: dict, b: dict, confidence: float) -> float:
    """Half-width of the Welch interval of B - A at the given confidence (NaN without spread)."""
    if math.isnan(a["se"]) or math.isnan(b["se"]) or not a["dof"] or not b["dof"]:
        return math.nan
    var = a["se"] ** 2 + b["se"] ** 2
    dof = var ** 2 / (a["se"] ** 4 / a["dof"] + b["se"] ** 4 / b["dof"])
    return float(stats.t.ppf((1 + confidence) / 2, dof)) * math.sqrt(var)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    a, b = peaks(args.run_a), peaks(args.run_b)
    common = sorted(a.keys() & b.keys())
    family = 1 - (1 - CONFIDENCE) / max(len(common), 1)
    print(f"{'workload':8} {'server':11} {'A peak ±95 %':>22} {'B peak ±95 %':>22} {'B-A':>7} "
          f"{'±95 %':>7}  within agree  basis")
    within = agree = 0
    apart = []
    for key in common:
        pa, pb = a[key], b[key]
        diff = pb["value"] - pa["value"]
        half = difference_half(pa, pb, CONFIDENCE)
        w = inside(pb["value"], pa["value"], pa["half"]) and inside(pa["value"], pb["value"], pb["half"])
        g = inside(diff, 0.0, half)
        within += w
        agree += g
        if not inside(diff, 0.0, difference_half(pa, pb, family)):
            apart.append(key)
        print(f"{key[0]:8} {key[1]:11} {pa['value']:6.0f} ±{pa['half']:5.0f} @{pa['at']:<5}n{pa['n']} "
              f"{pb['value']:6.0f} ±{pb['half']:5.0f} @{pb['at']:<5}n{pb['n']} "
              f"{100 * diff / pa['value']:+6.1f}% {100 * half / pa['value']:6.1f}%  "
              f"{'yes' if w else 'no':6} {'yes' if g else 'NO':5}  {pa['basis']}")
    missing = sorted(a.keys() ^ b.keys())
    if missing:
        print(f"in one run only: {missing}")
    print(f"{within} of {len(common)} peaks inside each other's 95 % intervals; {agree} of "
          f"{len(common)} differences within their own 95 % interval (chance alone: "
          f"~{(1 - CONFIDENCE) * len(common):.0f} outside); family-wise ({100 * family:.2f} % each): "
          + (f"apart {apart}" if apart else "all agree"))
    return 1 if apart or missing else 0


if __name__ == "__main__":
    sys.exit(main())
