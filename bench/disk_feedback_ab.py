"""Issue 17's A/B of the disk model's two feedbacks: runs before and after, point by point.

    .venv/bin/python bench/disk_feedback_ab.py RUN [RUN ...]

For every repetition of every point of each run (a run directory of `ukweb run`), from the
measured seconds of system.csv and summary.json: replies/s; the fraction of the disk's reads
that continued the previous one (no positioning), overall and in the seconds with at most 5 and
more than 60 reads at the disk (mean reads at the disk per second by Little's law: queue wait +
busy time, which the old daemon also reports); the queue's mean, its last 5 seconds and its
growth (least-squares slope, reads/s); the disk's MB/s and reads/s; its overrun (busy time beyond
the model, % of busy) and the mean lateness of its replies; and per point the coefficient of
variation of replies/s across repetitions. A point that failed (FAILED, e.g. "disk model fell
behind") is shown with a *.

The runs of the issue (static ktux and mix80 userver-8 at 1,100 connections, 3 x 60 s), each
under the measurement lock, the "before" with the disk model of commit 9e3cd4b (its binary in
UKWEB_BIN, behind a wrapper that drops the newer flags and keeps its --max-background 64):

    flock /tmp/ukweb-measure.lock .venv/bin/ukweb run -f params/paper.yaml --run-id ab-after \\
        --set 'workloads=[static, mix80]' --set 'servers={static: [ktux], mix80: [userver-8]}' \\
        --set 'connections=[1100]' --set duration_s=60 --set process_sweep=null \\
        --set max_minutes=40
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd


def repetition(d: Path, warmup_s: float) -> dict:
    """The A/B figures of one repetition's measured seconds."""
    s = pd.read_csv(d / "system.csv")
    m = s[s["t"] - 1.0 >= warmup_s - 0.1]  # a row covers the second before its t
    if m.empty or "disk_reads" not in m:
        raise SystemExit(f"{d}: no measured seconds with the disk model's columns in system.csv")
    depth = (m["disk_queue_wait_s"] + m["disk_busy_s"]).to_numpy()
    reads, seq = m["disk_reads"].to_numpy(), m["disk_sequential"].to_numpy()

    def seq_pct(mask: np.ndarray) -> float:
        return 100.0 * seq[mask].sum() / reads[mask].sum() if reads[mask].sum() else math.nan

    t = m["t"].to_numpy()
    busy = float(m["disk_busy_s"].sum())
    over = float(m["disk_overrun_s"].sum()) if "disk_overrun_s" in m else math.nan
    late = float(m["disk_late_s"].sum()) if "disk_late_s" in m else math.nan
    summary = json.loads((d / "summary.json").read_text())
    return {"replies/s": summary.get("measure", {}).get("ops_per_s", math.nan),
            "seq %": seq_pct(np.ones(len(m), bool)), "seq % (<=5)": seq_pct(depth <= 5),
            "seq % (>60)": seq_pct(depth > 60), "queue": depth.mean(),
            "queue end": depth[-5:].mean(),
            "growth/s": np.polyfit(t, depth, 1)[0] if len(t) > 2 else math.nan,
            "MB/s": m["disk_bytes"].sum() / len(m) / 1e6, "reads/s": reads.sum() / len(m),
            "overrun %": 100.0 * over / busy if busy else math.nan,
            "late ms/read": 1e3 * late / reads.sum() if reads.sum() else math.nan}


def report(run: Path) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    warmup_s = float(manifest.get("params", {}).get("warmup_s", 10))
    print(f"== {run}")
    for point in sorted({p.parent.parent for p in run.glob("points/*/*/c*/r*/summary.json")}):
        rows = []
        for rep in sorted(point.glob("r*")):
            failed = (rep / "FAILED").exists()
            if failed:
                detail = json.loads((rep / "FAILED").read_text()).get("detail", "")
                print(f"   {rep.relative_to(run / 'points')} FAILED: {detail}")
            if ((rep / "DONE").exists() or failed) and (rep / "summary.json").exists():
                rows.append({"rep": rep.name + ("*" if failed else ""),
                             **repetition(rep, warmup_s)})
        if not rows:
            continue
        table = pd.DataFrame(rows).set_index("rep")
        print(f"-- {point.relative_to(run / 'points')}")
        print(table.round(2).to_string())
        ops = table["replies/s"].astype(float)
        cov = 100.0 * ops.std(ddof=1) / ops.mean() if len(ops) > 1 else math.nan
        print(f"   mean {ops.mean():.0f} replies/s, CoV across repetitions {cov:.1f} %")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", help="run directories of `ukweb run`")
    args = p.parse_args()
    for run in args.runs:
        if not (run / "manifest.json").is_file():
            raise SystemExit(f"{run}: not a run directory (no manifest.json)")
        report(run)


if __name__ == "__main__":
    main()
