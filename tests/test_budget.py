"""The variance budget and its inputs: batch means cover an autocorrelated mean where the
seconds' own interval does not, the short-series correction of tau_int, params/variance.yaml as
bench/variance.py writes it, and a profile whose budget its time cannot meet refused naming
the claims left undecided."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ukweb import batches, budget, runs, variance
from ukweb.paths import PARAMS, REPO
from ukweb.sweep_params import ParamsError, load_params, validate

PAPER = yaml.safe_load((PARAMS / "paper.yaml").read_text())
REFERENCE = REPO / "data" / "reference" / "paper"


def ar1(rng: np.random.Generator, rho: float, n: int, mean: float = 1000.0,
        sd: float = 100.0) -> np.ndarray:
    """An AR(1) series: per-second replies correlated like a saturated point's."""
    e = rng.normal(0, sd * math.sqrt(1 - rho * rho), n)
    x = np.empty(n)
    x[0] = rng.normal(0, sd)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return mean + x


def test_integrated_time_of_ar1_is_its_known_value() -> None:
    rho = 0.7
    acf = np.array([rho ** k for k in range(1, 40)])
    assert batches.integrated_time(acf) == pytest.approx((1 + rho) / (1 - rho), rel=1e-3)
    long = ar1(np.random.default_rng(3), rho, 20_000)
    measured = batches.integrated_time(batches.autocorrelation(long, 40))
    assert measured == pytest.approx((1 + rho) / (1 - rho), rel=0.15)


def test_batch_means_cover_an_autocorrelated_mean_where_seconds_do_not() -> None:
    # rho 0.7: tau_int 5.7 s; batches of 12 s (~2 tau) over 240-s windows, 400 windows
    rng = np.random.default_rng(1)
    cover_b = cover_s = 0
    for _ in range(400):
        x = ar1(rng, 0.7, 240)
        bm = batches.batch_means(x, 12)
        assert bm.batches == 20 and bm.dof == 19
        cover_b += abs(bm.mean - 1000) <= bm.half_width()
        naive = 2.0 * x.std(ddof=1) / math.sqrt(len(x))
        cover_s += abs(x.mean() - 1000) <= naive
    assert cover_b / 400 >= 0.88, cover_b
    assert cover_s / 400 <= 0.75, cover_s


def test_batch_means_need_two_batches() -> None:
    bm = batches.batch_means(np.arange(5.0), 3)
    assert bm.batches == 1 and bm.dof == 0 and math.isnan(bm.se) and math.isnan(bm.half_width())
    with pytest.raises(ValueError, match="batch_s"):
        batches.batch_means(np.arange(5.0), 0)


def test_short_pieces_underestimate_tau_and_the_correction_recovers_it() -> None:
    # What the reference run gives: many 14-s pieces of a series with tau_int ~ 9 s (rho 0.8)
    rng = np.random.default_rng(7)
    pieces = [ar1(rng, 0.8, 14) for _ in range(600)]
    acf = np.nanmean([batches.autocorrelation(p, 8) for p in pieces], axis=0)
    truth = (1 + 0.8) / (1 - 0.8)
    raw = batches.integrated_time(acf)
    corrected = variance.short_series_corrected(acf, 14)
    assert raw < 0.6 * truth
    assert abs(corrected - truth) < abs(raw - truth) and corrected > 0.6 * truth


@pytest.mark.skipif(not (REFERENCE / "points").is_dir(), reason="no reference run")
def test_variance_yaml_is_what_bench_variance_writes(tmp_path: Path) -> None:
    out = tmp_path / "variance.yaml"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "variance.py"), str(REFERENCE),
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((PARAMS / "variance.yaml").read_text())
    data = yaml.safe_load(out.read_text())
    for fam, tau in data["tau_int_s"].items():  # batches of at least 2 tau_int
        assert data["batch_s"][fam] >= 2 * tau


def test_the_budget_gives_time_where_the_claims_read() -> None:
    p = load_params(PARAMS / "paper.yaml")
    b = runs.budget_of(p)
    plan = b.plan(p.max_minutes)
    assert set(plan.half_pp) == {*budget.PEAK_GAP_CLAIMS, "T1"}
    assert plan.minutes <= p.max_minutes
    read = {k for c in plan.half_pp for pair in b.reads(c) for k in pair}
    idle = {k: w for k, w in plan.windows.items() if k not in read}
    assert idle and all(w == p.min_batches * b.batch(k[1]) for k, w in idle.items())
    grown = [k for k, w in plan.windows.items() if w > p.min_batches * b.batch(k[1])]
    assert grown and set(grown) <= read
    # more time narrows every claim (or leaves it as it was) until the aim is reached; from
    # the reference run's variance the plan reaches it within max_minutes, so compare less time
    less = b.plan(plan.minutes * 0.9)
    assert all(plan.half_pp[c] <= less.half_pp[c] + 1e-9 for c in plan.half_pp)
    assert sum(plan.half_pp.values()) < sum(less.half_pp.values())


def test_settling_is_in_the_estimate() -> None:
    a = validate({**PAPER, "settle_taus": 0})
    b = validate({**PAPER, "settle_taus": 1})
    n_series = sum(1 for s in runs.series_plan(b)
                   if any(budget.carried(b, x.workload, x.server, x.connections) for x in s))
    fixed = [runs.budget_of(x).minutes(runs.budget_of(x).allocate()) for x in (a, b)]
    assert n_series == 12
    assert fixed[1] - fixed[0] == pytest.approx(n_series * runs.budget_of(b).settle_s / 60)


def test_a_budget_its_time_cannot_meet_is_refused_naming_the_claims(tmp_path: Path) -> None:
    raw = {**PAPER, "workloads": ["static", "dynamic"], "target_half_pp": 7,
           "max_window_s": 3000, "max_minutes": 40}
    with pytest.raises(ParamsError, match=r"over max_minutes=40; within 40 min claims "
                                          r"(S2|S3|D1|D4)"):
        runs.check_budget(validate(raw))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path), "--root",
                          str(tmp_path / "raw")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "left undecided" in res.stderr and "S3" in res.stderr
    assert not (tmp_path / "raw").exists()
    # a target no window can reach is refused too, naming those claims
    with pytest.raises(ParamsError, match=r"claims .*M4.* cannot reach a 95 % half-width of 5"):
        runs.check_budget(validate({**PAPER, "target_half_pp": 5, "max_minutes": None}))
