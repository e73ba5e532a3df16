"""Build, start, health-check and stop the C servers (userver, ktux).

A `ServerConfig` names one server configuration of the paper (`named_config("userver-8")`,
`named_config("ktux")`); `Server` runs it on loopback against a document root and a work
directory (post log, ad tables, the server's stderr) and stops it cleanly. ktux is just
another `kind`: its own switches go in `options` and become `--flag` / `--flag=value`.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from ukweb import paths, startup
from ukweb.specweb99 import ResetParams

log = logging.getLogger(__name__)

KINDS = ("userver", "ktux")
EVENTS = ("select", "poll", "epoll")
STOP_GRACE_S = 5
# ktux's switches (docs/interfaces.md), each ablating one TUX feature; values: True, or a number
# (cache_bytes, cache_entry_max, iowq_workers, sqpoll=CPU).
KTUX_OPTIONS = ("cache_bytes", "cache_entry_max", "iowq_workers", "sqpoll", "no_cache",
                "no_multishot_accept", "no_zerocopy", "ring_iowait", "post_log_sync",
                "no_defer_accept", "module_api", "sched", "io_threads")
USERVER_OPTIONS = ("post_log_sync", "dynamic_send", "dynamic_writes")


class ServerError(RuntimeError):
    """The server did not come up or did not answer; the message carries its own stderr."""


@dataclasses.dataclass
class ServerConfig:
    """One server configuration; the defaults are the paper's (backlog 128, 15,000 conns)."""

    label: str
    kind: str = "userver"
    procs: int = 1
    events: str = "select"
    accept_count: int = 0  # 0 = Accept-Inf
    backlog: int = 128
    max_conns: int = 15000
    idle_timeout: int = 60
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"server kind must be one of {KINDS}, got {self.kind!r}")
        if self.events not in EVENTS:
            raise ValueError(f"events must be one of {EVENTS}, got {self.events!r}")
        for name in ("procs", "backlog", "max_conns", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.accept_count, int) or self.accept_count < 0:
            raise ValueError(f"accept_count must be >= 0, got {self.accept_count!r}")
        if self.kind == "ktux" and self.procs != 1:
            raise ValueError("ktux has one worker thread; procs must be 1")
        unknown = set(self.options) - set(KTUX_OPTIONS if self.kind == "ktux" else USERVER_OPTIONS)
        if unknown:
            raise ValueError(f"unknown {self.kind} options {sorted(unknown)}; "
                             f"known: {sorted(KTUX_OPTIONS if self.kind == 'ktux' else USERVER_OPTIONS)}")

    def args(self) -> list[str]:
        """The configuration's command-line flags (without address, paths and port)."""
        out = ["--backlog", str(self.backlog), "--max-conns", str(self.max_conns),
               "--idle-timeout", str(self.idle_timeout)]
        if self.kind == "userver":
            out += ["--events", self.events, "--accept-count", str(self.accept_count),
                    "--procs", str(self.procs)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                out.append(flag)
            elif value not in (False, None):
                out.append(f"{flag}={value}")
        return out


_USERVER_RE = re.compile(r"userver-(\d+)((?:\.[a-z]+)*)")
# Variant suffixes for ablations (ukweb.ablation): each switches one of the paper's mechanisms
# off. userver's dynamic writes block and send the file with sendfile, as the µserver's did.
USERVER_VARIANTS = {"nonblocking": {"dynamic_writes": "nonblocking"}, "copy": {"dynamic_send": "copy"}}
# ktux's: "ktux" is TUX's user-module API and accept-first loop; .direct calls the module from
# completion handlers, .completion handles completions in arrival order with multishot accept.
KTUX_VARIANTS = {"direct": {"module_api": "direct"}, "completion": {"sched": "completion"}}


def _variants(label: str, suffix: str, known: dict) -> dict:
    options: dict = {}
    for variant in filter(None, suffix.split(".")):
        if variant not in known:
            raise ValueError(f"unknown variant {variant!r} in {label!r}; "
                             f"known: {', '.join(sorted(known))}")
        options.update(known[variant])
    return options


def named_config(label: str) -> ServerConfig:
    """The paper's server labels: "userver-N" (N processes, select, Accept-Inf) and "ktux",
    each with optional ablation variants ("userver-8.nonblocking", "ktux.direct.completion")."""
    if label == "ktux" or label.startswith("ktux."):
        return ServerConfig(label=label, kind="ktux",
                            options=_variants(label, label[len("ktux"):], KTUX_VARIANTS))
    m = _USERVER_RE.fullmatch(label)
    if m and int(m.group(1)) >= 1:
        options = _variants(label, m.group(2), USERVER_VARIANTS)
        return ServerConfig(label=label, kind="userver", procs=int(m.group(1)), options=options)
    raise ValueError(f"unknown server {label!r}; known: ktux, ktux.<variant> "
                     f"({', '.join(sorted(KTUX_VARIANTS))}), userver-N (N >= 1, e.g. userver-8), "
                     f"userver-N.<variant> ({', '.join(sorted(USERVER_VARIANTS))})")


class Server:
    """One running server; a context manager that starts and stops it."""

    def __init__(self, config: ServerConfig, docroot: Path, workdir: Path, *,
                 addr: str = "127.0.0.1", port: int = 0,
                 preexec: Callable[[], None] | None = None) -> None:
        self.config = config
        self.docroot = Path(docroot)
        self.workdir = Path(workdir)
        self.addr = addr
        self.port = port
        self.preexec = preexec
        self.proc: subprocess.Popen | None = None

    # -- paths and addresses

    @property
    def post_log(self) -> Path:
        return self.workdir / "post.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.config.kind}.stderr"

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("server not started")
        return self.proc.pid

    def command(self) -> list[str]:
        """The full command line."""
        return [str(paths.binary(self.config.kind)), "--addr", self.addr, "--port", str(self.port),
                "--docroot", str(self.docroot), "--post-log", str(self.post_log),
                "--state-dir", str(self.workdir), *self.config.args()]

    # -- life cycle

    def start(self, timeout: float = 10) -> Server:
        """Start the server and wait until /server-status answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        log.info("starting %s: %s", self.config.label, " ".join(cmd))
        with open(self.stderr_path, "wb") as err:
            # A new session, so stop() can signal every process the server forked.
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                         preexec_fn=self.preexec, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            self.port = self._read_port(deadline)
            self._wait_ready(deadline)
        except ServerError:
            self.stop()
            raise
        return self

    def _failure(self, what: str) -> ServerError:
        text = self.stderr_path.read_text(errors="replace").strip() if self.stderr_path.exists() else ""
        code = self.proc.poll() if self.proc else None
        detail = f" (exit {code})" if code is not None else ""
        return ServerError(f"{self.config.label}: {what}{detail}: {text or 'no message on stderr'}")

    def _read_port(self, deadline: float) -> int:
        """The port from the server's "listening ADDR:PORT" line."""
        assert self.proc is not None
        m = startup.wait_for_line(self.proc, deadline, r"listening .*:(\d+)")
        if m:
            return int(m.group(1))
        if self.proc.poll() is not None:
            raise self._failure("exited during start-up")
        raise self._failure("did not print its listening address in time")

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self._failure("exited during start-up")
            try:
                if requests.get(self.url + "/server-status", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise self._failure("did not answer /server-status in time")

    def stop(self, timeout: float = STOP_GRACE_S) -> int:
        """SIGTERM (the server drains), then SIGKILL to the whole group; the exit code."""
        if self.proc is None:
            return 0
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.config.label, timeout)
        _kill_group(proc.pid)
        code = proc.wait()
        if proc.stdout:
            proc.stdout.close()
        return code

    def kill(self) -> None:
        """kill -9 the server and every process it forked (crash tests)."""
        if self.proc is not None:
            _kill_group(self.proc.pid)
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- talking to it

    def _get(self, target: str, timeout: float = 10) -> requests.Response:
        r = requests.get(self.url + target, timeout=timeout)
        if r.status_code != 200:
            raise ServerError(f"{self.config.label}: GET {target} -> {r.status_code}: {r.text[:200]}")
        return r

    def status(self) -> dict:
        """The /server-status JSON object."""
        return self._get("/server-status").json()

    def pids(self) -> list[int]:
        """The pids of the serving processes (the workers, for userver --procs N > 1)."""
        return [int(p["pid"]) for p in self.status()["processes"]]

    def reset(self, params: ResetParams) -> None:
        """SPECweb99 Reset: regenerate the ad tables, truncate the post log."""
        self._get("/specweb99?" + params.query(), timeout=60)

    def fetch(self) -> str:
        """SPECweb99 Fetch: the wrapper with the whole post log."""
        return self._get("/specweb99?command/Fetch", timeout=60).text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_IO_URING_SETUP = 425  # the same number on x86_64 and aarch64 (new-style syscall table)


def io_uring_unavailable() -> str | None:
    """Why ktux cannot run here (with the fix), or None when io_uring works.

    With ktux built this is ktux's own verdict: `ktux --probe` sets up the very ring ktux
    needs (buffer ring, multishot ops, io-wq limits) and prints one line naming the cause and
    the fix when it cannot. Without the binary, a bare io_uring_setup is tried instead.
    """
    try:
        ktux = paths.binary("ktux")
    except FileNotFoundError:
        return _bare_io_uring_unavailable()
    proc = subprocess.run([str(ktux), "--probe"], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1].removeprefix("ktux: ") if lines else f"ktux --probe exited {proc.returncode}"


def _bare_io_uring_unavailable() -> str | None:
    """io_uring_setup(2) directly, for when ktux is not built."""
    sysctl = Path("/proc/sys/kernel/io_uring_disabled")
    if sysctl.exists() and sysctl.read_text().strip() == "2":
        return "io_uring is disabled (kernel.io_uring_disabled=2); fix: sysctl -w kernel.io_uring_disabled=0"
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    fd = libc.syscall(_IO_URING_SETUP, 1, params)
    if fd >= 0:
        os.close(fd)
        return None
    err = ctypes.get_errno()
    if err == 38:  # ENOSYS
        return "the kernel has no io_uring (ENOSYS); fix: Linux >= 5.19 with CONFIG_IO_URING"
    if err == 1:  # EPERM
        return ("io_uring is blocked (EPERM: seccomp, e.g. Docker's default profile, or "
                "kernel.io_uring_disabled=1); fix: docker run --security-opt seccomp=unconfined, "
                "or sysctl -w kernel.io_uring_disabled=0")
    return f"io_uring_setup failed: {os.strerror(err)}"


def build(asan: bool = False) -> int:
    """`make build` (or `make asan`) at the top of the repository; make's exit code."""
    target = "asan" if asan else "build"
    log.info("make %s in %s", target, paths.REPO)
    return subprocess.run(["make", "-C", str(paths.REPO), target], check=False).returncode


def cli(argv: list[str]) -> int:
    """`ukweb build [--asan]`."""
    parser = argparse.ArgumentParser(prog="ukweb build", description="build the C servers and loadgen")
    parser.add_argument("--asan", action="store_true", help="AddressSanitizer build in build/asan")
    args = parser.parse_args(argv)
    return build(asan=args.asan)
