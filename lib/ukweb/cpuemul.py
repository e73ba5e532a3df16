"""The paper's slow uniprocessor on this machine's faster core: how the server's CPU is slowed.

The paper's server was a 400 MHz Pentium II. A server that blocks on disk there leaves the CPU
idle for as long as it is blocked (§5: the single-process µserver is blocked >= 10 % of the time
and the CPU idle 40 %). An emulation has to keep that cost. Methods (`cpu_method`):

- `thief` (default): build/cputhief, a SCHED_FIFO thread pinned to the server's CPU, spins
  (1 - share) of every 1 ms and sleeps the rest. Everything else on that CPU gets `share` of it,
  evenly at a 1 ms grain; a blocked server's slices go unused, as on a slow uniprocessor.
- `quota`: a CFS quota on the server's cgroup. The kernel refuses quotas under 1 ms, so at ~11 %
  the period is ~10 ms, and a read that blocks inside the throttled part of a period costs
  nothing: blocking is nearly free (measured by `microbench`; a recorded deviation).
- `none`: this machine's full speed (a deviation).

`microbench` is the check that chooses between them: one thread doing X µs of CPU per request
and blocking B ms every K-th request against the slow-CPU model 1 / (X/share + B/K).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ukweb import changes, paths, shield, startup
from ukweb.cgroups import Cgroup, CgroupError
from ukweb.sweep_params import CPU_METHODS

METHODS = CPU_METHODS
PERIOD_US = 1000  # [I] the thief's grain: short against a 12 ms disk read, long against a wake-up


class CpuEmulationError(RuntimeError):
    """The chosen CPU method cannot run here; the message names the cause and what to do."""


def check(method: str) -> str | None:
    """Why `method` cannot be used on this machine, or None."""
    if method not in METHODS:
        return f"cpu_method={method!r}: expected one of {', '.join(METHODS)}"
    if method == "thief":
        if os.geteuid() != 0:
            return "cpu_method thief needs root (SCHED_FIFO); run as root or use cpu_method: quota"
        if not (paths.bin_dir() / "cputhief").is_file():
            return f"{paths.bin_dir() / 'cputhief'} is not built; run `make build`"
    return None


def rt_runtime_fraction() -> float | None:
    """kernel.sched_rt_runtime_us / sched_rt_period_us: the most a SCHED_FIFO thread may take."""
    try:
        runtime = int(Path("/proc/sys/kernel/sched_rt_runtime_us").read_text())
        period = int(Path("/proc/sys/kernel/sched_rt_period_us").read_text())
    except (OSError, ValueError):
        return None
    return 1.0 if runtime < 0 else runtime / period


@dataclass
class CpuThief:
    """build/cputhief on one CPU, leaving `share` of it to everything else; a context manager."""

    cpu: int
    share: float
    period_us: int = PERIOD_US
    proc: subprocess.Popen | None = field(default=None, init=False)
    result: dict | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise CpuEmulationError(f"CPU share {self.share!r}: expected 0 < share < 1")
        rt = rt_runtime_fraction()
        if rt is not None and 1 - self.share > rt:
            raise CpuEmulationError(
                f"CPU share {self.share:.3f} needs a SCHED_FIFO thread at {1 - self.share:.1%} but "
                f"kernel.sched_rt_runtime_us allows {rt:.1%}: raise it (sysctl "
                "kernel.sched_rt_runtime_us=-1) or use cpu_method: quota")

    def command(self) -> list[str]:
        return [str(paths.binary("cputhief")), "--cpu", str(self.cpu), "--share",
                f"{self.share:.6f}", "--period-us", str(self.period_us)]

    def start(self, timeout: float = 5.0) -> CpuThief:
        why = check("thief")
        if why:
            raise CpuEmulationError(why)
        # [I] It dies with the runner (SIGTERM: it stops spinning at once) and is recorded, so
        # that no thief keeps a CPU at real-time priority after a runner killed with SIGKILL
        # (issue 17; ukweb.leftovers). Start it from a thread that lives as long as it should.
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True,
                                     preexec_fn=changes.die_with_parent(signal.SIGTERM))
        changes.track("processes", self.proc.pid, "cputhief")
        if not startup.wait_for_line(self.proc, time.monotonic() + timeout, "ready"):
            self.proc.kill()
            err = self.proc.communicate()[1].strip()
            changes.untrack("processes", self.proc.pid)
            self.proc = None
            raise CpuEmulationError(err or f"cputhief did not start within {timeout:.0f} s")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> dict | None:
        """Stop the thief; returns what it reports (periods, spun_s, wall_s, late_wakeups)."""
        if self.proc is None:
            return self.result
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        changes.untrack("processes", self.proc.pid)
        self.proc = None
        with contextlib.suppress(json.JSONDecodeError, IndexError):
            self.result = json.loads(out.strip().splitlines()[-1])
        return self.result

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __enter__(self) -> CpuThief:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def model_rate(x_us: float, share: float, block_ms: float, every: int) -> float:
    """Requests/s of one thread on a uniformly slow CPU: 1 / (X/share + B/K)."""
    per_request_s = x_us * 1e-6 / share + (block_ms * 1e-3 / every if every else 0.0)
    return 1.0 / per_request_s


# The worker of the microbenchmark: X µs of its own CPU time per request (measured on its thread
# clock, so a slower CPU stretches it), time.sleep(B) every K-th request, for `seconds`.
_WORKER = """
import os, sys, time
x_ns, block_s, every, seconds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    until = time.thread_time_ns() + x_ns
    while time.thread_time_ns() < until:
        pass
    n += 1
    if every and n % every == 0:
        time.sleep(block_s)
print(n / seconds)
"""


def microbench(method: str, share: float, cpu: int = 0, seconds: float = 3.0, x_us: float = 47.0,
               block_ms: float = 8.0, every: int = 20) -> dict:
    """Measured vs model requests/s of the blocking microbenchmark under one CPU method."""
    why = check(method)
    if why:
        raise CpuEmulationError(why)
    cmd = [os.sys.executable, "-c", _WORKER, str(int(x_us * 1000)), str(block_ms / 1000),
           str(every), str(seconds)]
    with contextlib.ExitStack() as stack:
        cg = None
        if os.geteuid() == 0:  # nothing else on the measured CPU, as in a sweep
            stack.enter_context(shield.shielded([cpu], sorted(os.sched_getaffinity(0) | {cpu})))
        if method == "thief":
            stack.enter_context(CpuThief(cpu, share))
        elif method == "quota":
            cg = Cgroup(f"ukweb-{os.getpid()}-cpubench", cpu_quota_pct=share * 100, cpus=str(cpu))
            try:
                cg.create()
            except CgroupError as exc:
                raise CpuEmulationError(f"cpu_method quota: {exc}") from exc
            stack.callback(cg.remove)

        def preexec() -> None:
            if cg is not None:
                cg.join()
            os.sched_setaffinity(0, [cpu])
        out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec, check=True,
                             timeout=seconds + 30)
        measured = float(out.stdout.strip())
        quota = cg.quota_period_us() if cg is not None else None
    slow = share if method != "none" else 1.0
    model = model_rate(x_us, slow, block_ms, every)
    return {"method": method, "share": share, "x_us": x_us, "block_ms": block_ms, "every": every,
            "measured_per_s": round(measured, 1), "model_per_s": round(model, 1),
            "ratio": round(measured / model, 3),
            "quota_period_us": list(quota) if quota else None}


def wait_until(cond, timeout: float, step: float = 0.02) -> bool:
    """Poll cond() until it is true or timeout seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
