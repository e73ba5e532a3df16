"""Linux's CPU list syntax ('0', '0-3', '0,2-3'), as cpuset.cpus and taskset write it."""

from __future__ import annotations


def parse_cpus(spec: str) -> list[int]:
    """'0', '0-3', '0,2-3' -> sorted CPU numbers; ValueError naming the bad part."""
    cpus: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {spec!r}: {part!r} is not N or N-M")
        cpus.update(range(int(lo), int(hi if sep else lo) + 1))
    return sorted(cpus)


def format_cpus(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)
