"""`ukweb status RUN`: which points of a run are done, failed or missing, and why.

Read from the run directory alone, without reading the logs: the points the run's parameters
plan (manifest.json's params, ukweb.plan.plan) against the point directories and their
markers (DONE written last by the runner, FAILED with its reason; ukweb.analysis.point_status).
A point is
  done        DONE, with its summary.json and request log beside it
  failed      FAILED (the runner gave up on it: its reason), or DONE without its logs
  incomplete  a directory without a marker: the runner stopped inside it
  missing     planned, no directory: the run has not reached it (why: the run's last entry)
  unplanned   a directory the parameters do not plan (another profile's, or renamed)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ukweb import analysis, logs
from ukweb.plan import plan
from ukweb.sweep_params import ParamsError, validate

DONE, FAILED, INCOMPLETE, MISSING, UNPLANNED = "done", "failed", "incomplete", "missing", "unplanned"
STATES = (DONE, FAILED, INCOMPLETE, MISSING, UNPLANNED)
COLUMNS = ["point", "workload", "server", "connections", "repetition", "status", "reason"]


def planned(manifest: dict) -> tuple[list[str] | None, str]:
    """The point labels the run's parameters plan, or None and why they cannot be known."""

    params = manifest.get("params")
    if not params:
        return None, "manifest.json has no params"
    try:
        return [p.label() for p in plan(validate(params))], ""
    except (ParamsError, TypeError, ValueError) as exc:
        return None, f"manifest params not valid today: {exc}"


def why_missing(manifest: dict) -> str:
    """Why planned points have no directory: what the run's last runner entry says."""
    runs = manifest.get("runs") or []
    if not runs:
        return "not started (no runner entry in manifest.json)"
    last = runs[-1]
    state, end = last.get("status"), last.get("end")
    if state == "running":
        return f"not reached: the runner started {last.get('start')} is running or was killed"
    if state == "interrupted":
        return f"not reached: the run was interrupted at {end}; resume with `ukweb run --run-id`"
    if state == "killed":
        return "not reached: the runner was killed"
    return f"not reached: the run ended {state!r} at {end} without it"


def _done_check(point: Path) -> str:
    """'' when a DONE point has the logs the analysis reads, else what it lacks."""
    if not (point / "summary.json").is_file():
        return "DONE but no summary.json"
    if not logs.request_log(point).is_file():
        return f"DONE but no request log ({' or '.join(logs.REQUEST_FILES)})"
    return ""


def point_state(point: Path) -> tuple[str, str]:
    """(status, reason) of one existing point directory."""
    state, reason = analysis.point_status(point)
    if state == analysis.DONE:
        lack = _done_check(point)
        return (FAILED, lack) if lack else (DONE, "")
    return (FAILED, reason) if state == analysis.FAILED else (INCOMPLETE, reason)


def status(run: Path) -> pd.DataFrame:
    """One row per planned or existing point of run: its status and reason, in plan order."""
    run = analysis.require_run(Path(run))
    manifest = analysis.read_manifest(run)
    labels, unknown = planned(manifest)
    found = {"/".join(p.relative_to(run / "points").parts): p for p in analysis.point_dirs(run)}
    rows = []
    for label in labels if labels is not None else sorted(found):
        if label in found:
            state, reason = point_state(found[label])
        else:
            state, reason = MISSING, why_missing(manifest)
        rows.append((label, state, reason))
    if labels is not None:
        rows += [(label, UNPLANNED, "not in the run's parameters")
                 for label in sorted(set(found) - set(labels))]
    table = pd.DataFrame(rows, columns=["point", "status", "reason"])
    keys = table["point"].str.split("/", expand=True) if len(table) else pd.DataFrame(columns=range(4))
    table["workload"], table["server"] = keys[0], keys[1]
    table["connections"] = keys[2].str[1:].astype(int)
    table["repetition"] = keys[3].str[1:].astype(int)
    table.attrs["plan"] = "params" if labels is not None else unknown
    return table[COLUMNS]


def counts(table: pd.DataFrame) -> dict[str, int]:
    """Points per status, every status present."""
    found = table["status"].value_counts()
    return {s: int(found.get(s, 0)) for s in STATES}


def summary_line(run: Path, table: pd.DataFrame) -> str:
    c = counts(table)
    plan = "" if table.attrs.get("plan") == "params" else f" (plan unknown: {table.attrs['plan']})"
    return (f"{run}: {len(table) - c[UNPLANNED]} planned{plan}; "
            + ", ".join(f"{n} {s}" for s, n in c.items()))


def cli(argv: list[str]) -> int:
    """`ukweb status RUN [--all]`: exit 0 when every planned point is done, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="ukweb status", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (data/raw/<id> or data/reference/<id>)")
    parser.add_argument("--all", action="store_true", help="list done points too")
    args = parser.parse_args(argv)
    try:
        table = status(args.run)
    except FileNotFoundError as exc:
        print(f"ukweb status: {exc}", file=sys.stderr)
        return 2
    print(summary_line(args.run, table))
    shown = table if args.all else table[table["status"] != DONE]
    for (state, reason), group in shown.groupby(["status", "reason"], sort=False):
        print(f"\n{state} ({len(group)}){': ' + reason if reason else ''}")
        print("  " + "\n  ".join(group["point"]))
    return 0 if counts(table)[DONE] == len(table) else 1
