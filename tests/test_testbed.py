"""The emulated testbed on this machine's real kernel: cgroups, pinning, cache drop, sampling."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ukweb import cgroups, knobs, machine, shield, testbed
from ukweb.cgroups import Cgroup, CgroupError
from ukweb.cpulist import parse_cpus
from ukweb.sampler import COLUMNS, Sampler, blkio_ticks
from ukweb.testbed import Capabilities, Testbed

CAPS = testbed.probe()
needs_cgroups = pytest.mark.skipif(
    bool({"cgroup", "drop_caches"} & set(CAPS.problems())),
    reason=f"this machine cannot: {CAPS.problems()}")

MB = 1024 * 1024


def test_parse_cpus() -> None:
    assert parse_cpus("0") == [0]
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    for bad in ("", "a", "1-", "0,x"):
        with pytest.raises(ValueError, match="bad CPU list"):
            parse_cpus(bad)


def test_check_cli_reports_every_step(capsys) -> None:
    assert testbed.cli([]) == 0
    out = capsys.readouterr().out
    for step in ("cgroup", "drop_caches", "delay_accounting", "netns", "io_uring", "pinning",
                 "leftovers"):
        assert step in out
    assert testbed.cli(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["capabilities"]["cpus"] == sorted(os.sched_getaffinity(0))


def test_check_cli_bad_argument_exits_2() -> None:
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "check", "--bogus"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "unrecognized arguments" in res.stderr


def test_manifest_describes_host_and_code() -> None:
    man = machine.build({"profile": "t"}, deviations=[], calibration=None, testbed={})
    assert man["git"]["commit"] and len(man["git"]["commit"]) == 40
    assert isinstance(man["git"]["dirty"], bool)
    host = man["host"]
    assert host["cpu_count"] == os.cpu_count() and host["memory_bytes"] > 0
    assert host["kernel"] == os.uname().release
    assert host["cgroup_version"] == cgroups.version()
    assert man["tools"]["python_packages"]["pandas"]
    assert man["tools"]["gcc"].startswith("gcc")


def test_unprivileged_machine_becomes_deviations() -> None:
    """No root, no cgroup: the testbed records each missing step instead of skipping it."""
    caps = Capabilities(root=False, cpus=[0], cgroup_version="v1", cgroup_controllers=["memory"],
                        cgroup_writable=False, drop_caches=False, delay_accounting=False,
                        netns=False, io_uring_unavailable=None)
    tb = Testbed(server_cpus="0", client_cpus="1", caps=caps)
    assert "client_cpus" in tb.deviations and tb.client_cpu_list == [0]
    assert "pinning" in tb.deviations  # server and clients now share CPU 0
    assert tb.new_cgroup("x") is None
    assert tb.drop_page_cache() is False  # must not try to drop caches
    steps = {d["step"] for d in tb.deviation_list()}
    assert {"client_cpus", "pinning"} <= steps


def test_cgroup_v2_without_memory_controller_is_a_clear_error() -> None:
    unified = Path("/sys/fs/cgroup/unified")
    if cgroups.version(unified) != "v2" or "memory" in cgroups.available_controllers(unified):
        pytest.skip("needs a v2 mount without the memory controller (this machine's hybrid layout)")
    with pytest.raises(CgroupError, match="controller.*not available: memory"):
        Cgroup("ukweb-test-v2", memory_bytes=64 * MB, root=unified).create()
    assert not cgroups.leftovers("ukweb-test-v2", unified)


def _holders() -> list[int]:
    path = knobs.HOLDERS_DIR / "delayacct.holders"
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


@needs_cgroups
def test_delay_accounting_is_restored_by_the_last_holder() -> None:
    before = knobs.TASK_DELAYACCT.read_text()
    with knobs.delay_accounting() as on:
        assert on and knobs.TASK_DELAYACCT.read_text().strip() == "1"
        with knobs.delay_accounting():  # a second run on the same machine
            pass
        # the inner run left, but this one still holds: accounting must stay on
        assert knobs.TASK_DELAYACCT.read_text().strip() == "1"
        assert os.getpid() in _holders()
    assert os.getpid() not in _holders()
    others = [p for p in _holders() if psutil.pid_exists(p)]
    if not others:  # another ukweb run on this machine keeps it on until it ends
        assert knobs.TASK_DELAYACCT.read_text() == before


@needs_cgroups
def test_cgroup_limits_read_back_and_removal_kills_members() -> None:
    with Testbed(server_cpus="0", client_cpus="1", memory_mb=64, cpu_quota_pct=40,
                 prefix="ukweb-test") as tb:
        cg = tb.new_cgroup("limits")
        assert cg is not None
        assert cg.memory_limit() == 64 * MB
        assert cg.cpu_quota() == (4_000, 10_000)
        slow = Cgroup("unused", cpu_quota_pct=4)
        assert slow.quota_period_us() == (1_000, 25_000)  # the quota never drops below 1 ms
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                preexec_fn=tb.server_preexec(cg))
        try:
            assert proc.pid in cg.pids()
            assert os.sched_getaffinity(proc.pid) == {0}
        finally:
            tb._remove(cg)
        assert proc.wait(timeout=5) == -9  # removal killed what was left inside
    assert not cgroups.leftovers(f"ukweb-test-{os.getpid()}")


READER = """
import sys, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    with open(p, 'rb') as f:
        while f.read(1 << 20):
            pass
print('done', flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def big_files(tmp_path_factory) -> Path:
    """96 MB of files on a real disk (not tmpfs), more than the 64 MB limit below."""
    d = tmp_path_factory.mktemp("cache")
    block = os.urandom(MB)
    for i in range(12):
        with open(d / f"f{i:02d}", "wb") as f:
            for _ in range(8):
                f.write(block)
    os.sync()
    return d


@needs_cgroups
def test_page_cache_stays_under_the_memory_limit(big_files: Path, tmp_path: Path) -> None:
    """A reader of 96 MB in a 64 MB cgroup: its page cache is charged and capped; its disk
    waits show up in delay accounting; system.csv samples it."""
    limit = 64 * MB
    with Testbed(memory_mb=64, prefix="ukweb-test") as tb, tb.point_cgroup("cache") as cg:
        tb.drop_page_cache()  # cold cache: every byte comes from disk
        reader = subprocess.Popen([sys.executable, "-c", READER, str(big_files)],
                                  preexec_fn=tb.server_preexec(cg), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            with Sampler(tmp_path / "system.csv", tb.server_cpu_list, cg.pids, cg,
                         interval=0.2):
                assert reader.stdout.readline().strip() == "done"
                cache, peak = cg.page_cache_bytes(), cg.memory_stat()
                ticks = blkio_ticks(reader.pid)
                time.sleep(0.5)
        finally:
            reader.kill()
            reader.wait()
        assert cg.memory_limit() == limit
        assert 16 * MB < cache <= limit  # charged to the cgroup, and capped
        max_usage = cg.dirs["memory"] / "memory.max_usage_in_bytes"
        if max_usage.is_file():  # v1 records the high-water mark
            assert int(max_usage.read_text()) <= limit
        assert peak.get("cache", peak.get("file")) <= limit
        assert ticks > 0, "delay accounting saw no block-I/O wait for a cold 96 MB read"
    rows = list(csv.DictReader(open(tmp_path / "system.csv")))
    assert rows and list(rows[0]) == COLUMNS
    assert sum(int(r["disk_read_bytes"]) for r in rows) > 16 * MB
    assert max(int(r["page_cache_bytes"]) for r in rows) <= limit
    tick_pct = 100 / (0.2 * os.sysconf("SC_CLK_TCK"))  # one tick of a 0.2 s sample
    for r in rows:  # shares of the wall-clock interval: exact idle beside sampled busy ticks,
        total = sum(float(r[k]) for k in ("cpu_user", "cpu_sys", "cpu_idle", "cpu_iowait"))
        assert total <= 100 + 5 * tick_pct  # so a few ticks of slack in 20 (seen: 111.9 %)
    assert not cgroups.leftovers(f"ukweb-test-{os.getpid()}")


BURN = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass\n"


@needs_cgroups
def test_sampler_counts_the_servers_run_time_under_a_quota(tmp_path: Path) -> None:
    """A busy loop capped at 20 % of a CPU runs ~0.2 s per second: server_cpu_s says so."""
    with Testbed(memory_mb=64, cpu_quota_pct=20, prefix="ukweb-test") as tb, \
            tb.point_cgroup("burn") as cg:
        proc = subprocess.Popen([sys.executable, "-c", BURN], preexec_fn=tb.server_preexec(cg))
        try:
            with Sampler(tmp_path / "system.csv", tb.server_cpu_list, cg.pids, cg, interval=0.5):
                time.sleep(2.2)
        finally:
            proc.kill()
            proc.wait()
    rows = list(csv.DictReader(open(tmp_path / "system.csv")))[1:]  # the first may hold start-up
    per_s = [float(r["server_cpu_s"]) / 0.5 for r in rows]
    assert rows and all(0.1 < x < 0.3 for x in per_s), per_s


COLD_READ = """
import sys, time
t = time.monotonic()
for p in sys.argv[1:]:
    with open(p, 'rb') as f:
        while f.read(1 << 20):
            pass
print(time.monotonic() - t)
"""


def _cold_read_s(tb: Testbed, label: str, files: list[Path]) -> float:
    with tb.point_cgroup(label) as cg:
        tb.drop_page_cache()
        out = subprocess.run([sys.executable, "-c", COLD_READ, *map(str, files)], check=True,
                             preexec_fn=tb.server_preexec(cg), capture_output=True, text=True,
                             timeout=60)
    return float(out.stdout)


@needs_cgroups
@pytest.mark.skipif("io" not in cgroups.available_controllers(), reason="no cgroup io/blkio controller")
def test_disk_throttle_slows_the_servers_cold_reads(big_files: Path) -> None:
    """disk_read_mbps emulates the 2004 IDE disk: 16 MB read cold at 8 MB/s take about 2 s,
    the same read unthrottled much less; the limit reads back from the kernel."""
    with Testbed(memory_mb=64, prefix="ukweb-test") as free:
        fast = _cold_read_s(free, "free", [big_files / "f02", big_files / "f03"])
        assert free.disk is None  # no throttle: the disk model (when mounted) is the disk
    with Testbed(memory_mb=64, disk_read_mbps=8, disk_path=big_files,
                 prefix="ukweb-test") as tb:
        assert tb.disk is not None and tb.disk.read_bps == 8_000_000
        assert tb.describe()["disk"]["device"] == cgroups.block_device(big_files)
        with tb.point_cgroup("limit") as cg:
            name = "io.max" if cg.ver == "v2" else "blkio.throttle.read_bps_device"
            assert f"{tb.disk.device} 8000000" in (cg.dirs["io"] / name).read_text().replace("rbps=", "")
        slow = _cold_read_s(tb, "slow", [big_files / "f00", big_files / "f01"])
    assert slow >= 1.5 and slow > 2 * fast, f"throttled {slow:.2f} s vs free {fast:.2f} s"
    assert not cgroups.leftovers(f"ukweb-test-{os.getpid()}")


@pytest.mark.skipif(not CAPS.netns, reason="network namespaces need root, ip and tc")
def test_netns_links_are_rate_limited_and_isolated() -> None:
    """Two tbf-shaped veth links between a server and a client namespace; the runner's own
    namespace cannot reach them, and nothing is left afterwards."""
    import socket
    import threading

    from ukweb.netns import Topology, leftovers, run_in

    with Topology(prefix="ukweb-test-net", rate="100mbit") as topo:
        assert topo.qdiscs(topo.server_ns).count("tbf") == 2
        assert "rate 100Mbit" in topo.qdiscs(topo.client_ns)
        srv = run_in(topo.server_ns, lambda: socket.create_server(("0.0.0.0", 0)))
        port = srv.getsockname()[1]
        got = []

        def accept_twice() -> None:
            for _ in topo.server_addrs():
                conn, addr = srv.accept()
                got.append(addr[0])
                conn.close()

        t = threading.Thread(target=accept_twice)
        t.start()
        for addr in topo.server_addrs():
            run_in(topo.client_ns, lambda a=addr: socket.create_connection((a, port), 5).close())
        t.join(10)
        srv.close()
        assert sorted(got) == sorted(a[:-1] + "2" for a in topo.server_addrs())
        with pytest.raises(OSError):
            socket.create_connection((topo.server_addrs()[0], port), timeout=1)
    assert not leftovers("ukweb-test-net")


@needs_cgroups
def test_cgroups_of_a_killed_runner_are_cleaned_up() -> None:
    """A runner killed with SIGKILL leaves its cgroups (and server) behind; the next testbed
    removes them and kills what is inside."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cg = Cgroup(f"ukweb-test-{dead.pid}-orphan", memory_bytes=64 * MB, cpus="0").create()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               preexec_fn=cg.join)
    try:
        assert cgroups.remove_stale("ukweb-test") == [cg.name]
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
    assert not cgroups.leftovers(cg.name)


def test_cgroup_v2_files_written(tmp_path: Path) -> None:
    """The v2 code path cannot run on this machine's v1 hierarchy, so it writes into a directory
    laid out like a cgroup2 root; the kernel-facing names and values are what is checked."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.procs").write_text("")
    assert cgroups.version(tmp_path) == "v2"
    cg = Cgroup("ukweb-v2", memory_bytes=64 * MB, cpu_quota_pct=25, cpus="0", root=tmp_path,
                disk=cgroups.DiskLimit("8:0", read_bps=40_000_000, read_iops=150))
    cg.create()
    d = tmp_path / "ukweb-v2"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +cpuset +io"
    assert (d / "io.max").read_text() == "8:0 rbps=40000000 riops=150"
    assert (d / "memory.max").read_text() == str(64 * MB)
    assert (d / "cpu.max").read_text() == "2500 10000"
    assert (d / "cpuset.cpus").read_text() == "0"
    assert cg.memory_limit() == 64 * MB and cg.cpu_quota() == (2500, 10000)
    (d / "memory.stat").write_text("anon 4096\nfile 1048576\n")
    assert cg.page_cache_bytes() == 1048576  # v2 calls the page cache "file"


def test_blocked_time_is_clamped_to_the_interval(tmp_path: Path) -> None:
    """A wait spanning a task_delayacct toggle is charged as time since boot by the kernel;
    the sampler counts at most one interval per thread per sample."""
    s = Sampler(tmp_path / "system.csv", [0], list, interval=1.0)
    tick = os.sysconf("SC_CLK_TCK")
    s._add_blocked({10: (False, 500)})  # baseline: earlier waits are not this point's
    s._started = True
    own = s._add_blocked({10: (False, 530), 11: (True, 20)})  # 30 more; a new io-wq thread: 20
    assert s._blk_total == 50 and s._blk_iowq == 20 and own == 30
    s._add_blocked({10: (False, 530 + 10**7), 11: (True, 20)})  # the artefact
    assert s._blk_total == 50 + 1.5 * tick


@pytest.mark.skipif(not CAPS.root or len(CAPS.cpus) < 2, reason="needs root and 2 CPUs")
def test_shield_moves_other_processes_off_the_server_cpu_and_back(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = set(psutil.Process(other.pid).cpu_affinity())
        with Testbed(memory_mb=None, drop_caches=False, shield=True, prefix="ukweb-test") as tb:
            during = set(psutil.Process(other.pid).cpu_affinity())
            assert not during & set(tb.server_cpu_list) and tb.shielded["moved"] >= 1
        assert set(psutil.Process(other.pid).cpu_affinity()) == before
        # A runner killed with SIGKILL leaves its record; the next testbed undoes it.
        psutil.Process(other.pid).cpu_affinity([1])
        record = shield.RECORDS / "shield-999999999.json"
        record.write_text(json.dumps({str(other.pid): sorted(before)}))
        assert 999999999 in shield.undo_stale()
        assert set(psutil.Process(other.pid).cpu_affinity()) == before and not record.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(not CAPS.root or len(CAPS.cpus) < 2, reason="needs root and 2 CPUs")
def test_a_process_started_from_a_shielded_shell_gets_the_cpu_back_when_the_shield_ends(
        tmp_path: Path) -> None:
    """[I] A shell moved off the server's CPU passes the reduced affinity to what it starts
    meanwhile; without this, a test session started during another's sweep kept one CPU."""
    go, out = tmp_path / "go", tmp_path / "child"
    spawn = (f"import os, subprocess, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
             f"open({str(out)!r} + '.tmp', 'w').write(str(subprocess.Popen(['sleep', '60']).pid))\n"
             f"os.rename({str(out)!r} + '.tmp', {str(out)!r})\ntime.sleep(60)\n")
    script = tmp_path / "shell.py"
    script.write_text(spawn)
    # The shell is not this process's child (a runner's shell is not the runner's).
    shell = int(subprocess.run(["sh", "-c", f"{sys.executable} {script} >/dev/null 2>&1 & echo $!"],
                               capture_output=True, text=True, check=True).stdout)
    child = None
    try:
        before = set(psutil.Process(shell).cpu_affinity())
        with Testbed(memory_mb=None, drop_caches=False, shield=True, prefix="ukweb-test") as tb:
            go.touch()
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            child = int(out.read_text())
            assert not set(psutil.Process(child).cpu_affinity()) & set(tb.server_cpu_list)
        assert set(psutil.Process(shell).cpu_affinity()) == before
        assert set(psutil.Process(child).cpu_affinity()) == before
    finally:
        for pid in (child, shell):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)


def test_a_busy_machine_is_recorded_by_its_cpu_time_not_its_load_average() -> None:
    """quiet_machine samples CPU busy time just before the sweep: spinners on every CPU that
    started a moment ago are recorded, though the 1-minute load average (the check before,
    which read 10.44 after a calibration on an idle machine) has not yet seen them."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        time.sleep(0.3)
        with Testbed(memory_mb=None, drop_caches=False, prefix="ukweb-test") as tb:
            reason = tb.deviations.get("quiet_machine", "")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    busy = float(reason.split("were ")[1].split(" %")[0]) if "% busy" in reason else 0.0
    assert busy > 50, f"spinners on every CPU, recorded: {reason!r}"
