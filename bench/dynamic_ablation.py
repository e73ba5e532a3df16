"""Which of TUX's mechanisms moves the dynamic gap (issue 16 item 6), measured side by side.

ktux with each combination of --module-api tux|direct x --sched tux|completion, against
userver-8 with blocking (the µserver's) and non-blocking dynamic writes, on 100 % dynamic at
500 and 700 connections in the emulated regime of the paper profile (CPU thief, disk model,
512 MB cap, namespaces), fresh points, 3 repetitions. Prints ktux ÷ userver per point with a
95 % interval, ktux's CPU use and its module's share beside the paper's (ukweb.ablation).

    .venv/bin/python bench/dynamic_ablation.py [--run-id ID] [--repetitions 3]
        [--connections 500 700] [--warmup 10] [--duration 10] [--analyse-only RUN]

The run goes to data/raw/<run-id>/ and is resumable (rerun with the same --run-id).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import yaml

from ukweb import ablation, runs
from ukweb.paths import RAW


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", default=f"ablation-{dt.datetime.now():%Y%m%d-%H%M%S}")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--connections", type=int, nargs="+", default=list(ablation.CONNECTIONS))
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--analyse-only", type=Path, help="only print the table of an existing run")
    args = ap.parse_args(argv)
    run = args.analyse_only
    if run is None:
        raw = ablation.profile(connections=tuple(args.connections), repetitions=args.repetitions,
                               warmup_s=args.warmup, duration_s=args.duration)
        # the same file for a resume: the profile is a function of params/paper.yaml and the flags
        path = Path(tempfile.gettempdir()) / f"ukweb-{args.run_id}.yaml"
        path.write_text(yaml.safe_dump(raw))
        rc = runs.cli(["-f", str(path), "--run-id", args.run_id])
        if rc != 0:
            return rc
        run = RAW / args.run_id
    print(ablation.markdown(ablation.table(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
