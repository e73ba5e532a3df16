"""Optional network emulation of the paper's testbed (§4): two rate-limited links.

The paper's server had two Gigabit Ethernet cards and the clients were split in two subnets,
one per card, so the network was never the bottleneck. Here the server and the clients each get
a network namespace, joined by two veth pairs, each shaped to the line rate with `tc ... tbf`
on both ends. Addresses exist only inside these namespaces. Code runs inside a namespace
through `run_in()`: one thread per namespace that switched its own network namespace (setns
affects only the calling thread), so the runner's HTTP calls and the processes it spawns from
that thread live in the namespace while the rest of the runner stays where it was. [I] The
thread lives until the namespace is removed, not one call: a child's parent-death signal
(ukweb.leftovers) fires when the thread that forked it exits, which would kill the server as
soon as it had started.

Each side pays for its own packets: a veth delivers a packet on the CPU that sent it, so the
clients' CPU would do the server's TCP receive work. Receive packet steering (rps_cpus on each
veth end) moves it to the receiving side's CPUs, as a NIC interrupt on the paper's server did.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ukweb import changes

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsError(RuntimeError):
    """A namespace, link or qdisc could not be set up."""


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if res.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {res.stderr.strip() or 'failed'}")


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class _NsThread:
    """A thread inside one namespace that runs the calls handed to it, one at a time."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.calls: queue.Queue = queue.Queue()
        self.entered: BaseException | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(ready,), name=f"netns-{ns}",
                                       daemon=True)
        self.thread.start()
        ready.wait()

    def _loop(self, ready: threading.Event) -> None:
        try:
            _setns(f"/run/netns/{self.ns}")
        except BaseException as exc:
            self.entered = exc
            ready.set()
            return
        ready.set()
        while (item := self.calls.get()) is not None:
            fn, box, done = item
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the caller in run_in
                box["error"] = exc
            done.set()

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self.thread:  # a call from inside: already there
            return fn()
        box: dict[str, object] = {}
        done = threading.Event()
        self.calls.put((fn, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    def stop(self) -> None:
        self.calls.put(None)
        self.thread.join()


_threads: dict[str, _NsThread] = {}
_threads_lock = threading.Lock()


def run_in(ns: str, fn: Callable[[], T]) -> T:
    """Call fn in this process's thread inside network namespace ns (started on first use,
    ended by end_threads); return or raise its result."""
    with _threads_lock:
        t = _threads.get(ns)
        if t is None or not t.thread.is_alive():
            t = _threads[ns] = _NsThread(ns)
    if t.entered is not None:
        with _threads_lock:
            _threads.pop(ns, None)
        raise t.entered
    return t.call(fn)


def end_threads(ns: str) -> None:
    """End the thread of namespace ns (after whatever it started has stopped)."""
    with _threads_lock:
        t = _threads.pop(ns, None)
    if t is not None:
        t.stop()


@dataclass
class Topology:
    """Server and client namespaces joined by `links` veth pairs of `rate` each.

    Link i uses 10.<net>.<i+1>.1 (server) and 10.<net>.<i+1>.2 (clients), /24.
    """

    prefix: str = "ukweb"
    links: int = 2
    rate: str = "1gbit"
    net: int = 199
    server_cpus: list[int] | None = None  # receive steering (RPS) targets; None: not steered
    client_cpus: list[int] | None = None
    server_ns: str = field(init=False)
    client_ns: str = field(init=False)

    def __post_init__(self) -> None:
        tag = f"{self.prefix}-{os.getpid()}"
        self.server_ns, self.client_ns = f"{tag}-srv", f"{tag}-cli"
        self._veth = f"uk{os.getpid() % 100000}"  # interface names are at most 15 characters

    def server_addrs(self) -> list[str]:
        return [f"10.{self.net}.{i + 1}.1" for i in range(self.links)]

    def create(self) -> Topology:
        if os.geteuid() == 0:
            for ns in (self.server_ns, self.client_ns):
                changes.track("netns", ns)  # a killed runner's namespaces go with it
        try:
            for ns in (self.server_ns, self.client_ns):
                _ip("ip", "netns", "add", ns)
                _ip("ip", "link", "set", "lo", "up", ns=ns)
            for i in range(self.links):
                self._link(i)
        except NetnsError:
            self.remove()
            raise
        log.info("netns %s <-> %s: %d links of %s", self.server_ns, self.client_ns,
                 self.links, self.rate)
        return self

    def _link(self, i: int) -> None:
        s, c = f"{self._veth}s{i}", f"{self._veth}c{i}"
        _ip("ip", "link", "add", s, "netns", self.server_ns, "type", "veth",
            "peer", "name", c, "netns", self.client_ns)
        for ns, dev, host in ((self.server_ns, s, 1), (self.client_ns, c, 2)):
            _ip("ip", "addr", "add", f"10.{self.net}.{i + 1}.{host}/24", "dev", dev, ns=ns)
            _ip("ip", "link", "set", dev, "up", ns=ns)
            # Token bucket at the line rate; the burst must cover one timer tick at that rate.
            _ip("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", self.rate,
                "burst", "1mb", "latency", "50ms", ns=ns)
        for ns, dev, cpus in ((self.server_ns, s, self.server_cpus),
                              (self.client_ns, c, self.client_cpus)):
            if cpus:
                _ip("sh", "-c", f"echo {cpu_mask(cpus)} > /sys/class/net/{dev}/queues/rx-0/rps_cpus",
                    ns=ns)

    def steering(self) -> dict[str, str]:
        """Each veth end's rps_cpus mask as the kernel reports it (read back, for the manifest)."""
        out = {}
        for i in range(self.links):
            for ns, dev in ((self.server_ns, f"{self._veth}s{i}"), (self.client_ns, f"{self._veth}c{i}")):
                res = subprocess.run(["ip", "netns", "exec", ns, "cat",
                                      f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],
                                     capture_output=True, text=True, timeout=30, check=False)
                out[dev] = res.stdout.strip()
        return out

    def qdiscs(self, ns: str) -> str:
        res = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "show"],
                             capture_output=True, text=True, timeout=30, check=False)
        return res.stdout

    def remove(self) -> None:
        """Delete both namespaces (their veth ends go with them) and their threads."""
        for ns in (self.server_ns, self.client_ns):
            end_threads(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
            if os.geteuid() == 0 and not os.path.exists(f"/run/netns/{ns}"):
                changes.untrack("netns", ns)

    def __enter__(self) -> Topology:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def cpu_mask(cpus: list[int]) -> str:
    """The hexadecimal CPU mask sysfs expects, e.g. [0] -> '1', [1, 2] -> '6'."""
    return format(sum(1 << c for c in cpus), "x")


def leftovers(prefix: str) -> list[str]:
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30,
                         check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.startswith(prefix)]
