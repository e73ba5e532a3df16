"""ukweb.startup: the one wait for a C helper's ready line, on real child processes."""

from __future__ import annotations

import subprocess
import sys
import time

from ukweb import startup


def child(code: str, text: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=text)


def test_the_matching_line_after_others() -> None:
    proc = child("import time; print('mounting', flush=True); time.sleep(0.2); print('listening 0.0.0.0:8123', flush=True); time.sleep(5)")
    try:
        m = startup.wait_for_line(proc, time.monotonic() + 10, r"listening .*:(\d+)")
        assert m is not None and m.group(1) == "8123"
    finally:
        proc.kill()
        proc.wait()


def test_two_lines_in_one_write() -> None:
    """A buffered readline() kept the second line where select() could not see it."""
    proc = child("import sys, time; sys.stdout.write('mounting\\nready\\n'); sys.stdout.flush(); time.sleep(5)",
                 text=True)
    try:
        began = time.monotonic()
        assert startup.wait_for_line(proc, began + 5, "ready") is not None
        assert time.monotonic() - began < 2
    finally:
        proc.kill()
        proc.wait()


def test_a_child_that_exits_fails_at_once_in_text_mode_too() -> None:
    proc = child("import sys; print('no', flush=True); sys.exit(3)", text=True)
    began = time.monotonic()
    assert startup.wait_for_line(proc, began + 10, "ready") is None
    assert time.monotonic() - began < 5 and proc.wait() == 3


def test_a_silent_child_fails_at_the_deadline() -> None:
    proc = child("import time; time.sleep(30)")
    try:
        began = time.monotonic()
        assert startup.wait_for_line(proc, began + 0.3, "ready") is None
        assert 0.25 <= time.monotonic() - began < 5 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
