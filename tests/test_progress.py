"""ukweb.progress: following a hand-written progress.jsonl as the runner writes it."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from ukweb import progress


def _event(kind: str, point: str, index: int, total: int = 4, t: str = "00:00:00", **kw) -> str:
    rec = {"event": kind, "point": point, "index": index, "total": total,
           "time": f"2026-12-01T10:{t}+00:00"[:25], **kw}
    return json.dumps(rec) + "\n"


def _write(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_one_plain_line_per_point_with_rate_and_time_left(tmp_path: Path):
    path = tmp_path / "progress.jsonl"
    out = io.StringIO()
    f = progress.Follower(path, out, tty=False)
    assert f.poll() == []  # no file yet
    _write(path, _event("start", "static/ktux/c100/r1", 1, t="00:00"))
    f.poll()
    assert out.getvalue() == "" and f.current == "static/ktux/c100/r1"
    _write(path, _event("end", "static/ktux/c100/r1", 1, t="01:00", status="DONE", replies_per_s=2301.5,
                        elapsed_s=60.0))
    _write(path, _event("start", "static/ktux/c300/r1", 2, t="01:00"))
    _write(path, '{"event": "end", "point": "static/ktux/c300/r1", "index": 2, "tot')  # half a line
    f.poll()
    lines = out.getvalue().splitlines()
    assert lines == ["[1/4] static/ktux/c100/r1 DONE 2,302 replies/s - ~3 min left"]
    _write(path, 'al": 4, "status": "FAILED", "replies_per_s": null, "elapsed_s": 150.0, '
                 '"time": "2026-12-01T10:02:30+00:00"}\n')
    f.poll()
    assert out.getvalue().splitlines()[-1] == "[2/4] static/ktux/c300/r1 FAILED - - ~2 min left"
    assert f.time_left() == pytest.approx(150.0)  # 75 s per point, 2 left
    f.close()
    assert out.getvalue().splitlines()[-1] == "sweep: 2/4 points (1 DONE, 1 FAILED)"


def test_skipped_points_of_a_resume_do_not_count_as_time(tmp_path: Path):
    path = tmp_path / "progress.jsonl"
    _write(path, "this line is from an earlier attempt and is not JSON\n")
    out = io.StringIO()
    f = progress.Follower(path, out, tty=False)  # starts at the file's end
    for i in (1, 2):
        _write(path, _event("start", f"static/ktux/c{i}00/r1", i, t="00:00"))
        _write(path, _event("end", f"static/ktux/c{i}00/r1", i, t="00:00", status="skipped", replies_per_s=None))
    _write(path, json.dumps({"event": "series", "workload": "static"}) + "\n")
    _write(path, _event("start", "static/ktux/c300/r1", 3, t="00:10"))
    _write(path, _event("end", "static/ktux/c300/r1", 3, t="00:40", status="DONE", replies_per_s=10.0))
    f.poll()
    assert f.bad_lines == 0 and f.done == 3 and f.measured == 1
    assert f.time_left() == pytest.approx(30.0)  # 30 s for the one measured point, 1 left
    assert out.getvalue().splitlines()[:2] == ["[1/4] static/ktux/c100/r1 skipped - - ~? left",
                                               "[2/4] static/ktux/c200/r1 skipped - - ~? left"]


def test_a_terminal_gets_a_bar(tmp_path: Path):
    path = tmp_path / "progress.jsonl"
    out = io.StringIO()
    f = progress.Follower(path, out, tty=True)
    _write(path, _event("start", "dynamic/userver-8/c700/r1", 1, total=2, t="00:00"))
    _write(path, _event("end", "dynamic/userver-8/c700/r1", 1, total=2, t="00:30", status="DONE",
                        replies_per_s=1234.0))
    f.poll()
    assert f.bar is not None and f.bar.n == 1 and f.bar.total == 2
    text = out.getvalue()
    assert "1/2" in text and "1,234 replies/s" in text and "~30 s left" in text
    f.close()


def test_following_in_the_background_while_the_sweep_writes(tmp_path: Path):
    out = io.StringIO()
    run = tmp_path / "run"
    run.mkdir()
    shown = threading.Event()
    with progress.following(run, out, interval=0.05) as f:
        _write(run / "progress.jsonl", _event("start", "static/ktux/c100/r1", 1, total=1))
        _write(run / "progress.jsonl", _event("end", "static/ktux/c100/r1", 1, total=1, status="DONE",
                                              replies_per_s=5.0))
        for _ in range(200):  # wait for the follower's thread, not a fixed time
            if f.done == 1:
                shown.set()
                break
            threading.Event().wait(0.02)
    assert shown.is_set()
    assert out.getvalue().splitlines() == ["[1/1] static/ktux/c100/r1 DONE 5 replies/s - ~0 s left",
                                           "sweep: 1/1 points (1 DONE)"]


def test_durations():
    assert [progress.duration(s) for s in (None, 4.4, 600, 3900)] == ["?", "4 s", "10 min", "1 h 05 min"]


def _on_a_pty(code: str, timeout: float = 60) -> str:
    """Run python code with stdout and stderr on a new pseudo-terminal that reports no size
    (0 x 0, what `script -qfec "make reproduce"` gives); returns what the terminal received."""
    import os
    import pty
    import subprocess
    import sys

    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=side, stderr=side, close_fds=True)
    os.close(side)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=timeout) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_a_pseudo_terminal_shows_the_bar_while_a_recorded_sweep_is_replayed(tmp_path: Path):
    """The reference run's own progress.jsonl (its first 40 lines), appended line by line while
    ukweb.progress.following (what `ukweb reproduce` wraps 02-run in) watches on a pty."""
    from ukweb import paths

    recorded = (paths.REFERENCE_RUN / "progress.jsonl").read_text().splitlines()[:40]
    ends = [json.loads(x) for x in recorded if json.loads(x).get("event") == "end"]
    run = tmp_path / "run"
    run.mkdir()
    code = f"""
import json, time
from pathlib import Path
from ukweb import progress
run = Path({str(run)!r})
lines = {recorded!r}
with progress.following(run, interval=0.05) as f:
    for line in lines:
        with open(run / "progress.jsonl", "a") as out:
            out.write(line + "\\n")
        time.sleep(0.01)
    while f.done < {len(ends)}:
        time.sleep(0.02)
"""
    screen = _on_a_pty(code)
    total = ends[0]["total"]
    last = ends[-1]
    assert "\r" in screen  # a bar redrawn in place, not lines
    assert f"{len(ends)}/{total}" in screen  # points done / total
    assert last["point"] in screen  # the current point
    assert f"{last['replies_per_s']:,.0f} replies/s" in screen
    assert " left" in screen and "00:0" in screen  # time left and elapsed
    assert screen.rstrip().endswith(f"sweep: {len(ends)}/{total} points ({len(ends)} DONE)")
