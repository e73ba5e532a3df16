"""A runner killed with SIGKILL leaves nothing behind (issue 17, "Bad input"): its helpers die
with it, a watcher or the next run removes the rest (only dead runners'), the resume measures
on the configured CPUs, and a resume on another commit or calibration is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ukweb import (
    cgroups,
    cpuemul,
    diskmodel,
    knobs,
    leftovers,
    manifest,
    netns,
    runs,
    shield,
    testbed,
)
from ukweb.paths import PARAMS
from ukweb.sweep_params import validate

CAPS = testbed.probe()
DEAD = "999999999:1"  # above any pid_max: a runner that is surely dead
root_only = pytest.mark.skipif(not CAPS.root, reason="needs root")
two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or len(CAPS.cpus) < 2,
                              reason="needs 2 CPUs")


def sleeper(**kw) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "120"], **kw)


def gone(pid: int) -> bool:
    return leftovers.start_ticks(pid) is None


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


def record(tok: str, **lists) -> Path:
    path = leftovers.RUNTIME / f"runner-{tok.split(':')[0]}.json"
    leftovers.RUNTIME.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runner": tok, "cmdline": "test", "holders": 1, "processes": [],
                                "mounts": [], "cgroups": [], "netns": [], **lists}))
    return path


# --- the reaper, on made-up dead and live runners (no measurement) ---------------------------


def mounted(path: Path) -> bool:
    return diskmodel.mount_info(path) is not None


@root_only
def test_reap_removes_a_dead_runners_leftovers_and_spares_a_live_ones(tmp_path: Path) -> None:
    live = sleeper()  # stands for a live runner on this machine
    procs = []
    # Mounts a killed runner left: one it recorded, one only named by its disk-<pid> directory
    # (a tmpfs stands in for the disk model's dead FUSE mount; both go with umount -l).
    recorded_mnt = tmp_path / "mnt"
    named = leftovers.RUNTIME / f"disk-{DEAD.split(':')[0]}"
    for m in (recorded_mnt, named / "mnt"):
        m.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(m)], check=True)
    try:
        recorded = sleeper()  # the dead runner's thief, say
        orphan = sleeper(env={**os.environ, leftovers.ENV: DEAD})  # its server, not recorded
        theirs = sleeper()  # the live runner's thief
        child = sleeper(env={**os.environ, leftovers.ENV: leftovers.token(live.pid)})
        procs = [recorded, orphan, theirs, child]
        cg = cgroups.Cgroup(f"ukweb-{DEAD.split(':')[0]}-series").create()
        inside = sleeper(preexec_fn=cg.join)
        procs.append(inside)
        dead_rec = record(DEAD, processes=[{"pid": recorded.pid, "what": "cputhief",
                                            "ticks": leftovers.start_ticks(recorded.pid)}],
                          cgroups=[cg.name], mounts=[str(recorded_mnt)])
        live_rec = record(leftovers.token(live.pid), processes=[
            {"pid": theirs.pid, "what": "cputhief", "ticks": leftovers.start_ticks(theirs.pid)}])
        done = leftovers.reap()
        for p in (recorded, orphan, inside):
            p.wait(timeout=5)  # killed
        assert theirs.poll() is None and child.poll() is None and live.poll() is None
        assert not dead_rec.exists() and live_rec.exists()
        assert not cgroups.leftovers(cg.name)
        assert not mounted(recorded_mnt) and not mounted(named / "mnt") and not named.exists()
        assert any("cputhief" in line for line in done) and any(cg.name in line for line in done)
        assert not [x for x in leftovers.what_is_left() if DEAD.split(":")[0] in x]
    finally:
        for p in [*procs, live]:
            p.kill()
            p.wait()
        (leftovers.RUNTIME / f"runner-{live.pid}.json").unlink(missing_ok=True)
        for m in (recorded_mnt, named / "mnt"):
            subprocess.run(["umount", "-l", str(m)], capture_output=True, check=False)


@root_only
@two_cpus
def test_a_dead_shield_is_given_back_to_what_its_processes_started_since() -> None:
    """The shell the dead runner's shield moved, and the resume it starts afterwards (which
    inherited the shield's affinity), both get CPU 0 back; an unrelated process pinned by its
    owner keeps its pin."""
    spawn = "import subprocess, sys; sys.stdin.readline(); print(subprocess.Popen(['sleep', '120']).pid, flush=True); sys.stdin.readline()"
    shell = subprocess.Popen([sys.executable, "-c", spawn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    pinned = sleeper(preexec_fn=lambda: os.sched_setaffinity(0, [1]))
    try:
        full = sorted(psutil.Process(shell.pid).cpu_affinity())
        rec = shield.RECORDS / "shield-999999999.json"
        rec.write_text(json.dumps({"server": [0], "since": leftovers.start_ticks(shell.pid),
                                   "moved": {str(shell.pid): {
            "cpus": full, "ticks": leftovers.start_ticks(shell.pid)}}}))
        psutil.Process(shell.pid).cpu_affinity([1])  # what the dead shield did
        shell.stdin.write("\n")
        shell.stdin.flush()
        resume = int(shell.stdout.readline())  # started while the shield was in force
        assert psutil.Process(resume).cpu_affinity() == [1]
        assert 999999999 in shield.undo_stale() and not rec.exists()
        assert sorted(psutil.Process(shell.pid).cpu_affinity()) == full
        assert sorted(psutil.Process(resume).cpu_affinity()) == full
        assert psutil.Process(pinned.pid).cpu_affinity() == [1]
        os.kill(resume, signal.SIGKILL)
    finally:
        shell.kill()
        shell.wait()
        pinned.kill()
        pinned.wait()


def _live_holders() -> list[int]:
    path = knobs.HOLDERS_DIR / "delayacct.holders"
    pids = [int(x) for x in path.read_text().split()] if path.is_file() else []
    return [p for p in pids if psutil.pid_exists(p)]


@root_only
def test_delay_accounting_left_on_by_a_killed_runner_gets_the_machines_value_back() -> None:
    if _live_holders():
        pytest.skip("another ukweb run on this machine holds kernel.task_delayacct")
    machine = knobs.TASK_DELAYACCT.read_text()
    holders = knobs.HOLDERS_DIR / "delayacct.holders"
    original = knobs.HOLDERS_DIR / "delayacct.original"
    try:
        # A runner killed while holding: its original saved, the sysctl left at 1.
        holders.write_text("999999999\n")
        original.write_text(machine)
        knobs.TASK_DELAYACCT.write_text("1\n")
        with knobs.delay_accounting() as on:  # the next runner does not take 1 as original
            assert on
        assert knobs.TASK_DELAYACCT.read_text() == machine
        # The same left-over, found by the reaper before any run holds it.
        holders.write_text("999999999\n")
        original.write_text(machine)
        knobs.TASK_DELAYACCT.write_text("1\n")
        assert knobs.restore_stale("delayacct", knobs.TASK_DELAYACCT) == machine.strip()
        assert knobs.TASK_DELAYACCT.read_text() == machine and not original.exists()
    finally:
        if not _live_holders():
            knobs.TASK_DELAYACCT.write_text(machine)
            original.unlink(missing_ok=True)


@root_only
def test_a_child_dies_with_its_runner() -> None:
    runner = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, time; from ukweb import leftovers; "
        "p = subprocess.Popen(['sleep', '120'], preexec_fn=leftovers.die_with_parent()); "
        "print(p.pid, flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    child = int(runner.stdout.readline())
    assert not gone(child)
    runner.kill()
    runner.wait()
    assert wait_for(lambda: gone(child), 5), "the child outlived its runner"


@root_only
@pytest.mark.skipif(not CAPS.netns, reason="needs ip and tc")
def test_a_child_started_in_a_namespace_lives_until_the_namespace_goes() -> None:
    """[I] A parent-death signal fires when the *thread* that forked exits: run_in's thread
    lives as long as its namespace, so a server started there is not killed on return."""
    with netns.Topology(prefix="ukweb-test-net") as topo:
        child = netns.run_in(topo.server_ns, lambda: sleeper(
            preexec_fn=leftovers.die_with_parent()))
        time.sleep(0.3)
        assert child.poll() is None, "killed when run_in returned"
        assert netns.run_in(topo.server_ns, lambda: os.getpid()) == os.getpid()
    assert wait_for(lambda: child.poll() is not None, 5)


@root_only
def test_a_resume_with_another_commit_or_calibration_is_refused_naming_both(tmp_path: Path) -> None:
    tb = testbed.Testbed(server_cpus="0", client_cpus="1", thief_share=0.5, memory_mb=None)
    commit = manifest.git_state()["commit"]
    cal = {"path": "params/calibration.yaml", "cpu_method": "thief", "cpu_share": 0.1768}
    man = {"git": {"commit": "0" * 40}, "calibration": cal, "testbed": tb.describe()}
    with pytest.raises(runs.SweepError, match=f"commit {'0' * 40} and this is commit {commit}"):
        runs._check_same_setup(tmp_path, man, tb, cal)
    man["git"]["commit"] = commit
    with pytest.raises(runs.SweepError, match=r"cpu_share 0.1768\).*cpu_share 0.15\)"):
        runs._check_same_setup(tmp_path, man, tb, {**cal, "cpu_share": 0.15})
    runs._check_same_setup(tmp_path, man, tb, cal)  # the same setup resumes
    man["testbed"] = {**tb.describe(), "server_cpus": [99]}  # the run was measured elsewhere
    with pytest.raises(runs.SweepError, match=r"'server_cpus': \[99\].*this testbed is"):
        runs._check_same_setup(tmp_path, man, tb, cal)


# --- a real runner, killed mid-point (starts the CPU thief: run under the measurement lock) ---

needs_method = pytest.mark.skipif(
    bool(not CAPS.root or cpuemul.check("thief") or diskmodel.check() or CAPS.problems().get("cgroup")
         or len(CAPS.cpus) < 2),
    reason="needs root, 2 CPUs, cgroups, the CPU thief and the disk model")


def tiny(tmp_path: Path, **over) -> Path:
    raw = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    raw.update({"workloads": ["static"], "servers": {"static": ["userver-1"]},
                "connections": [4, 8], "warmup_s": 1, "duration_s": 2, "netns": CAPS.netns, **over})
    validate(raw)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def ukweb_run(params: Path, tmp_path: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ukweb.cli", "run", "-f", str(params),
                             "--run-id", run_id, "--root", str(tmp_path / "raw"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def children(pid: int, name: str) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True)
                if name in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def ours(tmp_path: Path) -> list[str]:
    """Servers and load generators of runs under tmp_path still running."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if str(tmp_path) in line and p.pid != os.getpid() and "ukweb.cli" not in line:
            out.append(line[:80])
    return out


def left_by(pid: int, tmp_path: Path) -> list[str]:
    """What runner pid left on this machine."""
    out = [x for x in leftovers.what_is_left() if str(pid) in x]
    out += [f"cgroup {p.name}" for p in cgroups.leftovers(f"ukweb-{pid}-")]
    out += [f"netns {n}" for n in netns.leftovers(f"ukweb-net-{pid}-")]
    out += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if f"disk-{pid}" in line]
    out += [f"file {p}" for p in leftovers.RUNTIME.glob(f"*-{pid}*")]
    return out + [f"process {x}" for x in ours(tmp_path)]


def skip_if_committed(err: str) -> None:
    """Another session committed between the run and its resume (they share this checkout):
    the refusal is right, the test cannot go on."""
    if "was measured by commit" in err:
        pytest.skip("a commit landed between the run and its resume: " + err.strip().splitlines()[-1])


def measuring(proc: subprocess.Popen, timeout: float = 90) -> dict[str, int]:
    """Wait until the runner's load generator runs (a point is measuring); its helpers' pids."""
    assert wait_for(lambda: children(proc.pid, "loadgen") or proc.poll() is not None, timeout)
    if proc.poll() is not None:
        skip_if_committed(err := proc.communicate()[1])
        raise AssertionError(err)
    found = {name: children(proc.pid, name) for name in ("cputhief", "build/diskmodel",
                                                         "leftovers watch")}
    assert all(found.values()), found
    return {name: ps[0].pid for name, ps in found.items()}


@needs_method
@two_cpus
def test_a_runner_killed_mid_point_leaves_nothing_and_the_resume_measures_on_its_cpus(
        tmp_path: Path) -> None:
    params = tiny(tmp_path)
    machine = knobs.TASK_DELAYACCT.read_text()
    me = psutil.Process()
    full = sorted(me.cpu_affinity())
    bystander = sleeper()
    try:
        # 1. SIGKILL mid-point: the thief, disk daemon, server and loadgen die with the runner;
        #    its watcher removes the mount, cgroups, namespaces, shield and sysctl at once.
        first = ukweb_run(params, tmp_path, "killed")
        helpers = measuring(first)
        assert psutil.Process(bystander.pid).cpu_affinity() == [1]  # shielded
        assert knobs.TASK_DELAYACCT.read_text().strip() == "1"
        first.kill()
        first.communicate()
        assert wait_for(lambda: not left_by(first.pid, tmp_path), 15), left_by(first.pid, tmp_path)
        assert all(gone(pid) for name, pid in helpers.items() if name != "leftovers watch")
        assert not children(first.pid, "cputhief") and not leftovers._orphan_thieves()
        assert sorted(psutil.Process(bystander.pid).cpu_affinity()) == full
        assert sorted(me.cpu_affinity()) == full
        if not _live_holders():
            assert knobs.TASK_DELAYACCT.read_text() == machine

        # 2. Killed with its watcher too (kill -9 of both): what no signal undoes stays until
        #    the next run, and this process is left pinned to the client CPU, like the shell in
        #    the issue.
        second = ukweb_run(params, tmp_path, "killed")
        helpers = measuring(second)
        os.kill(helpers["leftovers watch"], signal.SIGKILL)
        second.kill()
        second.communicate()
        assert wait_for(lambda: gone(helpers["cputhief"]) and gone(helpers["build/diskmodel"]), 5)
        assert me.cpu_affinity() == [1] and left_by(second.pid, tmp_path)

        # 3. The resume, started from here, reaps first, then measures on CPU 0 and finishes.
        third = ukweb_run(params, tmp_path, "killed")
        out, err = third.communicate(timeout=180)
        skip_if_committed(err)
        assert third.returncode == 0, err
        assert "2 done, 0 failed, 0 missing" in out
        assert "overlap" not in err
        assert not left_by(second.pid, tmp_path) and not left_by(third.pid, tmp_path)
        assert sorted(me.cpu_affinity()) == full
        man = json.loads((tmp_path / "raw" / "killed" / "manifest.json").read_text())
        assert [r["status"] for r in man["runs"]] == ["killed", "killed", "done"]
        assert man["runs"][-1]["cpus"]["server_cpus"] == [0]
        assert man["runs"][-1]["cpus"]["client_cpus"] == [1]
        assert any(f"shield (pid {second.pid})" in line for line in man["runs"][-1]["reaped"])
        assert not any(d["step"] == "pinning" for d in man["deviations"])
    finally:
        bystander.kill()
        bystander.wait()
        me.cpu_affinity(full)


@needs_method
def test_a_stop_for_a_full_disk_prints_the_command_that_resumes(tmp_path: Path) -> None:
    params = tiny(tmp_path, netns=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(raw)], check=True)
    try:
        res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(params),
                              "--run-id", "full", "--root", str(raw), "--set", "duration_s=2",
                              "--no-progress"], capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["umount", str(raw)], check=False)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and "disk full" in last, res.stderr
    assert last.endswith(f"then resume: ukweb run -f {params} --run-id full --root {raw} "
                         "--set duration_s=2"), last


@needs_method
def test_a_machine_it_cannot_restore_is_refused_in_one_line(tmp_path: Path) -> None:
    """A thief nobody recorded (a runner from before records, killed) holds CPU 0: the run
    names it and how to remove it, exits 1, and measures nothing."""
    from ukweb.paths import bin_dir
    out = subprocess.run(["sh", "-c", f"{bin_dir() / 'cputhief'} --cpu 0 --share 0.9 "
                          ">/dev/null 2>&1 & echo $!"], capture_output=True, text=True, check=True)
    thief = int(out.stdout)
    try:
        assert wait_for(lambda: any(f"pid {thief}" in line for line in
                                    _refusal(leftovers.reap)), 5)
        res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(tiny(tmp_path)),
                              "--run-id", "refused", "--root", str(tmp_path / "raw"),
                              "--no-progress"], capture_output=True, text=True, timeout=120)
        last = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 1 and last.startswith("ukweb run: a killed ukweb run left"), res.stderr
        assert f"kill {thief}" in last
        assert not (tmp_path / "raw" / "refused" / "points").exists()
        assert not (tmp_path / "raw" / "refused" / "manifest.json").exists()
    finally:
        os.kill(thief, signal.SIGKILL)
    assert wait_for(lambda: not _refusal(leftovers.reap), 5)


def _refusal(reap) -> list[str]:
    try:
        reap()
    except leftovers.LeftoversError as exc:
        return [str(exc)]
    return []
