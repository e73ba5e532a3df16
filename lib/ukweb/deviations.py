"""A run's deviations from the paper's testbed, less those its own data refutes.

The testbed records a deviation when a check fails at the start of a sweep. One of these
checks was wrong as it then was: `quiet_machine` compared the 1-minute load average with a
limit, and right after a calibration (16 userver processes and the CPU thief) that average
stays near 10 for a minute on an idle machine. The manifest records the 1-, 5- and 15-minute
averages at the same moment; when the 1-minute one is more than twice the 15-minute one, the
load was a burst that had just ended, not other processes sharing the machine (today's check
samples CPU busy time instead, ukweb.testbed.QUIET_BUSY_PCT).
"""

from __future__ import annotations

# 1-minute / 15-minute load average above which the load is a burst still decaying.
BURST_RATIO = 2.0


def _step(dev: object) -> str:
    return str(dev.get("step") or dev.get("setting") or "") if isinstance(dev, dict) else ""


def refuted(dev: object, manifest: dict) -> str | None:
    """Why the run's data refutes this deviation, or None when it stands."""
    if _step(dev) != "quiet_machine" or "load average" not in str(dev.get("reason", "")):
        return None
    load = (manifest.get("host") or {}).get("loadavg")
    if not (isinstance(load, list) and len(load) == 3 and all(isinstance(x, int | float) for x in load)):
        return None
    one, five, fifteen = load
    if fifteen <= 0 or one <= BURST_RATIO * fifteen:
        return None
    return (f"the run recorded load averages {one:g} / {five:g} / {fifteen:g} (1 / 5 / 15 min): "
            "a burst that had just ended (the calibration before the sweep), not processes "
            "sharing the machine")


def split(manifest: dict) -> tuple[list, list[tuple[object, str]]]:
    """(deviations that stand, [(deviation, why it is refuted)])."""
    shown, gone = [], []
    for dev in manifest.get("deviations", []) or []:
        why = refuted(dev, manifest)
        if why:
            gone.append((dev, why))
        else:
            shown.append(dev)
    return shown, gone
