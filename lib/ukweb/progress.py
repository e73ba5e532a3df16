"""Follow a sweep's <run>/progress.jsonl and show it: points done / total, the current point, its
replies/s, and the time left (used by `ukweb reproduce`, where the sweep runs inside notebook
02-run under papermill and prints nothing).

The runner (ukweb.runs) appends one JSON object per line: {"event": "start", "point", "index",
"total", "time"} when a point starts and {"event": "end", ..., "status": DONE | FAILED |
skipped, "replies_per_s", "elapsed_s", "time"} when it ends. On a terminal this is a tqdm bar;
otherwise one plain line per finished point.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

log = logging.getLogger(__name__)


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '1 h 05 min'; '?' when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _time(event: dict) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(event["time"]))
    except (KeyError, ValueError):
        return None


def _size(out: TextIO) -> dict:
    """tqdm's ncols/nrows when the terminal reports no size (a pty opened by `script` or a CI
    runner is 0 x 0): tqdm then takes -1 rows and hides the bar, so give it $COLUMNS or 80 x 24."""
    try:
        cols, rows = os.get_terminal_size(out.fileno())
    except (AttributeError, OSError, ValueError):
        cols = rows = 0
    if cols > 0 and rows > 0:
        return {}  # a real size: tqdm reads it itself
    fallback = shutil.get_terminal_size((80, 24))
    return {"ncols": fallback.columns, "nrows": fallback.lines}


class Follower:
    """Reads new complete lines of a progress file and renders them to out."""

    def __init__(self, path: Path, out: TextIO | None = None, tty: bool | None = None,
                 from_start: bool = False) -> None:
        self.path, self.out = Path(path), out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        # Lines already there belong to an earlier attempt at this run (a resume).
        self.offset = 0 if from_start or not self.path.exists() else self.path.stat().st_size
        self.partial = ""
        self.total, self.done, self.current = 0, 0, ""
        self.statuses: dict[str, int] = {}
        self.starts: dict[str, dt.datetime | None] = {}  # point -> its start event's time
        self.first_real: dt.datetime | None = None  # start of the first point actually measured
        self.last_end: dt.datetime | None = None
        self.measured = 0
        self.bar: tqdm | None = None
        self.bad_lines = 0

    def time_left(self) -> float | None:
        """Seconds left: the wall time per measured point so far (series set-up included)
        times the points still to do; None before one point has been measured."""
        if not self.measured or self.first_real is None or self.last_end is None:
            return None
        per_point = (self.last_end - self.first_real).total_seconds() / self.measured
        return per_point * max(self.total - self.done, 0)

    def poll(self) -> list[dict]:
        """Read what was appended since the last poll; render and return its events."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # the file was replaced: read it from the start
            self.offset, self.partial = 0, ""
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()  # an incomplete last line waits for the next poll
        events = []
        for line in filter(None, (x.strip() for x in lines)):
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                log.debug("progress: not JSON: %r", line[:80])
                continue
            if isinstance(event, dict):
                self._update(event)
                events.append(event)
        return events

    def _update(self, event: dict) -> None:
        kind = event.get("event")
        if kind not in ("start", "end"):
            return
        self.total = int(event.get("total") or self.total)
        if kind == "start":
            self.current = str(event.get("point", ""))
            self.starts[self.current] = _time(event)
            if self.tty:
                self._bar().set_description(self.current)
            return
        self.done = int(event.get("index") or self.done + 1)
        status = str(event.get("status", "?"))
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != "skipped":
            when = _time(event)
            if self.first_real is None:  # skipped points took no time: count from here
                self.first_real = self.starts.get(str(event.get("point"))) or when
            self.last_end, self.measured = when, self.measured + 1
        self._render_end(event, status)

    def _render_end(self, event: dict, status: str) -> None:
        rate = event.get("replies_per_s")
        rate_text = f"{rate:,.0f} replies/s" if isinstance(rate, int | float) else "-"
        left = duration(self.time_left())
        if self.tty:
            bar = self._bar()
            bar.update(self.done - bar.n)
            # The description names the current point; the postfix is the last one's result.
            state = "" if status == "DONE" else f"{event.get('point')} {status}, "
            bar.set_postfix_str(f"{state}{rate_text}, ~{left} left")
            return
        print(f"[{self.done}/{self.total}] {event.get('point')} {status} {rate_text}"
              f" - ~{left} left", file=self.out, flush=True)

    def _bar(self) -> tqdm:
        if self.bar is None:
            self.bar = tqdm(total=self.total or None, unit="point", file=self.out,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
                            **_size(self.out))
        if self.total and self.bar.total != self.total:
            self.bar.total = self.total
        return self.bar

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        return f"sweep: {self.done}/{self.total} points ({counts or 'none'})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.total:
            print(self.summary(), file=self.out, flush=True)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Poll until stop is set (then once more, so the last lines are shown)."""
        while not stop.wait(interval):
            self.poll()
        self.poll()


@contextmanager
def following(run: Path, out: TextIO | None = None, interval: float = 1.0) -> Iterator[Follower]:
    """Show <run>/progress.jsonl in a background thread while the body runs."""
    follower = Follower(Path(run) / "progress.jsonl", out)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop, interval), daemon=True,
                              name="ukweb-progress")
    thread.start()
    try:
        yield follower
    finally:
        stop.set()
        thread.join()
        follower.close()
