"""The variance budget: where a profile spends its measurement time, what it costs, and the 95 %
half-width it should give each peak-gap claim, from the variance measured on the reference run
(params/variance.yaml, bench/variance.py).

A point's expected relative standard error:
- carried (connections >= carry_from, one long window, batch means): sigma_rel x sqrt(tau_int /
  window), with (window / batch_s) - 1 degrees of freedom (ukweb.batches);
- short repeated points below: the repetitions' coefficient of variation / sqrt(repetitions).
A claim's gap of A over B: t x 100 x (A/B) x sqrt(rse_A^2 + rse_B^2), at the points it reads
(a peak: the reference run's peak of that curve). T1, the trend of the peak gaps, is given the
largest of its peak gaps' half-widths (an upper bound: its slope's is smaller).

Allocation: every carried point starts at min_batches; then the batch that narrows a claim above
target_half_pp (AIM_PP without one) most per second of measurement is added, again and again,
until every claim meets it or max_window_s stops it (with a target), or until max_minutes is
used (without one). The run's
time: series set-up and settling (settle_taus x tau, tau = the memory cap / the disk's MB/s,
capped by settle_max_s; the server start is in the series overhead), then per point its warm-up
(transition_s when carried) + window + overhead. A profile whose windows do not fit max_minutes is refused (BudgetError) naming the
claims its time would leave above target; so is one whose claims cannot reach it at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from scipy import stats

from ukweb.paths import REPO
from ukweb.plan import carried, series_plan

# The claims that read peak gaps (issue 17: each must reach a 95 % half-width <= 15 pp):
# id -> (workload, A, B, where: "peak", "all" or a connection count).
PEAK_GAP_CLAIMS: dict[str, tuple[str, str, str, object]] = {
    "S2": ("static", "ktux", "userver-16", "peak"),
    "S3": ("static", "ktux", "userver-16", 1100),
    "D1": ("dynamic", "userver-8", "ktux", "peak"),
    "D4": ("dynamic", "userver-8", "ktux", 1300),
    "M1": ("mix30", "ktux", "userver-8", "peak"),
    "M2": ("mix30", "ktux", "userver-8", 1500),
    "M3": ("mix50", "ktux", "userver-8", "peak"),
    "M4": ("mix50", "userver-8", "ktux", "all"),
    "M6": ("mix80", "userver-8", "ktux", "peak"),
}
T1_WORKLOADS = {"static": "userver-16", "dynamic": "userver-8", "mix30": "userver-8",
                "mix50": "userver-8", "mix80": "userver-8"}
CONFIDENCE = 0.95
# The half-width a profile without a target_half_pp aims at when it fills its time (issue 17:
# every peak-gap claim <= 15 pp): claims above it get batches first, most narrowing per second.
AIM_PP = 15.0

# [I] What a point costs besides its warm-up and measurement (server start/stop, Reset, Fetch,
# logs) and a series besides its points (cache eviction, pre-warm, cgroup): the paper reference
# run took 5,816 s for 296 points in 20 series (19.1 s a point, 16 s of it measured).
POINT_OVERHEAD_S = 3.0
SERIES_OVERHEAD_S = 8.0
# [I] A carried point has no server start/stop or pre-warm: Reset, Fetch, the logs (estimated
# from the fresh points' overhead less the server's start and stop; to be measured).
CARRIED_OVERHEAD_S = 1.5


class BudgetError(ValueError):
    """The profile's variance budget cannot be met in its time; the message names the claims."""


def load_variance(path: str | Path | None) -> dict | None:
    if not path:
        return None
    p = Path(path)
    p = p if p.is_absolute() else REPO / p
    if not p.is_file():
        raise BudgetError(f"variance file {p} is missing: run bench/variance.py")
    return yaml.safe_load(p.read_text())


def t_q(dof: int) -> float:
    return float(stats.t.ppf((1 + CONFIDENCE) / 2, dof)) if dof >= 1 else math.inf


def family(server: str) -> str:
    return "ktux" if server == "ktux" else "userver"


@dataclass
class Plan:
    """A profile's measurement plan: carried windows per (workload, server, connections), the
    expected half-width per claim, the settling and the estimated minutes."""

    batches: dict[str, int]
    tau_s: float
    settle_s: float
    windows: dict[tuple[str, str, int], float] = field(default_factory=dict)
    half_pp: dict[str, float] = field(default_factory=dict)
    minutes: float = 0.0

    def table(self) -> str:
        claims = ", ".join(f"{c} {h:.1f}" for c, h in self.half_pp.items())
        b = ", ".join(f"{f} {s} s" for f, s in self.batches.items())
        return (f"expected 95 % half-width per claim (pp): {claims}; batches {b}, "
                f"settling {self.settle_s:.0f} s a carried series (tau {self.tau_s:.0f} s), "
                f"about {self.minutes:.0f} min")


class Budget:
    """The budget of one profile (a SweepParams) against the measured variance."""

    def __init__(self, params, variance: dict) -> None:
        self.p, self.v = params, variance
        b = variance.get("batch_s")
        self.batches = ({f: int(params.batch_s) for f in ("ktux", "userver")} if params.batch_s
                        else {f: int(b[f]) for f in ("ktux", "userver")} if isinstance(b, dict)
                        else {f: int(b) for f in ("ktux", "userver")})
        mb = variance.get("disk_mb_per_s") or 3.0
        cap = (params.memory_mb or 512) * 1024 * 1024
        self.tau_s = cap / (mb * 1e6)
        self.settle_s = min(params.settle_taus * self.tau_s, params.settle_max_s)

    def batch(self, server: str) -> int:
        return self.batches[family(server)]

    def carried(self, workload: str, server: str, connections: int) -> bool:
        return carried(self.p, workload, server, connections)

    def _point(self, w: str, s: str, c: int) -> dict:
        return ((self.v.get("points") or {}).get(w) or {}).get(s, {}).get(c) or {}

    def _peak(self, w: str, s: str) -> int | None:
        pts = ((self.v.get("points") or {}).get(w) or {}).get(s) or {}
        mine = [c for c in pts if c in self.p.connections]
        return max(mine, key=lambda c: pts[c]["ops"]) if mine else None

    def rse(self, w: str, s: str, c: int, window: float) -> tuple[float, int]:
        """(expected relative standard error, degrees of freedom) of one curve point."""
        pt = self._point(w, s, c)
        if self.carried(w, s, c):
            tau = self.v["tau_int_s"][family(s)]
            m = int(window // self.batch(s))
            return pt.get("sigma_rel", math.nan) * math.sqrt(tau / window), m - 1
        reps = self.p.repetitions
        cv = pt.get("cv_reps")
        return (cv / math.sqrt(reps) if cv is not None else math.nan), reps - 1

    def reads(self, claim: str) -> list[tuple[tuple[str, str, int], tuple[str, str, int]]]:
        """The pairs of curve points (A's, B's) a claim's gap reads."""
        if claim == "T1":
            return [p for w, u in T1_WORKLOADS.items() for p in self._pairs(w, "ktux", u, "peak")]
        return self._pairs(*PEAK_GAP_CLAIMS[claim])

    def _pairs(self, w: str, a: str, b: str, where: object) -> list:
        if w not in self.p.workloads or a not in self.p.servers.get(w, []) \
                or b not in self.p.servers.get(w, []):
            return []
        if where == "peak":
            pa, pb = self._peak(w, a), self._peak(w, b)
            return [((w, a, pa), (w, b, pb))] if pa and pb else []
        if where == "all":
            return [((w, a, c), (w, b, c)) for c in sorted(set(self.p.connections))]
        c = min(self.p.connections, key=lambda x: (abs(x - int(where)), x))
        return [((w, a, c), (w, b, c))]

    def worst(self, claim: str, windows: dict) -> tuple[float, tuple | None]:
        """The expected half-width (pp) of a claim with the given carried windows, and the pair
        of points that sets it (the widest of the pairs it reads)."""
        worst, where = math.nan, None
        for ka, kb in self.reads(claim):
            (ra, da), (rb, db) = (self.rse(*ka, windows.get(ka, self.min_window(ka[1]))),
                                  self.rse(*kb, windows.get(kb, self.min_window(kb[1]))))
            oa, ob = self._point(*ka).get("ops"), self._point(*kb).get("ops")
            ratio = oa / ob if oa and ob else 1.0
            h = t_q(min(da, db)) * 100 * ratio * math.hypot(ra, rb)
            if where is None or h > worst:
                worst, where = h, (ka, kb)
        return worst, where

    def half(self, claim: str, windows: dict) -> float:
        return self.worst(claim, windows)[0]

    def min_window(self, server: str = "ktux") -> float:
        if self.p.carried_s:
            return float(self.p.carried_s)
        return float(self.p.min_batches * self.batch(server))

    def claims(self) -> list[str]:
        return [c for c in [*PEAK_GAP_CLAIMS, "T1"] if self.reads(c)]

    def allocate(self, limit_min: float | None = None) -> dict:
        """Carried windows: min_window everywhere, then, worst claim first, one batch more for
        the pair of points that sets its half-width, until every claim meets target_half_pp
        (or, without a target, until the time is used), no window may grow (max_window_s), or
        the next batch would pass limit_min minutes."""
        windows = {(p.workload, p.server, p.connections): self.min_window(p.server)
                   for s in series_plan(self.p) for p in s
                   if self.carried(p.workload, p.server, p.connections)}
        if self.p.carried_s:
            return windows
        target = self.p.target_half_pp
        if target is None and limit_min is None:
            return windows
        aim = target if target is not None else AIM_PP
        stuck: set[str] = set()
        for _ in range(5000):
            halves = {c: self.worst(c, windows) for c in self.claims() if c not in stuck}
            open_ = {c: hp for c, hp in halves.items() if hp[1] and hp[0] > aim}
            if not open_ and target is None:  # all at the aim: narrow whichever gains most
                open_ = {c: hp for c, hp in halves.items() if hp[1]}
            if not open_:
                break
            best, claim, grow = -1.0, None, []
            for c, (h, pair) in open_.items():  # the batch that narrows a claim most per second
                ks = [k for k in pair if k in windows
                      and windows[k] + self.batch(k[1]) <= self.p.max_window_s]
                if not ks:
                    stuck.add(c)
                    continue
                trial = {**windows, **{k: windows[k] + self.batch(k[1]) for k in ks}}
                gain = (h - self.worst(c, trial)[0]) / sum(self.batch(k[1]) for k in ks)
                if gain > best:
                    best, claim, grow = gain, c, ks
            if claim is None:
                break
            for k in grow:
                windows[k] += self.batch(k[1])
            if limit_min is not None and self.minutes(windows) > limit_min:
                for k in grow:
                    windows[k] -= self.batch(k[1])
                stuck.add(claim)
        return windows

    def minutes(self, windows: dict) -> float:
        total = 0.0
        for pts in series_plan(self.p):
            total += SERIES_OVERHEAD_S
            if any(self.carried(p.workload, p.server, p.connections) for p in pts):
                total += self.settle_s
            for p in pts:
                if self.carried(p.workload, p.server, p.connections):
                    w = windows.get((p.workload, p.server, p.connections),
                                    self.min_window(p.server))
                    total += self.p.transition_s + w + CARRIED_OVERHEAD_S
                else:
                    total += self.p.warmup_s + self.p.duration_s + POINT_OVERHEAD_S
        return total / 60.0

    def plan(self, limit_min: float | None = None) -> Plan:
        windows = self.allocate(limit_min)
        return Plan(self.batches, self.tau_s, self.settle_s, windows,
                    {c: self.half(c, windows) for c in self.claims()}, self.minutes(windows))

    def check(self) -> Plan:
        """The plan, or BudgetError naming the claims the profile's time leaves undecided: with
        a target, the windows it needs must fit max_minutes; without one, max_minutes is filled
        worst claim first and only the fixed costs must fit."""
        target, limit = self.p.target_half_pp, self.p.max_minutes
        plan = self.plan(None if target is not None else limit)
        stuck = target is not None and [c for c, h in plan.half_pp.items() if h > target]
        if stuck:
            raise BudgetError(
                f"params: {self.p.profile}: claims {', '.join(stuck)} cannot reach a 95 % "
                f"half-width of {target:g} pp even with {self.p.max_window_s:g}-s windows "
                f"(expected {', '.join(f'{c} {plan.half_pp[c]:.0f}' for c in stuck)} pp): raise "
                "max_window_s or target_half_pp, or measure fewer claims")
        if limit is not None and plan.minutes > limit:
            fit = self.plan(limit) if target is not None else plan
            left = [c for c, h in fit.half_pp.items() if target is None or h > target]
            target = target if target is not None else 0.0
            raise BudgetError(
                f"params: {self.p.profile}: the variance budget needs about {plan.minutes:.0f} "
                f"min (settling included), over max_minutes={limit:g}; "
                + (f"within {limit:g} min claims {', '.join(left)} would be left undecided "
                   f"(expected half-width {', '.join(f'{fit.half_pp[c]:.0f}' for c in left)} "
                   + (f"pp > {target:g}): " if target else "pp, nothing left to narrow them): ")
                   if left else "")
                + "raise max_minutes or target_half_pp, or drop points")
        return plan
