"""The variance a run's points show, measured from its logs: the inputs of the variance budget
(ukweb.budget) and of the batch length (ukweb.batches), stored in params/variance.yaml by
bench/variance.py, never typed by hand.

Per repetition the per-second ok replies over warm-up and measurement (warm-up seconds from
warmup_per_second.csv or the request log, measured seconds by completion time, ukweb.completions), the
first SKIP_S seconds (connections opening) left out; a run not compacted gives its measured
windows. From them, per point:
- sigma_rel: the per-second standard deviation around the repetition's own linear trend, over
  its mean (the noise a long steady window averages; the trend is the decay from the pre-warmed
  cache that a carried series settles away);
- between-repetition coefficient of variation of the measured replies/s (what short repeated
  points below saturation show).
And per server family (ktux, userver) over the saturated points: the lag 1..MAX_LAG
autocorrelation of those seconds around their mean (not detrended: the larger, conservative
figure, since a 16-s series' trend removal biases it low), pooled as the mean over repetitions,
and its integrated time tau_int (ukweb.batches.integrated_time).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ukweb import batches, completions, logs
from ukweb.analysis import DONE, point_dirs, point_key, point_status

SKIP_S = 2
MAX_LAG = 8


def family(server: str) -> str:
    return "ktux" if server == "ktux" else "userver"


def seconds(point: Path) -> np.ndarray:
    """Per-second ok replies of one repetition: the compacted warm-up's seconds (by start, as
    warmup_per_second.csv keeps them), then the measured window by completion
    (ukweb.completions); a run not compacted gives its measured window only."""
    summary = logs.read_summary(point)
    warm = int(summary.get("warmup_s", 0))
    measured = completions.measured(point, summary=summary).rates()
    wps = point / completions.WARMUP_FILE
    if not wps.exists():
        return measured
    w = pd.read_csv(wps).set_index("second")["ok"].reindex(range(warm), fill_value=0)
    return np.concatenate([w.to_numpy(dtype=float), measured])[SKIP_S:]


def detrended_sigma_rel(x: np.ndarray) -> float:
    if len(x) < 4 or x.mean() <= 0:
        return math.nan
    t = np.arange(len(x))
    resid = x - np.polyval(np.polyfit(t, x, 1), t)
    return float(resid.std(ddof=2) / x.mean())


def short_series_corrected(rho: np.ndarray, n: int, lags: int = 6) -> float:
    """tau_int of a series seen only in pieces of n seconds, corrected for the bias that removing
    each piece's own mean puts into its autocorrelation (Priestley 1981, §5.3: the sample
    autocovariance around the sample mean is low by about Var(mean) = sigma^2 tau_int / n at
    every lag, and the biased estimator by a factor (n - k) / n): rho_k = rho^_k n/(n-k)
    (1 - tau/n) + tau/n, iterated to a fixed point, summed over the first `lags` lags (a piece
    of n = 14 s says nothing of longer lags)."""
    if n < 2 or not len(rho):
        return math.nan
    k = np.arange(1, len(rho) + 1)
    tau = batches.integrated_time(rho)
    for _ in range(50):
        cur = np.minimum(rho * n / (n - k) * (1 - tau / n) + tau / n, 1.0)
        tau = batches.integrated_time(cur[:lags])
    return float(tau)


def measure(run: Path, saturated_from: int = 700) -> dict:
    """The variance inputs of a run (see the module docstring), as plain YAML-able data."""
    rows, acfs, disk, lengths = [], {"ktux": [], "userver": []}, [], []
    for p in point_dirs(run):
        if point_status(p)[0] != DONE:
            continue
        key = point_key(p)
        x = seconds(p)
        summ = logs.read_summary(p)
        rows.append({**key, "ops": float(np.mean(x[-int(summ["measure_s"]):])) if len(x) else math.nan,
                     "sigma_rel": detrended_sigma_rel(x)})
        if key["connections"] >= saturated_from and len(x) > MAX_LAG + 2:
            acfs[family(key["server"])].append(batches.autocorrelation(x, MAX_LAG))
            lengths.append(len(x))
            if (p / "system.csv").exists():
                system = logs.read_system(p)
                if "disk_bytes" in system and len(system):
                    disk.append(float(system["disk_bytes"].clip(lower=0).mean()))
    table = pd.DataFrame(rows)
    acf = {f: [round(float(v), 3) for v in np.nanmean(np.array(a), axis=0)] for f, a in acfs.items() if a}
    n = int(np.median(lengths)) if lengths else 0
    corrected = {f: short_series_corrected(np.array(a), n) for f, a in acf.items()}
    out: dict = {"saturated_from": saturated_from, "skip_s": SKIP_S, "series_s": n,
                 "acf": acf,
                 "tau_int_raw_s": {f: round(batches.integrated_time(np.array(a)), 2)
                                   for f, a in acf.items()},
                 "tau_int_s": {f: round(t, 2) for f, t in corrected.items()},
                 "disk_mb_per_s": round(float(np.median(disk)) / 1e6, 3) if disk else None,
                 "points": {}}
    for (w, s, c), g in table.groupby(["workload", "server", "connections"], sort=True):
        cv = float(g["ops"].std(ddof=1) / g["ops"].mean()) if len(g) > 1 and g["ops"].mean() > 0 else None
        out["points"].setdefault(w, {}).setdefault(s, {})[int(c)] = {
            "ops": round(float(g["ops"].mean()), 1),
            "sigma_rel": round(float(g["sigma_rel"].median()), 4),
            "cv_reps": None if cv is None else round(cv, 4), "n": len(g)}
    return out
