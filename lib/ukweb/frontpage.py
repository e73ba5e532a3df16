"""The report's front page: what a reviewer reads first.

The paper it reproduces, the verdict counts, the claim table (the paper's sentence, the servers
compared, paper against ours with n and the 95 % interval, the band, the verdict in colour),
the figures, then the run's provenance folded (commit, host, kernel, CPU, dates, every emulation
parameter and deviation). Plain HTML with inline styles and embedded images, so the page is one
self-contained file that renders offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from ukweb import claims, deviations, paper
from ukweb.claims import ours_text, paper_text

COLOURS = {"reproduced": "#c6efce", "same direction": "#fff2b3", "inconclusive": "#dde7f3",
           "not reproduced": "#f7c6c6", "not measured": "#e6e6e6"}
STYLE = """<style>
.ukweb-front {font-family: sans-serif; font-size: 13px; max-width: 1400px; margin: 1em auto;}
.ukweb-front table {border-collapse: collapse; margin: 0.5em 0 1.5em;}
.ukweb-front th, .ukweb-front td {border: 1px solid #bbb; padding: 3px 6px; vertical-align: top;
  text-align: left;}
.ukweb-front th {background: #f0f0f0;}
.ukweb-front .counts span {display: inline-block; padding: 6px 12px; margin: 0 6px 6px 0;
  border-radius: 4px; font-size: 15px;}
.ukweb-front .small {font-size: 11px; color: #444;}
.ukweb-front figure {display: inline-block; margin: 0 1em 1em 0;}
.ukweb-front img {max-width: 680px;}
</style>"""


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def verdict_counts_html(table: pd.DataFrame) -> str:
    """One coloured box per verdict with its count."""
    found = table["verdict"].value_counts()
    boxes = "".join(f'<span style="background:{c}"><b>{int(found.get(v, 0))}</b> {v}</span>'
                    for v, c in COLOURS.items())
    return f'<p class="counts">{boxes} of {len(table)} claims</p>'


def claims_table_html(table: pd.DataFrame) -> str:
    """The claim table, one row per claim, coloured by verdict."""
    head = ["claim", "the paper says", "servers (a over b)", "points", "paper", "ours [95 %]",
            "n / interval", "band (same direction)", "verdict", "where; why"]
    rows = []
    for _, r in table.iterrows():
        colour = COLOURS.get(r["verdict"], "#fff")
        band = _e(r["band"]) + (f" ({_e(r['same'])})" if r.get("same") else "")
        cells = [f"<b>{_e(r['id'])}</b><br><span class=small>{_e(r['figure'])}, {_e(r['workload'])}</span>",
                 f"{_e(r['paper_text'])}<br><span class=small>reading: {_e(r.get('reading'))}</span>",
                 _e(r["servers"]), _e(r["points"]), _e(paper_text(r)),
                 f"{_e(ours_text(r))} {_e(r['unit'])}", _e(r["uncertainty"]), band,
                 f'<b>{_e(r["verdict"])}</b>',
                 f"{_e(r['where'])}<br><span class=small>{_e(r['reason'])}</span>"]
        tds = "".join(f"<td>{c}</td>" if i != 8 else f'<td style="background:{colour}">{c}</td>'
                      for i, c in enumerate(cells))
        rows.append(f'<tr>{tds}</tr>')
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _flat(value: object, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as (dotted key, text) rows; lists of scalars joined, others as JSON."""
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            rows += _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return [(prefix, ", ".join(str(v) for v in value))]
    if isinstance(value, list):
        return [(prefix, json.dumps(value))]
    return [(prefix, "" if value is None else str(value))]


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>" if rows else "<p><i>not recorded</i></p>"


def provenance_html(manifest: dict, run: Path, report_git: dict | None = None) -> str:
    """Where the numbers come from: the run, its code, host, emulation and deviations."""
    git = manifest.get("git", {})
    params = manifest.get("params", {})
    runs = manifest.get("runs", [])
    summary = [("run", str(run)), ("profile", params.get("profile", "")),
               ("started", manifest.get("start", "")), ("ended", manifest.get("end", "")),
               ("run commit", git.get("commit", "")), ("run tree dirty", git.get("dirty", "")),
               ("sweep attempts", "; ".join(f"{r.get('start')} - {r.get('end')}: {r.get('status')}"
                                            f" at {r.get('git', {}).get('commit', '?')[:12]}"
                                            for r in runs))]
    if report_git:
        summary += [("analysis commit (this report)", report_git.get("commit", "")),
                    ("analysis tree dirty", report_git.get("dirty", ""))]
    standing, refuted = deviations.split(manifest)
    dev_rows = [_dev_row(d) for d in standing]
    refuted_rows = [(k, f"{v} -- refuted: {why}") for d, why in refuted for k, v in [_dev_row(d)]]
    parts = [_kv_table(summary),
             "<h3>Host</h3>", _kv_table(_flat(manifest.get("host", {}))),
             "<h3>Emulation of the paper's testbed</h3>", _kv_table(_flat(manifest.get("testbed", {}))),
             "<h3>Calibration</h3>", _kv_table(_flat(manifest.get("calibration") or {})),
             "<h3>Deviations from the paper's testbed</h3>", _kv_table(dev_rows)]
    if refuted_rows:
        parts += ["<h3>Recorded as deviations, refuted by the run's own data (not deviations)</h3>",
                  _kv_table(refuted_rows)]
    parts += [
             "<h3>Parameters</h3>", _kv_table(_flat(params)),
             "<h3>Tools</h3>", _kv_table(_flat(manifest.get("tools", {})))]
    return ("<details><summary><h2 style='display:inline'>Provenance</h2> (run, code, host,"
            " emulation, deviations, parameters, tools: click to open)</summary>"
            + "".join(parts) + "</details>")


def _dev_row(d: object) -> tuple[str, str]:
    if isinstance(d, dict):
        return d.get("step") or d.get("setting") or "", d.get("reason") or json.dumps(d)
    return "", str(d)


def figure_alt(stem: str) -> str:
    """What a figure shows, in words, for its alternative text (names from ukweb.figures)."""
    if stem in paper.FIGURES:
        work, caption = paper.FIGURES[stem]
        return (f"Paper {stem.replace('fig', 'Figure ')}, {caption}: replies per second against "
                f"simultaneous connections for each server, {work} workload, ours beside the paper's")
    if stem == "peak_gap_by_dynamic_share":
        return "Peak-throughput gap between the servers against the workload's dynamic share"
    if stem.startswith("process_sweep_"):
        return (f"userver throughput against its number of processes, "
                f"{stem.removeprefix('process_sweep_')} workload")
    return f"Figure {stem.replace('_', ' ')}"


def figures_html(fig_dir: Path) -> str:
    """Every PNG of the run's figures, embedded, Figures 2-6 first."""
    pngs = sorted(Path(fig_dir).glob("*.png"), key=lambda p: (not p.stem.startswith("fig"), p.stem))
    items = []
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode()
        items.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(figure_alt(png.stem))}">'
                     f"<figcaption>{_e(png.name)}</figcaption></figure>")
    return "<h2>Figures</h2>" + ("".join(items) or "<p><i>no figures were drawn</i></p>")


def interval_legend(table: pd.DataFrame) -> str:
    """How the intervals in this table were made: one line per kind that occurs (the 'n /
    interval' column of each claim says which), so the legend cannot claim a method no claim used."""
    kinds = {
        "exact (formula)": "exact: a formula of the paper's parameters, no measurement",
        "Poisson": "Poisson: on the counted totals of the points (a ratio of event counts, e.g. listen-queue drops)",
        "over repetitions": "over repetitions: Student's t over the points' repetitions",
        "pooled": "pooled: one point here, the spread taken from the other servers' repetitions"
                  " at the same load",
        "per-second values": "per-second values: n = 1 and no repetitions to pool, so the"
                             " interval is over the point's per-second values (it misses"
                             " run-to-run variation)",
        "batch means": "batch means: one long window cut into batches, t over their means",
    }
    how = table["uncertainty"].fillna("").astype(str)
    used = []
    for key, text in kinds.items():
        ids = table.loc[how.str.contains(key, regex=False), "id"].astype(str).tolist()
        if ids:
            used.append(f"{text} ({', '.join(ids)})")
    rest = sorted({u for u in how if u and not any(k in u for k in kinds)})
    items = "".join(f"<li>{_e(t)}</li>" for t in used + rest)
    return ("<p class=small>reproduced: the 95 % interval lies inside the band; same direction:"
            " outside it but inside the looser band in brackets; inconclusive: the interval"
            " straddles an edge. Each claim's interval, as its 'n / interval' column says:</p>"
            f"<ul class=small>{items or '<li>no claim was measured</li>'}</ul>"
            "<p class=small>Rules: data/paper/rules.csv.</p>")


def page(table: pd.DataFrame, manifest: dict, run: Path, fig_dir: Path, title: str,
         report_git: dict | None = None) -> str:
    """The front page as an HTML fragment (style included): the paper, the verdicts, the
    figures, then the provenance folded."""
    return (f'{STYLE}<div class="ukweb-front"><h1>{_e(title)}</h1>'
            f"<p>Reproduces: {paper.citation()}</p>"
            "<h2>The paper's claims against this run</h2>"
            + verdict_counts_html(table) + interval_legend(table)
            + claims_table_html(table) + figures_html(fig_dir)
            + provenance_html(manifest, run, report_git) + "<h2>The notebooks</h2></div>")


def standalone(title: str, body: str) -> str:
    """A complete HTML document around a fragment."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"</head><body>{STYLE}<div class='ukweb-front'>{body}</div></body></html>\n")


def write_claims(table: pd.DataFrame, out: Path) -> list[Path]:
    """claims.json and claims.md (claims.write), and claims.html: the table as a page."""
    targets = claims.write(table, out)
    html_path = out / "claims.html"
    html_path.write_text(standalone("Claims", verdict_counts_html(table) + claims_table_html(table)))
    return targets + [html_path]
