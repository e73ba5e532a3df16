"""Steadiness of a point (ukweb.steady): drift beyond noise, the cache at its cap, the warm-up."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ukweb import steady

CAP = 512 << 20


def samples(fill: float) -> pd.DataFrame:
    return pd.DataFrame({"t": [1.0, 2.0, 3.0], "memory_bytes": [CAP * fill] * 3})


def test_a_climbing_point_is_unsteady_and_says_why() -> None:
    rates = np.array([500, 600, 700, 800, 1500, 1600, 1700, 1800], dtype=float)
    out = steady.checks(rates, samples(0.99), CAP, 10, 10)
    assert not out["steady"] and "throughput drifts" in out["steady_reason"]
    assert out["throughput_drift_pct"] > 100


def test_noise_alone_is_not_drift() -> None:
    # seconds swinging +-30 %, as short points do: halves 1,000 and 1,267 (+27 %), 2 SE = 433
    rates = np.array([1000, 1300, 700, 1250, 1050, 1500], dtype=float)
    out = steady.checks(rates, samples(0.99), CAP, 10, 10)
    assert abs(out["throughput_drift_pct"]) > steady.DRIFT_PCT and out["steady"], out


def test_cache_below_its_cap_and_short_warmup_are_unsteady() -> None:
    flat = np.full(6, 1000.0)
    low = steady.checks(flat, samples(0.5), CAP, 10, 10)
    assert not low["steady"] and low["cache_at_cap"] is False and "cache at 50 % of the cap" in low["steady_reason"] and low["cache_fill_pct"] == 50
    short = steady.checks(flat, samples(0.99), CAP, 3, 10)
    assert not short["steady"] and short["offered_settled"] is False and "warm-up 3 s" in short["steady_reason"]
    ok = steady.checks(flat, samples(0.95), CAP, 10, 10)
    assert ok["steady"] and ok["steady_reason"] == "" and ok["cache_at_cap"] is True
    no_cap = steady.checks(flat, samples(0.1), None, 10, 10)  # no memory cap: not judged
    assert no_cap["steady"] and no_cap["cache_at_cap"] is None


def test_a_file_set_smaller_than_the_cap_is_at_the_cap_when_all_cached() -> None:
    flat = np.full(6, 300.0)
    small = 439e6  # the file set of 100 connections
    held = steady.checks(flat, samples(0.84), CAP, 10, 10, fileset_bytes=small)
    assert held["steady"] and held["cache_at_cap"] is True
    partial = steady.checks(flat, samples(0.40), CAP, 10, 10, fileset_bytes=small)
    assert not partial["steady"] and partial["cache_at_cap"] is False


def test_a_carried_series_settled_short_of_k_tau_is_unsteady_and_says_why() -> None:
    rates = np.full(20, 1000.0)
    short = {"settle_s": 10.0, "settle_taus": 1.0, "tau_s": 150.0}
    out = steady.checks(rates, samples(0.99), CAP, 10, 10, settle=short)
    assert not out["steady"] and out["series_settled"] is False
    assert "series settled 10 s < 1 x tau = 150 s" in out["steady_reason"]
    done = steady.checks(rates, samples(0.99), CAP, 10, 10, settle={**short, "settle_s": 151.0})
    assert done["steady"] and done["series_settled"] is True
    fresh = steady.checks(rates, samples(0.99), CAP, 10, 10)
    assert fresh["steady"] and fresh["series_settled"] is None
