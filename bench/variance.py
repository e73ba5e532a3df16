"""Measure the variance budget's inputs from a run and write them to params/variance.yaml.

    .venv/bin/python bench/variance.py [data/reference/paper] [-o params/variance.yaml]

Per-second reply rates of every point (ukweb.variance): their noise around each repetition's
trend, the repetitions' spread, the autocorrelation past saturation and its integrated time, the
modelled disk's MB/s (the cache turnover tau). The batch length of carried points is 2 x the
family's tau_int (ukweb.budget reads it from here). Reads logs only: no lock needed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ukweb import variance  # noqa: E402
from ukweb.paths import PARAMS, REPO  # noqa: E402

BATCH_TAUS = 2.0  # batches >= 2 tau_int: batch means nearly independent (Law & Kelton §9.5.3)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, default=REPO / "data/reference/paper")
    ap.add_argument("-o", "--out", type=Path, default=PARAMS / "variance.yaml")
    args = ap.parse_args(argv)
    if not (args.run / "points").is_dir():
        print(f"variance: {args.run} is not a run directory", file=sys.stderr)
        return 2
    data = variance.measure(args.run)
    if set(data["tau_int_s"]) != {"ktux", "userver"}:
        print(f"variance: {args.run} has no saturated ktux and userver points with more than "
              f"{variance.MAX_LAG + 2} s of per-second replies (a quick run's windows are too "
              "short); measure a paper run", file=sys.stderr)
        return 2
    data["batch_s"] = {f: int(math.ceil(BATCH_TAUS * t)) for f, t in data["tau_int_s"].items()}
    data["source"] = str(args.run.resolve().relative_to(REPO)) if args.run.resolve().is_relative_to(REPO) else str(args.run)
    head = ("# Written by bench/variance.py from the run named in `source`; do not edit by hand.\n"
            "# acf: lag 1-8 autocorrelation of per-second replies past saturation (pieces of series_s\n"
            "# seconds); tau_int_raw_s its integrated time, tau_int_s corrected for the pieces' length\n"
            "# (ukweb.variance.short_series_corrected); batch_s = 2 x tau_int_s per family; points:\n"
            "# per workload/server/connections the mean replies/s, sigma_rel (per-second sd around the\n"
            "# repetition's trend / mean) and cv_reps (the repetitions' coefficient of variation).\n")
    args.out.write_text(head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))
    print(f"wrote {args.out}: tau_int {data['tau_int_s']} s (raw {data['tau_int_raw_s']}), "
          f"batch {data['batch_s']} s, disk {data['disk_mb_per_s']} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
