"""Sweeps with the real servers and load generator on loopback: complete points, resume after
SIGTERM, a server killed mid-point, the memory cap while serving. Plus the params profiles."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ukweb import cgroups, cpuemul, diskmodel, fileset, runs, testbed
from ukweb.paths import DATA, PARAMS, REPO
from ukweb.sweep_params import ParamsError, load_params, validate

CAPS = testbed.probe()
SMOKE = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
POINT_FILES = ("requests.csv.gz", "summary.json", "server-status.json", "system.csv",
               "postlog.txt", "DONE")


def built(name: str) -> bool:
    try:
        from ukweb.paths import binary
        binary(name)
        return True
    except FileNotFoundError:
        return False


needs_binaries = pytest.mark.skipif(not (built("userver") and built("loadgen")),
                                    reason="userver and loadgen are not built: run `make build`")


def smoke(**over) -> dict:
    """The smoke profile cut to one workload; drop_caches off unless the machine allows it."""
    raw = {**SMOKE, "workloads": ["static"], "servers": {"static": ["userver-1"]},
           "warmup_s": 1, "duration_s": 2, "drop_caches": CAPS.drop_caches, **over}
    return raw


def our_processes(tag: str) -> list[psutil.Process]:
    """Processes whose command line names tag (the run's directory): server, loadgen."""
    out = []
    for p in psutil.process_iter(["cmdline", "pid"]):
        if p.pid != os.getpid() and tag in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def ukweb_run(params: dict, tmp: Path, run_id: str) -> subprocess.Popen:
    path = tmp / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(params))
    return subprocess.Popen([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path),
                             "--run-id", run_id, "--root", str(tmp / "raw"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def killing_while_measuring(victims, tmp_path: Path):
    """SIGKILL the first of victims() as soon as loadgen runs (a point is measuring), from a
    thread, while the block runs; yields the list of killed pids."""
    killed: list[int] = []

    def kill() -> bool:
        procs = victims()
        if procs and any("loadgen" in p.info["cmdline"][0] for p in our_processes(str(tmp_path))):
            killed.append(procs[0].pid)
            os.kill(procs[0].pid, signal.SIGKILL)
            return True
        return False
    t = threading.Thread(target=wait_for, args=(kill, 60))
    t.start()
    try:
        yield killed
    finally:
        t.join()


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


# --- params ------------------------------------------------------------------------------


def test_profiles_validate_and_cover_the_paper() -> None:
    quick, paper = load_params(PARAMS / "quick.yaml"), load_params(PARAMS / "paper.yaml")
    assert quick.workloads == ["static", "dynamic", "mix30", "mix50", "mix80"]
    assert quick.servers["static"] == ["userver-1", "userver-16", "ktux"]
    assert quick.servers["dynamic"] == ["userver-1", "userver-8", "ktux"]
    long = load_params(PARAMS / "paper-long.yaml")
    assert paper.warmup_s >= paper.settle_s and paper.memory_mb == 512 and paper.repetitions >= 3
    assert paper.connections == list(range(100, 1501, 200)) == long.connections
    labels = {p.server for p in runs.plan(paper) if p.connections == 700}
    assert {f"userver-{n}" for n in (1, 2, 4, 8, 16, 32)} <= labels
    for prof in (quick, paper):  # the whole method, in the profile's time, settling included
        assert prof.cpu_method == "thief" and prof.disk_model and prof.prewarm and prof.netns
        assert prof.carry_from == 700
        assert runs.estimate_minutes(prof) <= prof.max_minutes
        assert runs.check_budget(prof) is not None
    assert paper.max_minutes <= 120 and quick.max_minutes <= 15
    # paper-long: the paper's own 1 min + 2 min per point, resumable, its runtime stated
    assert long.warmup_s == long.transition_s == 60 and long.duration_s == long.carried_s == 120
    assert long.max_minutes is None and runs.estimate_minutes(long) > 120
    assert load_params(PARAMS / "smoke.yaml").max_connections() <= 10


def test_plan_has_no_duplicate_points() -> None:
    p = load_params(PARAMS / "quick.yaml")
    points = runs.plan(p)
    assert len(points) == len(set(points))
    # static/userver-16/c700 is both on Fig. 2 and in the process sweep: measured once
    assert sum(1 for x in points if x == runs.Point("static", "userver-16", 700, 1)) == 1


@pytest.mark.parametrize("key,value,words", [
    ("connections", [100, -1], "connections[1]"),
    ("workloads", ["static", "nope"], "workloads"),
    ("memory_mb", 4, "memory_mb"),
    ("cpu_share", 1.5, "cpu_share"),
    ("cpu_method", "fast", "cpu_method"),
    ("duraton_s", 60, "unknown key.*'duraton_s'.*known keys:.*duration_s"),
    ("server_cpus", "x", "bad CPU list"),
    ("drop_caches", "yes", "drop_caches"),
    ("process_sweep", {"procs": [1]}, "process_sweep"),
    ("run_id", "../evil", "run_id"),
])
def test_bad_params_name_the_value(key: str, value: object, words: str) -> None:
    with pytest.raises(ParamsError, match=words.replace("[", r"\[").replace("]", r"\]")):
        validate({**SMOKE, key: value})


def test_series_are_ascending_and_keep_repetitions_together() -> None:
    p = load_params(PARAMS / "paper.yaml")
    series = runs.series_plan(p)
    for pts in series:
        assert len({(x.workload, x.server) for x in pts}) == 1
        assert [x.connections for x in pts] == sorted(x.connections for x in pts)
    fig2 = next(s for s in series if (s[0].workload, s[0].server) == ("static", "ktux"))
    assert [(x.connections, x.repetition) for x in fig2[:4]] == [(100, 1), (100, 2), (100, 3), (300, 1)]
    # carried points (>= carry_from) are one long window each: one repetition, batch means
    assert [(x.connections, x.repetition) for x in fig2 if x.connections >= 700] == [
        (c, 1) for c in range(700, 1501, 200)]
    assert sum(len(s) for s in series) == len(runs.plan(p)) == len(set(runs.plan(p)))


def test_a_profile_that_cannot_finish_in_its_time_is_refused(tmp_path: Path) -> None:
    raw = {**SMOKE, "duration_s": 600, "max_minutes": 5}
    with pytest.raises(ParamsError, match="over max_minutes=5"):
        runs.check_budget(validate(raw))
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path), "--root",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "max_minutes" in res.stderr
    assert not list(tmp_path.glob("*/manifest.json"))


@pytest.mark.parametrize("run_id", ["../../etc", "..", "a/b", "/etc"])
def test_a_run_id_stays_inside_its_root(tmp_path: Path, run_id: str) -> None:
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    root = tmp_path / "root"
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path), "--root",
                          str(root), "--run-id", run_id], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "run id" in res.stderr and res.stderr.count("\n") == 1
    assert not root.exists() and not (tmp_path / "etc").exists()
    with pytest.raises(ParamsError, match="run id"):
        runs.run_path(root, run_id)


def test_a_misspelt_set_key_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path), "--root",
                          str(tmp_path / "root"), "--set", "duraton_s=60"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "'duraton_s'" in res.stderr and "duration_s" in res.stderr
    assert not (tmp_path / "root").exists()


def test_cli_bad_params_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMOKE, "repetitions": 0}))
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "repetitions" in res.stderr


# --- sweeps with the real servers ----------------------------------------------------------


@needs_binaries
def test_smoke_sweep_writes_complete_points(tmp_path: Path) -> None:
    servers = ["userver-1", "ktux"]
    params = validate(smoke(servers={"static": servers}))
    run = runs.sweep(params, "smoke-test", root=tmp_path, progress=False)
    man = json.loads((run / "manifest.json").read_text())
    assert man["params"]["connections"] == [4, 8] and man["end"]
    assert man["host"]["cgroup_version"] == CAPS.cgroup_version
    assert man["runs"][-1]["status"] == "done"
    ktux_reason = man["host"]["io_uring_unavailable"]
    for server in servers:
        for c in (4, 8):
            d = runs.point_dir(run, "static", server, c, 1)
            if server == "ktux" and ktux_reason:
                failed = json.loads((d / "FAILED").read_text())
                assert failed["reason"] == "server failed to start"
                continue
            for name in POINT_FILES:
                assert (d / name).is_file(), f"{d} lacks {name}"
            summary = json.loads((d / "summary.json").read_text())
            assert summary["connections"] == c and summary["measure"]["ok"] > 0
            status = json.loads((d / "server-status.json").read_text())
            assert status["after"]["total"]["requests"]["static"] > 0
            system = (d / "system.csv").read_text().splitlines()
            assert len(system) >= 2  # header + at least one 1 s sample
    assert man["testbed"]["delay_accounting"] is CAPS.delay_accounting
    assert not cgroups.leftovers(f"ukweb-{os.getpid()}-")
    assert not our_processes(str(tmp_path))


@needs_binaries
def test_sigterm_then_rerun_finishes_without_redoing_points(tmp_path: Path) -> None:
    params = smoke(connections=[4, 6, 8])
    proc = ukweb_run(params, tmp_path, "resume")
    run = tmp_path / "raw" / "resume"
    first = runs.point_dir(run, "static", "userver-1", 4, 1) / "DONE"
    try:
        assert wait_for(first.is_file, 60), "the first point never finished"
        time.sleep(1.0)  # inside the second point
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err  # 128 + SIGTERM
    assert "interrupted" in err
    assert not our_processes(str(tmp_path)), "server or loadgen survived SIGTERM"
    assert not cgroups.leftovers(f"ukweb-{proc.pid}-")
    second = runs.point_dir(run, "static", "userver-1", 6, 1)
    assert not (second / "DONE").exists()
    stamp = first.read_text()
    mtime = first.stat().st_mtime_ns
    proc = ukweb_run(params, tmp_path, "resume")
    out, err = proc.communicate(timeout=120)
    if "was measured by commit" in err:  # another session committed meanwhile: rightly refused
        pytest.skip(err.strip().splitlines()[-1])
    assert proc.returncode == 0, err
    assert "3 done, 0 failed, 0 missing" in out
    assert first.read_text() == stamp and first.stat().st_mtime_ns == mtime
    man = json.loads((run / "manifest.json").read_text())
    assert [r["status"] for r in man["runs"]] == ["interrupted", "done"]
    assert not our_processes(str(tmp_path))


@needs_binaries
def test_server_killed_mid_point_fails_that_point_only(tmp_path: Path) -> None:
    params = validate(smoke(duration_s=4))
    victims = lambda: [p for p in our_processes(str(tmp_path)) if "userver" in p.info["cmdline"][0]]  # noqa: E731
    with killing_while_measuring(victims, tmp_path) as killed:
        run = runs.sweep(params, "crash", root=tmp_path, progress=False)
    assert killed, "the test never saw the server and loadgen running"
    failed = json.loads((runs.point_dir(run, "static", "userver-1", 4, 1) / "FAILED").read_text())
    assert "server died" in failed["reason"]
    assert not (runs.point_dir(run, "static", "userver-1", 4, 1) / "DONE").exists()
    assert (runs.point_dir(run, "static", "userver-1", 8, 1) / "DONE").is_file()
    man = json.loads((run / "manifest.json").read_text())
    assert man["runs"][-1]["status"] == "done, 1 failed"


@needs_binaries
@pytest.mark.skipif("cgroup" in CAPS.problems(), reason="no writable cgroup memory controller")
def test_server_page_cache_stays_under_its_memory_limit(tmp_path: Path) -> None:
    """userver in a 64 MB cgroup serves every file of a ~150 MB file set: the cache it pulls in
    is charged to its cgroup and never exceeds the limit."""
    import requests

    from ukweb.servers import Server, named_config
    from ukweb.workload import CLASSES, FILES_PER_CLASS, file_path

    root = fileset.ensure(DATA / "fileset", 8)
    dirs = fileset.read_manifest(root)["dirs"]
    limit = 64 << 20
    with testbed.Testbed(memory_mb=64, drop_caches=CAPS.drop_caches, prefix="ukweb-test") as tb:
        tb.drop_page_cache()
        with tb.point_cgroup("serve") as cg:
            assert cg.memory_limit() == limit
            with Server(named_config("userver-1"), root.parent, tmp_path,
                        preexec=tb.server_preexec(cg)) as server:
                assert set(server.pids()) <= set(cg.pids())
                served, peak = 0, 0
                with requests.Session() as s:
                    for d in range(min(dirs, 30)):
                        for c in range(CLASSES):
                            for f in range(FILES_PER_CLASS):
                                r = s.get(f"{server.url}/{file_path(d, c, f)}", timeout=10)
                                assert r.status_code == 200
                                served += len(r.content)
                        peak = max(peak, cg.page_cache_bytes())
                assert served > 2 * limit
                assert 0 < peak <= limit
                assert cg.memory_usage_bytes() <= limit
    assert not cgroups.leftovers(f"ukweb-test-{os.getpid()}")


def test_repo_paths_are_not_hard_coded() -> None:
    for name in ("smoke", "quick", "paper"):
        text = (PARAMS / f"{name}.yaml").read_text()
        assert str(REPO) not in text and "/home/" not in text


@pytest.mark.skipif(not CAPS.root, reason="mounting a small tmpfs needs root")
def test_full_disk_is_reported_not_written_as_a_log(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(raw)], check=True)
    try:
        with pytest.raises(runs.SweepError, match="disk full"):
            runs.sweep(validate(smoke()), "full", root=raw, progress=False)
        man = json.loads((raw / "full" / "manifest.json").read_text())  # still valid JSON
        assert man["runs"][-1]["status"] == "interrupted"
        assert not list((raw / "full").rglob("DONE"))
    finally:
        subprocess.run(["umount", str(raw)], check=False)


def test_calibration_targets_the_papers_peak() -> None:
    from ukweb import calibrate

    assert calibrate.target_replies() == pytest.approx(700 * 400_000 / 122_000)  # ~2,295/s
    assert calibrate.clamp(2.0) == calibrate.MAX_SHARE and calibrate.clamp(0) == calibrate.MIN_SHARE


def test_calibration_share_is_what_the_sweep_uses(tmp_path: Path) -> None:
    out = tmp_path / "calibration.yaml"
    out.write_text(yaml.safe_dump({"cpu_method": "thief", "cpu_share": 0.21}))
    params = validate(smoke(calibration=str(out), cpu_share=None, cpu_method="thief"))
    loaded = runs.load_calibration(params)
    assert loaded["path"] == str(out)
    assert runs.effective_share(params, loaded) == 0.21
    quota = validate(smoke(calibration=str(out), cpu_share=None, cpu_method="quota"))
    with pytest.raises(ParamsError, match="calibrate"):  # a share is only good for its method
        runs.effective_share(quota, runs.load_calibration(quota))


def test_calibrate_bad_arguments_exit_2() -> None:
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "calibrate", "--seconds", "500"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--seconds" in res.stderr


@needs_binaries
@pytest.mark.skipif(not CAPS.netns, reason="network namespaces need root, ip and tc")
def test_netns_sweep_reaches_the_server_over_both_links(tmp_path: Path) -> None:
    from ukweb import netns

    params = validate(smoke(connections=[4], netns=True, drop_caches=False))
    run = runs.sweep(params, "net", root=tmp_path, progress=False)
    d = runs.point_dir(run, "static", "userver-1", 4, 1)
    assert (d / "DONE").is_file()
    summary = json.loads((d / "summary.json").read_text())
    network = json.loads((run / "manifest.json").read_text())["testbed"]["network"]
    assert network["links"] == 2 and network["rate"] == "1gbit"
    hosts = sorted(s.rsplit(":", 1)[0] for s in summary["args"]["server"])
    assert hosts == sorted(network["server_addrs"]) and summary["measure"]["ok"] > 0
    assert not netns.leftovers(f"ukweb-net-{os.getpid()}")


def test_resuming_with_other_parameters_is_refused(tmp_path: Path) -> None:
    params = validate(smoke())
    run = tmp_path / "changed"
    run.mkdir()
    old = validate(smoke(duration_s=60)).as_dict()
    (run / "manifest.json").write_text(json.dumps({"params": old, "deviations": [], "runs": []}))
    with pytest.raises(runs.SweepError, match="duration_s"):
        runs.sweep(params, "changed", root=tmp_path, progress=False)
    assert not (run / "points").exists()


def test_bad_calibration_file_is_a_params_error(tmp_path: Path) -> None:
    cal = tmp_path / "calibration.yaml"
    cal.write_text("cpu_share: 5\n")
    with pytest.raises(ParamsError, match="cpu_share=5"):
        runs.load_calibration(validate(smoke(calibration=str(cal))))


# --- the method: warm series, disk model, CPU thief ------------------------------------------

needs_method = pytest.mark.skipif(
    bool(cpuemul.check("thief") or diskmodel.check() or CAPS.problems().get("cgroup")),
    reason=f"{cpuemul.check('thief') or diskmodel.check() or CAPS.problems().get('cgroup')}")


@needs_binaries
@needs_method
def test_smoke_uses_the_whole_method_and_a_series_keeps_its_cgroup_and_cache(tmp_path: Path) -> None:
    from ukweb import analysis

    params = validate(smoke(connections=[4, 6, 8]))
    run = runs.sweep(params, "method", root=tmp_path, progress=False)
    man = json.loads((run / "manifest.json").read_text())
    tb = man["testbed"]
    assert tb["cpu_method"] == "thief" and tb["cpu_share"] == SMOKE["cpu_share"]
    assert tb["disk_model"]["params"]["seek_ms"] == SMOKE["disk_seek_ms"]
    events = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    series = [e for e in events if e["event"] == "series"]
    assert len(series) == 1 and series[0]["evicted_files"] > 0  # one series, emptied once
    done = [json.loads((runs.point_dir(run, "static", "userver-1", c, 1) / "DONE").read_text())
            for c in (4, 6, 8)]
    assert len({d["cgroup"] for d in done}) == 1  # the same cgroup for the whole series
    assert all(d["prewarm"]["files"] > 0 for d in done)  # each point topped up to its load
    cache = [logs_cache(runs.point_dir(run, "static", "userver-1", c, 1)) for c in (4, 6, 8)]
    for (_, last), (first, _) in zip(cache, cache[1:], strict=False):  # kept between points
        assert first >= 0.9 * last
    table = analysis.points_table(run)
    assert {"steady", "cache_at_cap", "misses_per_s", "disk_busy_pct"} <= set(table.columns)
    assert table["cache_at_cap"].all()  # pre-warmed to the 96 MB cap of a ~150 MB file set
    assert [e["index"] for e in events if e["event"] == "end"] == [1, 2, 3]
    assert not list(Path("/run/ukweb").glob(f"disk-{os.getpid()}*"))


def logs_cache(point: Path) -> tuple[int, int]:
    """The server cgroup's page cache at a point's first and last sample."""
    rows = list(csv_rows(point / "system.csv"))
    return int(rows[0]["page_cache_bytes"]), int(rows[-1]["page_cache_bytes"])


def csv_rows(path: Path):
    import csv
    with open(path) as f:
        yield from csv.DictReader(f)


@needs_binaries
@needs_method
def test_disk_model_killed_mid_point_fails_it_and_leaves_no_mount(tmp_path: Path) -> None:
    params = validate(smoke(duration_s=4))

    def victims() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline", "pid"])
                if "diskmodel" in " ".join(p.info["cmdline"] or [])
                and f"disk-{os.getpid()}" in " ".join(p.info["cmdline"] or [])]
    with killing_while_measuring(victims, tmp_path) as killed, \
            pytest.raises(runs.SweepError, match="disk model died"):
        runs.sweep(params, "diskdies", root=tmp_path, progress=False)
    assert killed
    failed = json.loads((runs.point_dir(tmp_path / "diskdies", "static", "userver-1", 4, 1)
                         / "FAILED").read_text())
    assert failed["reason"] == "disk model died" and "signal 9" in failed["detail"]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"disk-{os.getpid()}" not in mounts  # no stale mount
    assert not our_processes(str(tmp_path))
    assert not cgroups.leftovers(f"ukweb-{os.getpid()}-")


def test_a_method_this_machine_cannot_run_is_one_line(tmp_path: Path) -> None:
    """No disk model binary (or no FUSE): one line naming the cause, non-zero, nothing written."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("userver", "ktux", "loadgen", "cputhief"):
        if (REPO / "build" / name).is_file():
            (bindir / name).symlink_to(REPO / "build" / name)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    res = subprocess.run([sys.executable, "-m", "ukweb.cli", "run", "-f", str(path), "--root",
                          str(tmp_path / "root")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "UKWEB_BIN": str(bindir)})
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "diskmodel" in res.stderr or "cputhief" in res.stderr or "root" in res.stderr
    assert not (tmp_path / "root").exists()


# --- carried series (issue 17): one server from point to point, batch means, resume ---------


def carried(**over) -> dict:
    """A tiny profile whose points from 6 connections are carried: settled 2 s, 1-s transitions,
    3-s windows of 1-s batches (seconds, not the paper's minutes). Without the disk model: its
    10 %-overrun rule fails points whose disk was busy 0.1 s for 0.01 s (seen once here), and
    settling then runs to settle_max_s (no tau to measure)."""
    return smoke(**{"connections": [4, 6, 8], "repetitions": 2, "carry_from": 6, "carried_s": 3,
                    "batch_s": 1, "transition_s": 1, "settle_max_s": 2, "disk_model": False,
                    **over})


def done_record(run: Path, c: int, r: int = 1) -> dict:
    return json.loads((runs.point_dir(run, "static", "userver-1", c, r) / "DONE").read_text())


@needs_binaries
def test_a_carried_series_keeps_one_server_and_its_ci_comes_from_batch_means(tmp_path: Path) -> None:
    from ukweb import analysis
    run = runs.sweep(validate(carried()), "carry", root=tmp_path, progress=False)
    fresh = [done_record(run, 4, r) for r in (1, 2)]
    c6, c8 = done_record(run, 6), done_record(run, 8)
    assert [d["mode"] for d in (*fresh, c6, c8)] == ["fresh", "fresh", "carried", "carried"]
    assert c6["server_pids"] == c8["server_pids"] == [c6["settle"]["server_pid"]]
    assert fresh[0]["server_pids"] != fresh[1]["server_pids"] != c6["server_pids"]
    assert c6["prewarm"] is None and c6["window_s"] == 3 and c6["batch_s"] == 1
    assert not runs.point_dir(run, "static", "userver-1", 6, 2).exists()  # no repetitions
    man = json.loads((run / "manifest.json").read_text())
    settled = man["runs"][-1]["settled"]
    assert len(settled) == 1 and settled[0]["resumed"] is False and settled[0]["settle_s"] >= 1.5
    points = analysis.points_table(run)
    row = points[points["connections"] == 8].iloc[0]
    assert row["mode"] == "carried" and row["batches"] == 3 and row["batch_dof"] == 2
    assert row["server_pid"] == c8["server_pids"][0] and "series settled" in row["steady_reason"]
    cur = analysis.curves(points).set_index("connections")
    assert cur.loc[8, "basis"] == analysis.BATCHES and cur.loc[8, "dof"] == 2
    assert cur.loc[8, "se"] == pytest.approx(row["batch_se"])
    assert cur.loc[8, "ci95"] == pytest.approx(cur.loc[8, "half95"])  # the figures' error bar
    assert cur.loc[4, "basis"] == analysis.REPETITIONS
    assert not our_processes(str(tmp_path))


@needs_binaries
def test_a_half_done_carried_series_resumes_settling_again(tmp_path: Path) -> None:
    params = carried(connections=[4, 6, 8, 10], repetitions=1)
    proc = ukweb_run(params, tmp_path, "carry-resume")
    run = tmp_path / "raw" / "carry-resume"
    first = runs.point_dir(run, "static", "userver-1", 6, 1) / "DONE"
    try:
        assert wait_for(first.is_file, 90), "the first carried point never finished"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert not (runs.point_dir(run, "static", "userver-1", 10, 1) / "DONE").exists()
    assert not our_processes(str(tmp_path))
    stamp = first.read_text()
    proc = ukweb_run(params, tmp_path, "carry-resume")
    out, err = proc.communicate(timeout=120)
    if "was measured by commit" in err:  # another session committed meanwhile: rightly refused
        pytest.skip(err.strip().splitlines()[-1])
    assert proc.returncode == 0, err
    assert "4 done, 0 failed, 0 missing" in out
    assert first.read_text() == stamp  # the DONE point is kept
    kept, after = done_record(run, 6), done_record(run, 10)
    assert kept["server_pids"] != after["server_pids"]  # a new server for the rest ...
    man = json.loads((run / "manifest.json").read_text())
    again = man["runs"][-1]["settled"]
    assert len(again) == 1 and again[0]["resumed"] is True  # ... settled again, and said so
    assert again[0]["server_pid"] == after["server_pids"][0]
    assert not our_processes(str(tmp_path))
