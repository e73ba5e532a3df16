"""The rule table (data/paper/rules.csv): how each claim of claims.csv is read and judged.

One row per claim: the metric measured, the servers compared (a over b), the points read, the
direction kind, the paper's value in the metric's unit (or its word when it gives no number),
the band that counts as reproduced,
the looser band that counts as the same direction, and the reading (why, citing the paper).
`judge` compares an estimate's 95 % interval with the two bands and knows no claim or metric.

Bands are intervals, "[30, 50]", "(0, inf)", "[0, half)"; an endpoint is a number, ±inf, or a
name the metric supplies for the run at hand (first/last measured connection count, half the
points compared). The rule table supersedes claims.csv's metric/comparison columns, which keep
the first reading for the record.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ukweb import paths

RULES_CSV = paths.PAPER / "rules.csv"
ENV = "UKWEB_RULES"  # another rule table (ukweb report --rules), seen by the notebooks' kernels
COLUMNS = ["id", "metric", "a", "b", "points", "kind", "paper", "band", "same", "tie", "reading"]
# The direction kinds (issue 11). sign: a gap or ratio whose sign is the claim; level: a value
# with no direction (no "same direction" band); the others name the shape of the effect.
KINDS = ("sign", "level", "peak location", "majority of points", "interior optimum", "trend")
REPRODUCED, SAME, INCONCLUSIVE, NOT_REPRODUCED, NOT_MEASURED = (
    "reproduced", "same direction", "inconclusive", "not reproduced", "not measured")
VERDICTS = (REPRODUCED, SAME, INCONCLUSIVE, NOT_REPRODUCED, NOT_MEASURED)
# Worst first: a claim over several servers holds only as well as its weakest pair.
RANK = {NOT_MEASURED: 0, NOT_REPRODUCED: 1, INCONCLUSIVE: 2, SAME: 3, REPRODUCED: 4}


class RulesError(ValueError):
    """The rule table itself is malformed; the message is one line naming the row and cell."""


@dataclass(frozen=True)
class Interval:
    """An interval with open or closed ends; ends may be names resolved against a run."""

    low: float | str
    high: float | str
    low_open: bool
    high_open: bool
    text: str

    def resolve(self, scale: dict) -> Interval:
        """The interval with named ends replaced by the run's values (KeyError if unknown)."""
        return Interval(_end(self.low, scale), _end(self.high, scale), self.low_open,
                        self.high_open, self.text)

    def contains(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def holds(self, low: float, high: float) -> bool:
        """[low, high] lies inside."""
        return self.contains(low) and self.contains(high)

    def misses(self, low: float, high: float) -> bool:
        """[low, high] lies wholly outside."""
        left = high < self.low or (self.low_open and high == self.low)
        right = low > self.high or (self.high_open and low == self.high)
        return left or right

    def names(self) -> set[str]:
        return {_name(e) for e in (self.low, self.high) if isinstance(e, str)}


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")
_NAMED = re.compile(r"^([a-z_]+)(?:/(\d+(?:\.\d+)?))?$")


def _number_or_name(text: str) -> float | str:
    try:
        return float(text)  # also "inf", "-inf"
    except ValueError:
        if not _NAMED.match(text):
            raise
        return text


def _name(end: str) -> str:
    return _NAMED.match(end).group(1)


def _end(end: float | str, scale: dict) -> float:
    if not isinstance(end, str):
        return end
    name, divisor = _NAMED.match(end).groups()
    return float(scale[name]) / (float(divisor) if divisor else 1.0)


def parse_interval(text: str) -> Interval:
    """'[a, b]', '(a, b)', '[a, b)', ... ; ValueError when the text is not one."""
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an interval like [30, 50] or (0, inf)")
    low, high = _number_or_name(m.group(2)), _number_or_name(m.group(3))
    if not isinstance(low, str) and not isinstance(high, str) and low > high:
        raise ValueError(f"{text!r} is empty (low end above high end)")
    return Interval(low, high, m.group(1) == "(", m.group(4) == ")", text.strip())


@dataclass(frozen=True)
class Rule:
    """One row of the rule table, parsed."""

    id: str
    metric: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    points: str
    kind: str
    paper: float  # the paper's number in the metric's unit (NaN when it gives a word)
    paper_text: str  # as the table gives it: a number or the paper's word ("drop", "higher")
    band: Interval
    same: Interval | None
    tie: float
    reading: str


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _row_rule(row: pd.Series, where: str) -> Rule:
    def cell(name: str) -> str:
        return str(row[name]).strip()

    if not cell("id") or not cell("metric"):
        raise RulesError(f"{where}: id and metric must not be empty")
    if cell("kind") not in KINDS:
        raise RulesError(f"{where}: kind {cell('kind')!r} is not one of {', '.join(KINDS)}")
    try:
        band = parse_interval(cell("band"))
        same = parse_interval(cell("same")) if cell("same") else None
        paper = _number(cell("paper"))
        tie = float(cell("tie")) if cell("tie") else 0.0
    except ValueError as err:
        raise RulesError(f"{where}: {err}") from err
    if cell("kind") == "level" and same is not None:
        raise RulesError(f"{where}: a level has no direction, so no 'same' band")
    if not math.isnan(paper) and not band.names() and not band.contains(paper):
        raise RulesError(f"{where}: the paper's {paper:g} lies outside its own band {band.text}")
    return Rule(cell("id"), cell("metric"), tuple(cell("a").split()), tuple(cell("b").split()),
                cell("points"), cell("kind"), paper, cell("paper"), band, same, tie, cell("reading"))


def check_sign(rule: Rule, neutral: float) -> None:
    """A sign rule's bands keep the paper's sign: neither may reach across the metric's
    neutral value (0 for a gap, 1 for a ratio), so noise around a small gap cannot pass."""
    for name, interval in (("band", rule.band), ("same", rule.same)):
        if interval is None or interval.names():
            continue
        if interval.contains(neutral):
            raise RulesError(f"rules row {rule.id}: {name} {interval.text} reaches "
                             f"{neutral:g}, so it does not keep the paper's sign")


def load(path: Path | None = None, claim_ids: list[str] | None = None) -> dict[str, Rule]:
    """The rule table by claim id; RulesError (one line) when it is malformed or does not
    give every claim in claim_ids exactly one rule."""
    path = Path(path or os.environ.get(ENV) or RULES_CSV)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise RulesError(f"{path}: not a readable CSV table: {err}".splitlines()[0]) from err
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise RulesError(f"{path}: missing column(s) {', '.join(missing)}; "
                         f"expected {','.join(COLUMNS)}")
    rules: dict[str, Rule] = {}
    for i, row in table.iterrows():
        rule = _row_rule(row, f"{path.name} line {i + 2} ({row['id'] or 'no id'})")
        if rule.id in rules:
            raise RulesError(f"{path.name} line {i + 2}: a second rule for claim {rule.id}")
        rules[rule.id] = rule
    if claim_ids is not None:
        lacking = [c for c in claim_ids if c not in rules]
        extra = [r for r in rules if r not in claim_ids]
        if lacking or extra:
            raise RulesError(f"{path.name}: " + "; ".join(
                ([f"no rule for claim(s) {', '.join(lacking)}"] if lacking else [])
                + ([f"rule(s) for unknown claim(s) {', '.join(extra)}"] if extra else [])))
    return rules


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 and math.isfinite(x) else f"{x:.3g}"


def judge(value: float, low: float, high: float, band: Interval,
          same: Interval | None) -> tuple[str, str]:
    """(verdict, why) for an estimate and its 95 % interval [low, high] against the bands.

    reproduced: the interval lies inside the band; same direction: outside the band but
    inside the looser one; not reproduced: outside both; inconclusive: it straddles an edge.
    Without an interval (NaN ends) the value alone is judged.
    """
    if math.isnan(low) or math.isnan(high):
        low = high = value
    shown = _num(value) if low == high else f"[{_num(low)}, {_num(high)}]"
    if band.holds(low, high):
        return REPRODUCED, ""
    if same is None or same.misses(low, high):
        if band.misses(low, high):
            return NOT_REPRODUCED, f"{shown} lies outside the band {band.text}"
        return INCONCLUSIVE, f"{shown} straddles an edge of the band {band.text}"
    if band.misses(low, high) and same.holds(low, high):
        return SAME, f"{shown} lies outside the band {band.text}, inside {same.text}"
    where = "band" if not band.misses(low, high) else "same-direction band"
    text = band.text if where == "band" else same.text
    return INCONCLUSIVE, f"{shown} straddles an edge of the {where} {text}"
