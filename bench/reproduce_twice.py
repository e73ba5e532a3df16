"""Two runs of the same profile, side by side: do their peaks agree within their uncertainty?

    .venv/bin/python bench/reproduce_twice.py RUN_A RUN_B

RUN_A and RUN_B are run directories (data/raw/<id> or data/reference/<id>), e.g. the committed
reference run and a new `make reproduce PROFILE=paper`. A use of `ukweb compare` (ukweb.compare,
whose docstring defines the tests): for every workload x server curve it prints each run's peak
(mean of the repetitions at the connection count with the highest mean) with the 95 % interval
the verdicts use, where the peak is, `within` (each peak inside the other's interval) and
`agree` (the difference's own Welch 95 % interval contains 0). `ukweb compare` adds every
point and every claim.

Exit 0 when every curve agrees at a family-wise 95 % (Bonferroni over the curves), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ukweb import analysis, compare


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    curves_a = analysis.curves(analysis.points_table(args.run_a))
    curves_b = analysis.curves(analysis.points_table(args.run_b))
    table = compare.peaks(curves_a, curves_b)
    print("\n".join(compare.curve_lines(table, ["workload", "server"])))
    print(compare.summary(table, "peaks"))
    apart = table[(table["in"] == "both") & table["apart"].fillna(False).astype(bool)]
    missing = table[table["in"] != "both"]
    if len(apart):
        print("apart: " + ", ".join(f"{r.workload}/{r.server}" for r in apart.itertuples()))
    return 1 if len(apart) or len(missing) else 0


if __name__ == "__main__":
    sys.exit(main())
