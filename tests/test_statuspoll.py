"""ktux's module counters in the system samples (ukweb.statuspoll + ukweb.sampler), against a
real ktux serving dynamic requests."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import requests

from ukweb import statuspoll
from ukweb.sampler import Sampler
from ukweb.servers import Server, ServerConfig
from ukweb.specweb99 import Request, ResetParams

pytest_plugins = ["servers_fixtures"]


def test_module_columns_per_second_in_system_csv(docroot: Path, tmp_path: Path) -> None:
    from servers_fixtures import kind_unavailable
    if (why := kind_unavailable("ktux")):
        pytest.skip(why)
    srv = Server(ServerConfig(label="ktux", kind="ktux"), docroot, tmp_path / "w").start()
    try:
        srv.reset(ResetParams(maxload=20, pttime=100, maxthread=65, exp1=10, exp2=110))
        out = tmp_path / "system.csv"
        with statuspoll.sampler_extra(None, "ktux", srv.status) as extra, \
                Sampler(out, [0], lambda: [srv.pid], extra=extra, interval=0.5):
            deadline = time.monotonic() + 2.5
            with requests.Session() as http:
                n = 0
                while time.monotonic() < deadline:
                    req = Request("dyn_get", n % 2, n % 2, n % 9)
                    assert http.get(srv.url + req.target(), timeout=10).status_code == 200
                    n += 1
            time.sleep(1.2)  # one more poll and one more row after the last request
    finally:
        srv.stop()
    rows = list(csv.DictReader(out.open()))
    assert set(statuspoll.MODULE_COLUMNS) <= set(rows[0])
    actions = sum(float(r["module_actions"]) for r in rows)
    requests_ = sum(float(r["module_requests"]) for r in rows)
    assert requests_ == n and actions == 4 * n  # every dynamic GET, 4 actions each
    assert sum(float(r["module_worker_cpu_s"]) for r in rows) > sum(float(r["module_cpu_s"]) for r in rows) > 0


def test_other_servers_get_the_disk_columns_only() -> None:
    disk = lambda: {"disk_reads": 1.0}  # noqa: E731
    with statuspoll.sampler_extra(disk, "userver", lambda: {}) as extra:
        assert extra is disk
    with statuspoll.sampler_extra(None, "userver", lambda: {}) as extra:
        assert extra is None


def test_a_server_that_does_not_answer_keeps_the_last_counters() -> None:
    answers = iter([{"total": {"module": {"steps": 5, "actions": {"dyn_get": 8}}}}])

    def status() -> dict:
        return next(answers)  # then StopIteration: a poll that fails
    poller = statuspoll.StatusPoller(status, interval=0.05)
    with poller:
        time.sleep(0.2)
        assert poller.counters()["module_steps"] == 5 and poller.counters()["module_actions"] == 8
    assert poller.polls == 1
