"""The hosts file of a multi-host testbed (issue 18): one server machine and N client machines.

The paper's testbed (§4) was one server with two Gigabit cards and 8 clients split in two
subnets, one per card. The file says where each machine is, how to reach it over SSH, which
server address (link) each client drives and its share of the connections, and which parts of
the emulation apply on the server (a period-like server needs none; a modern one still needs the
memory cap and the disk model to be in the paper's regime). Format: docs/hosts.md.

Shares are *fractions* of the point's connections and must add up to 1 (SPECweb99's manager
splits connections by client weight; fractions make the split readable in the file and a typo
visible). Passwords are never accepted: a key file or the SSH agent.

Every error is one line naming the field (`clients[1].share: ...`); `ukweb hosts check FILE`
(ukweb.multihost.cli) prints it and exits 2.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

SHARE_TOLERANCE = 1e-6
SSH_KEYS = ("user", "port", "key", "agent", "known_hosts", "workdir")
EMULATION_KEYS = ("cpu_thief", "memory_cap", "disk_model")
TOP_KEYS = ("ssh", "server", "clients")
SERVER_KEYS = ("name", "address", "links", "http_port", "emulation", *SSH_KEYS)
CLIENT_KEYS = ("name", "address", "target", "share", *SSH_KEYS)
SECRET_KEYS = ("password", "passphrase")


class HostsError(ValueError):
    """A hosts file that is unreadable or invalid; the message is one line naming the field."""


@dataclass(frozen=True)
class Ssh:
    """How to reach one host: user@address:port, a key file or the agent, known_hosts."""

    user: str
    port: int
    key: str | None  # path to a private key; None: the agent
    known_hosts: str
    workdir: str  # the checkout of this repository on that host


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # where SSH reaches it
    ssh: Ssh


@dataclass(frozen=True)
class ServerHost(Host):
    links: tuple[str, ...] = ()  # one address per link/subnet, as the paper's two cards
    port: int = 8080  # the HTTP port the server listens on, on every link (http_port:)
    emulation: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientHost(Host):
    target: str = ""  # the server link address this client drives
    share: float = 0.0  # fraction of each point's connections


@dataclass(frozen=True)
class Hosts:
    path: str
    server: ServerHost
    clients: tuple[ClientHost, ...]

    def all(self) -> tuple[Host, ...]:
        return (self.server, *self.clients)

    def split(self, connections: int) -> dict[str, int]:
        """Each client's connections for a point of `connections` (largest remainder, so they
        add up exactly); a client left with none is an error naming it."""
        raw = [c.share * connections for c in self.clients]
        counts = [math.floor(x) for x in raw]
        order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
        for i in order[:connections - sum(counts)]:
            counts[i] += 1
        for c, n in zip(self.clients, counts, strict=True):
            if n < 1:
                raise HostsError(f"{self.path}: clients[{c.name}].share: {c.share:g} of "
                                 f"{connections} connections is none")
        return {c.name: n for c, n in zip(self.clients, counts, strict=True)}

    def record(self) -> dict:
        """What the manifest records of the testbed (no secrets: key paths only)."""
        def ssh(h: Host) -> dict:
            return {"user": h.ssh.user, "port": h.ssh.port, "auth": "key" if h.ssh.key else "agent",
                    "workdir": h.ssh.workdir}
        return {"file": self.path,
                "server": {"name": self.server.name, "address": self.server.address,
                           "links": list(self.server.links), "port": self.server.port,
                           "emulation": dict(self.server.emulation), "ssh": ssh(self.server)},
                "clients": [{"name": c.name, "address": c.address, "target": c.target,
                             "share": c.share, "ssh": ssh(c)} for c in self.clients]}


def _fail(path: str, where: str, what: str) -> HostsError:
    return HostsError(f"{path}: {where}: {what}")


def _keys(path: str, where: str, obj: object, allowed: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        raise _fail(path, where, f"must be a mapping, got {type(obj).__name__}")
    for k in obj:
        if k in SECRET_KEYS:
            raise _fail(path, f"{where}.{k}", "passwords are not accepted; use key: FILE or agent: true")
        if k not in allowed:
            raise _fail(path, f"{where}.{k}", f"unknown key; known: {', '.join(allowed)}")
    return obj


def _str(path: str, where: str, obj: dict, key: str, default: str | None = None) -> str:
    if key not in obj:
        if default is not None:
            return default
        raise _fail(path, f"{where}.{key}", "missing")
    return _word(path, f"{where}.{key}", obj[key])


def _word(path: str, where: str, v: object) -> str:
    if not isinstance(v, str) or not v.strip() or any(ch.isspace() for ch in v):
        raise _fail(path, where, f"must be a non-empty word, got {v!r}")
    return v


def _port(path: str, where: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise _fail(path, where, f"must be a port number 1..65535, got {v!r}")
    return v


def _ssh(path: str, where: str, obj: dict, defaults: dict) -> Ssh:
    merged = {**defaults, **{k: obj[k] for k in SSH_KEYS if k in obj}}
    key, agent = merged.get("key"), merged.get("agent", False)
    if not isinstance(agent, bool):
        raise _fail(path, f"{where}.agent", f"must be true or false, got {agent!r}")
    if key is not None and agent:
        raise _fail(path, f"{where}.key", "give key or agent: true, not both")
    if key is None and not agent:
        raise _fail(path, f"{where}.key", "missing (or agent: true)")
    if key is not None:
        key = _str(path, where, merged, "key")
    workdir = _str(path, where, merged, "workdir")
    if not workdir.startswith("/"):
        raise _fail(path, f"{where}.workdir", f"must be an absolute path, got {workdir!r}")
    return Ssh(user=_str(path, where, merged, "user"),
               port=_port(path, f"{where}.port", merged.get("port", 22)),
               key=str(Path(key).expanduser()) if key else None,
               known_hosts=str(Path(_str(path, where, merged, "known_hosts",
                                         "~/.ssh/known_hosts")).expanduser()),
               workdir=workdir)


def parse(data: object, path: str = "<hosts>") -> Hosts:
    """Validate a loaded hosts file; HostsError (one line naming the field) when invalid."""
    top = _keys(path, "top level", data, TOP_KEYS)
    defaults = _keys(path, "ssh", top.get("ssh", {}), SSH_KEYS)
    if "server" not in top:
        raise _fail(path, "server", "missing")
    s = _keys(path, "server", top["server"], SERVER_KEYS)
    links = s.get("links")
    if not isinstance(links, list) or not links:
        raise _fail(path, "server.links", "missing or empty: one address per link/subnet")
    link_list = [_word(path, f"server.links[{i}]", a) for i, a in enumerate(links)]
    emu = _keys(path, "server.emulation", s.get("emulation", {}), EMULATION_KEYS)
    for k, v in emu.items():
        if not isinstance(v, bool):
            raise _fail(path, f"server.emulation.{k}", f"must be true or false, got {v!r}")
    server = ServerHost(name=_str(path, "server", s, "name", "server"),
                        address=_str(path, "server", s, "address"),
                        ssh=_ssh(path, "server", s, defaults), links=tuple(link_list),
                        port=_port(path, "server.http_port", s.get("http_port", 8080)),
                        emulation={k: bool(emu.get(k, False)) for k in EMULATION_KEYS})
    raw_clients = top.get("clients")
    if not isinstance(raw_clients, list) or not raw_clients:
        raise _fail(path, "clients", "missing or empty: at least one client host")
    clients = []
    for i, raw in enumerate(raw_clients):
        where = f"clients[{i}]"
        c = _keys(path, where, raw, CLIENT_KEYS)
        share = c.get("share")
        if share is None:
            raise _fail(path, f"{where}.share", "missing")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise _fail(path, f"{where}.share", f"must be a fraction in (0, 1], got {share!r}")
        target = _str(path, where, c, "target")
        if target not in link_list:
            raise _fail(path, f"{where}.target", f"{target} is not one of server.links {link_list}")
        clients.append(ClientHost(name=_str(path, where, c, "name"),
                                  address=_str(path, where, c, "address"),
                                  ssh=_ssh(path, where, c, defaults), target=target,
                                  share=float(share)))
    total = sum(c.share for c in clients)
    if abs(total - 1) > SHARE_TOLERANCE:
        raise _fail(path, "clients[*].share", f"shares add up to {total:g}, must add up to 1")
    _unique(path, "name", [("server.name", server.name)]
            + [(f"clients[{i}].name", c.name) for i, c in enumerate(clients)])
    _unique(path, "address", [("server.address", server.address)]
            + [(f"clients[{i}].address", c.address) for i, c in enumerate(clients)])
    _unique(path, "link", [(f"server.links[{i}]", a) for i, a in enumerate(link_list)])
    for i, c in enumerate(clients):
        if c.address in link_list:
            raise _fail(path, f"clients[{i}].address", f"{c.address} is also a server link")
    return Hosts(path=path, server=server, clients=tuple(clients))


def _unique(path: str, what: str, items: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for where, value in items:
        if value in seen:
            raise _fail(path, where, f"duplicate {what} {value} (also {seen[value]})")
        seen[value] = where


def load(path: str | Path) -> Hosts:
    """Read and validate a hosts file (YAML)."""
    p = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise HostsError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise HostsError(f"{p}: not YAML: {at}{getattr(exc, 'problem', None) or exc}") from exc
    return parse(data, p)
