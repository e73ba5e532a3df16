"""What a profile measures: its points (one SPECweb99 iteration each) and the order they run in,
from the validated parameters alone, so a run's status and its time budget are known without a
testbed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from ukweb.sweep_params import SweepParams


@dataclass(frozen=True)
class Point:
    workload: str
    server: str
    connections: int
    repetition: int

    def rel(self) -> Path:
        return Path("points", self.workload, self.server, f"c{self.connections}", f"r{self.repetition}")

    def label(self) -> str:
        return f"{self.workload}/{self.server}/c{self.connections}/r{self.repetition}"

    def seed(self, base: int) -> int:
        """The load generator's seed for this point: distinct per point, the same on every run.

        [I] One seed for every point would replay the same request sequence at each point of a
        warm series, so its first seconds would hit exactly what the previous point had just
        cached (measured: ~0 misses/s for 6 s, then 80/s); SPECweb99's clients draw anew."""
        return (base * 1_000_003 + zlib.crc32(self.label().encode())) % 4_294_967_291 or 1


def point_dir(run: Path, workload: str, server: str, connections: int, repetition: int) -> Path:
    return run / Point(workload, server, connections, repetition).rel()


def carried(params, workload: str, server: str, connections: int) -> bool:
    """A point of a figure's series at or above carry_from: measured on the series' carried
    server. A process-sweep-only series (one point) stays a fresh pre-warmed point: settling a
    series for one point would cost minutes each."""
    return (params.carry_from is not None and connections >= params.carry_from
            and server in params.servers.get(workload, []))


def plan(params: SweepParams) -> list[Point]:
    """Every point of the profile, in run order, without duplicates."""
    return [p for s in series_plan(params) for p in s]


def series_plan(params: SweepParams) -> list[list[Point]]:
    """The points grouped into series (one workload x one server), each in ascending
    connections, repetitions of a point back to back; a process-sweep point that a figure's
    series already measures is not measured twice."""
    groups: dict[tuple[str, str], list[Point]] = {}
    reps = range(1, params.repetitions + 1)

    for w in params.workloads:
        for s in params.servers[w]:  # a carried point is one long window (batch means), not reps
            groups[(w, s)] = [Point(w, s, c, r) for c in sorted(set(params.connections))
                              for r in (range(1, 2) if carried(params, w, s, c) else reps)]
    ps = params.process_sweep
    if ps is not None:
        sweep_reps = range(1, (ps.repetitions or params.repetitions) + 1)
        for w in ps.workloads:
            for n in ps.procs:
                mine = groups.setdefault((w, f"userver-{n}"), [])
                for r in sweep_reps:
                    if Point(w, f"userver-{n}", ps.connections, r) not in mine:
                        mine.append(Point(w, f"userver-{n}", ps.connections, r))
                mine.sort(key=lambda p: (p.connections, p.repetition))
    return [pts for pts in groups.values() if pts]
