"""The post log on a full file system (servers/common/postlog.c), both servers, a real tmpfs.

The post log and the state files (User.Personality, Custom.Ads) share a 64 KiB tmpfs: POSTs
are acknowledged until it is full, then answered 500; the file never holds a partial or an
unacknowledged record; stderr says why once (not once per POST); Reset truncates the log
before it writes the state files, so it succeeds and POSTs resume; kill -9 and a restart keep
every acknowledged record exactly once, numbered 1..n.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ukweb.servers import Server, ServerConfig
from ukweb.specweb99 import Request, ResetParams, parse_post_log

pytest_plugins = ["servers_fixtures"]  # docroot, kind (userver|ktux)

RESET = ResetParams(maxload=20, pttime=100, maxthread=65, exp1=10, exp2=110)
HEADER, RECORD = 11, 139
FS_BYTES = 64 * 1024


class _SplitServer(Server):
    """A server whose post log and state files are in workdir but whose stderr is not (a full
    file system must not swallow the line that says it is full)."""

    def __init__(self, *args: object, stderr_dir: Path, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self._stderr_dir = stderr_dir

    @property
    def stderr_path(self) -> Path:
        return self._stderr_dir / f"{self.config.kind}.stderr"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test, unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _post(server: Server, client: int) -> int:
    req = Request("post", 0, client % 4, client % 9, user_id=10000 + client % RESET.maxload,
                  client=client)
    r = requests.post(server.url + req.target(), data=req.post_body(), timeout=10,
                      headers={"Cookie": req.cookie(),
                               "Content-Type": "application/x-www-form-urlencoded"})
    return r.status_code


def _whole_records(log: Path) -> list[int]:
    """The clients of the log's records; fails on a partial record."""
    data = log.read_bytes()
    assert (len(data) - HEADER) % RECORD == 0, f"partial record: {len(data)} bytes"
    records = parse_post_log(data)
    assert [r.number for r in records] == list(range(1, len(records) + 1))
    return [r.client for r in records]


def test_post_log_on_a_full_file_system(kind: str, docroot: Path, small_fs: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(label=f"{kind}-fullfs", kind=kind)
    servers: list[Server] = []

    def start() -> Server:
        srv = _SplitServer(cfg, docroot, small_fs, stderr_dir=tmp_path)
        servers.append(srv)
        return srv.start()

    try:
        srv = start()
        srv.reset(RESET)
        acked: list[int] = []
        client = 0
        while True:  # until the file system is full
            code = _post(srv, client)
            if code != 200:
                break
            acked.append(client)
            client += 1
            assert client < 1000, "the 64 KiB file system never filled"
        assert code == 500 and len(acked) > 100
        assert _whole_records(srv.post_log) == acked  # no partial record after the failure
        for extra in range(5):  # still full: 500, still no partial record
            assert _post(srv, 5000 + extra) == 500
            assert _whole_records(srv.post_log) == acked
        lines = [ln for ln in srv.stderr_path.read_text().splitlines() if "append failed" in ln]
        assert len(lines) == 1, lines  # one line for six failures of one kind
        assert "post.log" in lines[0] and os.strerror(28) in lines[0]  # ENOSPC

        # kill -9 and restart on the full file system: every acknowledged POST once
        srv.kill()
        srv = start()
        assert _whole_records(srv.post_log) == acked

        # Reset frees the log before it writes the state files, so it succeeds on a full disk
        srv.reset(RESET)
        assert _whole_records(srv.post_log) == []
        assert all(_post(srv, 7000 + i) == 200 for i in range(20))
        assert _whole_records(srv.post_log) == list(range(7000, 7020))
    finally:
        for s in servers:
            s.stop()
