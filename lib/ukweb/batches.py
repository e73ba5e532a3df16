"""Batch means: a confidence interval for the mean of an autocorrelated per-second series.

Past saturation a point's per-second reply rates are correlated for several seconds (measured on
the reference run, params/variance.yaml: lag-1 autocorrelation ~0.5-0.7), so the t interval of
the seconds themselves is too narrow. The method of batch means (Law & Kelton, "Simulation
Modeling and Analysis", §9.5.3) cuts one long measured window into m batches of b seconds each;
when b is a few times the integrated autocorrelation time the batch means are close to
independent, and their t interval with m - 1 degrees of freedom covers the window's mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """rho_1 .. rho_max_lag of one series (biased estimator, the series' own mean removed)."""
    x = np.asarray(x, dtype=float)
    x = x - x.mean()
    denom = float((x * x).sum())
    if len(x) < 2 or denom == 0:
        return np.full(max_lag, math.nan)
    return np.array([float((x[:-k] * x[k:]).sum()) / denom if k < len(x) else math.nan
                     for k in range(1, max_lag + 1)])


def integrated_time(rho: np.ndarray) -> float:
    """tau_int = 1 + 2 sum rho_k, summed up to the first lag whose rho is not positive (the
    initial positive sequence, Geyer 1992): the seconds of a series worth one independent value."""
    total = 1.0
    for r in rho:
        if not r > 0:
            break
        total += 2.0 * float(r)
    return total


@dataclass(frozen=True)
class BatchMeans:
    """mean of the batch means, its standard error and degrees of freedom (batches - 1)."""

    mean: float
    se: float
    dof: int
    batches: int
    batch_s: float

    def half_width(self, confidence: float = CONFIDENCE) -> float:
        if self.dof < 1:
            return math.nan
        return float(stats.t.ppf((1 + confidence) / 2, self.dof)) * self.se


def batch_values(rates: np.ndarray, batch_s: int) -> np.ndarray:
    """The mean of each whole batch of batch_s seconds; the seconds left over at the end (fewer
    than a batch) are not used."""
    rates = np.asarray(rates, dtype=float)
    if batch_s < 1:
        raise ValueError(f"batch_s={batch_s}: expected >= 1 second")
    m = len(rates) // batch_s
    return rates[: m * batch_s].reshape(m, batch_s).mean(axis=1)


def batch_means(rates: np.ndarray, batch_s: int) -> BatchMeans:
    """Batch means of per-second rates with batches of batch_s seconds (batch_values). Fewer
    than 2 batches: se NaN, dof 0."""
    rates = np.asarray(rates, dtype=float)
    means = batch_values(rates, batch_s)
    m = len(means)
    if m == 0:
        return BatchMeans(float(rates.mean()) if len(rates) else math.nan, math.nan, 0, 0,
                          float(batch_s))
    se = float(means.std(ddof=1)) / math.sqrt(m) if m >= 2 else math.nan
    return BatchMeans(float(means.mean()), se, m - 1 if m >= 2 else 0, m, float(batch_s))


def relative_se(sigma_rel: float, tau_int: float, window_s: float) -> float:
    """The expected relative standard error of a window's mean: per-second relative standard
    deviation sigma_rel, one independent value per tau_int seconds."""
    return sigma_rel * math.sqrt(tau_int / window_s) if window_s > 0 else math.inf
