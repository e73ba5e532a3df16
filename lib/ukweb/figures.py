"""The paper's Figures 2-6 and a summary figure, drawn from the tidy table (ukweb.analysis).

One function per figure. Figures are built on matplotlib.figure.Figure (no pyplot state), so
the library never depends on a display; `save` writes PNG and PDF. Every figure carries the
run's deviations from the paper's testbed (manifest.json) as a footnote, Figures 2-6 also the
paper's numbers they are judged on. Error bars only where there are repetitions (n > 1).
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ukweb import analysis, claims, deviations, paper, workload

log = logging.getLogger(__name__)

STYLE = {"ktux": ("tab:red", "s"), "userver-1": ("tab:blue", "o"), "userver-8": ("tab:green", "^"),
         "userver-16": ("tab:purple", "D")}


def server_label(server: str) -> str:
    """The paper's legend label: 'userver-16-processes', 'userver-1-process', 'ktux (TUX model)'."""
    if server == "ktux":
        return "ktux (TUX model)"
    if server.startswith("userver-"):
        n = server.split("-", 1)[1]
        return f"userver-{n}-process" + ("" if n == "1" else "es")
    return server


def deviation_notes(manifest: dict) -> list[str]:
    """One line per deviation from the paper's testbed, plus the point length of the profile."""
    notes = []
    params = manifest.get("params", {})
    if params:
        notes.append(f"profile {params.get('profile', '?')}: {params.get('warmup_s', '?')} s warm-up + "
                     f"{params.get('duration_s', '?')} s measurement per point (paper: 60 + 120 s)")
    for dev in deviations.split(manifest)[0]:  # not those the run's own data refutes
        if isinstance(dev, dict):
            step = dev.get("step") or dev.get("setting") or ""
            text = dev.get("reason") or "; ".join(f"{k}: {v}" for k, v in dev.items() if k not in ("step", "setting"))
            notes.append(f"{step}: {text}" if step else text)
        else:
            notes.append(str(dev))
    return notes


def failed_notes(points: pd.DataFrame, work: str) -> list[str]:
    """The workload's points that did not complete, so a gap in a curve is explained."""
    bad = analysis.failed_points(points[points["workload"] == work])
    return [f"not measured: {r.server} c{r.connections} r{r.repetition} ({r.status}: {r.reason})"
            for r in bad.itertuples()]


def _footnote(fig: Figure, notes: list[str], marks: list[str] | None = None,
              remark: str = "") -> None:
    """The paper's numbers against ours, a remark on the markers, then the deviations, under
    the axes in small type; the figure grows to hold them so the axes keep their size."""
    blocks = []
    if marks:
        blocks.append("The paper's numbers this figure is judged on (claims.json):\n"
                      + "\n".join(line for m in marks for line in textwrap.wrap("• " + m, 125)))
    if remark:
        blocks.append(remark)
    if notes:
        blocks.append("Deviations from the paper's testbed:\n"
                      + "\n".join(line for n in notes for line in textwrap.wrap("• " + n, 125)))
    if not blocks:
        return
    text = "\n".join(blocks)
    axes_in = fig.get_figheight()
    # Room for the x label (~0.6 in) plus one 6-pt line (~0.11 in) per line of text.
    extra = 0.6 + 0.11 * (text.count("\n") + 1)
    fig.set_figheight(axes_in + extra)
    fig.text(0.01, 0.01, text, fontsize=6, va="bottom", ha="left", color="0.3")
    height = fig.get_figheight()
    fig.subplots_adjust(bottom=extra / height, top=1 - 0.5 / height)


def _n_label(n: pd.Series) -> str:
    """'n = 1 per point (no error bars)' or 'n = 3 per point; error bars: 95 % CI'."""
    lo, hi = int(n.min()), int(n.max())
    said = f"n = {lo}" if lo == hi else f"n = {lo}-{hi}"
    return f"{said} per point" + ("; error bars: 95 % CI over repetitions" if hi > 1
                                  else " (no repetitions, so no error bars)")


def _unsteady(c: pd.DataFrame) -> pd.DataFrame:
    """The curve rows the run marked as not steady (none when it did not say)."""
    if "steady" not in c:
        return c.iloc[0:0]
    return c[c["steady"].map(lambda v: v is False or v is np.False_)]


def paper_marks(table: pd.DataFrame | None, figure: str) -> tuple[dict[int, list[str]], list[str]]:
    """For one figure: connection counts the paper names (claim ids at each) and one line per
    claim, paper against ours, from the evaluated claims table."""
    if table is None or table.empty:
        return {}, []
    at: dict[int, list[str]] = {}
    lines = []
    claims_csv = paper.load_claims().set_index("id")
    for _, row in table[table["figure"] == figure].iterrows():
        conns = claims_csv.loc[row["id"], "at_connections"] if row["id"] in claims_csv.index else ""
        if conns:
            at.setdefault(int(conns), []).append(row["id"])
        ours = claims.ours_text(row) or "-"
        lines.append(f"{row['id']} ({row['servers']}, {row['metric']}): paper {row['paper_value']}, "
                     f"ours {ours} {row['unit']} (n = {row['n']}), band {row['band']} -> "
                     f"{row['verdict']}")
    return at, lines


def figure_servers(curves: pd.DataFrame, work: str) -> list[str]:
    """The paper's configurations for this workload that the run measured, then any other
    server with a full curve (single points of a process sweep are left to their own figure)."""
    sel = curves[curves["workload"] == work]
    counts = sel.groupby("server")["connections"].nunique()
    shown = [s for s in paper.SERVERS.get(work, []) if s in counts.index]
    others = sorted(s for s in counts.index if s not in shown and counts[s] > 1)
    return shown + others


def throughput_figure(curves: pd.DataFrame, work: str, title: str, notes: list[str] | None = None,
                      marks: tuple[dict[int, list[str]], list[str]] | None = None) -> Figure:
    """Throughput (replies/s) against simultaneous connections, one line per server: 95 %
    error bars only where there are repetitions, hollow markers for points not steady, and
    the paper's connection counts (marks: paper_marks) as dotted lines."""
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    shown = figure_servers(curves, work)
    unsteady = 0
    for server in shown:
        c = analysis.curve(curves, work, server)
        color, marker = STYLE.get(server, (None, "x"))
        if c["n"].max() > 1:
            ax.errorbar(c.index, c["throughput"], yerr=c["ci95"].fillna(0), label=server_label(server),
                        color=color, marker=marker, capsize=3)
        else:
            ax.plot(c.index, c["throughput"], label=server_label(server), color=color, marker=marker)
        bad = _unsteady(c)
        if len(bad):
            unsteady += len(bad)
            ax.plot(bad.index, bad["throughput"], linestyle="none", marker=marker, markersize=9,
                    markerfacecolor="white", markeredgecolor=color)
    at, lines = marks or ({}, [])
    for conns, ids in sorted(at.items()):
        ax.axvline(conns, color="0.5", linestyle=":", linewidth=1)
        ax.annotate("paper: " + ", ".join(ids), (conns, 1), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=7, color="0.35")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Simultaneous connections")
    ax.set_ylabel("Throughput (replies/s)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    sel = curves[(curves["workload"] == work) & curves["server"].isin(shown)]
    if len(sel):
        ax.text(0.01, 0.01, _n_label(sel["n"]), transform=ax.transAxes, fontsize=7, color="0.3")
    remark = (f"Hollow markers: {unsteady} point(s) not steady (points.parquet: steady, "
              "steady_reason)." if unsteady else "")
    _footnote(fig, notes or [], lines, remark)
    return fig


def peak_gap_figure(curves: pd.DataFrame, notes: list[str] | None = None) -> Figure:
    """The paper's conclusion in one picture: ktux's peak gap over userver by dynamic share,
    ours (with 95 % intervals) beside the paper's (paper.peak_gaps: S2, M1, M3, M6, D1)."""
    ours = claims.peak_gap_by_share(curves)
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    gaps = paper.peak_gaps()
    ax.plot(gaps["dynamic_share"] * 100, gaps["gap_pct"], "k--o", label="paper (TUX vs µserver)")
    for row in gaps.itertuples():
        ax.annotate(row.text, (row.dynamic_share * 100, row.gap_pct), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    if len(ours):
        # Error bars only from repetitions; n = 1 intervals are per-second noise (claims.json).
        reps = ours["n"] > 1
        x, label = ours["dynamic_share"] * 100, "ours (ktux vs userver)"
        if reps.any():
            err = [(ours["gap_pct"] - ours["low"]).where(reps, 0).fillna(0),
                   (ours["high"] - ours["gap_pct"]).where(reps, 0).fillna(0)]
            ax.errorbar(x, ours["gap_pct"], yerr=err, fmt="-s", color="tab:red", capsize=3, label=label)
        else:
            ax.plot(x, ours["gap_pct"], "-s", color="tab:red", label=label)
        ax.text(0.99, 0.01, _n_label(ours["n"]), transform=ax.transAxes, fontsize=7, color="0.3",
                ha="right")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("Dynamic requests in the workload (%)")
    ax.set_ylabel("Peak throughput gap, kernel over user space (%)")
    ax.set_title("Peak gap against the dynamic share (paper §5 conclusion)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    _footnote(fig, notes or [])
    return fig


def process_sweep_figure(curves: pd.DataFrame, work: str, notes: list[str] | None = None) -> Figure:
    """Throughput of userver against its process count at the sweep's connection count
    (claims S6, D6)."""
    sel = curves[(curves["workload"] == work) & curves["server"].str.fullmatch(r"userver-\d+")]
    at = int(sel.groupby("connections")["server"].nunique().idxmax())
    sel = sel[sel["connections"] == at].assign(procs=lambda t: t["server"].str.split("-").str[1].astype(int))
    sel = sel.sort_values("procs")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if sel["n"].max() > 1:
        ax.errorbar(sel["procs"], sel["throughput"], yerr=sel["ci95"].fillna(0), marker="o", capsize=3)
    else:
        ax.plot(sel["procs"], sel["throughput"], marker="o")
    ax.text(0.01, 0.01, _n_label(sel["n"]), transform=ax.transAxes, fontsize=7, color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sel["procs"], [str(p) for p in sel["procs"]])
    ax.set_xlabel("userver processes")
    ax.set_ylabel("Throughput (replies/s)")
    ax.set_title(f"{work}: userver process-count sweep at {at} connections", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _footnote(fig, notes or [])
    return fig


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """name.png and name.pdf in out/."""
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{name}.png", out / f"{name}.pdf"]
    for target in targets:
        fig.savefig(target, dpi=150)
    return targets


def _verdicts(points: pd.DataFrame, manifest: dict) -> pd.DataFrame | None:
    """The claims table for the figures' marks; None (and a warning) when the rules are bad,
    so a figure is still drawn and the claims notebook reports the rule table's error."""
    try:
        return claims.evaluate(points, manifest)
    except claims.RulesError as err:
        log.warning("figures drawn without the paper's numbers: %s", err)
        return None


def write_all(points: pd.DataFrame, manifest: dict, out: Path,
              table: pd.DataFrame | None = None) -> list[Path]:
    """Every figure the run has data for; a workload the run lacks is logged, not drawn.
    table: the evaluated claims (claims.evaluate) whose paper numbers the figures mark."""
    curves = analysis.curves(points)
    notes = deviation_notes(manifest)
    table = _verdicts(points, manifest) if table is None else table
    written: list[Path] = []
    measured = set(curves["workload"])
    for name, (work, caption) in paper.FIGURES.items():
        if work not in measured:
            log.info("%s not drawn: the run has no %s points", name, work)
            continue
        title = f"{name.replace('fig', 'Figure ')}: {caption}: userver vs. ktux"
        fig = throughput_figure(curves, work, title, notes + failed_notes(points, work),
                                paper_marks(table, name))
        written += save(fig, out, name)
    written += save(peak_gap_figure(curves, notes), out, "peak_gap_by_dynamic_share")
    for work in workload.WORKLOADS:
        sel = curves[(curves["workload"] == work) & curves["server"].str.fullmatch(r"userver-\d+")]
        if sel.groupby("connections")["server"].nunique().max(skipna=True) >= 3:
            written += save(process_sweep_figure(curves, work, notes), out, f"process_sweep_{work}")
    return written
