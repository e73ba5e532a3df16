"""The old counting rule's effect on a run: replies counted by the phase they *started* in (the
rule before issue 17) against replies counted by the window they *complete* in (design.md,
Metrics; ukweb.completions).

    .venv/bin/python bench/counting_rule.py data/reference/paper [--claims S3 M2 D4] [--update-readme]

Under the old rule a reply started in the warm-up and completed in the measured window counted
nowhere; so did the requests in flight at the end (loadgen 1 dropped them, so they cannot be
counted here either). Prints, as Markdown for the README: per server family and load, how far
below the completion count the old count lies (median and worst over points, and in the first
measured second); each curve's peak under both rules; and the named claims' values and verdicts
under both. Both tables are the same points table (ukweb.analysis.points_table), the old one with
ops_per_s and mbit_per_s recounted from the rows started in the measured window, as the analysis
before issue 17 did. --update-readme writes the output between README.md's counting markers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ukweb import analysis, claims, completions, logs, paths

CLAIMS = ("S3", "M2", "D4")
BEGIN = "<!-- counting:begin (generated: bench/counting_rule.py RUN --update-readme) -->"
END = "<!-- counting:end -->"


def old_counts(point: Path) -> dict:
    """ops/s, Mbit/s and first-second replies under the old rule, and the first second by
    completion, for one point."""
    summary = logs.read_summary(point)
    requests = logs.read_requests(point)
    window = completions.measured(point, requests, summary)
    started = completions.started_phase_count(requests)
    ok = started[started["ok"]]
    measure_s = window.seconds
    first_old = int(((ok["t_end_us"] >= window.start_us)
                     & (ok["t_end_us"] < window.start_us + 1_000_000)).sum())
    rates = window.rates()
    return {"old_ops_per_s": len(ok) / measure_s,
            "old_mbit_per_s": float(ok["bytes"].sum()) * 8 / measure_s / 1e6,
            "old_first_s": first_old, "new_first_s": float(rates[0]) if len(rates) else np.nan}


def family(server: str) -> str:
    return "ktux" if server == "ktux" else "userver"


def tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The points table by completion and the same table counted by the old rule."""
    new = analysis.points_table(run)
    done = new["status"] == analysis.DONE
    extra = pd.DataFrame([old_counts(Path(p)) for p in new.loc[done, "path"]],
                         index=new.index[done])
    new = new.join(extra)
    old = new.copy()
    old.loc[done, "ops_per_s"] = old.loc[done, "old_ops_per_s"]
    old.loc[done, "mbit_per_s"] = old.loc[done, "old_mbit_per_s"]
    return new, old


def shortfall(new: pd.DataFrame) -> pd.DataFrame:
    """How far the old count lies below the completion count, per family and load band."""
    done = new[new["status"] == analysis.DONE].copy()
    done["short"] = (done["old_ops_per_s"] / done["ops_per_s"] - 1) * 100
    done["short_first"] = (done["old_first_s"] / done["new_first_s"] - 1) * 100
    done["family"] = done["server"].map(family)
    done["load"] = np.where(done["connections"] >= 900, ">= 900", "< 900")
    rows = []
    for (fam, load), g in done.groupby(["family", "load"]):
        rows.append({"servers": fam, "connections": load, "points": len(g),
                     "median %": g["short"].median(), "worst %": g["short"].min(),
                     "first second, median %": g["short_first"].median()})
    return pd.DataFrame(rows)


def peaks(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    cn, co = analysis.curves(new), analysis.curves(old)
    rows = []
    for (work, server), _ in cn.groupby(["workload", "server"]):
        pn, po = analysis.peak(cn, work, server), analysis.peak(co, work, server)
        rows.append({"workload": work, "server": server,
                     "old peak (conns)": f"{po['throughput']:.0f} ({po.name})",
                     "new peak (conns)": f"{pn['throughput']:.0f} ({pn.name})",
                     "change %": (pn["throughput"] / po["throughput"] - 1) * 100})
    return pd.DataFrame(rows)


def claim_rows(new: pd.DataFrame, old: pd.DataFrame, manifest: dict, ids: list[str]) -> pd.DataFrame:
    vn, vo = claims.evaluate(new, manifest), claims.evaluate(old, manifest)
    rows = []
    for cid in ids:
        a, b = vo[vo["id"] == cid].iloc[0], vn[vn["id"] == cid].iloc[0]
        rows.append({"claim": cid, "paper": a["paper_text"] if "paper_text" in a else "",
                     "old rule": f"{claims.ours_text(a)} ({a['verdict']})",
                     "by completion": f"{claims.ours_text(b)} ({b['verdict']})"})
    return pd.DataFrame(rows).drop(columns=["paper"])


def markdown(df: pd.DataFrame, floats: str = "{:+.1f}") -> str:
    df = df.copy()
    for col in df.columns:
        if df[col].dtype.kind == "f":
            df[col] = df[col].map(lambda v: floats.format(v) if pd.notna(v) else "")
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run directory (e.g. data/reference/paper)")
    p.add_argument("--claims", nargs="*", default=list(CLAIMS), help="claim ids to compare")
    p.add_argument("--update-readme", action="store_true",
                   help="write the tables between README.md's counting markers")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        analysis.require_run(args.run)
        new, old = tables(args.run)
    except (FileNotFoundError, ValueError) as exc:
        print(f"counting_rule: {exc}", file=sys.stderr)
        return 2
    logged = new.loc[new["status"] == analysis.DONE, "inflight_logged"].astype(bool)
    text = "\n".join([
        f"`{args.run}`: {int((new['status'] == analysis.DONE).sum())} points; replies started in "
        "the warm-up and completed in the measured window: "
        f"{int(new['started_in_warmup'].sum()):,}"
        + ("" if logged.all() else "; requests in flight at the end were not logged in this "
           "run (loadgen 1), so neither rule counts them") + ".", "",
        "Old count against the completion count, per point (%):", "", markdown(shortfall(new)), "",
        "Peaks (replies/s):", "", markdown(peaks(new, old)), "",
        "Claims:", "", markdown(claim_rows(new, old, analysis.read_manifest(args.run), args.claims))])
    print(text)
    if args.update_readme:
        readme = paths.REPO / "README.md"
        body = readme.read_text()
        if BEGIN not in body or END not in body:
            print(f"counting_rule: {readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = body.split(BEGIN, 1)
        readme.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
