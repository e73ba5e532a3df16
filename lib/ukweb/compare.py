"""`ukweb compare RUN_A RUN_B`: two runs side by side, per point, per peak and per claim.

Per point (a curve row: workload x server x connections, the mean over its repetitions) and
per peak (each curve's highest mean, wherever it lies), with the 95 % interval the verdicts use
(ukweb.analysis.curves: over repetitions; a single point pooled from its repeated neighbours,
or per-second). Two readings of "the same":

- `within`: each value lies inside the other's interval (the literal reading; a perfectly
  repeatable package fails it often: a second mean falls inside the first's 95 % interval with
  probability ~0.83 for normal errors);
- `agree`: the difference's own 95 % interval (Welch: sqrt(se_A^2 + se_B^2),
  Welch-Satterthwaite dof) contains 0, the test of "the same command gives the same number";
  `apart` is the same test at a family-wise 95 % (Bonferroni over the rows compared), the one
  the exit status goes by.

Per claim: each run's value, 95 % interval and verdict (ukweb.claims), and whether the
verdicts are the same. [I] The claims table keeps intervals, not standard errors, so a claim's
difference interval is sqrt(half_A^2 + half_B^2), exact for normal estimates.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from ukweb import analysis, claims, rules

CONFIDENCE = analysis.CONFIDENCE
CURVE_KEYS = ["workload", "server", "connections"]


def difference_half(se_a: float, dof_a: int, se_b: float, dof_b: int, confidence: float) -> float:
    """Half-width of the Welch interval of B - A (NaN without a spread on either side)."""
    if math.isnan(se_a) or math.isnan(se_b) or not dof_a or not dof_b:
        return math.nan
    var = se_a ** 2 + se_b ** 2
    if var == 0:
        return 0.0
    dof = var ** 2 / (se_a ** 4 / dof_a + se_b ** 4 / dof_b)
    return float(stats.t.ppf((1 + confidence) / 2, dof)) * math.sqrt(var)


def _inside(value: float, centre: float, half: float) -> bool:
    """value within half of centre; an exact match counts even without an interval."""
    return value == centre or (not math.isnan(half) and abs(value - centre) <= half)


def _side_by_side(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of curve tables a and b (throughput, half95, se, dof, n, basis) joined on keys,
    with the difference, its intervals and the two tests; rows in one run only flagged."""
    cols = ["throughput", "half95", "se", "dof", "n", "basis"] + (["at"] if "at" in a else [])
    both = a[keys + cols].merge(b[keys + cols], on=keys, how="outer", suffixes=("_a", "_b"),
                                indicator=True)
    rows = both[both["_merge"] == "both"]
    family = 1 - (1 - CONFIDENCE) / max(len(rows), 1)
    out = []
    for row in both.to_dict("records"):
        row["in"] = {"both": "both", "left_only": "A only", "right_only": "B only"}[row.pop("_merge")]
        if row["in"] == "both":
            se = (float(row["se_a"]), int(row["dof_a"]), float(row["se_b"]), int(row["dof_b"]))
            diff = row["throughput_b"] - row["throughput_a"]
            half = difference_half(*se, CONFIDENCE)
            row.update(diff=diff, diff_pct=100 * diff / row["throughput_a"],
                       diff_half_pct=100 * half / row["throughput_a"],
                       within=_inside(row["throughput_b"], row["throughput_a"], row["half95_a"])
                       and _inside(row["throughput_a"], row["throughput_b"], row["half95_b"]),
                       agree=_inside(diff, 0.0, half),
                       apart=not _inside(diff, 0.0, difference_half(*se, family)))
        out.append(row)
    return pd.DataFrame(out)


def points(curves_a: pd.DataFrame, curves_b: pd.DataFrame) -> pd.DataFrame:
    """Every curve row of either run, side by side (ukweb.analysis.curves tables)."""
    return _side_by_side(curves_a, curves_b, CURVE_KEYS)


def peak_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """Each curve's peak row, with `at` its connection count."""
    rows = []
    for (workload, server), _ in curves.groupby(["workload", "server"]):
        row = analysis.peak(curves, workload, server)
        rows.append({**row.to_dict(), "workload": workload, "server": server, "at": int(row.name)})
    return pd.DataFrame(rows)


def peaks(curves_a: pd.DataFrame, curves_b: pd.DataFrame) -> pd.DataFrame:
    """Each curve's peak in both runs (they may lie at different connection counts)."""
    return _side_by_side(peak_rows(curves_a), peak_rows(curves_b), ["workload", "server"])


def claim_rows(claims_a: pd.DataFrame, claims_b: pd.DataFrame) -> pd.DataFrame:
    """Per claim: both runs' value, interval and verdict; the difference and whether it and the
    verdict are the same."""
    cols = ["id", "ours", "low", "high", "n", "verdict"]
    both = claims_a[["id", "workload", "paper_value"] + cols[1:]].merge(
        claims_b[cols], on="id", how="outer", suffixes=("_a", "_b"))
    half_a = (both["high_a"] - both["low_a"]) / 2
    half_b = (both["high_b"] - both["low_b"]) / 2
    both["diff"] = both["ours_b"] - both["ours_a"]
    both["diff_half"] = (half_a ** 2 + half_b ** 2) ** 0.5
    both["agree"] = [_inside(d, 0.0, h) or (math.isnan(a) and math.isnan(b))
                     for d, h, a, b in zip(both["diff"], both["diff_half"], both["ours_a"],
                                           both["ours_b"], strict=True)]
    both["same_verdict"] = both["verdict_a"] == both["verdict_b"]
    return both


@dataclass
class Comparison:
    """The three tables of a comparison (see the module docstring)."""

    points: pd.DataFrame
    peaks: pd.DataFrame
    claims: pd.DataFrame

    def differs(self) -> list[str]:
        """What makes the two runs differ (empty when they agree family-wise)."""
        out = []
        for name, table in (("points", self.points), ("peaks", self.peaks)):
            one = table[table["in"] != "both"]
            if len(one):
                out.append(f"{len(one)} {name} in one run only")
            both = table[table["in"] == "both"]
            if both["apart"].any():
                out.append(f"{int(both['apart'].sum())} {name} apart family-wise")
        changed = self.claims[~self.claims["same_verdict"]]
        if len(changed):
            out.append(f"{len(changed)} claims with another verdict ({', '.join(changed['id'])})")
        return out


def compare_tables(points_a: pd.DataFrame, points_b: pd.DataFrame, manifest_a: dict | None = None,
                   manifest_b: dict | None = None) -> Comparison:
    """Compare two points tables (ukweb.analysis.points_table)."""
    curves_a, curves_b = analysis.curves(points_a), analysis.curves(points_b)
    return Comparison(points(curves_a, curves_b), peaks(curves_a, curves_b),
                      claim_rows(claims.evaluate(points_a, manifest_a),
                                 claims.evaluate(points_b, manifest_b)))


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    """Compare two run directories (a run with itself is analysed once)."""
    points_a = analysis.points_table(run_a)
    same = Path(run_a).resolve() == Path(run_b).resolve()
    points_b = points_a if same else analysis.points_table(run_b)
    return compare_tables(points_a, points_b, analysis.read_manifest(run_a),
                          analysis.read_manifest(run_b))


# ---------------------------------------------------------------- printing


def _value(row: dict, side: str) -> str:
    at = f" @{int(row['at_' + side])}" if "at_" + side in row else ""
    if pd.isna(row.get("throughput_" + side)):
        return "-"
    half = row["half95_" + side]
    spread = f" ±{half:.0f}" if pd.notna(half) else ""
    return f"{row['throughput_' + side]:.0f}{spread}{at} n{int(row['n_' + side])}"


def curve_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """One line per row: both values ±95 %, B - A in % ± its 95 %, within, agree, basis."""
    lines = []
    for row in table.to_dict("records"):
        name = "/".join(str(row[k]) if k != "connections" else f"c{row[k]}" for k in keys)
        if row["in"] != "both":
            lines.append(f"{name:28} {row['in']}")
            continue
        lines.append(f"{name:28} A {_value(row, 'a'):>20}  B {_value(row, 'b'):>20}  "
                     f"B-A {row['diff_pct']:+6.1f} % ±{row['diff_half_pct']:5.1f}  "
                     f"within {'yes' if row['within'] else 'no ':3}  "
                     f"agree {'yes' if row['agree'] else 'NO ':3}{'  APART' if row['apart'] else ''}"
                     f"  {row['basis_a']}")
    return lines


def summary(table: pd.DataFrame, name: str) -> str:
    both = table[table["in"] == "both"]
    family = 100 * (1 - (1 - CONFIDENCE) / max(len(both), 1))
    return (f"{name}: {int(both['within'].sum())} of {len(both)} inside each other's 95 % "
            f"intervals; {int(both['agree'].sum())} of {len(both)} differences within their own "
            f"95 % interval (chance alone: ~{(1 - CONFIDENCE) * len(both):.0f} outside); "
            f"family-wise ({family:.2f} % each): {int(both['apart'].sum())} apart"
            + (f"; {len(table) - len(both)} in one run only" if len(table) > len(both) else ""))


def claim_lines(table: pd.DataFrame) -> list[str]:
    def text(row: dict, side: str) -> str:
        return claims.ours_text({"ours": row["ours_" + side], "low": row["low_" + side],
                                 "high": row["high_" + side]}) or "-"
    lines = []
    for row in table.to_dict("records"):
        flag = "" if row["same_verdict"] else "  VERDICT CHANGED"
        lines.append(f"{row['id']:4} A {text(row, 'a'):>24} {row['verdict_a']:15}  "
                     f"B {text(row, 'b'):>24} {row['verdict_b']:15}{flag}")
    return lines


def cli(argv: list[str]) -> int:
    """`ukweb compare RUN_A RUN_B [--all] [--out DIR]`: exit 0 when the runs agree."""
    parser = argparse.ArgumentParser(prog="ukweb compare", description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path, help="run directory A (e.g. data/reference/paper)")
    parser.add_argument("run_b", type=Path, help="run directory B (e.g. data/raw/<id>)")
    parser.add_argument("--all", action="store_true",
                        help="list every point and claim (default: those that differ)")
    parser.add_argument("--out", type=Path, help="also write points.csv, peaks.csv, claims.csv here")
    args = parser.parse_args(argv)
    try:
        result = compare_runs(args.run_a, args.run_b)
    except (FileNotFoundError, ValueError, rules.RulesError) as exc:
        print(f"ukweb compare: {exc}", file=sys.stderr)
        return 2
    pts, pks, cls = result.points, result.peaks, result.claims
    if not args.all:
        pts = pts[(pts["in"] != "both") | ~pts["agree"].fillna(False).astype(bool)]
        cls = cls[~cls["same_verdict"] | ~cls["agree"]]
    print(f"A = {args.run_a}\nB = {args.run_b}\n")
    print("\n".join(["peaks"] + curve_lines(pks, ["workload", "server"])))
    print("\n".join(["", "points" + ("" if args.all else " whose difference is outside its 95 % interval")]
                    + curve_lines(pts, CURVE_KEYS)))
    print("\n".join(["", "claims" + ("" if args.all else " whose value or verdict differs")]
                    + claim_lines(cls)))
    print("\n" + summary(result.points, "points") + "\n" + summary(result.peaks, "peaks"))
    print(f"claims: {int(result.claims['same_verdict'].sum())} of {len(result.claims)} with the "
          f"same verdict, {int(result.claims['agree'].sum())} with a difference inside its 95 % interval")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, table in (("points", result.points), ("peaks", result.peaks), ("claims", result.claims)):
            table.to_csv(args.out / f"{name}.csv", index=False)
        print(f"wrote {args.out}/points.csv, peaks.csv, claims.csv")
    differs = result.differs()
    print("differ: " + "; ".join(differs) if differs else "the runs agree")
    return 1 if differs else 0
