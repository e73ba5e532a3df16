"""What a point's measured window counts: the requests that *complete* inside it (design.md,
Metrics), whatever phase they started in, read from the request log's t_end_us against the
window bounds loadgen wrote in summary.json.

loadgen 2 (summary "loadgen_version": 2) writes the bounds ("window_us") and logs every request
still in flight when the window closes (error `inflight`, t_end_us = the close). loadgen 1 did
neither: its bounds were warmup_s and warmup_s + measure_s seconds after the run's start by
construction (worker_init: warm_end = t0 + warmup_s·1e6, run_end = warm_end + duration_s·1e6,
the log's time base), so the same count is read from its t_end_us, but the requests in flight at
its end were dropped and cannot be counted or listed. A loadgen-1 run compacted with
`--measured-only` before the completion rule kept only the rows *started* in the measured window;
the replies started in the warm-up and completed in the window survive only as counts in
warmup_per_second.csv (its seconds >= warmup_s, by completion), and are counted from there (no
latency for them).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ukweb import logs

log = logging.getLogger(__name__)

WARMUP_FILE = "warmup_per_second.csv"  # ukweb.compact --measured-only
INFLIGHT = "inflight"


def window_us(summary: dict) -> tuple[int, int]:
    """The measured window [start, end) in the log's time base (µs since the run started)."""
    if "window_us" in summary:
        start, end = summary["window_us"]["measure"]
        return int(start), int(end)
    try:  # loadgen 1: the bounds its worker_init set (see the module docstring)
        warm, measure = float(summary.get("warmup_s", 0)), float(summary["measure_s"])
    except (KeyError, TypeError, ValueError) as exc:
        raise logs.LogError(f"summary.json has neither window_us nor measure_s: {exc}") from exc
    start = int(warm * 1e6)
    return start, start + int(measure * 1e6)


def inflight_logged(summary: dict) -> bool:
    """Whether loadgen logged the requests in flight at the close (loadgen 2 on)."""
    return int(summary.get("loadgen_version", 1)) >= 2


@dataclass
class Measured:
    """The measured window of one point, counted by completion.

    completed: the log's rows completed in [start, end) (ok or not, never in flight);
    extra: per-second counts (second from the window's start, requests, ok, ok_bytes) of
    completions the log has no rows for (a loadgen-1 run compacted by phase), else empty;
    inflight: rows logged in flight at the close (None: the run did not log them);
    after_close: loadgen-1 rows completed at or after the window's end (its last event batch),
    counted nowhere."""

    start_us: int
    end_us: int
    completed: pd.DataFrame
    extra: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["second", "requests", "ok", "ok_bytes"]))
    inflight: int | None = None
    after_close: int = 0

    @property
    def seconds(self) -> float:
        return (self.end_us - self.start_us) / 1e6

    @property
    def ok(self) -> pd.DataFrame:
        return self.completed[self.completed["ok"].astype(bool)]

    def totals(self) -> dict:
        """requests, ok, errors, ok bytes and those started in the warm-up, rows and extra."""
        ok = self.ok
        extra_req, extra_ok = int(self.extra["requests"].sum()), int(self.extra["ok"].sum())
        requests, oks = len(self.completed) + extra_req, len(ok) + extra_ok
        started_warm = int((self.completed["t_start_us"] < self.start_us).sum()) + extra_req
        return {"requests": requests, "ok": oks, "errors": requests - oks,
                "ok_bytes": int(ok["bytes"].sum()) + int(self.extra["ok_bytes"].sum()),
                "started_in_warmup": started_warm,
                "from_counts": extra_req}

    def rates(self) -> np.ndarray:
        """ok replies completed in each whole second of the window, from its start; a reply in
        the last fraction of a window that is not a whole number of seconds joins the last bin."""
        bins = int(math.floor(self.seconds + 1e-9))
        if bins < 1:
            return np.zeros(0)
        index = ((self.ok["t_end_us"].to_numpy() - self.start_us) // 1_000_000).clip(0, bins - 1)
        counts = np.bincount(index.astype(int), minlength=bins).astype(float)
        for second, ok in zip(self.extra["second"].astype(int), self.extra["ok"], strict=True):
            counts[min(max(second, 0), bins - 1)] += ok
        return counts


def _extra_counts(point: Path, summary: dict, start_us: int, end_us: int) -> pd.DataFrame:
    """Completions in the window whose rows a phase-based compaction dropped (see docstring)."""
    path = Path(point) / WARMUP_FILE
    empty = pd.DataFrame(columns=["second", "requests", "ok", "ok_bytes"])
    if inflight_logged(summary) or not path.is_file():
        return empty
    counts = pd.read_csv(path)
    first, last = math.ceil(start_us / 1e6), end_us / 1e6
    sel = counts[(counts["second"] >= first) & (counts["second"] < last)].copy()
    sel["second"] = sel["second"] - first
    return sel.reset_index(drop=True) if len(sel) else empty


def measured(point: Path, requests: pd.DataFrame | None = None,
             summary: dict | None = None) -> Measured:
    """The measured window of a point directory, counted by completion."""
    summary = logs.read_summary(point) if summary is None else summary
    requests = logs.read_requests(point) if requests is None else requests
    return count(requests, summary, _extra_counts(point, summary, *window_us(summary)))


def count(requests: pd.DataFrame, summary: dict, extra: pd.DataFrame | None = None) -> Measured:
    """Count a request log (rows as ukweb.logs.read_requests) against summary's window."""
    start, end = window_us(summary)
    t_end = requests["t_end_us"]
    flying = requests["error"].astype(str) == INFLIGHT
    inside = (t_end >= start) & (t_end < end) & ~flying
    result = Measured(start, end, requests[inside])
    if extra is not None and len(extra):
        result.extra = extra
    if inflight_logged(summary):
        result.inflight = int(flying.sum())
    else:
        result.after_close = int(((t_end >= end) & ~flying).sum())
    return result


def started_phase_count(requests: pd.DataFrame) -> pd.DataFrame:
    """The rows the old rule counted: started in the measured window (phase `measure`) and
    completed before the run stopped; what loadgen 1 and the analysis before issue 17 read."""
    return requests[(requests["phase"].astype(str) == "measure")
                    & (requests["error"].astype(str) != INFLIGHT)]
