"""The runner's side of a multi-host run (issue 18): `ukweb run --hosts FILE`.

ukweb.runs sweeps the same series and points as on one machine; only the point runner differs.
`Testbed` (a context manager around the sweep) checks every host (ukweb.multihost.prepare:
reachable, commit, build, clock), then starts the agent (ukweb.agent) on the server host over
SSH, which brings up the server host's testbed and the file set there. `HostsRunner` has the
PointRunner interface runs._run_series uses: per series the agent drops the cache and makes the
memory cgroup; per point the agent pre-warms and starts the server, Resets, samples from the
agreed start; loadgen runs on every client with its share (ukweb.multihost.drive_async); then
the agent checks and Fetches, system.csv and postlog.txt come back by SFTP, DONE is written last.

The SSH connections live in one asyncio loop on a thread of their own, so they last across
points while the runner stays synchronous; every call waits interruptibly, and Ctrl-C or
SIGTERM (runs._sigterm_raises) cancels the call in flight, whose clean-up stops its remote
process groups before the exception goes on. Closing the agent's channel stops its server and
undoes its testbed; its process group is killed when it does not exit in time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import itertools
import json
import logging
import math
import shlex
import shutil
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from ukweb import agent as agent_mod
from ukweb import loadgen as loadgen_mod
from ukweb import multihost
from ukweb.hosts import Hosts, ServerHost
from ukweb.manifest import now
from ukweb.point import (
    DiskFull,
    Point,
    PointFailed,
    PointRunner,
    TestbedDied,
    check_space,
    write_json,
)
from ukweb.remote import RemoteError, connect, run
from ukweb.servers import ServerConfig
from ukweb.specweb99 import ResetParams
from ukweb.sweep_params import SweepParams

log = logging.getLogger(__name__)

T = TypeVar("T")
AGENT_START_S = 3600.0  # the file set may be generated on the server host first
AGENT_EXIT_S = 60.0     # its clean-up: server, cgroups, disk model, thief
SERVER_FILES = ("system.csv", "postlog.txt")


class Loop:
    """An asyncio loop on its own thread; `call` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ukweb-ssh", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """coro's result; an exception here (Ctrl-C, SIGTERM's Interrupted) cancels it and waits
        for its clean-up (remote processes stopped) before going on."""
        done, box = threading.Event(), {}

        async def wrapped() -> None:
            try:
                box["result"] = await coro
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                box["error"] = exc
            finally:
                done.set()
        fut = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        try:
            while not done.wait(0.5):
                pass
        except BaseException:
            fut.cancel()
            done.wait(AGENT_EXIT_S)
            raise
        if "error" in box:
            raise box["error"]
        return box["result"]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class AgentLost(RemoteError):
    """The agent's channel ended (the server host, its sshd or the agent died)."""


@dataclasses.dataclass
class Agent:
    """ukweb.agent running on the server host, spoken to by JSON lines."""

    host: ServerHost
    conn: asyncssh.SSHClientConnection
    proc: asyncssh.SSHClientProcess
    stderr: collections.deque
    hello: dict = dataclasses.field(default_factory=dict)
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    drain: asyncio.Task | None = None

    @classmethod
    async def start(cls, host: ServerHost, config: str) -> Agent:
        conn = await connect(host)
        argv = [f"{host.ssh.workdir}/.venv/bin/python", "-m", "ukweb.agent", config]
        try:
            proc = await conn.create_process(shlex.join(argv))
        except (asyncssh.Error, OSError) as exc:
            conn.close()
            raise RemoteError(f"{host.name}: cannot start the agent: {exc}") from exc
        self = cls(host, conn, proc, collections.deque(maxlen=20))
        self.drain = asyncio.ensure_future(self._drain())
        try:
            self.hello = await self._reply(AGENT_START_S)
        except BaseException:
            await self.close()
            raise
        if not self.hello.get("ok"):
            await self.close()
            raise RemoteError(f"{host.name}: {self.hello.get('reason')}: {self.hello.get('detail')}")
        return self

    async def _drain(self) -> None:
        """The agent's log, into ours (and the last lines kept for a lost agent's message)."""
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self.stderr.append(line.rstrip())
            log.info("%s| %s", self.host.name, line.rstrip())

    async def _reply(self, timeout: float) -> dict:
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise AgentLost(f"{self.host.name}: the agent did not answer in {timeout:.0f} s") from None
        except (asyncssh.Error, OSError) as exc:
            raise AgentLost(f"{self.host.name}: agent connection lost: {exc}") from exc
        if not line:
            await asyncio.sleep(0.2)  # its last words
            last = next((x for x in reversed(self.stderr) if x.strip()), "no message")
            raise AgentLost(f"{self.host.name}: the agent exited "
                            f"({self.proc.exit_status if self.proc.exit_status is not None else 'connection lost'}): {last}")
        return json.loads(line)

    async def request(self, op: str, timeout: float = 120, **args: object) -> dict:
        async with self.lock:
            try:
                self.proc.stdin.write(json.dumps({"op": op, **args}, default=str) + "\n")
            except (asyncssh.Error, OSError, BrokenPipeError) as exc:
                raise AgentLost(f"{self.host.name}: agent connection lost: {exc}") from exc
            return await self._reply(timeout)

    async def fetch(self, remote_dir: str, local: Path, names: tuple[str, ...]) -> None:
        try:
            async with self.conn.start_sftp_client() as sftp:
                for name in names:
                    await sftp.get(f"{remote_dir}/{name}", str(local / name))
        except (asyncssh.Error, OSError) as exc:
            raise PointFailed("fetching the server's files failed",
                              f"{self.host.name}: {remote_dir}: {exc}") from exc

    async def close(self) -> None:
        """End of stdin: the agent stops everything and exits; its group killed if it does not."""
        with contextlib.suppress(asyncssh.Error, OSError):
            self.proc.stdin.write_eof()
        try:
            await asyncio.wait_for(self.proc.wait(), AGENT_EXIT_S)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pgid = self.hello.get("pgid")
            if pgid:
                log.warning("%s: the agent did not exit; killing its process group %s",
                            self.host.name, pgid)
                with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError, RemoteError):
                    await run(self.conn, self.host, ["kill", "-KILL", "--", f"-{pgid}"],
                              check=False, timeout=10)
        finally:
            if self.drain is not None:
                self.drain.cancel()
            self.proc.close()
            self.conn.close()


class Testbed:
    """Every host checked, the agent running on the server host; what the manifest records.

    Duck-types ukweb.testbed.Testbed for runs' manifest (describe, deviation_list, reaped)."""

    def __init__(self, hosts: Hosts, params: SweepParams, share: float | None, run_id: str) -> None:
        self.hosts, self.params, self.share, self.run_id = hosts, params, share, run_id
        self.loop: Loop | None = None
        self.agent: Agent | None = None
        self.prepared: dict = {}
        self.reaped: list[str] = []

    def __enter__(self) -> Testbed:
        self.loop = Loop()
        try:
            self.prepared = self.loop.call(multihost.prepare_async(self.hosts))
            s = self.hosts.server
            config = agent_mod.config_json(self.params.as_dict(), dict(s.emulation), self.share,
                                           s.port, f"{multihost.REMOTE_SCRATCH}/{self.run_id}-agent")
            self.agent = self.loop.call(Agent.start(s, config))
        except BaseException:
            self.__exit__()
            raise
        self.reaped = self.agent.hello.get("reaped", [])
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None
        try:
            if self.agent is not None:
                self.agent, agent = None, self.agent
                self.loop.call(agent.close())
        finally:
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return self.loop.call(coro)

    def describe(self) -> dict:
        """The server host's testbed (its CPUs, method, memory cap, disk model), as one
        machine's manifest records it, and where it ran."""
        hello = self.agent.hello if self.agent is not None else {}
        return {**hello.get("testbed", {}), "server_host": self.hosts.server.name,
                "emulation": dict(self.hosts.server.emulation)}

    def deviation_list(self) -> list[dict]:
        hello = self.agent.hello if self.agent is not None else {}
        return list(hello.get("deviations", []))

    def record(self) -> dict:
        """The manifest's `hosts`: the testbed (hosts file without secrets), every host's commit,
        clock offset, kernel, and the server machine."""
        hello = self.agent.hello if self.agent is not None else {}
        return {**self.prepared, "server_machine": hello.get("machine")}

    def offset_s(self, name: str) -> float:
        return self.prepared["hosts"][name]["clock_offset_ms"] / 1e3


@dataclasses.dataclass
class HostsRunner:
    """runs._run_series' point runner for a multi-host testbed (fresh points)."""

    testbed: Testbed
    params: SweepParams
    in_series: bool = False
    carrying: bool = False  # a carried server runs (HostsRunner.carried)
    _count: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    @property
    def server(self) -> str:
        return self.testbed.hosts.server.name

    def _agent(self, op: str, timeout: float = 120, **args: object) -> dict:
        """One request; a failed reply is PointFailed (or TestbedDied) naming the server host."""
        agent = self.testbed.agent
        if agent is None:
            raise TestbedDied("server host lost", f"{self.server}: no agent")
        try:
            reply = self.testbed.call(agent.request(op, timeout, **args))
        except AgentLost as exc:
            raise TestbedDied("server host lost", str(exc)) from exc
        if reply.get("ok"):
            return reply
        cls = TestbedDied if reply.get("kind") == "testbed" else PointFailed
        raise cls(str(reply.get("reason")), f"{self.server}: {reply.get('detail')}")

    def _quiet(self, op: str, **args: object) -> None:
        try:
            self._agent(op, **args)
        except (PointFailed, RemoteError) as exc:
            log.warning("%s: %s: %s", self.server, op, exc)

    @contextlib.contextmanager
    def series(self, label: str, connections: int) -> Iterator[dict]:
        info = self._agent("series", timeout=AGENT_START_S, label=label,
                           connections=connections)["info"]
        self.in_series = True
        try:
            yield info
        finally:
            self.in_series = False
            self._quiet("end_series")

    def _tag(self) -> str:
        return f"{self.testbed.run_id}-p{next(self._count)}"

    @contextlib.contextmanager
    def carried(self, work: Path, config: ServerConfig, point: Point) -> Iterator[dict]:
        """One server for the carried points of the current series, settled at `point`'s load
        first (as PointRunner.carried); yields the settling record."""
        if not self.in_series:
            raise RuntimeError("carried points run inside a series")
        started = self._agent("start", timeout=AGENT_START_S, config=dataclasses.asdict(config),
                              connections=point.connections, tag=self._tag(), prewarm=False)
        self.carrying = True
        try:
            yield {**self._settle(work, point), "server_pid": started["pid"]}
        finally:
            self.carrying = False
            self._quiet("stop")

    def _settle(self, work: Path, point: Point) -> dict:
        """PointRunner._settle over the hosts: loadgen chunks on every client until k x tau
        (tau = the memory cap / the disk's bytes/s meanwhile) or settle_max_s."""
        p = self.params
        state = self._agent("check", what="before settling")
        cap, bytes0, t0 = state["cap"], state["bytes"], time.monotonic()
        target, tau, chunks = p.settle_max_s, None, 0
        while True:
            elapsed = time.monotonic() - t0
            left = target - elapsed
            if left < 0.5 or (chunks and elapsed >= target):
                break
            chunk = min(PointRunner.settle_chunk_s, left)
            reset = ResetParams.for_run(point.connections, int(math.ceil(chunk)))
            self._agent("reset", reset=dataclasses.asdict(reset))
            lp = loadgen_mod.LoadgenParams(
                connections=point.connections, mix=point.workload, warmup_s=0, duration_s=chunk,
                line_speed=p.line_speed, threads=p.loadgen_threads, reset=reset,
                seed=(point.seed(p.seed) + 7919 * (chunks + 1)) % 4_294_967_291 or 1)
            out = work / f"chunk{chunks}"
            out.mkdir(parents=True, exist_ok=True)
            try:
                self._clients(lp, out, self._tag(), "while settling")
            finally:
                shutil.rmtree(out, ignore_errors=True)
            chunks += 1
            state = self._agent("check", what="while settling")
            rate = (state["bytes"] - bytes0) / max(time.monotonic() - t0, 1e-3)
            if cap and rate > 0:
                tau = cap / rate
                target = min(p.settle_taus * tau, p.settle_max_s)
        took = max(time.monotonic() - t0, 1e-3)
        info = {"settle_s": round(took, 1), "settle_taus": p.settle_taus,
                "tau_s": None if tau is None else round(tau, 1), "settle_max_s": p.settle_max_s,
                "disk_mb_per_s": round((state["bytes"] - bytes0) / took / 1e6, 3),
                "connections": point.connections, "chunks": chunks,
                "capped": tau is None or p.settle_taus * tau > p.settle_max_s}
        log.info("settled %s at c%d: %s", point.workload, point.connections, info)
        return info

    def server_alive(self) -> bool:
        try:
            return bool(self.carrying and self._agent("alive")["alive"])
        except PointFailed:
            return False

    def run(self, run_dir: Path, point: Point, config: ServerConfig) -> dict:
        """Measure one point on a fresh server; returns the DONE record. PointFailed/DiskFull."""
        if not self.in_series:  # a lone point is a series of one
            label = f"{point.workload}-{point.server}-c{point.connections}-r{point.repetition}"
            with self.series(label, point.connections):
                return self.run(run_dir, point, config)
        try:
            tag = self._tag()
            d = self._point_dir(run_dir, point)
            started = self._agent("start", timeout=AGENT_START_S,
                                  config=dataclasses.asdict(config),
                                  connections=point.connections, tag=tag)
            return self._guarded(d, point, lambda: self._drive(
                d, point, tag, self.params.warmup_s, self.params.duration_s,
                {"prewarm": started.get("prewarm"), "mode": "fresh"}))
        finally:
            if self.testbed.agent is not None:
                self._quiet("stop")

    def run_carried(self, run_dir: Path, point: Point, window_s: float, transition_s: float,
                    batch_s: int, settle: dict) -> dict:
        """One carried point on the carried server: Reset, transition_s of warm-up, one
        window_s window (as PointRunner.run_carried)."""
        if not self.carrying:
            raise RuntimeError("run_carried needs a carried server (HostsRunner.carried)")
        d = self._point_dir(run_dir, point)
        return self._guarded(d, point, lambda: self._drive(
            d, point, self._tag(), transition_s, window_s,
            {"mode": "carried", "batch_s": batch_s, "window_s": window_s,
             "transition_s": transition_s, "settle": settle}))

    @staticmethod
    def _point_dir(run_dir: Path, point: Point) -> Path:
        d = run_dir / point.rel()
        if d.exists():
            shutil.rmtree(d)  # a partial or failed earlier attempt: start clean
        d.mkdir(parents=True)
        check_space(d, point)
        return d

    @staticmethod
    def _guarded(d: Path, point: Point, measure) -> dict:
        """measure(), a full disk here turned into DiskFull as PointRunner does."""
        try:
            return measure()
        except DiskFull:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(errno.ENOSPC, f"disk full while measuring {point.label()}: {exc}") from exc
            raise
        except TestbedDied:
            raise
        except PointFailed:
            check_space(d, point)
            raise

    def _clients(self, lp: loadgen_mod.LoadgenParams, d: Path, tag: str, when: str = "",
                 start_at: float | None = None) -> dict:
        """Every client's loadgen for one run of lp; a client that fails fails the point."""
        offsets = {c.name: self.testbed.offset_s(c.name) for c in self.testbed.hosts.clients}
        suffix = f" {when}" if when else ""
        try:
            return self.testbed.call(multihost.drive_async(
                self.testbed.hosts, lp, d, tag=tag, offsets_s=offsets, start_at=start_at))
        except multihost.ClientFailed as exc:
            raise PointFailed(f"loadgen failed{suffix}", str(exc)) from exc
        except RemoteError as exc:
            raise PointFailed(f"client host failed{suffix}", str(exc)) from exc

    def _drive(self, d: Path, point: Point, tag: str, warmup_s: float, duration_s: float,
               extra: dict) -> dict:
        """Reset, the sampler and every client from one agreed start, the checks and Fetch on
        the server host, its files by SFTP; DONE last."""
        p = self.params
        reset = ResetParams.for_run(point.connections, int(warmup_s + duration_s))
        before = self._agent("reset", reset=dataclasses.asdict(reset))["before"]
        lp = loadgen_mod.LoadgenParams(
            connections=point.connections, mix=point.workload, warmup_s=warmup_s,
            duration_s=duration_s, line_speed=p.line_speed, seed=point.seed(p.seed),
            threads=p.loadgen_threads, reset=reset)
        begin = now()
        start_at = time.time() + multihost.START_LEAD_S
        self._agent("sample", start_at=start_at + self.testbed.offset_s(self.server), tag=tag)
        summary = self._clients(lp, d, tag, start_at=start_at)
        fin = self._agent("finish", warmup_s=warmup_s)
        assert self.testbed.agent is not None
        self.testbed.call(self.testbed.agent.fetch(fin["dir"], d, SERVER_FILES))
        write_json(d / "server-status.json", {"before": before, "after": fin["after"]})
        clients = json.loads((d / "clients.json").read_text())
        done = {"point": point.label(), "start": begin, "end": now(), "reset": reset.query(),
                "server_pids": fin["server_pids"],
                "ops_per_s": summary.get("measure", {}).get("ops_per_s"),
                "system_samples": fin["system_samples"],
                "memory_limit_bytes": fin["memory_limit_bytes"], "cgroup": fin["cgroup"],
                **extra,
                "hosts": {"server": self.server, "clients": {
                    c["client"]: {"connections": c["connections"], "ops_per_s": c["ops_per_s"]}
                    for c in clients}}}
        write_json(d / "DONE", done)
        return done
