"""SSH transport to the hosts of a multi-host testbed, by asyncssh (why: docs/hosts.md).

Commands are argument lists; the remote shell gets `shlex.join(argv)`, never a string built from
user values. Host keys are checked against the hosts file's known_hosts: an unknown or changed
key refuses the host (asyncssh raises; nothing is accepted or added silently).

A long-running remote program (loadgen, a server) is started through LAUNCHER, a fixed Python
program run by the remote's python3 with the argv as its arguments: it forks the program into a
new session (its own process group, so one `kill -- -PGID` stops it and everything it forked),
prints the group id, optionally sleeps the child until an agreed wall-clock time before the
exec, and waits. When the SSH channel closes (the runner was killed, the link died) its stdin
reaches EOF and it kills the group: a remote program never outlives the runner that started it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
from dataclasses import dataclass

import asyncssh

from ukweb.hosts import Host

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


class RemoteError(RuntimeError):
    """A host could not be reached, refused, or a remote command failed; names the host."""


# argv: START_AT (epoch s, 0 = now) CWD PROGRAM ARGS...; exits as the program did (128+signal).
LAUNCHER = r"""
import os, select, signal, sys, time
at, cwd, argv = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid == 0:
    os.setsid()
    os.chdir(cwd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if at > 0:
        time.sleep(max(0.0, at - time.time()))
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write("cannot run %s: %s\n" % (argv[0], e.strerror))
        os._exit(127)
sys.stdout.write("%d\n" % pid)
sys.stdout.flush()
def gone(sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
while True:
    r = select.select([0], [], [], 0.1)[0]
    if r and not os.read(0, 4096):
        gone(signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit(255)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = os.waitstatus_to_exitcode(status)
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever the program forked goes with it
        except OSError:
            pass
        sys.exit(128 - code if code < 0 else code)
"""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "ended without an exit status (connection lost)"
    if code > 128 and code - 128 < signal.NSIG:
        try:
            return f"exited {code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exited {code}"


async def connect(host: Host) -> asyncssh.SSHClientConnection:
    """An SSH connection to host, its key checked against known_hosts; RemoteError naming it."""
    s = host.ssh
    where = f"{host.name} ({s.user}@{host.address}:{s.port})"
    try:
        return await asyncio.wait_for(asyncssh.connect(
            host.address, port=s.port, username=s.user, known_hosts=s.known_hosts,
            client_keys=[s.key] if s.key else (), agent_path=None if s.key else (),
            password=None, kbdint_auth=False, config=[]), CONNECT_TIMEOUT_S)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise RemoteError(f"{where}: host key refused: not the one in {s.known_hosts} "
                          f"({exc.reason})") from exc
    except asyncssh.PermissionDenied as exc:
        raise RemoteError(f"{where}: authentication refused ({exc.reason})") from exc
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) \
            or type(exc).__name__
        raise RemoteError(f"{where}: unreachable: {reason}") from exc


async def run(conn: asyncssh.SSHClientConnection, host: Host, argv: list[str], *,
              check: bool = True, timeout: float = 600) -> asyncssh.SSHCompletedProcess:
    """Run argv on host to completion; check: a non-zero exit is a RemoteError with stderr."""
    try:
        res = await conn.run(shlex.join(argv), check=False, timeout=timeout)
    except (asyncssh.Error, OSError) as exc:
        raise RemoteError(f"{host.name}: {argv[0]}: {exc}") from exc
    if check and res.exit_status != 0:
        err = str(res.stderr or "").strip().splitlines()
        raise RemoteError(f"{host.name}: {shlex.join(argv[:3])}... {describe_exit(res.exit_status)}"
                          f": {err[-1] if err else 'no stderr'}")
    return res


@dataclass
class RemoteProcess:
    """A program started on a host through LAUNCHER, in its own process group there."""

    host: Host
    conn: asyncssh.SSHClientConnection
    proc: asyncssh.SSHClientProcess
    pgid: int
    argv: list[str]

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection, host: Host, argv: list[str], *,
                    cwd: str, start_at: float = 0.0) -> RemoteProcess:
        cmd = shlex.join(["python3", "-c", LAUNCHER, repr(start_at), cwd, *argv])
        proc = await conn.create_process(cmd)
        line = await asyncio.wait_for(proc.stdout.readline(), CONNECT_TIMEOUT_S)
        try:
            pgid = int(line)
        except ValueError:
            err = (await proc.stderr.read()).strip()
            raise RemoteError(f"{host.name}: could not start {argv[0]}: {err or 'no pid'}") from None
        log.info("%s: started %s (process group %d)", host.name, shlex.join(argv), pgid)
        return cls(host, conn, proc, pgid, argv)

    async def wait(self) -> tuple[int | None, str]:
        """(exit code, stderr) once the program has ended; a RemoteError naming the host when
        the connection was lost first (the host, its sshd or the link died)."""
        try:
            stderr = await self.proc.stderr.read()
            await self.proc.wait()
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(f"{self.host.name}: connection lost while "
                              f"{self.argv[0].rsplit('/', 1)[-1]} ran: {exc}") from exc
        if self.proc.exit_status is None:
            raise RemoteError(f"{self.host.name}: connection lost while "
                              f"{self.argv[0].rsplit('/', 1)[-1]} ran (no exit status)")
        return self.proc.exit_status, str(stderr)

    async def stop(self) -> None:
        """Kill the process group (TERM, then KILL), and close the channel (LAUNCHER's backstop)."""
        for sig in ("TERM", "KILL"):
            try:
                await self.conn.run(shlex.join(["kill", f"-{sig}", "--", f"-{self.pgid}"]),
                                    check=False, timeout=5)
            except (asyncssh.Error, OSError, asyncio.TimeoutError):
                break
            if sig == "TERM":
                try:
                    await asyncio.wait_for(self.proc.wait(), 1.0)
                    break
                except asyncio.TimeoutError:
                    continue
        self.proc.close()
