"""Multi-host testbed (issue 18): the hosts file, and real SSH to hosts that are network
namespaces, each running its own sshd (openssh-server) with a key generated here, joined to this
namespace by a control veth and to each other by two data links in two subnets, as the paper's
two cards (§4)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ukweb import analysis, fileset, hosts, logs, multihost, paths
from ukweb.loadgen import LoadgenParams
from ukweb.remote import RemoteError, RemoteProcess, connect

SSHD = "/usr/sbin/sshd"
GOOD = {
    "ssh": {"user": "root", "key": "/k", "workdir": "/srv/ukweb"},
    "server": {"address": "10.0.0.1", "links": ["10.1.1.1", "10.1.2.1"],
               "emulation": {"memory_cap": True, "disk_model": True}},
    "clients": [{"name": "c1", "address": "10.0.0.11", "target": "10.1.1.1", "share": 0.5},
                {"name": "c2", "address": "10.0.0.12", "target": "10.1.2.1", "share": 0.5}],
}


def _bad(mutate) -> str:
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(hosts.HostsError) as err:
        hosts.parse(data, "h.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_valid_file_and_split():
    h = hosts.parse(GOOD, "h.yaml")
    assert h.server.links == ("10.1.1.1", "10.1.2.1") and h.server.emulation["disk_model"]
    assert not h.server.emulation["cpu_thief"]
    assert h.split(7) == {"c1": 4, "c2": 3} and sum(h.split(1001).values()) == 1001
    assert h.record()["clients"][1]["ssh"]["auth"] == "key"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["clients"][1].pop("target"), "clients[1].target: missing"),
    (lambda d: d["server"].pop("address"), "server.address: missing"),
    (lambda d: d["clients"][1].update(address="10.0.0.11"), "clients[1].address: duplicate"),
    (lambda d: d["clients"][1].update(name="c1"), "clients[1].name: duplicate"),
    (lambda d: d["clients"][1].update(share=0.4), "clients[*].share: shares add up to 0.9"),
    (lambda d: d["clients"][0].update(shares=1), "clients[0].shares: unknown key"),
    (lambda d: d["ssh"].update(password="x"), "ssh.password: passwords are not accepted"),
    (lambda d: d["clients"][0].update(target="10.9.9.9"), "clients[0].target: 10.9.9.9 is not"),
    (lambda d: d["server"]["emulation"].update(swap=True), "server.emulation.swap: unknown key"),
    (lambda d: d["ssh"].pop("key"), "server.key: missing (or agent: true)"),
])
def test_bad_hosts_file_is_one_line_naming_the_field(mutate, field):
    assert field in _bad(mutate)


def test_hosts_check_cli_exits_2(tmp_path):
    bad = json.loads(json.dumps(GOOD))
    bad["clients"][0]["share"] = 0.7
    f = tmp_path / "hosts.yaml"
    f.write_text(yaml.safe_dump(bad))
    res = subprocess.run(["ukweb", "hosts", "check", str(f)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"ukweb hosts: {f}: clients[*].share: shares add up to 1.2, must add up to 1"]
    f.write_text(yaml.safe_dump(GOOD))
    res = subprocess.run(["ukweb", "hosts", "check", str(f)], capture_output=True, text=True)
    assert res.returncode == 0 and "c2->10.1.2.1 0.5" in res.stdout


# -- real SSH to namespaces

def _ip(*args: str, ns: str | None = None) -> None:
    subprocess.run((["ip", "netns", "exec", ns] if ns else []) + list(args), check=True,
                   capture_output=True, timeout=30)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().split()[0:2]  # type: ignore[return-value]


@pytest.fixture
def testbed(tmp_path):
    """1 server + 2 client namespaces, each with sshd on a control link from here; data links
    server<->c1 (10.197.1.0/24) and server<->c2 (10.197.2.0/24)."""
    if os.geteuid() != 0 or not Path(SSHD).exists():
        pytest.skip("needs root and openssh-server")
    tag = f"ukmh{os.getpid() % 100000}"
    names = ["srv", "c1", "c2"]
    ns = {n: f"{tag}-{n}" for n in names}
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    client_key = tmp_path / "id_test"
    _keygen(client_key)
    (tmp_path / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    known, sshds, ctl = [], [], {}
    try:
        for i, n in enumerate(names):
            _ip("ip", "netns", "add", ns[n])
            _ip("ip", "link", "set", "lo", "up", ns=ns[n])
            here, there = f"{tag}h{i}", f"{tag}n{i}"
            _ip("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns[n])
            _ip("ip", "addr", "add", f"10.198.{i + 1}.1/24", "dev", here)
            _ip("ip", "link", "set", here, "up")
            _ip("ip", "addr", "add", f"10.198.{i + 1}.2/24", "dev", there, ns=ns[n])
            _ip("ip", "link", "set", there, "up", ns=ns[n])
            ctl[n] = f"10.198.{i + 1}.2"
        for k, c in ((1, "c1"), (2, "c2")):
            s, d = f"{tag}s{k}", f"{tag}d{k}"
            _ip("ip", "link", "add", s, "netns", ns["srv"], "type", "veth", "peer", "name", d,
                "netns", ns[c])
            for space, dev, host in ((ns["srv"], s, 1), (ns[c], d, 2)):
                _ip("ip", "addr", "add", f"10.197.{k}.{host}/24", "dev", dev, ns=space)
                _ip("ip", "link", "set", dev, "up", ns=space)
        for n in names:
            d = tmp_path / n
            d.mkdir()
            key_type, key = _keygen(d / "host_key")
            known.append(f"{ctl[n]} {key_type} {key}")
            (d / "sshd_config").write_text(
                f"Port 22\nListenAddress {ctl[n]}\nHostKey {d / 'host_key'}\n"
                f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                f"StrictModes no\nPidFile {d / 'sshd.pid'}\nSubsystem sftp internal-sftp\n")
            # nsenter --net, not `ip netns exec`: that one also remounts /sys for the namespace,
            # which hides the cgroup hierarchy the server host's memory cap needs
            sshds.append(subprocess.Popen(["nsenter", f"--net=/run/netns/{ns[n]}", SSHD, "-D",
                                           "-e", "-f", str(d / "sshd_config")],
                                          stderr=subprocess.DEVNULL))
        (tmp_path / "known_hosts").write_text("\n".join(known) + "\n")
        data = {"ssh": {"user": "root", "key": str(client_key), "workdir": str(paths.REPO),
                        "known_hosts": str(tmp_path / "known_hosts")},
                "server": {"name": "srv", "address": ctl["srv"], "http_port": 8080,
                           "links": ["10.197.1.1", "10.197.2.1"]},
                "clients": [{"name": "c1", "address": ctl["c1"], "target": "10.197.1.1", "share": 0.75},
                            {"name": "c2", "address": ctl["c2"], "target": "10.197.2.1", "share": 0.25}]}
        _wait_ssh(list(ctl.values()))
        yield hosts.parse(data, "test-hosts"), tmp_path, data
    finally:
        for p in sshds:
            p.terminate()
            p.wait(timeout=10)
        for n in names:
            subprocess.run(["ip", "netns", "del", ns[n]], capture_output=True, timeout=30)
        for i in range(len(names)):
            subprocess.run(["ip", "link", "del", f"{tag}h{i}"], capture_output=True, timeout=30)


def _wait_ssh(addrs: list[str]) -> None:
    import socket
    deadline = time.monotonic() + 10
    for a in addrs:
        while True:
            try:
                socket.create_connection((a, 22), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _ours(marker: str, name: str | None = None) -> list[psutil.Process]:
    """Processes (any namespace: they share our pid namespace) whose command line holds marker."""
    out = []
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd and p.pid != os.getpid() and (name is None or p.info["name"] == name):
            out.append(p)
    return out


@pytest.mark.root
def test_hosts_over_real_ssh(testbed):
    h, tmp, data = testbed
    # Preparation of 1 server + 2 clients: commit, build, clock.
    prep = multihost.prepare(h, build=False)
    assert set(prep["hosts"]) == {"srv", "c1", "c2"}
    assert all(r["commit"] == prep["commit"] for r in prep["hosts"].values())
    # one clock here: every measured offset is within its exchange's error (half the round trip)
    assert all(abs(r["clock_offset_ms"]) <= r["clock_rtt_ms"] / 2 + 1 for r in prep["hosts"].values()), prep

    # The same from the command line; a host that does not answer is one line, exit 2.
    f = tmp / "hosts.yaml"
    f.write_text(yaml.safe_dump(data))
    res = subprocess.run(["ukweb", "hosts", "check", "--reach", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.count("clock offset") == 3, res.stderr
    down = json.loads(json.dumps(data))
    down["clients"][0]["port"] = 2222
    f.write_text(yaml.safe_dump(down))
    res = subprocess.run(["ukweb", "hosts", "check", "--reach", str(f)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and re.fullmatch(
        r"ukweb hosts: c1 \(root@10\.198\.2\.2:2222\): unreachable: .*\n", res.stderr), res.stderr

    # A host whose key is not the one in known_hosts: refused.
    bad_known = tmp / "known_hosts_bad"
    lines = (tmp / "known_hosts").read_text().splitlines()
    bad_known.write_text("\n".join([lines[0], lines[1].split()[0] + " " + " ".join(
        lines[2].split()[1:])]) + "\n")  # c1's address with c2's key
    wrong = json.loads(json.dumps(data))
    wrong["ssh"]["known_hosts"] = str(bad_known)
    with pytest.raises(RemoteError, match=r"^c1 \(root@10\.198\.2\.2:22\): host key refused"):
        multihost.prepare(hosts.parse(wrong, "x"), build=False)

    # A host at another commit: refused, both named.
    other = tmp / "other-checkout"
    other.mkdir()
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "other"], check=True)
    theirs = subprocess.run(["git", "-C", str(other), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    moved = json.loads(json.dumps(data))
    moved["clients"][1]["workdir"] = str(other)
    with pytest.raises(RemoteError) as err:
        multihost.prepare(hosts.parse(moved, "x"), build=False)
    # both commits named (ours read again: other sessions commit to this tree meanwhile)
    assert re.fullmatch(rf"c2: {other} is at commit {theirs}, this checkout at [0-9a-f]{{40}}; "
                        "check out the same commit on every host", str(err.value))


@pytest.mark.root
def test_point_over_ssh_merged_and_killed_client(testbed):
    h, tmp, data = testbed
    fileset.generate(tmp / "fs", dirs=1, progress=False)
    server_argv = [str(paths.binary("userver")), "--addr", "0.0.0.0", "--port", "8080",
                   "--docroot", str(tmp / "fs"), "--post-log", str(tmp / "post.log"),
                   "--state-dir", str(tmp / "state"), "--procs", "1", "--events", "epoll"]
    (tmp / "state").mkdir()
    params = LoadgenParams(connections=8, mix="static", warmup_s=1, duration_s=2, dirs=1,
                           line_speed=2_000_000, timeout_s=5)
    tag = f"t{os.getpid()}"
    killed = {}

    async def scenario() -> None:
        async with await connect(h.server) as conn:
            server = await RemoteProcess.start(conn, h.server, server_argv, cwd=str(tmp))
            try:
                # wait until userver answers on a data link from a client namespace
                point = tmp / "run" / "static" / "userver" / "c8" / "r1"
                point.mkdir(parents=True)
                await asyncio.sleep(0.5)
                merged = await multihost.drive_async(h, params, point, tag=tag)
                (point / "DONE").write_text("{}")
                check_point(point, merged)

                def kill_c2(procs):
                    def kill():
                        for p in _ours(f"/{tag}b/c2", "loadgen"):
                            killed["pid"] = p.pid
                            p.kill()
                    asyncio.get_running_loop().call_later(START_LEAD + 1.5, kill)
                with pytest.raises(multihost.ClientFailed, match=r"^c2: loadgen exited 137 "
                                   r"\(killed by SIGKILL\)"):
                    # a long point, so the kill lands in it whatever the machine's load
                    await multihost.drive_async(h, dataclasses.replace(params, duration_s=30),
                                                tmp / "p2", tag=f"{tag}b", on_started=kill_c2)
                await sigterm_stops_every_client(h, data, tmp, f"{tag}c")
            finally:
                await server.stop()

    START_LEAD = multihost.START_LEAD_S
    asyncio.run(scenario())
    assert killed, "c2's loadgen was not found to kill"
    time.sleep(0.3)
    left = [p for m in (tag, str(tmp / "fs")) for p in _ours(m)]
    assert not left, f"processes left: {[p.info['cmdline'] for p in left]}"


async def sigterm_stops_every_client(h: hosts.Hosts, data: dict, tmp: Path, tag: str) -> None:
    """A runner (its own process) driving a long point gets SIGTERM: it stops every remote
    loadgen by its process group and exits 143; none is left on any host."""
    f = tmp / "hosts.yaml"
    f.write_text(yaml.safe_dump(data))
    code = ("import sys; from pathlib import Path; from ukweb import hosts, multihost; "
            "from ukweb.loadgen import LoadgenParams; "
            "multihost.drive(hosts.load(sys.argv[1]), LoadgenParams(connections=4, mix='static', "
            "warmup_s=1, duration_s=60, dirs=1), Path(sys.argv[2]), tag=sys.argv[3])")
    runner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(f), str(tmp / "p3"), tag)
    deadline = time.monotonic() + 15
    while len(_ours(f"/{tag}/", "loadgen")) < 2:
        assert time.monotonic() < deadline, "the runner's loadgens did not start"
        await asyncio.sleep(0.1)
    runner.terminate()
    assert await asyncio.wait_for(runner.wait(), 15) == 143
    await asyncio.sleep(0.3)
    assert not _ours(f"/{tag}/"), "a remote loadgen outlived the runner's SIGTERM"


def _differ(a: object, b: object, at: str = "") -> list[str]:
    """Where two summaries differ (floats to 1e-6)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{at} keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _differ(a[k], b[k], f"{at}.{k}")]
    if isinstance(a, float) or isinstance(b, float):
        return [] if a == pytest.approx(b, rel=1e-6, abs=1e-9) else [f"{at}: {a} != {b}"]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]


def test_loadgen_waits_for_start_at():
    """--start-at: loadgen sets up, then starts its run at that wall-clock time; SIGTERM while
    it waits is one line and exit 1."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"ukweb-start-at-{os.getpid()}"
    argv = [str(paths.binary("loadgen")), "--server", "127.0.0.1:9", "--connections", "1",
            "--out", str(out), "--warmup", "0", "--duration", "0.2", "--dirs", "1", "--mix", "static"]
    try:
        t0 = time.time()
        res = subprocess.run(argv + ["--start-at", f"{t0 + 1.0:.6f}"], capture_output=True,
                             text=True, timeout=30)
        took = time.time() - t0
        assert res.returncode == 0, res.stderr
        assert 1.2 <= took < 3.0
        p = subprocess.Popen(argv + ["--start-at", f"{time.time() + 30:.6f}"],
                             stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        p.terminate()
        _, err = p.communicate(timeout=10)
        assert p.returncode == 1 and err.strip() == "loadgen: interrupted before --start-at"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def check_point(point: Path, merged: dict) -> None:
    c1 = logs.read_summary(point / "clients" / "c1")
    c2 = logs.read_summary(point / "clients" / "c2")
    assert (c1["connections"], c2["connections"]) == (6, 2)  # shares 0.75 / 0.25
    assert merged["connections"] == 8 and merged["window_us"] == c1["window_us"]
    assert merged["measure"]["requests"] == c1["measure"]["requests"] + c2["measure"]["requests"]
    req = logs.read_requests(point)  # the analysis reader, unchanged
    assert len(req) == c1["requests_all_phases"] + c2["requests_all_phases"]
    who = multihost.client_column(req, point)
    assert set(req.loc[who == "c2", "conn"]) <= {6, 7} and (who == "c1").sum() > (who == "c2").sum() > 0
    # one client merged alone is that client's summary (but args, kept per client)
    alone = multihost.merge_summaries([c1], ["c1"])
    assert alone.pop("args") == {"c1": c1["args"]}
    assert not _differ(alone, {k: v for k, v in c1.items() if k != "args"})
    row = analysis.point_row(point)
    assert row["status"] == analysis.DONE and row["ops_per_s"] > 0
    assert abs(row["ops_per_s"] - merged["measure"]["ops_per_s"]) <= 0.05 * row["ops_per_s"]
    shutil.rmtree(point / "clients")


def test_run_sync_gives_back_the_runners_sigterm_handler():
    """drive() takes SIGTERM for its cleanup and gives the runner's own handler back."""
    import signal

    def mine(*_: object) -> None:
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        async def one() -> int:
            return 1
        assert multihost.run_sync(one()) == 1
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


# -- `ukweb run --hosts`: the smoke profile over 1 server + 2 client namespaces

def _run_cmd(f: Path, root: Path, run_id: str, *more: str) -> list[str]:
    """The smoke profile, shrunk to one series of two points (c4, c8) of 1 s + 4 s."""
    return ["ukweb", "run", "-f", str(paths.REPO / "params" / "smoke.yaml"), "--hosts", str(f),
            "--root", str(root), "--run-id", run_id, "--no-progress", "--set", "workloads=[static]",
            "--set", "servers={static: [userver-1]}", "--set", "duration_s=4", *more]


def _hosts_file(tmp: Path, data: dict) -> Path:
    data = json.loads(json.dumps(data))
    data["server"]["emulation"] = {"memory_cap": True, "disk_model": True}  # no CPU thief here:
    f = tmp / "hosts-run.yaml"  # another engineer's timings share this machine's CPUs
    f.write_text(yaml.safe_dump(data))
    return f


# A background killer (its own process, as a fault would be): once the loadgen whose command
# line holds argv[1] has run past the agreed start (START_LEAD_S) and a second into the point,
# kill argv[3]: "loadgen" that loadgen; "sshd:PID" every sshd session under the listener PID
# (the host's sshd processes serving the runner's connection; the listener stays, as a host
# whose sshd restarted); "server:MARKER" the userver/ktux whose command line holds MARKER.
# Prints the pids it killed; exits 1 when it found nothing to kill.
KILLER = """
import sys, time, psutil
marker, delay, what = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def procs(names, mark):
    return [p for p in psutil.process_iter(['cmdline', 'name'])
            if p.info['name'] in names and mark in ' '.join(p.info['cmdline'] or [])]
deadline = time.monotonic() + 120
while time.monotonic() < deadline and not procs(('loadgen',), marker):
    time.sleep(0.05)
time.sleep(delay)
if what == 'loadgen':
    victims = procs(('loadgen',), marker)
elif what.startswith('sshd:'):
    victims = [p for p in psutil.Process(int(what[5:])).children(recursive=True) if p.name() == 'sshd']
else:
    victims = procs(('userver', 'ktux'), what[len('server:'):])
for p in victims:
    p.kill()
print(' '.join(str(p.pid) for p in victims))
sys.exit(0 if victims else 1)
"""


def _watch_and_kill(marker: str, what: str = "loadgen") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", KILLER, marker,
                             str(multihost.START_LEAD_S + 1.5), what],
                            stdout=subprocess.PIPE, text=True)


def _failed(run: Path, conns: int) -> dict:
    return json.loads((run / f"points/static/userver-1/c{conns}/r1/FAILED").read_text())


@pytest.mark.root
def test_run_over_hosts_faults_resume_and_sigterm(testbed):
    h, tmp, data = testbed
    f, root, run_id = _hosts_file(tmp, data), tmp / "raw", f"mh{os.getpid()}"
    run = root / run_id
    # A host that does not answer: one line naming it, before any point.
    down = json.loads(json.dumps(data))
    down["clients"][1]["port"] = 2222
    (tmp / "down.yaml").write_text(yaml.safe_dump(down))
    res = subprocess.run(_run_cmd(tmp / "down.yaml", root, run_id), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and re.fullmatch(
        r"ukweb run: c2 \(root@10\.198\.3\.2:2222\): unreachable: .*\n", res.stderr), res.stderr
    assert not (run / "points").exists()

    # Two hosts lost mid-point, each failing its point naming the host, the sweep going on as
    # on one machine (a point's failure is that point's): in c4 c2's sshd processes serving
    # the runner's connection are killed (a client host lost); in c8 the agent's server on srv.
    listener = int((tmp / "c2" / "sshd.pid").read_text())
    lost = _watch_and_kill(f"/{run_id}-p0/c2", f"sshd:{listener}")
    died = _watch_and_kill(f"/{run_id}-p1/c1", f"server:/{run_id}-agent/{run_id}-p1/")
    res = subprocess.run(_run_cmd(f, root, run_id), capture_output=True, text=True, timeout=180)
    assert lost.wait(timeout=10) == 0, "c2's sshd sessions were not found to kill"
    assert died.wait(timeout=10) == 0, "srv's server was not found to kill"
    assert res.returncode == 1, res.stderr
    assert "failed: static/userver-1/c4/r1" in res.stderr and "failed: static/userver-1/c8/r1" in res.stderr
    failed = _failed(run, 4)
    assert failed["reason"] == "client host failed", failed
    assert re.match(r"c2: connection lost while loadgen ran", failed["detail"]), failed
    failed = _failed(run, 8)
    assert failed["reason"] == "server died during the point", failed
    assert re.fullmatch(r"srv: pid \d+ exited", failed["detail"]), failed
    assert psutil.pid_exists(listener)  # c2's sshd itself answers the resume: no restart needed
    left = _ours(run_id)
    assert not left, f"processes left: {[p.info['cmdline'] for p in left]}"

    # The resume measures the failed points, and the run is complete.
    res = subprocess.run(_run_cmd(f, root, run_id), capture_output=True, text=True, timeout=180)
    if "was measured by commit" in res.stderr:
        pytest.skip("a commit landed in the shared tree between the run and its resume")
    assert res.returncode == 0, res.stderr
    assert "2 done, 0 failed, 0 missing" in res.stdout
    man = json.loads((run / "manifest.json").read_text())
    assert [r["status"] for r in man["runs"]] == ["done, 2 failed", "done"]
    assert set(man["hosts"]["hosts"]) == {"srv", "c1", "c2"}
    assert all(r["commit"] == man["git"]["commit"] and "clock_offset_ms" in r
               for r in man["hosts"]["hosts"].values())
    assert man["hosts"]["testbed"]["server"]["emulation"] == {
        "cpu_thief": False, "memory_cap": True, "disk_model": True}
    assert man["testbed"]["memory_mb"] == 96 and man["testbed"]["disk_model"]["params"]["seek_ms"] == 12.0
    assert man["testbed"]["cpu_method"] == "none"  # cpu_thief: false on the server host
    assert set(man["runs"][1]["hosts"]) == {"srv", "c1", "c2"}

    # Every point: each client's own logs with its share, the merged log, the server's files.
    for conns, split in ((4, (3, 1)), (8, (6, 2))):
        point = run / f"points/static/userver-1/c{conns}/r1"
        got = tuple(logs.read_summary(point / "clients" / c)["connections"] for c in ("c1", "c2"))
        assert got == split
        assert [c["connections"] for c in json.loads((point / "clients.json").read_text())] == list(split)
        done = json.loads((point / "DONE").read_text())
        assert done["hosts"]["clients"]["c2"]["connections"] == split[1] and done["cgroup"]
        assert done["system_samples"] >= 4 and (point / "postlog.txt").exists()
        assert json.loads((point / "server-status.json").read_text())["after"]
    # The analysis, unchanged, reads the run: `make report RUN=...` (figures, claims, report).
    out = tmp / "processed"
    res = subprocess.run(["ukweb", "report", str(run), "--out", str(out)], capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert (out / "report.html").is_file() and (out / "claims.json").is_file()
    import pandas as pd
    table = pd.read_parquet(out / "points.parquet")
    assert list(table["status"]) == [analysis.DONE] * 2 and (table["ops_per_s"] > 0).all()

    # c2's loadgen killed in c4 fails that point naming c2 and the sweep goes on to c8;
    # SIGTERM in c8: exit 143, nothing the run started left on any host.
    sig_id = f"{run_id}t"
    killer = _watch_and_kill(f"/{sig_id}-p0/c2")
    runner = subprocess.Popen(_run_cmd(f, root, sig_id, "--set", "duration_s=30"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_ours(f"/{sig_id}-p1/", "loadgen")) < 2:
        assert time.monotonic() < deadline and runner.poll() is None, "the loadgens did not start"
        time.sleep(0.1)
    assert killer.wait(timeout=10) == 0, "c2's loadgen was not found to kill"
    failed = _failed(root / sig_id, 4)
    assert failed["reason"] == "loadgen failed"
    assert failed["detail"].startswith("c2: loadgen exited 137 (killed by SIGKILL)"), failed
    assert _ours(f"/{sig_id}-agent/", "userver"), "no server under the agent"
    runner.terminate()
    _, err = runner.communicate(timeout=90)
    assert runner.returncode == 143, err
    time.sleep(0.5)
    left = _ours(sig_id)
    assert not left, f"processes left: {[p.info['cmdline'] for p in left]}"
    assert not (root / sig_id / "points/static/userver-1/c8/r1/DONE").exists()


@pytest.mark.root
def test_run_over_hosts_carried_series(testbed):
    """A carried series over the hosts: c4 fresh, c8 on the server carried from the settling
    (loadgen chunks on both clients), one window with its batches; the analysis reads it."""
    h, tmp, data = testbed
    f, root, run_id = _hosts_file(tmp, data), tmp / "raw", f"mhc{os.getpid()}"
    res = subprocess.run(_run_cmd(f, root, run_id, "--set", "carry_from=8", "--set", "batch_s=1",
                                  "--set", "carried_s=3", "--set", "settle_max_s=2",
                                  "--set", "transition_s=1", "--set", "variance=null"),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    run = root / run_id
    fresh = json.loads((run / "points/static/userver-1/c4/r1/DONE").read_text())
    carried = json.loads((run / "points/static/userver-1/c8/r1/DONE").read_text())
    assert fresh["mode"] == "fresh" and carried["mode"] == "carried"
    assert carried["window_s"] == 3 and carried["batch_s"] == 1 and carried["settle"]["chunks"] >= 1
    assert carried["hosts"]["clients"]["c1"]["connections"] == 6
    man = json.loads((run / "manifest.json").read_text())
    assert man["runs"][0]["settled"][0]["from"] == "static/userver-1/c8/r1"
    assert not _ours(run_id), "a process of the run outlived it"
    res = subprocess.run(["ukweb", "analyze", str(run), "--out", str(tmp / "out")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
