"""Machine settings a run holds (ukweb.knobs): DAMON's kdamonds off while any run measures, the
machine's own values back after the last, and after a killed one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ukweb import knobs, paths

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="holding machine settings needs root")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch) -> Path:
    """A kdamonds directory with kdamond 0 running and 1 stopped; holders kept in tmp_path."""
    root = tmp_path / "kdamonds"
    for n, state in (("0", "on"), ("1", "off")):
        (root / n).mkdir(parents=True)
        (root / n / "state").write_text(state + "\n")
    (root / "nr_kdamonds").write_text("2\n")
    monkeypatch.setattr(knobs, "HOLDERS_DIR", tmp_path / "run")
    monkeypatch.setattr(knobs, "KDAMONDS", root)
    return root


def state(root: Path, n: str) -> str:
    return (root / n / "state").read_text().strip()


def test_kdamonds_are_off_while_held_and_back_after_the_last_holder(fake: Path):
    with knobs.damon_off(fake) as running:
        assert running == ["0"] and state(fake, "0") == "off" and state(fake, "1") == "off"
        with knobs.damon_off(fake) as second:  # another run on the same machine
            assert second == ["0"]  # it knows the machine ran kdamond 0
        assert state(fake, "0") == "off"  # the first run still measures
    assert state(fake, "0") == "on" and state(fake, "1") == "off"
    assert not list((knobs.HOLDERS_DIR).glob("*.original"))


def test_a_killed_holder_leaves_the_original_for_the_next_run(fake: Path):
    code = (f"import os, sys; sys.path.insert(0, {str(paths.REPO / 'lib')!r})\n"
            "from pathlib import Path\nfrom ukweb import knobs\n"
            f"knobs.HOLDERS_DIR = Path({str(knobs.HOLDERS_DIR)!r})\n"
            f"with knobs.damon_off(Path({str(fake)!r})):\n    print('held', flush=True); os._exit(0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "held", done.stderr
    assert state(fake, "0") == "off"  # the dead runner never restored it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not knobs.restore_stale_all():
        time.sleep(0.05)
    assert state(fake, "0") == "on"
    assert not list(knobs.HOLDERS_DIR.glob("kdamond*.original"))


def test_the_testbed_turns_the_real_kdamonds_off_and_records_them():
    from ukweb.testbed import Testbed
    before = {n: state(knobs.KDAMONDS, n) for n in knobs.kdamonds()}
    if not before:
        pytest.skip("this kernel has no DAMON sysfs kdamonds")
    with Testbed(memory_mb=None, drop_caches=False) as tb:
        assert all(state(knobs.KDAMONDS, n) == "off" for n in before)
        assert tb.describe()["damon_stopped"] == [n for n, s in before.items() if s == "on"]
    assert {n: state(knobs.KDAMONDS, n) for n in before} == before
