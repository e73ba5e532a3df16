"""The start-up handshake of the C helpers ukweb runs (servers, disk model, CPU thief).

Each prints one line on stdout when it is ready ("listening ADDR:PORT", "ready"); the parent
waits for that line, and knows a child that exits or says nothing in time has failed. One
implementation of that wait, so the three agree on what a failed start looks like.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import time


def wait_for_line(proc: subprocess.Popen, deadline: float, pattern: str) -> re.Match | None:
    """The first line of proc's stdout that matches pattern (whole line, stripped) before
    deadline (time.monotonic); other lines are skipped. None when the child exits, closes its
    stdout or the deadline passes: the caller tells which by proc.poll()."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=min(left, 0.05)):
                if proc.poll() is not None:
                    return None
                continue
            line = proc.stdout.readline()
            if not line:  # EOF: the child closed stdout or exited
                return None
            text = line.decode(errors="replace") if isinstance(line, bytes) else line
            if match := re.fullmatch(pattern, text.strip()):
                return match
    return None
