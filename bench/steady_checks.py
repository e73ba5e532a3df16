"""Issue 17's must-show on a run: are its saturated points steady, and how far do their parts
stray from their means?

    .venv/bin/python bench/steady_checks.py data/reference/paper [--from 700]

For every done point at or above --from connections (the paper profile's carry_from), from the
run's own points table (ukweb.analysis.points_table, the columns of docs/points.md):
- steadiness: how many points pass every check (`steady`), and the reasons of those that do not;
- the measured window, its batch count and the disk model's overrun as a share of its busy time
  (disk_overrun_pct, ukweb.steady.overrun_pct): the issue asks for <= 2 % (steady.OVERRUN_PCT);
- the largest departure from the point's mean of any batch mean (a carried point's window, cut
  into its batch_s batches: ukweb.batches.batch_values) or of any repetition (a fresh point's
  replies/s against the mean over its repetitions): the issue asks for none beyond 25 %.
Prints Markdown: a summary, then every point that fails a check.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ukweb import analysis, batches, completions, steady

OVERRUN_MAX_PCT = steady.OVERRUN_PCT
DEPARTURE_MAX_PCT = 25.0
KEY = ["workload", "server", "connections"]


def batch_departure_pct(row: pd.Series) -> float:
    """The largest |batch mean / window mean - 1| of a carried point, in %."""
    if row.get("mode") != "carried" or not row.get("batch_s") or math.isnan(row["batch_s"]):
        return math.nan
    rates = completions.measured(Path(row["path"])).rates()
    means = batches.batch_values(rates, int(row["batch_s"]))
    mean = means.mean() if len(means) else math.nan
    return float(100 * np.max(np.abs(means / mean - 1))) if len(means) and mean > 0 else math.nan


def checks(run: Path, from_connections: int) -> pd.DataFrame:
    points = analysis.points_table(run)
    done = points[(points["status"] == analysis.DONE) & (points["connections"] >= from_connections)]
    done = done.copy()
    done["batch_departure_pct"] = done.apply(batch_departure_pct, axis=1)
    point_mean = done.groupby(KEY)["ops_per_s"].transform("mean")
    reps = done.groupby(KEY)["ops_per_s"].transform("size")
    done["rep_departure_pct"] = np.where(reps > 1, 100 * (done["ops_per_s"] / point_mean - 1).abs(),
                                         np.nan)
    done["departure_pct"] = done[["batch_departure_pct", "rep_departure_pct"]].max(axis=1)
    return done


def report(done: pd.DataFrame, from_connections: int) -> str:
    steady = done["steady"].fillna(False).astype(bool)
    carried = done["mode"] == "carried"
    lines = [f"{len(done)} done points at >= {from_connections} connections "
             f"({int(carried.sum())} carried, {int((~carried).sum())} fresh): "
             f"{int(steady.sum())} steady.",
             f"Measured window: {done['measure_s'].min():.0f}-{done['measure_s'].max():.0f} s; "
             f"batches per carried point: {done.loc[carried, 'batches'].min():.0f}-"
             f"{done.loc[carried, 'batches'].max():.0f}.",
             f"Disk model overrun, % of its busy time: median "
             f"{done['disk_overrun_pct'].median():.2f}, max {done['disk_overrun_pct'].max():.2f}; "
             f"{int((done['disk_overrun_pct'] > OVERRUN_MAX_PCT).sum())} points above "
             f"{OVERRUN_MAX_PCT:g} %.",
             f"Largest departure from the point's mean (a batch of a carried point, a repetition "
             f"of a fresh one): median {done['departure_pct'].median():.1f} %, max "
             f"{done['departure_pct'].max():.1f} %; "
             f"{int((done['departure_pct'] > DEPARTURE_MAX_PCT).sum())} points above "
             f"{DEPARTURE_MAX_PCT:g} %.", ""]
    failing = done[~steady | (done["disk_overrun_pct"] > OVERRUN_MAX_PCT)
                   | (done["departure_pct"] > DEPARTURE_MAX_PCT)]
    if len(failing):
        lines += ["| workload | server | connections | rep | mode | replies/s | window s | batches "
                  "| overrun % of busy | departure % | steady | why not |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in failing.sort_values(KEY + ["repetition"]).iterrows():
            lines.append(
                f"| {r['workload']} | {r['server']} | {r['connections']} | {r['repetition']} "
                f"| {r['mode']} | {r['ops_per_s']:,.0f} | {r['measure_s']:.0f} "
                f"| {r['batches'] if r['mode'] == 'carried' else '-'} "
                f"| {r['disk_overrun_pct']:.2f} | {r['departure_pct']:.1f} "
                f"| {bool(r['steady'])} | {r['steady_reason'] or ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--from", dest="from_connections", type=int, default=700,
                    help="the lowest connection count checked (default 700, carry_from)")
    args = ap.parse_args(argv)
    print(report(checks(analysis.require_run(args.run), args.from_connections),
                 args.from_connections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
