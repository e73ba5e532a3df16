"""Fixtures for tests/test_servers.py: the file set, and real servers on loopback.

Every server test runs once per server kind (userver, ktux), so the two cannot drift apart;
ktux skips with the reason while it is not built or io_uring is unavailable here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ukweb import fileset, paths
from ukweb.servers import Server, ServerConfig, io_uring_unavailable

KINDS = ["userver", "ktux"]
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")
DIRS = 2  # the file set size; tests/test_servers.py relies on it


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated SPECweb99 file set of two directories (72 files, ~10 MB)."""
    root = tmp_path_factory.mktemp("docroot")
    fileset.generate(root, dirs=DIRS, progress=False)
    return root


def kind_unavailable(kind: str) -> str | None:
    """Why this server kind cannot be tested here, or None."""
    try:
        paths.binary(kind)
    except FileNotFoundError as exc:
        return f"{kind} is not built: {exc}"
    if kind == "ktux":
        return io_uring_unavailable()
    return None


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    reason = kind_unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(kind: str, docroot: Path, tmp_path: Path) -> Iterator[StartServer]:
    """start_server(**config fields) -> a started Server of this kind; all stopped at the end."""
    started: list[Server] = []

    def start(workdir: Path | None = None, **fields: object) -> Server:
        if kind != "userver":  # ktux has no --procs/--events/--accept-count
            for name in ("procs", "events", "accept_count"):
                fields.pop(name, None)
        cfg = ServerConfig(label=f"{kind}-test", kind=kind, **fields)  # type: ignore[arg-type]
        server = Server(cfg, docroot, workdir or tmp_path / f"work{len(started)}")
        started.append(server)
        return server.start()

    yield start
    problems = []
    for server in started:
        killed = server.proc is not None and server.proc.poll() is not None  # kill -9 tests
        code = server.stop()
        text = server.stderr_path.read_text(errors="replace") if server.stderr_path.exists() else ""
        if SANITIZER_RE.search(text):  # the asan build (UKWEB_BIN=build/asan) reports here
            problems.append(f"{server.config.label}: {text.strip()[-2000:]}")
        elif not killed and code != 0:
            problems.append(f"{server.config.label}: SIGTERM exit code {code}: {text.strip()[-500:]}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(start_server: StartServer) -> Server:
    """A server with the default configuration (userver: 1 process, select, Accept-Inf)."""
    return start_server()
