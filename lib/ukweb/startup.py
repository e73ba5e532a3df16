"""The start-up handshake of the C helpers ukweb runs (servers, disk model, CPU thief).

Each prints one line on stdout when it is ready ("listening ADDR:PORT", "ready"); the parent
waits for that line, and knows a child that exits or says nothing in time has failed. One
implementation of that wait, so the three agree on what a failed start looks like.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time


def wait_for_line(proc: subprocess.Popen, deadline: float, pattern: str) -> re.Match | None:
    """The first line of proc's stdout that matches pattern (whole line, stripped) before
    deadline (time.monotonic); other lines are skipped. None when the child exits, closes its
    stdout or the deadline passes: the caller tells which by proc.poll().

    [I] Reads the pipe's descriptor, not the file object: a buffered readline() would take two
    lines written at once ("mounting\nready\n") into its buffer, where select() cannot see the
    second. What follows the matching line in the same read is dropped; the helpers print
    nothing more until they stop."""
    assert proc.stdout is not None
    fd, pending = proc.stdout.fileno(), b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=min(left, 0.05)):
                if proc.poll() is not None:
                    return None
                continue
            chunk = os.read(fd, 4096)
            if not chunk:  # EOF: the child closed stdout or exited
                return None
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if match := re.fullmatch(pattern, line.decode(errors="replace").strip()):
                    return match
    return None
