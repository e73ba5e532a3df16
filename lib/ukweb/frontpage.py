"""The report's front page: what a reviewer reads first.

Verdict counts, the claim table (the paper's sentence, the servers compared, paper against
ours with n and the 95 % interval, the band, the verdict in colour), then the run's provenance
(commit, host, kernel, CPU, dates, every emulation parameter and deviation), then the figures.
Plain HTML with inline styles, so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

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


def _ours(row: pd.Series) -> str:
    from ukweb.claims import ours_text  # late: claims imports this module to write claims.html

    return ours_text(row)


def _paper(row: pd.Series) -> str:
    from ukweb.claims import paper_text

    return paper_text(row)


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
                 _e(r["servers"]), _e(r["points"]), _e(_paper(r)),
                 f"{_e(_ours(r))} {_e(r['unit'])}", _e(r["uncertainty"]), band,
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
    deviations = manifest.get("deviations", [])
    dev_rows = [(d.get("step") or d.get("setting") or "", d.get("reason") or json.dumps(d))
                if isinstance(d, dict) else ("", str(d)) for d in deviations]
    parts = ["<h2>Provenance</h2>", _kv_table(summary),
             "<h3>Host</h3>", _kv_table(_flat(manifest.get("host", {}))),
             "<h3>Emulation of the paper's testbed</h3>", _kv_table(_flat(manifest.get("testbed", {}))),
             "<h3>Calibration</h3>", _kv_table(_flat(manifest.get("calibration") or {})),
             "<h3>Deviations from the paper's testbed</h3>", _kv_table(dev_rows),
             "<h3>Parameters</h3>", _kv_table(_flat(params)),
             "<h3>Tools</h3>", _kv_table(_flat(manifest.get("tools", {})))]
    return "".join(parts)


def figures_html(fig_dir: Path) -> str:
    """Every PNG of the run's figures, embedded, Figures 2-6 first."""
    pngs = sorted(Path(fig_dir).glob("*.png"), key=lambda p: (not p.stem.startswith("fig"), p.stem))
    items = []
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode()
        items.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(png.name)}">'
                     f"<figcaption>{_e(png.name)}</figcaption></figure>")
    return "<h2>Figures</h2>" + ("".join(items) or "<p><i>no figures were drawn</i></p>")


def page(table: pd.DataFrame, manifest: dict, run: Path, fig_dir: Path, title: str,
         report_git: dict | None = None) -> str:
    """The front page as an HTML fragment (style included)."""
    return (f'{STYLE}<div class="ukweb-front"><h1>{_e(title)}</h1>'
            "<h2>The paper's claims against this run</h2>"
            + verdict_counts_html(table)
            + "<p class=small>reproduced: the 95 % interval lies inside the band; same direction:"
              " outside it but inside the looser band in brackets; inconclusive: the interval"
              " straddles an edge; n = 1: the interval comes from the point's per-second values,"
              " not from repetitions. Rules: data/paper/rules.csv.</p>"
            + claims_table_html(table) + provenance_html(manifest, run, report_git)
            + figures_html(fig_dir) + "<h2>The notebooks</h2></div>")


def standalone(title: str, body: str) -> str:
    """A complete HTML document around a fragment."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"</head><body>{STYLE}<div class='ukweb-front'>{body}</div></body></html>\n")
