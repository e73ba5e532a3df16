"""A multi-host testbed run (issue 18): preparation of every host, and one point's load driven
by loadgen on every client host at an agreed time, its logs fetched and merged.

Preparation (`prepare`): every host reachable over SSH, at this checkout's git commit (another
commit is refused, both named), its build present (`make build` there when not), its clock
within MAX_CLOCK_OFFSET_S of this one. Why 50 ms: each client's log is timed from its own start
(loadgen's CLOCK_MONOTONIC time base) and the clients start at one agreed wall-clock time, so a
client whose clock is off by d measures a window shifted by d against the others and the
server's sampler; the shortest windows the analysis reads are seconds (1 s samples, 1 s
batches, ukweb.batches), and 50 ms is 5 % of one second.

The point (`drive`): the connections split by the hosts file's shares, every client's loadgen
given its share, the same windows, its own seed and --dirs of the whole point (the file set is
the server's, for all the connections); started at one agreed time (per host corrected by its
measured offset); fetched by SFTP into `clients/<name>/` of the point directory; merged by
`merge` into `requests.csv.gz` and `summary.json` exactly as one loadgen would write them (conn
numbered across clients, totals summed, windows equal) plus `clients.json`, which says which
conn range is which client. Ctrl-C, SIGTERM or a failed client stops every remote loadgen by its
process group before this returns.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import gzip
import json
import logging
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncssh

from ukweb import loadgen as loadgen_mod
from ukweb import paths
from ukweb.hosts import ClientHost, Host, Hosts, HostsError
from ukweb.hosts import load as load_hosts
from ukweb.remote import RemoteError, RemoteProcess, connect, describe_exit, run

log = logging.getLogger(__name__)

__all__ = ["RemoteError", "ClientFailed", "prepare", "drive", "merge", "run_sync"]

MAX_CLOCK_OFFSET_S = 0.050
START_LEAD_S = 2.0  # from now to the agreed start: every client's ssh + exec fit in it
REMOTE_SCRATCH = "/tmp/ukweb-multihost"
CLIENT_FILES = ("requests.csv.gz", "summary.json")
T = TypeVar("T")


class ClientFailed(RemoteError):
    """A client's loadgen failed during a point; the message names the host and the reason."""


def local_commit() -> str:
    res = subprocess.run(["git", "-C", str(paths.REPO), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=False, timeout=30)
    if res.returncode != 0:
        raise RemoteError(f"this checkout ({paths.REPO}) is not a git repository: {res.stderr.strip()}")
    return res.stdout.strip()


def _binaries(host: Host, hosts: Hosts) -> list[str]:
    if host is hosts.server:
        return ["userver", "ktux"]
    return ["loadgen"]


# Answers each line on stdin with its clock: one channel and one process for every exchange,
# so a round trip is the link's, not an exec's (`date` run per exchange read its clock late
# in a ~100 ms exchange, a bias of half of it).
CLOCK = "import sys, time\nfor _ in sys.stdin:\n    print(repr(time.time()), flush=True)\n"


async def _clock_offset(conn: asyncssh.SSHClientConnection, host: Host) -> tuple[float, float]:
    """(offset, round trip) in seconds: the remote's clock minus ours at the exchange's middle,
    from the exchange with the shortest round trip of nine (its error is at most half that
    round trip: the remote read its clock somewhere inside it)."""
    best: tuple[float, float] | None = None
    try:
        proc = await conn.create_process(shlex.join(["python3", "-c", CLOCK]))
    except (asyncssh.Error, OSError) as exc:
        raise RemoteError(f"{host.name}: python3: {exc}") from exc
    try:
        for _ in range(9):
            t0 = time.time()
            proc.stdin.write("\n")
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            t1 = time.time()
            if not line:
                err = (await proc.stderr.read()).strip()
                raise RemoteError(f"{host.name}: python3 clock exchange failed: {err or 'no output'}")
            sample = (float(line) - (t0 + t1) / 2, t1 - t0)
            if best is None or sample[1] < best[1]:
                best = sample
    finally:
        proc.close()
    assert best is not None
    return best


async def _prepare_host(host: Host, hosts: Hosts, commit: str, build: bool) -> dict:
    async with await connect(host) as conn:
        wd = host.ssh.workdir
        res = await run(conn, host, ["git", "-C", wd, "rev-parse", "HEAD"], check=False)
        theirs = str(res.stdout).strip()
        if res.exit_status != 0:
            raise RemoteError(f"{host.name}: {wd} is not a checkout of this repository: "
                              f"{str(res.stderr).strip()}")
        if theirs != commit:
            raise RemoteError(f"{host.name}: {wd} is at commit {theirs}, this checkout at {commit}; "
                              "check out the same commit on every host")
        missing = [b for b in _binaries(host, hosts)
                   if (await run(conn, host, ["test", "-x", f"{wd}/build/{b}"],
                                 check=False)).exit_status != 0]
        if host is hosts.server and (await run(conn, host, ["test", "-x", f"{wd}/.venv/bin/python"],
                                               check=False)).exit_status != 0:
            raise RemoteError(f"{host.name}: {wd}/.venv/bin/python missing (the agent runs "
                              "there): run `make setup` in it")
        built = False
        if missing:
            if not build:
                raise RemoteError(f"{host.name}: {', '.join(missing)} not built in {wd}/build")
            log.info("%s: building (missing %s)", host.name, ", ".join(missing))
            await run(conn, host, ["make", "-C", wd, "build"], timeout=1800)
            built = True
        offset, rtt = await _clock_offset(conn, host)
        if abs(offset) - rtt / 2 > MAX_CLOCK_OFFSET_S:  # beyond, whatever the exchange's error
            raise RemoteError(f"{host.name}: clock {offset * 1e3:+.1f} ms off this host's (round "
                              f"trip {rtt * 1e3:.1f} ms), more than {MAX_CLOCK_OFFSET_S * 1e3:.0f} ms"
                              "; synchronise clocks (chrony/NTP) first")
        uname = str((await run(conn, host, ["uname", "-r"])).stdout).strip()
        return {"address": host.address, "commit": theirs, "built_now": built,
                "clock_offset_ms": round(offset * 1e3, 3), "clock_rtt_ms": round(rtt * 1e3, 3),
                "kernel": uname}


async def prepare_async(hosts: Hosts, *, build: bool = True) -> dict:
    commit = local_commit()
    results = await asyncio.gather(*(_prepare_host(h, hosts, commit, build) for h in hosts.all()),
                                   return_exceptions=True)
    for r in results:  # the first failure in file order, one line
        if isinstance(r, BaseException):
            raise r
    return {"commit": commit, "max_clock_offset_ms": MAX_CLOCK_OFFSET_S * 1e3,
            "hosts": {h.name: r for h, r in zip(hosts.all(), results, strict=True)},
            "testbed": hosts.record()}


def prepare(hosts: Hosts, *, build: bool = True) -> dict:
    """Check every host (reachable, commit, build, clock); the manifest's `hosts` record."""
    return run_sync(prepare_async(hosts, build=build))


def run_sync(coro: Awaitable[T]) -> T:
    """Run coro to completion; SIGTERM cancels it like Ctrl-C, so its cleanup (stopping remote
    process groups) runs before KeyboardInterrupt/SystemExit reaches the caller."""
    async def main() -> T:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        termed = False
        previous = signal.getsignal(signal.SIGTERM)  # the runner's own (runs._sigterm_raises)

        def on_term() -> None:
            nonlocal termed
            termed = True
            task.cancel()
        try:
            loop.add_signal_handler(signal.SIGTERM, on_term)
        except (RuntimeError, ValueError):  # not the main thread: Ctrl-C still cancels
            pass
        try:
            return await task
        except asyncio.CancelledError:
            if termed:
                raise SystemExit(128 + signal.SIGTERM) from None
            raise
        finally:
            try:
                if loop.remove_signal_handler(signal.SIGTERM):
                    signal.signal(signal.SIGTERM, previous)  # remove_ sets SIG_DFL
            except (RuntimeError, ValueError, TypeError):
                pass
    return asyncio.run(main())


def client_params(params: loadgen_mod.LoadgenParams, hosts: Hosts) -> dict[str, loadgen_mod.LoadgenParams]:
    """Each client's loadgen parameters: its share, its own seed, the whole point's --dirs."""
    from ukweb.workload import ndirs
    split = hosts.split(params.connections)
    dirs = params.dirs if params.dirs is not None else ndirs(params.connections)
    out = {}
    for i, c in enumerate(hosts.clients):
        n = split[c.name]
        out[c.name] = dataclasses.replace(params, connections=n, threads=min(params.threads, n),
                                          seed=params.seed + i, dirs=dirs)
    return out


async def drive_async(hosts: Hosts, params: loadgen_mod.LoadgenParams, point_dir: Path, *,
                      tag: str, offsets_s: dict[str, float] | None = None,
                      on_started: Callable[[dict[str, RemoteProcess]], None] | None = None,
                      start_at: float | None = None) -> dict:
    """Run one point's load on every client; fetch and merge into point_dir; the merged summary.

    start_at: the agreed start in this host's clock (default now + START_LEAD_S); the runner
    gives it so that the server host's sampler starts with the clients. tag names the remote scratch directories (`/tmp/ukweb-multihost/<tag>/<client>`, removed after). A client
    that fails raises ClientFailed naming it after every other loadgen was stopped.
    """
    point_dir = Path(point_dir)
    per = client_params(params, hosts)
    offsets_s = offsets_s or {}
    conns: dict[str, asyncssh.SSHClientConnection] = {}
    procs: dict[str, RemoteProcess] = {}
    outs: dict[str, str] = {}
    try:
        for c, conn in zip(hosts.clients, await asyncio.gather(*(connect(c) for c in hosts.clients)),
                           strict=True):
            conns[c.name] = conn
        start_at = start_at or time.time() + START_LEAD_S
        for c in hosts.clients:
            out = outs[c.name] = f"{REMOTE_SCRATCH}/{tag}/{c.name}"
            await run(conns[c.name], c, ["rm", "-rf", out])
            await run(conns[c.name], c, ["mkdir", "-p", out])
            argv = loadgen_mod.command(per[c.name], [f"{c.target}:{hosts.server.port}"], Path(out))
            argv[0] = f"{c.ssh.workdir}/build/loadgen"
            # loadgen sets up, then waits for the agreed time in the host's clock
            argv += ["--start-at", f"{start_at + offsets_s.get(c.name, 0.0):.6f}"]
            procs[c.name] = await RemoteProcess.start(conns[c.name], c, argv, cwd=c.ssh.workdir)
        if on_started is not None:
            on_started(procs)
        limit = START_LEAD_S + params.warmup_s + params.duration_s + params.timeout_s \
            + loadgen_mod.GRACE_S
        waits = {asyncio.ensure_future(p.wait()): name for name, p in procs.items()}
        pending = set(waits)
        deadline = time.monotonic() + limit
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                name = waits[next(iter(pending))]
                raise ClientFailed(f"{name}: loadgen ran past {limit:.0f} s")
            for fut in done:
                code, err = fut.result()
                if code != 0:
                    lines = err.strip().splitlines()
                    raise ClientFailed(f"{waits[fut]}: loadgen {describe_exit(code)}"
                                       + (f": {lines[-1]}" if lines else ""))
        procs.clear()  # all ended by themselves
        for c in hosts.clients:
            await _fetch(conns[c.name], c, outs[c.name], point_dir / "clients" / c.name)
    finally:
        await asyncio.gather(*(p.stop() for p in procs.values()), return_exceptions=True)
        for name, conn in conns.items():
            if name in outs:
                try:
                    await conn.run(shlex.join(["rm", "-rf", "--", outs[name]]), check=False,
                                   timeout=10)
                except (asyncssh.Error, OSError, asyncio.TimeoutError):
                    pass
            conn.close()
    return merge(point_dir, hosts.clients)


async def _fetch(conn: asyncssh.SSHClientConnection, host: ClientHost, remote_dir: str,
                 local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    try:
        async with conn.start_sftp_client() as sftp:
            for name in CLIENT_FILES:
                await sftp.get(f"{remote_dir}/{name}", str(local / name))
    except (asyncssh.Error, OSError) as exc:
        raise ClientFailed(f"{host.name}: fetching {remote_dir}: {exc}") from exc


def drive(hosts: Hosts, params: loadgen_mod.LoadgenParams, point_dir: Path, *, tag: str,
          offsets_s: dict[str, float] | None = None) -> dict:
    """drive_async for synchronous callers (the runner); SIGTERM/Ctrl-C stop every client."""
    return run_sync(drive_async(hosts, params, point_dir, tag=tag, offsets_s=offsets_s))


# -- merge

SAME = ("loadgen_version", "dirs", "warmup_s", "measure_s", "count_rule", "window_us")
SKIP = ("args",)


def _weighted_mean(parts: list[dict], key: str, weight: str) -> float:
    total = sum(p.get(weight, 0) for p in parts)
    if not total:
        return 0.0
    return sum(p.get(key, 0) * p.get(weight, 0) for p in parts) / total


def _sum(parts: list[dict]) -> dict:
    """Sum the numbers of loadgen's nested summary counters; means weighted by requests."""
    out: dict = {}
    keys = list(dict.fromkeys(k for p in parts for k in p))
    for k in keys:
        vals = [p[k] for p in parts if k in p]
        if all(isinstance(v, dict) for v in vals):
            out[k] = _sum(vals)
        elif k.startswith("mean_"):
            out[k] = _weighted_mean([p for p in parts if k in p], k, "requests")
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = sum(vals)
        else:
            out[k] = vals[0]
    return out


def merge_summaries(summaries: list[dict], names: list[str]) -> dict:
    for key in SAME:
        values = {json.dumps(s.get(key), sort_keys=True) for s in summaries}
        if len(values) > 1:
            raise RemoteError(f"clients disagree on summary.json {key}: " + ", ".join(
                f"{n}={json.dumps(s.get(key))}" for n, s in zip(names, summaries, strict=True)))
    merged = _sum([{k: v for k, v in s.items() if k not in SAME + SKIP} for s in summaries])
    for key in SAME:
        if key in summaries[0]:
            merged[key] = summaries[0][key]
    conns = merged.get("connections", 0)
    if conns:
        merged["conforming_pct"] = 100.0 * merged.get("conforming_connections", 0) / conns
    requests = merged.get("requests_all_phases", 0)  # loadgen's denominator (summary.c)
    cpu = merged.get("cpu_user_s", 0) + merged.get("cpu_sys_s", 0)
    merged["cpu_us_per_request"] = cpu * 1e6 / requests if requests else 0.0
    merged["args"] = {n: s.get("args") for n, s in zip(names, summaries, strict=True)}
    return merged


def merge(point_dir: Path, clients: tuple[ClientHost, ...] | list[ClientHost]) -> dict:
    """Merge `clients/<name>/` into the point's requests.csv.gz, summary.json and clients.json.

    The request log keeps loadgen's columns exactly (ukweb.logs reads it unchanged): each
    client's rows in order, its `conn` offset by the connections of the clients before it, so
    conn stays the point's connection index; clients.json gives each client's conn range.
    """
    point_dir = Path(point_dir)
    names = [c.name for c in clients]
    summaries = [json.loads((point_dir / "clients" / n / "summary.json").read_text()) for n in names]
    merged = merge_summaries(summaries, names)
    record, first = [], 0
    tmp = point_dir / "requests.csv.gz.tmp"
    with gzip.open(tmp, "wt", newline="", compresslevel=6) as out:
        writer = csv.writer(out, lineterminator="\n")
        header: list[str] | None = None
        for c, s in zip(clients, summaries, strict=True):
            rows = 0
            with gzip.open(point_dir / "clients" / c.name / "requests.csv.gz", "rt",
                           newline="") as f:
                reader = csv.reader(f)
                head = next(reader)
                if header is None:
                    header = head
                    writer.writerow(head)
                elif head != header:
                    raise RemoteError(f"{c.name}: request log columns {head}, expected {header}")
                conn = head.index("conn")
                for row in reader:
                    if row == head:  # a later gzip member's header, if loadgen wrote one
                        continue
                    row[conn] = str(int(row[conn]) + first)
                    writer.writerow(row)
                    rows += 1
            n = int(s["connections"])
            record.append({"client": c.name, "address": c.address, "target": c.target,
                           "share": c.share, "connections": n, "conn_first": first,
                           "conn_last": first + n - 1, "rows": rows,
                           "ops_per_s": s.get("measure", {}).get("ops_per_s")})
            first += n
    tmp.replace(point_dir / "requests.csv.gz")
    (point_dir / "summary.json").write_text(json.dumps(merged, indent=1) + "\n")
    (point_dir / "clients.json").write_text(json.dumps(record, indent=1) + "\n")
    return merged


def client_column(requests, point_dir: Path):
    """The client name of each row of a merged request log (from clients.json's conn ranges)."""
    import pandas as pd
    record = json.loads((Path(point_dir) / "clients.json").read_text())
    bins = [r["conn_first"] for r in record] + [record[-1]["conn_last"] + 1]
    return pd.cut(requests["conn"], bins=bins, right=False, labels=[r["client"] for r in record])


def remove_fetched(point_dir: Path) -> None:
    shutil.rmtree(Path(point_dir) / "clients", ignore_errors=True)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ukweb hosts",
                                     description="check a multi-host testbed's hosts file")
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="validate FILE (and with --reach, SSH to every host)")
    check.add_argument("file")
    check.add_argument("--reach", action="store_true",
                       help="also connect to every host: commit, build, clock (ukweb.multihost)")
    args = parser.parse_args(argv)
    try:
        hosts = load_hosts(args.file)
    except HostsError as exc:
        print(f"ukweb hosts: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: server {hosts.server.name} ({', '.join(hosts.server.links)}), "
          f"{len(hosts.clients)} clients: "
          + ", ".join(f"{c.name}->{c.target} {c.share:g}" for c in hosts.clients))
    if args.reach:
        asyncssh.set_log_level(logging.WARNING)  # it logs every connection and channel at INFO
        try:
            result = prepare(hosts)
        except RemoteError as exc:
            print(f"ukweb hosts: {exc}", file=sys.stderr)
            return 2
        for name, h in result["hosts"].items():
            print(f"{name}: commit {h['commit'][:12]}, clock offset {h['clock_offset_ms']:+.1f} ms")
    return 0
