"""ktux's TUX-module counters in the system samples (issue 16 item 5): the module's CPU against
the worker's, its actions and accept rounds, the work FIFO's waits, the disk-I/O pool's waits,
one row a second in system.csv beside the CPU, memory and disk columns.

A thread polls /server-status once a second and keeps the last answer; the sampler reads that
copy, so a server too busy to answer at once never delays a sample (the columns then repeat
the last values, and the next answer catches up: they are cumulative counters, differenced by
the sampler).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# system.csv columns (per second, after the sampler's differencing)
MODULE_COLUMNS = ("module_cpu_s", "module_worker_cpu_s", "module_steps", "module_actions",
                  "module_requests", "module_accept_rounds", "module_fifo_wait_s", "pool_waits",
                  "pool_wait_s")


def module_counters(total: dict) -> dict[str, float]:
    """The cumulative module counters of one /server-status "total" (zeros where absent)."""
    m, pool = total.get("module") or {}, total.get("pool") or {}
    return {"module_cpu_s": float(m.get("cpu_s", 0.0)),
            "module_worker_cpu_s": float(m.get("worker_cpu_s", 0.0)),
            "module_steps": float(m.get("steps", 0)),
            "module_actions": float(sum((m.get("actions") or {}).values())),
            "module_requests": float(sum((m.get("requests") or {}).values())),
            "module_accept_rounds": float(m.get("accept_rounds", 0)),
            "module_fifo_wait_s": float(m.get("fifo_wait_s", 0.0)),
            "pool_waits": float(pool.get("waits", 0)),
            "pool_wait_s": float(pool.get("wait_s", 0.0))}


class StatusPoller:
    """The last module counters of a server, refreshed by a thread every `interval` seconds."""

    def __init__(self, status: Callable[[], dict], interval: float = 1.0) -> None:
        self._status, self.interval = status, interval
        self._latest = dict.fromkeys(MODULE_COLUMNS, 0.0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ukweb-statuspoll", daemon=True)
        self.polls = 0

    def counters(self) -> dict[str, float]:
        with self._lock:
            return dict(self._latest)

    def poll(self) -> None:
        try:
            latest = module_counters(self._status()["total"])
        except Exception as exc:  # a busy or stopping server: keep the last answer
            log.debug("status poll: %s", exc)
            return
        with self._lock:
            self._latest = latest
        self.polls += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> StatusPoller:
        self.poll()  # the baseline, before the sampler's first read
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


@contextlib.contextmanager
def sampler_extra(disk: Callable[[], dict[str, float]] | None, kind: str,
                  status: Callable[[], dict]) -> Iterator[Callable[[], dict[str, float]] | None]:
    """The sampler's `extra` columns: the disk model's counters (when there is one) and, for
    ktux, its module counters; None when there are neither."""
    if kind != "ktux":
        yield disk
        return
    with StatusPoller(status) as poller:
        def counters() -> dict[str, float]:
            out = disk() if disk is not None else {}
            out.update(poller.counters())
            return out
        yield counters
