"""Shared fixtures: the venv's bin on PATH, so `ukweb` and friends resolve to this checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _cpu_affinity_is_left_as_found():
    """A test must leave the test process's CPU affinity as it found it: the testbed pins the
    runner and shields the server's CPU from other processes while a sweep runs, and undoes
    both when it ends; one that did not would confine every later test to the clients' CPUs."""
    before = os.sched_getaffinity(0)
    yield
    after = os.sched_getaffinity(0)
    os.sched_setaffinity(0, before)
    assert after == before, f"the test left this process's CPU affinity at {sorted(after)}"
