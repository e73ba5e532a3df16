"""The slow-CPU emulation against its model (ukweb.cpuemul, build/cputhief)."""

from __future__ import annotations

import subprocess

import pytest

from ukweb import cpuemul, paths
from ukweb.cpuemul import CpuEmulationError, CpuThief

SHARE = 0.109  # the share of the previous reference run's quota, to compare the two methods
needs_thief = pytest.mark.skipif(cpuemul.check("thief") is not None,
                                 reason=str(cpuemul.check("thief")))


def test_model_rate() -> None:
    # 47 µs at 10.9 % is 431 µs; an 8 ms block every 20th request adds 400 µs.
    assert cpuemul.model_rate(47, 0.109, 8, 20) == pytest.approx(1203, rel=1e-3)
    assert cpuemul.model_rate(47, 0.109, 8, 0) == pytest.approx(2319, rel=1e-3)


@needs_thief
@pytest.mark.parametrize("every", [20, 0], ids=["blocking", "pure-cpu"])
def test_thief_matches_the_slow_cpu_model(every: int) -> None:
    """Blocked time is lost under the thief, as on a uniformly slow CPU. bench/cpu_emulation.py
    measures 0.94-0.98 of the model on a quiet machine; inside the full suite, with kernel
    threads still cleaning up after earlier tests on CPU 0, 0.87-0.88 was seen: the margin
    keeps the test about the mechanism (the quota's blocking loop runs at 1.75x)."""
    runs = [cpuemul.microbench("thief", SHARE, seconds=2.0, every=every) for _ in range(3)]
    ratio = sorted(r["ratio"] for r in runs)[1]
    assert 0.82 <= ratio <= 1.10, runs


@needs_thief
def test_quota_makes_blocking_free_a_recorded_fact() -> None:
    """The CFS quota (period >= 10 ms at ~11 %) hides most of the blocked time: the blocking loop
    runs far faster than the model (measured: 1.75x), which is why it is not the default."""
    runs = [cpuemul.microbench("quota", SHARE, seconds=2.0, every=20) for _ in range(3)]
    ratio = sorted(r["ratio"] for r in runs)[1]
    assert ratio > 1.3, runs
    assert runs[0]["quota_period_us"] == [1090, 10000]


@needs_thief
def test_thief_reports_and_stops() -> None:
    with CpuThief(0, 0.5) as thief:
        assert thief.alive()
    report = thief.result
    assert report["periods"] > 0 and 0 < report["spun_s"] <= report["wall_s"]
    assert not thief.alive()


def test_bad_share_is_one_clear_error() -> None:
    with pytest.raises(CpuEmulationError, match="expected 0 < share < 1"):
        CpuThief(0, 1.5)
    with pytest.raises(CpuEmulationError, match="cpu_method='fast'"):
        cpuemul.microbench("fast", 0.5)


def test_cputhief_bad_arguments_exit_2() -> None:
    exe = paths.bin_dir() / "cputhief"
    if not exe.is_file():
        pytest.skip(f"{exe} is not built")
    for args in ([], ["--cpu", "0"], ["--cpu", "0", "--share", "2"], ["--what"]):
        res = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=10)
        assert res.returncode == 2 and res.stderr.startswith("cputhief: "), args


@needs_thief
def test_a_second_thief_on_the_same_cpu_is_refused() -> None:
    """Two sweeps on one machine would slow the server's CPU twice: the second is refused."""
    with CpuThief(0, 0.5):
        with pytest.raises(CpuEmulationError, match="already slowed by another cputhief"):
            CpuThief(0, 0.5).start()
