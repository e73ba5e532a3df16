"""The server host's side of a multi-host run (issue 18): `python -m ukweb.agent CONFIG`.

The runner (ukweb.multirun) starts one agent per run on the server host over SSH and talks to it
by JSON lines: a request on stdin, one reply on stdout. The agent does on the server host what
the single-machine runner does for the server (ukweb.point.PointRunner): the testbed of the
profile reduced to what the hosts file's `server.emulation` applies (CPU thief, memory cap,
disk model), the file set generated and verified, each series' cache drop and memory cgroup,
each point's pre-warm, server start in that cgroup, Reset and /server-status, the sampler
(system.csv, started at the clients' agreed start time so its `t` and their logs share an
origin), the checks after the point (testbed alive, disk model on time, server alive), Fetch;
for a carried series one server kept across points and the checks between settling chunks.
The runner fetches the files by SFTP.

Reply: {"ok": true, ...} or {"ok": false, "kind": "point" | "testbed" | "error", "reason",
"detail"}: "point" fails the point, "testbed" stops the run (a part of the testbed died).
End of stdin (the runner closed the channel, or died), SIGTERM or SIGHUP: everything the agent
started is stopped and undone (server, sampler, cgroups, disk model, CPU thief) and it exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ukweb import machine, regime, statuspoll
from ukweb.cpuemul import CpuEmulationError
from ukweb.diskmodel import DiskModelError
from ukweb.point import PointFailed, PointRunner, TestbedDied, _alive, _process_tree
from ukweb.sampler import Sampler
from ukweb.servers import Server, ServerConfig, ServerError
from ukweb.specweb99 import ResetParams
from ukweb.sweep_params import validate

log = logging.getLogger("ukweb.agent")


def applied(params_dict: dict, emulation: dict, share: float | None) -> tuple[dict, float | None]:
    """The profile as it applies on the server host: the parts the hosts file's emulation turns
    off are off (a period machine needs none of them), each a recorded deviation of the run."""
    p = dict(params_dict)
    if not emulation.get("cpu_thief"):
        p["cpu_method"], p["cpu_share"], share = "none", None, None
    if not emulation.get("memory_cap"):
        p["memory_mb"] = None
    if not emulation.get("disk_model"):
        p["disk_model"] = False
    p["netns"] = False  # the links are the testbed's own
    return p, share


class Agent:
    """The server host's testbed for one run, and the server of the current point."""

    def __init__(self, config: dict, stack: contextlib.ExitStack) -> None:
        raw, share = applied(config["params"], config["emulation"], config.get("share"))
        self.params = params = validate(raw)
        self.port = int(config["port"])
        self.scratch = Path(config["scratch"])
        self.scratch.mkdir(parents=True, exist_ok=True)
        stack.callback(shutil.rmtree, self.scratch, True)
        regime.check_methods(params)
        docroot = regime.docroot_for(params)  # generated here, verified when it exists
        self.testbed = testbed = regime.make_testbed(params, share)
        regime.method_deviations(params, testbed, share)
        stack.enter_context(testbed)
        disk = stack.enter_context(regime.mounted_disk(params, docroot, testbed))
        self.runner = PointRunner(testbed, disk.mountpoint if disk else docroot, params.warmup_s,
                                  params.duration_s, params.line_speed, params.seed,
                                  params.loadgen_threads, None, disk=disk, prewarm=params.prewarm,
                                  max_connections=params.max_connections())
        self.stack = stack
        self.series: contextlib.ExitStack | None = None
        self.server: Server | None = None
        self.sampler: Sampler | None = None
        self.timer: threading.Timer | None = None
        self.poll = contextlib.ExitStack()  # the sampler's status poller (statuspoll)
        self.point: Path | None = None

    def hello(self) -> dict:
        return {"pid": os.getpid(), "pgid": os.getpgid(0), "testbed": self.testbed.describe(),
                "deviations": self.testbed.deviation_list(), "reaped": self.testbed.reaped,
                "docroot": str(self.runner.docroot), "machine": machine.host()}

    # -- requests

    def op_series(self, label: str, connections: int) -> dict:
        self.op_end_series()
        stack = contextlib.ExitStack()
        info = stack.enter_context(self.runner.series(label, connections))
        self.series = stack
        return {"info": info}

    def op_end_series(self) -> dict:
        self.op_stop()
        if self.series is not None:
            self.series, stack = None, self.series
            stack.close()
        return {}

    def op_start(self, config: dict, connections: int, tag: str, prewarm: bool = True) -> dict:
        """Pre-warm for the point's load (not for a carried server: it keeps the cache the
        series settles), then a fresh server in the series' cgroup."""
        self.op_stop()
        cg = self.runner.cg
        warmed = (self.runner._prewarm(cg, connections)
                  if prewarm and self.runner.point_prewarm else None)
        work = self.scratch / tag / "server"
        shutil.rmtree(work, ignore_errors=True)
        server = Server(ServerConfig(**config), self.runner.docroot, work,
                        addr="0.0.0.0", port=self.port,
                        preexec=self.testbed.server_preexec(cg))
        try:
            server.start()
        except (ServerError, OSError) as exc:
            raise PointFailed("server failed to start", str(exc)) from exc
        self.server = server
        return {"pid": server.pid, "port": server.port, "prewarm": warmed}

    def op_reset(self, reset: dict) -> dict:
        server = self._server()
        before = self._ask("reset", lambda: (server.reset(ResetParams(**reset)), server.status())[1])
        return {"before": before}

    def op_check(self, what: str) -> dict:
        """Between a carried series' settling chunks: the testbed and the server alive; the
        disk's bytes so far and the memory cap (its cache turnover, tau)."""
        server = self._server()
        self.runner._check_testbed()
        if not _alive(server.pid):
            raise PointFailed(f"server died {what}", f"pid {server.pid} exited")
        cg = self.runner.cg
        return {"bytes": self.runner._disk_bytes(),
                "cap": cg.memory_bytes if cg is not None else None}

    def op_sample(self, start_at: float, tag: str) -> dict:
        """The sampler from the clients' agreed start (this host's clock), as the single-machine
        sampler starts with its loadgen; the point's files go to scratch/tag."""
        server, cg = self._server(), self.runner.cg
        if self.point is not None:  # the previous point's files, fetched by now
            shutil.rmtree(self.point, ignore_errors=True)
        self.point = self.scratch / tag / "point"
        shutil.rmtree(self.point, ignore_errors=True)
        self.point.mkdir(parents=True)
        pids = cg.pids if cg is not None else lambda: _process_tree(server.pid)
        disk = self.runner._disk_counters if self.runner.disk is not None else None
        assert self.point is not None
        self.poll = contextlib.ExitStack()  # ktux's module counters, closed with the sampler
        counters = self.poll.enter_context(statuspoll.sampler_extra(disk, server.config.kind,
                                                                    server.status))
        self.sampler = Sampler(self.point / "system.csv", self.testbed.server_cpu_list, pids, cg,
                               extra=counters)
        self.timer = threading.Timer(max(0.0, start_at - time.time()), self.sampler.__enter__)
        self.timer.daemon = True
        self.timer.start()
        return {}

    def op_finish(self, warmup_s: float) -> dict:
        """After the clients ended: the sampler stopped, the testbed and the server checked,
        status, post log; system.csv and postlog.txt left in `dir` for the runner to fetch."""
        server = self._server()
        assert self.point is not None and self.sampler is not None
        self._stop_sampler()
        if self.sampler.error is not None:
            raise PointFailed("system sampler failed", str(self.sampler.error))
        rows, self.sampler = self.sampler.rows, None
        self.runner._check_testbed()
        self.runner._check_disk_timing(self.point / "system.csv", warmup_s)
        if not _alive(server.pid):
            raise PointFailed("server died during the point", f"pid {server.pid} exited")
        after = self._ask("status after the point", server.status)
        (self.point / "postlog.txt").write_text(self._ask("fetch", server.fetch))
        cg = self.runner.cg
        return {"after": after, "server_pids": self._ask("pids", server.pids),
                "system_samples": rows, "dir": str(self.point),
                "memory_limit_bytes": cg.memory_bytes if cg is not None else None,
                "cgroup": cg.name if cg is not None else None}

    def op_stop(self) -> dict:
        """Stop the point's sampler and server (whatever state the point ended in)."""
        self._stop_sampler()
        self.sampler = None
        if self.server is not None:
            self.server, server = None, self.server
            server.stop()
        return {}

    def op_alive(self) -> dict:
        return {"alive": self.server is not None and _alive(self.server.pid)}

    # -- helpers

    def _stop_sampler(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
            self.timer = None
        if self.sampler is not None:
            self.sampler.stop()
        self.poll.close()

    def _server(self) -> Server:
        if self.server is None:
            raise PointFailed("no server", "the point's server was not started")
        return self.server

    def _ask(self, what: str, call):
        try:
            return call()
        except Exception as exc:  # requests, ServerError, OSError, ValueError
            server = self.server
            state = ("server still running" if server is not None and _alive(server.pid)
                     else "server process is gone")
            raise PointFailed(f"server died or stopped answering ({what})", f"{state}: {exc}") from exc

    def handle(self, request: dict) -> dict:
        op = request.pop("op", None)
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            return {"ok": False, "kind": "error", "reason": "unknown request", "detail": repr(op)}
        try:
            return {"ok": True, **fn(**request)}
        except TestbedDied as exc:
            return {"ok": False, "kind": "testbed", "reason": exc.reason, "detail": exc.detail}
        except PointFailed as exc:
            return {"ok": False, "kind": "point", "reason": exc.reason, "detail": exc.detail}
        except (CpuEmulationError, DiskModelError) as exc:
            return {"ok": False, "kind": "testbed", "reason": "testbed error", "detail": str(exc)}
        except Exception as exc:  # a bug costs the point, as in runs._run_point
            log.error("%s: %s", op, traceback.format_exc())
            return {"ok": False, "kind": "error", "reason": f"agent error ({type(exc).__name__})",
                    "detail": str(exc)}


def _stopped(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the clean-up run
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(OSError):
        os.setsid()  # its own process group: the runner's last resort is `kill -- -PGID`
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stopped)

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj, default=str) + "\n")

    if len(argv) != 1:
        reply({"ok": False, "kind": "error", "reason": "usage", "detail": "ukweb.agent CONFIG_JSON"})
        return 2
    with contextlib.ExitStack() as stack:
        try:
            agent = Agent(json.loads(argv[0]), stack)
        except Exception as exc:  # ParamsError, SweepError, FilesetError, LeftoversError, ...
            log.error("%s", traceback.format_exc())
            reply({"ok": False, "kind": "testbed", "reason": "server host testbed",
                   "detail": str(exc)})
            return 1
        stack.callback(agent.op_end_series)
        reply({"ok": True, **agent.hello()})
        for line in sys.stdin:
            reply(agent.handle(json.loads(line)))
    return 0


def config_json(params: dict, emulation: dict, share: float | None, port: int,
                scratch: str) -> str:
    """The agent's one argument."""
    return json.dumps({"params": params, "emulation": emulation, "share": share, "port": port,
                       "scratch": scratch}, default=str)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

